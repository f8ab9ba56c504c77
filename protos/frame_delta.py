"""Frame-stacked observations on the wire, once per frame.

An Atari observation is a stack of the last S frames ([S, H, W], S = 4), so consecutive rows of an
unroll share S - 1 frames: sending every stack whole repeats each frame S times (about 28 KB per
agent step instead of 7 KB). `split_stacks` keeps the newest frame of every row and the older
frames only of the rows that do not continue the previous row's stack (the first row, and rows
after an episode restarted the stack); `join_stacks` rebuilds the exact array.

The split compares frames instead of assuming how an environment restarts its stack, so it is
lossless for any [T+1, B, S, ...] array: a layout that is not a frame stack just finds no
continuing rows (and the codec then sends it whole).
"""

from __future__ import annotations

import numpy as np


class FrameDeltaError(ValueError):
    """The parts of a split observation do not fit together."""


def continuing_rows(obs: np.ndarray) -> np.ndarray:
    """[T+1, B] bool: row (t, b) holds the previous row's frames shifted by one (never at t = 0).

    obs: [T+1, B, S, *frame] with S >= 2.
    """
    same = np.zeros(obs.shape[:2], dtype=bool)
    # [T, B, S-1, *frame] -> compare, then all() over everything but (t, b)
    shifted = obs[1:, :, :-1] == obs[:-1, :, 1:]
    same[1:] = shifted.reshape(*shifted.shape[:2], -1).all(axis=-1)
    return same


def split_stacks(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """obs [T+1, B, S, *frame] -> (newest [T+1, B, 1, *frame], restart rows [N] int64 (flat
    t * B + b, increasing), their older frames [N, S-1, *frame])."""
    if obs.ndim < 3 or obs.shape[2] < 2:
        raise FrameDeltaError(f"expected [T+1, B, S >= 2, ...] frame stacks, got shape {obs.shape}")
    restart = ~continuing_rows(obs)
    rows = np.flatnonzero(restart.ravel()).astype(np.int64)
    older = obs[:, :, :-1][restart]  # [N, S-1, *frame], rows in flat (t, b) order
    return np.ascontiguousarray(obs[:, :, -1:]), rows, np.ascontiguousarray(older)


def join_stacks(newest: np.ndarray, rows: np.ndarray, older: np.ndarray, max_bytes: int) -> np.ndarray:
    """Inverse of `split_stacks`, checking that the parts fit (they may come from the network).

    Raises:
        FrameDeltaError: shapes disagree, row indices are not increasing and in range, a row of the
            first step is missing (it has no previous row to continue), or the rebuilt array would
            exceed `max_bytes` (S comes from the message, so a small one could ask for a huge array).
    """
    if newest.ndim < 3 or newest.shape[2] != 1:
        raise FrameDeltaError(f"newest frames: shape {newest.shape}, expected [T+1, B, 1, ...]")
    t1, b = newest.shape[:2]
    frame = newest.shape[3:]
    if rows.ndim != 1 or older.ndim != 2 + len(frame) or older.shape[0] != len(rows):
        raise FrameDeltaError(
            f"restart rows {rows.shape} and older frames {older.shape} do not match newest frames {newest.shape}"
        )
    if older.shape[2:] != frame or older.shape[1] < 1:
        raise FrameDeltaError(f"older frames: shape {older.shape}, expected [N, S-1 >= 1, *{frame}]")
    if older.dtype != newest.dtype:
        raise FrameDeltaError(f"older frames are {older.dtype}, newest frames {newest.dtype}")
    if len(rows) < b or not np.array_equal(rows[:b], np.arange(b)):
        raise FrameDeltaError("every row of the first step must be sent whole")
    if np.any(np.diff(rows) <= 0) or rows[-1] >= t1 * b:
        raise FrameDeltaError(f"restart rows must be increasing and below {t1 * b}")
    s = older.shape[1] + 1
    nbytes = t1 * b * s * int(np.prod(frame, dtype=np.int64)) * newest.dtype.itemsize
    if nbytes > max_bytes:
        raise FrameDeltaError(f"rebuilt observations would take {nbytes} bytes (limit {max_bytes})")
    obs = np.empty((t1, b, s, *frame), dtype=newest.dtype)
    restart = np.zeros(t1 * b, dtype=bool)
    restart[rows] = True
    restart = restart.reshape(t1, b)
    starts = np.zeros(t1 + 1, dtype=np.int64)  # offset of each step's restart rows in `older`
    np.cumsum(restart.sum(axis=1), out=starts[1:])
    for t in range(t1):
        if t:
            obs[t, :, :-1] = obs[t - 1, :, 1:]
        obs[t, restart[t], :-1] = older[starts[t] : starts[t + 1]]
        obs[t, :, -1] = newest[t, :, 0]
    return obs
