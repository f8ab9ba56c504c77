"""Checkpoints: written atomically (temp file + fsync + rename), read back without unpickling code objects.

A reader sees the previous checkpoint or the new one, whole, whatever stops the writer: the state is
written to a temporary file in the same directory, flushed to disk, renamed over the checkpoint
(atomic on POSIX), and the directory entry is flushed too. A writer killed mid-write (SIGKILL after
the grace period) leaves only its temporary file, which the next save removes.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or not a stackrl checkpoint."""


def _temporaries(path: Path) -> list[Path]:
    return list(path.parent.glob(f"{glob.escape(path.name)}.*.tmp"))


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files that writers of `path` killed mid-write left behind; returns them.
    Only one process writes a run's checkpoint at a time, so any such file is abandoned."""
    stale = _temporaries(Path(path))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, numbers, strings, lists and dicts only) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a crash of the machine
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform or file system without directory handles: the rename is done anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (no arbitrary unpickling); clear errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != "stackrl-checkpoint-v1":
        raise CheckpointError(f"{path} is not a stackrl checkpoint")
    return state


def numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as JSON-able data (checkpoints hold no pickled objects)."""
    state = np.random.get_state(legacy=True)
    assert isinstance(state, tuple)  # legacy=True: (name, keys, pos, has_gauss, gauss)
    name, keys, pos, has_gauss, gauss = state
    return {
        "name": name,
        "keys": np.asarray(keys).tolist(),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": gauss,
    }


def set_numpy_rng_state(s: dict[str, Any]) -> None:
    np.random.set_state(
        (s["name"], np.asarray(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"], s["gauss"])
    )
