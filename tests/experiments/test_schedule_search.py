"""Coordinate search over price schedules (experiments/schedule_search.py) on synthetic revenue
functions whose best schedule is known: it finds it, evaluates each schedule once, and is not fooled
by evaluation noise well below the gap to the second best."""

from __future__ import annotations

import math

import numpy as np
import pytest
from stackrl.experiments.schedule_search import Estimate, coordinate_search, exhaustive_best

PRICES = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
CAPS = np.array([0.5, 1.0, 1.5, 2.0, 2.0])  # per phase: demand 1 - p / cap, revenue p (1 - p / cap)
WEIGHTS = np.array([1.0, 2.0, 1.5, 1.0, 3.0])


def separable(s) -> float:
    p = PRICES[list(s)]
    return float((WEIGHTS * p * np.clip(1 - p / CAPS, 0, None)).sum())


def coupled(s) -> float:
    """Followers remember a dear phase: a price above 0.5 lowers the next phase's demand."""
    p = PRICES[list(s)]
    carry = np.concatenate([[0.0], (p[:-1] > 0.5) * 0.4])
    return float((WEIGHTS * p * np.clip(1 - p / CAPS - carry, 0, None)).sum())


def test_finds_the_known_best_schedule_of_a_separable_revenue():
    # revenue p (1 - p / cap) peaks at p = cap / 2: prices 0.25, 0.5, 0.75, 1, 1
    calls = []

    def evaluate(s):
        calls.append(s)
        return Estimate(separable(s), 0.0, 1)

    res = coordinate_search(evaluate, 5, 5, starts=[(0, 0, 0, 0, 0)], random_restarts=0)
    assert res.best == (1, 2, 3, 4, 4) == exhaustive_best(separable, 5, 5)
    assert res.best_estimate.mean == pytest.approx(separable((1, 2, 3, 4, 4)))
    assert len(calls) == len(set(calls)) == res.evaluations  # each schedule evaluated once
    assert res.evaluations < 5**5 // 10
    assert res.restarts[0]["sweeps"] == 2  # one sweep to move, one that changes nothing


def test_restarts_find_the_best_of_a_coupled_revenue():
    res = coordinate_search(lambda s: Estimate(coupled(s), 0.0, 1), 5, 5, random_restarts=4, seed=0)
    assert res.best == exhaustive_best(coupled, 5, 5)
    assert len(res.restarts) == 4


def test_noise_well_below_the_gaps_does_not_change_the_answer():
    rng = np.random.default_rng(0)
    values = sorted({round(separable(s), 9) for s in np.ndindex(*(5,) * 5)}, reverse=True)
    gap = values[0] - values[1]
    sd, n = gap, 64  # per-episode noise as large as the gap; 64 episodes: se = gap / 8

    def evaluate(s):
        return Estimate.of(separable(s) + sd * rng.standard_normal(n))

    res = coordinate_search(evaluate, 5, 5, starts=[(2, 2, 2, 2, 2)], random_restarts=1)
    assert res.best == (1, 2, 3, 4, 4)
    assert res.best_estimate.n == n and res.best_estimate.se == pytest.approx(sd / math.sqrt(n), rel=0.3)


def test_bad_starts_are_rejected():
    with pytest.raises(ValueError, match="is not 5 prices"):
        coordinate_search(lambda s: Estimate(0.0, 0.0, 1), 5, 5, starts=[(0, 0, 0, 0, 9)])
    with pytest.raises(ValueError, match="at least one start"):
        coordinate_search(lambda s: Estimate(0.0, 0.0, 1), 5, 5, random_restarts=0)
