"""TensorBoard scalars, with the latest value of each kept for the progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HParam = float | str | bool


class Metrics:
    """Writes scalars to TensorBoard (if a log dir is given) and remembers the latest values."""

    def __init__(self, log_dir: Path | None, purge_step: int | None = None):
        """`purge_step`: when resuming, drop events an interrupted run logged at or after this step,
        so curves continue from the checkpoint instead of overlapping."""
        self.latest: dict[str, float] = {}
        self._writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.latest[tag] = float(value)
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), step)

    def text(self, tag: str, text: str) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text)

    def hparams(self, flat: dict[str, HParam], metrics: dict[str, float]) -> None:
        """The run's configuration and its final metrics in TensorBoard's HParams tab (one row per
        run, so runs of a sweep compare side by side)."""
        if self._writer is not None:
            self._writer.add_hparams(flat, metrics, run_name=".")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, HParam]:
    """A nested config dict as `section.key -> value`, with values the HParams plugin accepts
    (numbers, strings, booleans; lists and None as their text)."""
    out: dict[str, HParam] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, name + "."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out
