"""Tabular Q-learning followers for iterated matrix games, batched over B fixed leader tables.

A follower that learns only from playing: it sees its own memory-1 observation and its reward, never
the leader's table or the exact solver. It serves two jobs: the Q-learning query oracle of
`experiments/q_follower.py` (and its reset / leader-reward ablations), and the post-training
equilibrium check of `learner/equilibrium_check.py` (a fresh, non-contextual follower trained
against the frozen final leader). Pure numpy; thousands of tables learn at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from stackrl.envs.matrix_games import observation_sizes, observe, payoff_array


@dataclass(frozen=True)
class MatrixGameSpec:
    """The base game a tabular follower plays: payoffs `[a_L][a_F] = (r_L, r_F)`, episode length and
    what each player observes (`matrix_games.MEMORIES`)."""

    payoffs: np.ndarray
    length: int
    memory: str = "full"

    @property
    def n_l(self) -> int:
        return int(self.payoffs.shape[0])

    @property
    def n_f(self) -> int:
        return int(self.payoffs.shape[1])

    @property
    def states(self) -> tuple[int, int]:
        """(leader states, follower states)."""
        return observation_sizes(self.n_l, self.n_f, self.memory)

    @classmethod
    def of(cls, payoffs: np.ndarray | list[Any], length: int, memory: str = "full") -> MatrixGameSpec:
        return cls(payoff_array(payoffs), int(length), memory)


@dataclass(frozen=True)
class QLearning:
    """Q-learning hyperparameters. `gamma` < 1 with bootstrapping at the episode limit treats the
    limit as a time-out, so the learned values are those of the stationary policy the exact solver
    enumerates (a follower without a clock); `explore` is the epsilon-greedy rate, annealed linearly
    from `explore_start` to `explore_end` over the first `anneal` fraction of a call's episodes."""

    gamma: float = 0.9
    alpha: float = 0.3
    explore_start: float = 1.0
    explore_end: float = 0.05
    anneal: float = 0.7
    tie_eps: float = 0.0
    """Weight of the leader's reward in the follower's (strong-Stackelberg tie-breaking); 0: none."""


def zero_q(game: MatrixGameSpec, batch: int) -> np.ndarray:
    """[B, S_F, n_F] float64 zeros: a follower that has learned nothing."""
    return np.zeros((batch, game.states[1], game.n_f))


def q_learn(
    game: MatrixGameSpec,
    leader_tables: np.ndarray,
    q: np.ndarray,
    episodes: int,
    rng: np.random.Generator,
    hp: QLearning = QLearning(),
) -> np.ndarray:
    """Run `episodes` of epsilon-greedy Q-learning against each fixed leader table, in place on `q`.

    Args:
      game: the base game.
      leader_tables: [B, S_L] int64, the leader's action per leader state (it plays this table).
      q: [B, S_F, n_F] float64 Q-tables, updated in place (pass `zero_q` for a fresh follower, or a
        table carried over from earlier leaders).
      episodes: learning episodes per table.
      rng: exploration randomness.
      hp: hyperparameters.

    Returns:
      [B, episodes] float64: the leader's raw return in each learning episode (what a leader would
      earn if it were paid while the follower adapts).
    """
    b = leader_tables.shape[0]
    rows = np.arange(b)
    p = game.payoffs
    leader_returns = np.zeros((b, episodes))
    for ep in range(episodes):
        frac = ep / max(1.0, hp.anneal * episodes)
        explore = max(hp.explore_end, hp.explore_start + (hp.explore_end - hp.explore_start) * frac)
        s_l = np.zeros(b, np.int64)
        s_f = np.zeros(b, np.int64)
        for _ in range(game.length):
            greedy = q[rows, s_f].argmax(axis=1)
            a_f = np.where(rng.random(b) < explore, rng.integers(0, game.n_f, b), greedy)
            a_l = leader_tables[rows, s_l]
            r = p[a_l, a_f, 1] + hp.tie_eps * p[a_l, a_f, 0]
            leader_returns[:, ep] += p[a_l, a_f, 0]
            n_l, n_f = observe(a_l, a_f, game.n_l, game.memory)
            boot = hp.gamma * q[rows, n_f].max(axis=1)  # the episode limit is a time-out: bootstrap
            q[rows, s_f, a_f] += hp.alpha * (r + boot - q[rows, s_f, a_f])
            s_l, s_f = n_l, n_f
    return leader_returns


def greedy_tables(q: np.ndarray) -> np.ndarray:
    """[B, S_F] int64: the greedy follower table of each Q-table."""
    out: np.ndarray = q.argmax(axis=2).astype(np.int64)
    return out


def play(game: MatrixGameSpec, leader_tables: np.ndarray, follower_tables: np.ndarray) -> np.ndarray:
    """[B, 2] float64 raw (leader, follower) episode returns of deterministic tables played together."""
    b = leader_tables.shape[0]
    rows = np.arange(b)
    s_l = np.zeros(b, np.int64)
    s_f = np.zeros(b, np.int64)
    ret = np.zeros((b, 2))
    for _ in range(game.length):
        a_l, a_f = leader_tables[rows, s_l], follower_tables[rows, s_f]
        ret += game.payoffs[a_l, a_f]
        s_l, s_f = observe(a_l, a_f, game.n_l, game.memory)
    return ret
