"""Run directories are never clobbered: deciding whether a run starts fresh, resumes, or must not start.

A run writes config.yaml, TensorBoard events, checkpoints and result.json into `<run_root>/<name>/`.
Starting a second run there silently would overwrite the first one's config and interleave a second
event file into its curves, so a name that is taken refuses to start unless the user says what they
mean: `--resume` (continue it from its checkpoint) or `--overwrite` (delete it, then start over).
The decision is made before anything is written, and deleting waits until the caller's own checks
have passed, so a command that fails before training leaves an existing run as it was.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from enum import Enum
from pathlib import Path
from typing import Any

from stackrl.config import ConfigError, ExperimentConfig

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class RunDirError(ValueError):
    """The run directory holds another run (or an incompatible one); the message says what to pass."""


class Start(Enum):
    FRESH = "fresh"  # nothing there: start a new run
    RESUME = "resume"  # continue from the checkpoint there
    REPLACE = "replace"  # delete what is there (call `clear`), then start a new run


def _occupied(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(run_dir.iterdir())


def decide(run_dir: Path, *, resume: bool = False, overwrite: bool = False) -> Start:
    """How a run may start in `run_dir`.

    Args:
        run_dir: the run's directory.
        resume: continue the run there if it has a checkpoint (a restarted or requeued learner); a
            directory without one (stopped before its first checkpoint) is started over.
        overwrite: replace whatever is there.

    Raises:
        RunDirError: the directory holds a run and neither flag was given, or both were.
    """
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a directory")
    if not _occupied(run_dir):
        return Start.FRESH
    if overwrite:
        return Start.REPLACE
    if resume:
        if (run_dir / CHECKPOINT).exists():
            return Start.RESUME
        log.warning("%s has no checkpoint to resume from: starting the run over", run_dir)
        return Start.REPLACE
    raise RunDirError(
        f"{run_dir} already holds a run: pass --resume to continue it, --overwrite to replace it, "
        "or choose another --name"
    )


def clear(run_dir: Path) -> None:
    """Delete the previous run in `run_dir` (its files and folders), keeping the directory itself."""
    for p in run_dir.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# Fields that legitimately differ between a run and its restart: where it listens and its secrets
# (the command line's), and what the learner pins into config.yaml itself (the probe set).
_RESTART_FREE = ("server", "env.probe_hash", "env.probe_path")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def check_same_run(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Refuse to resume `run_dir` with a config other than the one it was started with.

    Raises:
        RunDirError: config.yaml is missing, invalid, or differs from `cfg` (the keys are named).
    """
    path = run_dir / "config.yaml"
    try:
        saved = ExperimentConfig.from_yaml(path.read_text())
    except (OSError, ConfigError) as e:
        raise RunDirError(f"cannot resume {run_dir}: its config.yaml is unreadable: {e}") from None
    old, new = _flat(dataclasses.asdict(saved)), _flat(dataclasses.asdict(cfg))
    differ = sorted(
        k
        for k in old.keys() | new.keys()
        if old.get(k) != new.get(k) and not any(k == f or k.startswith(f + ".") for f in _RESTART_FREE)
    )
    if differ:
        raise RunDirError(
            f"{run_dir} holds a run with another config ({', '.join(differ)} differ): "
            "pass --overwrite to replace it, or choose another --name"
        )
