"""Checkpoints: written atomically (temp file + rename), read back without unpickling code objects."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or not a stackrl checkpoint."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, numbers, strings, lists and dicts only) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
