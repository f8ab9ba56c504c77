"""Observation and action spaces: the two kinds the networks need to know about."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Discrete:
    """Integers 0..n-1, stored as int64 scalars per game (observations) or actions."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self) -> str:
        return "int64"

    def contains(self, x: np.ndarray) -> bool:
        x = np.asarray(x)
        return x.dtype.kind in "iu" and bool(np.all((x >= 0) & (x < self.n)))


@dataclass(frozen=True)
class Box:
    """Real or byte arrays of a fixed shape per game (vectors, stacked image frames)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = -np.inf
    high: float = np.inf

    def contains(self, x: np.ndarray) -> bool:
        x = np.asarray(x)
        return tuple(x.shape[-len(self.shape) :] if self.shape else ()) == self.shape and bool(
            np.all((x >= self.low) & (x <= self.high))
        )


Space = Discrete | Box
