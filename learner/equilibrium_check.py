"""Post-training equilibrium check (docs/design.md §5, follower regret) for the matrix games.

After a run, a *fresh* follower, one that never saw a context and never trained against random
leaders, learns against the frozen final leader until its return stops improving. Its return minus
the contextual follower's return is the follower regret: positive means the contextual follower
leaves return on the table, so the leader's value was earned against a follower that does not
best-respond and the result is not an equilibrium.

The fresh follower is a tabular follower (an action per memory-1 observation, the policy class the
exact solver enumerates) trained by the cross-entropy method on its undiscounted episode return:
sample a population of tables from per-state action distributions, play each one episode against
the frozen leader, refit the distributions to the best fifth. Why not tabular Q-learning: a
follower without a clock optimises a discounted, time-out-bootstrapped value, and on 10 of the 424
(game, leader table) pairs of the 13 named games plus the reference's hidden-queries game its greedy
policy is *not* the best response over the 10-step episode (measured with gamma 0.9 to 0.999 and
with gamma 1 and a terminal limit, up to 2,000 episodes). The cross-entropy follower optimises
exactly the quantity the exact solver reports, from play alone.

Budget, and why: the games are deterministic, so one episode gives a table's exact return and a
population of 64 covers a 2x2 game's 32 tables about twice over in the first iteration; training
stops when the elite mean has not improved for `patience` iterations (a plateau), capped at
`max_iterations` (64 x 100 x 10 = 64k steps, a third of a meta run's budget). The exact solver is
used only to score the result (`agrees_with_best_response`), never to train the follower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from stackrl.envs.solver import episode_values
from stackrl.learner.tabular_q import MatrixGameSpec, play


@dataclass(frozen=True)
class FreshFollowerBudget:
    """Cross-entropy training budget of the fresh follower (see the module docstring)."""

    population: int = 64
    elite_fraction: float = 0.2
    smoothing: float = 0.7
    """New action distribution = smoothing * elite frequencies + (1 - smoothing) * old."""
    patience: int = 5
    """Stop after this many iterations without a better elite mean (the plateau rule)."""
    max_iterations: int = 100


@dataclass
class FreshFollower:
    table: list[int]
    """The trained follower's greedy table (most likely action per follower observation)."""
    leader_value: float
    follower_value: float
    iterations: int
    env_steps: int
    plateaued: bool
    """True if it stopped by the plateau rule, False if the cap stopped it."""


def train_fresh_follower(
    game: MatrixGameSpec,
    leader_table: np.ndarray,
    seed: int = 0,
    budget: FreshFollowerBudget = FreshFollowerBudget(),
) -> FreshFollower:
    """Train a tabular follower from scratch against one fixed leader table by the cross-entropy method.

    Args:
      game: the base game.
      leader_table: [S_L] int64, what the frozen leader plays per leader observation.
      seed: sampling seed.
      budget: population, elite fraction, smoothing, plateau patience and cap.
    """
    rng = np.random.default_rng(seed)
    s_f = game.states[1]
    probs = np.full((s_f, game.n_f), 1.0 / game.n_f)
    n_elite = max(1, int(round(budget.elite_fraction * budget.population)))
    leaders = np.broadcast_to(np.asarray(leader_table, np.int64), (budget.population, len(leader_table)))
    best, since, it = -np.inf, 0, 0
    plateaued = False
    while it < budget.max_iterations:
        it += 1
        u = rng.random((budget.population, s_f, 1))
        tables = (u > np.cumsum(probs, axis=1)[None]).sum(axis=2).clip(max=game.n_f - 1)
        returns = play(game, leaders, tables)[:, 1]
        elite = np.argsort(-returns, kind="stable")[:n_elite]
        freq = np.eye(game.n_f)[tables[elite]].mean(axis=0)  # [S_F, n_F]
        probs = budget.smoothing * freq + (1 - budget.smoothing) * probs
        score = float(returns[elite].mean())
        if score > best + 1e-9:
            best, since = score, 0
        else:
            since += 1
            if since >= budget.patience:
                plateaued = True
                break
    table = probs.argmax(axis=1)
    ret = play(game, leaders[:1], table[None])[0]
    return FreshFollower(
        table=table.tolist(),
        leader_value=float(ret[0]),
        follower_value=float(ret[1]),
        iterations=it,
        env_steps=it * budget.population * game.length,
        plateaued=plateaued,
    )


def best_response_follower_value(game: MatrixGameSpec, leader_table: np.ndarray) -> float:
    """The follower's exact best-response value to `leader_table` (the solver's yardstick)."""
    lp, _, _, v_f = episode_values(game.payoffs, game.length, game.memory)
    idx = int(np.flatnonzero((lp == np.asarray(leader_table)).all(axis=1))[0])
    return float(v_f[idx].max())


def equilibrium_check(
    game: MatrixGameSpec,
    leader_table: np.ndarray,
    contextual_follower_value: float,
    seed: int = 0,
    budget: FreshFollowerBudget = FreshFollowerBudget(),
) -> dict[str, Any]:
    """result.json's `equilibrium_check` entry: the fresh follower's value next to the contextual
    follower's, the regret between them, and whether the fresh follower found the exact best response."""
    fresh = train_fresh_follower(game, leader_table, seed, budget)
    exact_f = best_response_follower_value(game, leader_table)
    return {
        "leader_play_table": [int(a) for a in leader_table],
        "fresh_follower_value": fresh.follower_value,
        "contextual_follower_value": float(contextual_follower_value),
        "follower_regret": fresh.follower_value - float(contextual_follower_value),
        "fresh_follower_leader_value": fresh.leader_value,
        "fresh_follower_table": fresh.table,
        "best_response_follower_value": exact_f,
        "agrees_with_best_response": bool(np.isclose(fresh.follower_value, exact_f, atol=1e-6)),
        "method": "tabular cross-entropy follower, plateau rule",
        "iterations": fresh.iterations,
        "env_steps": fresh.env_steps,
        "plateaued": fresh.plateaued,
        "budget": {
            "population": budget.population,
            "patience": budget.patience,
            "max_iterations": budget.max_iterations,
        },
    }
