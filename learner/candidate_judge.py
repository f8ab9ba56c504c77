"""What a candidate leader is worth when its follower best-responds (`PhaseConfig.verify`).

A run keeps the leader whose greedy commitment evaluates best against the contextual follower. When
that follower misplays a commitment in the leader's favour, the commitment looks better than it is
and the run keeps it (the random-game suite's follower errors: 53 measured where the commitment is
worth 50 against a best response). The judge trains a fresh tabular follower on the commitment's play
(the equilibrium check's cross-entropy follower, learned from play alone) and, when that follower
earns more than the contextual one did, the candidate is worth what the leader earns against it.
When the contextual follower is at least as good, its value stands: it breaks ties in the leader's
favour (the strong Stackelberg convention), which a fresh follower need not.

Cheap on the matrix games (a 2x2 game's fresh follower plateaus after a few thousand play steps,
under a millisecond), and the steps are counted (`env_steps`). Only matrix games with one follower
have a tabular follower; the exact solver is never asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from stackrl.config import EnvConfig
from stackrl.envs.matrix_games import resolve_game
from stackrl.learner.equilibrium_check import FreshFollowerBudget, train_fresh_follower
from stackrl.learner.tabular_q import MatrixGameSpec

TOLERANCE = 1e-6
"""A fresh follower must beat the contextual one by more than this (raw payoff units) to overrule it."""


class FreshFollowerJudge:
    def __init__(self, env: EnvConfig, seed: int, budget: FreshFollowerBudget = FreshFollowerBudget()):
        payoffs, length = resolve_game(env.name, env.payoffs, env.episode_length)
        self.game = MatrixGameSpec.of(payoffs, length, env.memory)
        self.seed = seed
        self.budget = budget
        self.env_steps = 0
        """Play steps the judge's fresh followers spent, summed over every judgement."""
        self.overruled = 0
        """Judgements in which the fresh follower beat the contextual one."""

    def __call__(
        self, play_table: Sequence[int], leader_value: float, follower_value: float
    ) -> tuple[float, bool]:
        """The candidate's value and whether it stands: `leader_value` (measured against the
        contextual follower, which earned `follower_value`) stands unless a fresh follower trained
        on `play_table` (what the leader plays per observation) earns more; then the candidate is
        worth the leader's value against that follower, and is not consistent (the run's follower
        does not best-respond to it)."""
        fresh = train_fresh_follower(self.game, np.asarray(play_table, np.int64), self.seed, self.budget)
        self.env_steps += fresh.env_steps
        if fresh.follower_value > follower_value + TOLERANCE:
            self.overruled += 1
            return fresh.leader_value, False
        return float(leader_value), True
