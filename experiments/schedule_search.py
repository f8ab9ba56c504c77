"""Coordinate search over price schedules: the yardstick for a learned pricing leader.

A schedule assigns one of `choices` prices to each of `phases` phases (5^5 = 3125 schedules for the
Atari pricing game: too many to play them all, each evaluation being Atari episodes). Coordinate
search takes a start schedule and, phase by phase, tries every price with the other phases fixed and
keeps the best; sweeps repeat until a whole sweep changes no phase. Several restarts (the learned
schedule, the constant schedules, random ones) guard against its local optima.

Evaluations are noisy (stochastic followers), so each returns a mean with its standard error, and
each schedule is evaluated once and cached: every decision is then made on one fixed estimate, the
cached value of the current schedule only rises, and the search ends. A phase changes only if
another price beats the current one's estimate (ties keep the current price).

Generic on purpose: `evaluate` can be Atari rollouts against a contextual follower or a synthetic
function in a test.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Schedule = tuple[int, ...]


@dataclass(frozen=True)
class Estimate:
    """A schedule's estimated revenue: mean over `n` episodes and its standard error."""

    mean: float
    se: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float] | np.ndarray) -> Estimate:
        x = np.asarray(samples, np.float64)
        se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")
        return cls(float(x.mean()), se, len(x))


@dataclass
class SearchResult:
    best: Schedule
    best_estimate: Estimate
    restarts: list[dict] = field(default_factory=list)
    """Per restart: start schedule, end schedule, its estimate, sweeps."""
    evaluations: int = 0
    """Distinct schedules evaluated."""
    cache: dict[Schedule, Estimate] = field(default_factory=dict)


def coordinate_search(
    evaluate: Callable[[Schedule], Estimate],
    phases: int,
    choices: int,
    starts: Sequence[Schedule] = (),
    random_restarts: int = 2,
    max_sweeps: int = 20,
    seed: int = 0,
) -> SearchResult:
    """Best schedule found by coordinate ascent from each start.

    Args:
      evaluate: schedule (a price index per phase) -> revenue estimate; called once per schedule.
      phases: schedule length.
      choices: prices per phase.
      starts: start schedules (e.g. the learned one and the constants); `random_restarts` uniformly
        random ones are added.
      random_restarts: random starts added to `starts`.
      max_sweeps: cap on sweeps per start (a sweep visits every phase once).
      seed: draws the random starts.
    """
    rng = np.random.default_rng(seed)
    cache: dict[Schedule, Estimate] = {}

    def value(s: Schedule) -> Estimate:
        if s not in cache:
            cache[s] = evaluate(s)
        return cache[s]

    all_starts = [tuple(int(a) for a in s) for s in starts]
    all_starts += [tuple(int(a) for a in rng.integers(0, choices, phases)) for _ in range(random_restarts)]
    if not all_starts:
        raise ValueError("coordinate_search needs at least one start (starts or random_restarts)")
    for s in all_starts:
        if len(s) != phases or any(not 0 <= a < choices for a in s):
            raise ValueError(f"start schedule {s} is not {phases} prices in [0, {choices})")
    traces: list[dict[str, Any]] = []
    ends: list[Schedule] = []
    for start in all_starts:
        current = start
        sweeps = 0
        while sweeps < max_sweeps:
            sweeps += 1
            changed = False
            for k in range(phases):
                best = current
                for a in range(choices):
                    cand = (*current[:k], a, *current[k + 1 :])
                    if value(cand).mean > value(best).mean:
                        best = cand
                if best != current:
                    current, changed = best, True
            if not changed:
                break
        ends.append(current)
        traces.append(
            {"start": list(start), "end": list(current), "mean": value(current).mean, "sweeps": sweeps}
        )
    best_end = max(ends, key=lambda s: value(s).mean)
    return SearchResult(best_end, value(best_end), traces, len(cache), cache)


def exhaustive_best(evaluate: Callable[[Schedule], float], phases: int, choices: int) -> Schedule:
    """The best schedule by enumeration (for tests on cheap synthetic functions)."""
    return max(itertools.product(range(choices), repeat=phases), key=evaluate)
