"""TensorBoard scalars, with the latest value of each kept for the progress bar."""

from __future__ import annotations

from pathlib import Path


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

    def hparams(self, flat: dict[str, float | str | bool], metrics: dict[str, float]) -> None:
        if self._writer is not None:
            self._writer.add_hparams(flat, metrics, run_name=".")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
