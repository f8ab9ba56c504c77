"""Iterated bimatrix games with memory-1 observations (Balaguer et al. 2022 benchmark), in numpy.

Both players see the previous joint action: state 0 at the start of an episode, then
1 + a_L + n_L * a_F (for 2x2 games: 1 + a_L + 2 a_F). Payoffs are `[a_L][a_F] = (r_L, r_F)`.
Thousands of games step per call; the leader's query set is every state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stackrl.envs.base import LEADER, StepResult, follower_role
from stackrl.envs.spaces import Discrete

# name -> payoff table [a_L][a_F] = (r_L, r_F); the leader picks the row (DESIGN.md §4.1).
GAMES: dict[str, list[list[tuple[float, float]]]] = {
    "prisoners_dilemma": [[(3, 3), (1, 4)], [(4, 1), (2, 2)]],
    "stag_hunt": [[(4, 4), (1, 3)], [(3, 1), (2, 2)]],
    "assurance": [[(4, 4), (1, 2)], [(2, 1), (3, 3)]],
    "coordination": [[(4, 4), (2, 1)], [(1, 2), (3, 3)]],
    "mixedharmony": [[(4, 4), (3, 1)], [(1, 3), (2, 2)]],
    "harmony": [[(4, 4), (3, 2)], [(2, 3), (1, 1)]],
    "noconflict": [[(4, 4), (2, 3)], [(3, 2), (1, 1)]],
    "deadlock": [[(2, 2), (1, 4)], [(4, 1), (3, 3)]],
    "prisoners_delight": [[(1, 1), (2, 4)], [(4, 2), (3, 3)]],
    "hero": [[(1, 1), (3, 4)], [(4, 3), (2, 2)]],
    "battle": [[(2, 2), (3, 4)], [(4, 3), (1, 1)]],
    "chicken": [[(3, 3), (2, 4)], [(4, 2), (1, 1)]],
    "battle_of_the_sexes": [[(2, 1), (0, 0)], [(0, 0), (1, 2)]],
}

# The twelve iterated games of the benchmark (battle_of_the_sexes is the one-shot sanity game).
BENCHMARK_GAMES: tuple[str, ...] = tuple(g for g in GAMES if g != "battle_of_the_sexes")

DEFAULT_EPISODE_LENGTH = {"battle_of_the_sexes": 1}


def payoff_array(payoffs: list[Any] | np.ndarray) -> np.ndarray:
    """Validate a user bimatrix and return it as float64 [n_L, n_F, 2]."""
    try:
        p = np.asarray(payoffs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"payoffs must be a numeric [n_L][n_F][2] table: {e}") from None
    if p.ndim != 3 or p.shape[2] != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"payoffs must have shape [n_L][n_F][2] (pairs r_L, r_F), got {list(p.shape)}")
    if not np.all(np.isfinite(p)):
        raise ValueError("payoffs must be finite numbers")
    return p


def resolve_game(name: str, payoffs: list[Any] | None, episode_length: int | None) -> tuple[np.ndarray, int]:
    """(payoff array, episode length) for a named game or a user bimatrix."""
    if payoffs is not None:
        p = payoff_array(payoffs)
    elif name in GAMES:
        p = payoff_array(GAMES[name])
    else:
        raise ValueError(f"unknown matrix game {name!r}; known: {', '.join(GAMES)} (or pass payoffs)")
    length = episode_length if episode_length is not None else DEFAULT_EPISODE_LENGTH.get(name, 10)
    return p, length


MEMORIES = ("full", "small", "none")
"""What a player observes (the reference implementation's variants):
full: the previous joint action (start + n_L * n_F states), small: the *other* player's previous
action (start + its action count), none: nothing (one state: the repeated one-shot game)."""


def num_states(n_leader: int, n_follower: int) -> int:
    """States of the full memory-1 observation (start + every joint action)."""
    return 1 + n_leader * n_follower


def observation_sizes(n_leader: int, n_follower: int, memory: str = "full") -> tuple[int, int]:
    """(leader states, follower states) under `memory`."""
    if memory == "full":
        n = num_states(n_leader, n_follower)
        return n, n
    if memory == "small":
        return 1 + n_follower, 1 + n_leader
    if memory == "none":
        return 1, 1
    raise ValueError(f"env.memory must be one of {', '.join(MEMORIES)}, got {memory!r}")


def observe(a_l: np.ndarray, a_f: np.ndarray, n_leader: int, memory: str) -> tuple[np.ndarray, np.ndarray]:
    """(leader state, follower state) after the joint action (a_l, a_f); any shape, int64."""
    if memory == "full":
        s = 1 + a_l + n_leader * a_f
        return s, s
    if memory == "small":
        return 1 + a_f, 1 + a_l
    zero = np.zeros_like(a_l)
    return zero, zero


class IteratedMatrixGame:
    """B iterated bimatrix games; implements `BatchedMultiAgentEnv`."""

    def __init__(
        self,
        payoffs: np.ndarray,
        episode_length: int,
        num_games: int,
        memory: str = "full",
        explore_starts: float = 0.0,
    ):
        self.memory = memory
        self.explore_starts = explore_starts
        self._exploring = False
        self._rng = np.random.default_rng(0)
        self.payoffs = payoff_array(payoffs).astype(np.float32)
        self.n_leader, self.n_follower = self.payoffs.shape[:2]
        self.episode_length = episode_length
        self.max_episode_steps = episode_length
        self.num_games = num_games
        self.roles = (LEADER, follower_role(0))
        n_l, n_f = observation_sizes(self.n_leader, self.n_follower, memory)
        self.observation_spaces = {LEADER: Discrete(n_l), follower_role(0): Discrete(n_f)}
        self.action_spaces = {LEADER: Discrete(self.n_leader), follower_role(0): Discrete(self.n_follower)}
        self._state = np.zeros(num_games, np.int64)  # leader's observation
        self._state_f = np.zeros(num_games, np.int64)  # follower's observation
        self._t = np.zeros(num_games, np.int64)

    def _obs(self) -> dict[str, np.ndarray]:
        return {LEADER: self._state.copy(), follower_role(0): self._state_f.copy()}

    def set_exploring_starts(self, on: bool) -> None:
        """While on, a fraction `explore_starts` of episodes begins as if a uniformly random joint
        action had just been played (exploring starts). A follower pretrained this way sees every
        state under every leader table, including the states that only a deliberate sacrifice
        reaches: a best response that pays a step now for a better state later is otherwise never
        explored, because the follower's guess for that unvisited state makes the sacrifice look bad."""
        self._exploring = on

    def _start(self, games: np.ndarray) -> None:
        """Begin new episodes in `games` ([B] bool)."""
        self._state[games] = 0
        self._state_f[games] = 0
        self._t[games] = 0
        if self._exploring and self.explore_starts > 0:
            pick = games & (self._rng.random(self.num_games) < self.explore_starts)
            n = int(pick.sum())
            a_l = self._rng.integers(0, self.n_leader, n)
            a_f = self._rng.integers(0, self.n_follower, n)
            self._state[pick], self._state_f[pick] = observe(a_l, a_f, self.n_leader, self.memory)

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        # The game is deterministic; the seed only draws exploring starts.
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._start(np.ones(self.num_games, bool))
        return self._obs()

    def step(self, actions: dict[str, np.ndarray], active: np.ndarray | None = None) -> StepResult:
        a_l = np.asarray(actions[LEADER], np.int64)
        a_f = np.asarray(actions[follower_role(0)], np.int64)
        if a_l.shape != (self.num_games,) or a_f.shape != (self.num_games,):
            raise ValueError(
                f"actions must be [B={self.num_games}] per role, got {a_l.shape} and {a_f.shape}"
            )
        if np.any((a_l < 0) | (a_l >= self.n_leader)) or np.any((a_f < 0) | (a_f >= self.n_follower)):
            raise ValueError("action out of range")
        act = np.ones(self.num_games, bool) if active is None else np.asarray(active, bool)
        r = self.payoffs[a_l, a_f]  # [B, 2]
        r_l = np.where(act, r[:, 0], 0).astype(np.float32)
        r_f = np.where(act, r[:, 1], 0).astype(np.float32)
        s_l, s_f = observe(a_l, a_f, self.n_leader, self.memory)
        self._state = np.where(act, s_l, self._state)
        self._state_f = np.where(act, s_f, self._state_f)
        self._t = self._t + act
        dones = act & (self._t >= self.episode_length)
        self._start(dones)
        return StepResult(self._obs(), {LEADER: r_l, follower_role(0): r_f}, dones)

    def leader_query_set(self) -> np.ndarray:
        return np.arange(self.observation_spaces[LEADER].n, dtype=np.int64)

    def query_index(self, leader_obs: np.ndarray) -> np.ndarray:
        return np.asarray(leader_obs, np.int64)

    def close(self) -> None:
        pass
