"""The Stackelberg layer: every episode opens with a query phase (Theorem 1's extended game).

For each of B games, an episode is K query steps followed by the play phase of the base game:
- query step k: the leader observes query q_k and answers; the answer becomes entry k of the
  followers' context c. Followers do not act, the base game does not move, rewards are 0.
  With `hidden` queries the leader sees exactly q_k, the observation it would see in play, so it
  cannot answer differently than it plays; with `observed` queries it also sees a query flag.
- play: the base game runs; followers observe (o_F, c). With `commit`, on a queried observation the
  leader plays its own answer (the `forced` action), so context and play always agree.

Where the leader comes from is switchable between episodes (the learner's schedule decides):
`policy` (the leader network answers, through query steps), `random` (a fresh uniformly random
answer table per episode, for follower pretraining: no query steps), `table` (one fixed answer
table, for the inner-outer baseline: no query steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from stackrl.envs.base import LEADER, BatchedMultiAgentEnv
from stackrl.envs.spaces import Box, Discrete, Space

LEADER_SOURCES = ("policy", "random", "table")


@dataclass
class StackelbergObs:
    """What the actor needs to act at one step of B extended games."""

    obs: dict[str, np.ndarray]  # role -> [B, *obs_shape] (leader obs encodes the query flag if observed)
    context: np.ndarray  # [B, K] int64: the leader's answers (0 where not yet answered); with
    # `current_answer` [B, K+1], the last entry the leader's committed move now (0 where none)
    acting: dict[str, np.ndarray]  # role -> [B] bool: the role decides this step
    forced_leader: np.ndarray  # [B] int64: the leader's committed play action, -1 where free
    in_query: np.ndarray  # [B] bool
    elapsed: np.ndarray  # [B] int32: steps since the extended episode began (the critic's clock)
    current_answer: bool = False  # context's last column is the leader's current committed move

    def follower_context(self, schedule: bool = True) -> np.ndarray:
        """The followers' context. Without `schedule` (followers that get no context: the
        inner-outer baseline, regret followers) the leader's answers are zeroed; the current
        committed move stays, since a follower observes it in play (the posted price)."""
        if schedule:
            return self.context
        out = np.zeros_like(self.context)
        if self.current_answer:
            out[:, -1] = self.context[:, -1]
        return out


@dataclass
class StackelbergStep:
    obs: StackelbergObs
    rewards: dict[str, np.ndarray]  # role -> [B] float32, as the learner sees them (tie-break shaped)
    dones: np.ndarray  # [B] bool: the extended episode ended with this step
    episode_returns: dict[str, np.ndarray]  # role -> raw returns of the episodes that just ended
    env_steps: int  # base-game steps taken (games in play)


def observed_space(space: Space) -> Space:
    """The leader's observation space when query steps carry a flag."""
    if isinstance(space, Discrete):
        return Discrete(2 * space.n)  # query observation q is encoded as q + n
    if len(space.shape) == 1:
        return Box((space.shape[0] + 1,), space.dtype, space.low, space.high)
    raise ValueError(f"observed queries need a discrete or vector leader observation, got {space}")


class StackelbergEnv:
    """Extended Stackelberg game over a batched base game."""

    def __init__(
        self,
        base: BatchedMultiAgentEnv,
        queries: str = "hidden",
        commit: bool = True,
        tie_break: float = 0.0,
        current_answer: bool = False,
        seed: int = 0,
    ):
        if queries not in ("hidden", "observed"):
            raise ValueError(f"queries must be 'hidden' or 'observed', got {queries!r}")
        if current_answer and not commit:
            raise ValueError("current_answer needs commit=True: an uncommitted answer is not what is played")
        self.current_answer = current_answer
        self.base = base
        self.queries = queries
        self.commit = commit
        self.tie_break = float(tie_break)
        self.roles = base.roles
        self.followers = base.roles[1:]
        self.num_games = base.num_games
        self.query_set = base.leader_query_set()
        self.num_queries = len(self.query_set)
        self.leader_actions = base.action_spaces[LEADER].n
        self.action_spaces = dict(base.action_spaces)
        self.observation_spaces = dict(base.observation_spaces)
        if queries == "observed":
            self.observation_spaces[LEADER] = observed_space(base.observation_spaces[LEADER])
        self._rng = np.random.default_rng(seed)
        self.leader_source = "random"
        self._table: np.ndarray | None = None
        b = self.num_games
        self._k = np.zeros(b, np.int64)  # query step of each game; == K means play
        self._elapsed = np.zeros(b, np.int32)  # steps since each game's extended episode began
        self._free_moves: np.ndarray | None = None  # random leader's unqueried moves for this step
        self.horizon = self.num_queries + base.max_episode_steps
        self._answers = np.zeros((b, self.num_queries), np.int64)
        self._returns = {r: np.zeros(b, np.float64) for r in self.roles}
        self._base_obs: dict[str, np.ndarray] = {}
        # Base-game steps taken since this env was made, for callers that account for the play an
        # evaluation cost (an Atari episode has no fixed length to multiply by).
        self.play_steps_taken = 0

    # -- leader source ------------------------------------------------------------------------
    def set_leader_source(self, source: str, table: np.ndarray | None = None) -> None:
        """Switch where the leader's answers come from; call `reset()` after switching so that
        every game starts a fresh episode under the new source (the actor does)."""
        if source not in LEADER_SOURCES:
            raise ValueError(f"leader source must be one of {LEADER_SOURCES}, got {source!r}")
        if source == "table":
            # [K]: one table for every game; [B, K]: a table per game (e.g. checking a follower on
            # every leader table at once).
            table = np.asarray(table, np.int64)
            shapes = ((self.num_queries,), (self.num_games, self.num_queries))
            if table.shape not in shapes or np.any((table < 0) | (table >= self.leader_actions)):
                raise ValueError(
                    f"leader table must be [K={self.num_queries}] or [B={self.num_games}, K] actions "
                    f"in [0, {self.leader_actions})"
                )
            self._table = table
        self.leader_source = source
        # Domains with exploring starts use them while followers learn against random leaders.
        set_exploring = getattr(self.base, "set_exploring_starts", None)
        if set_exploring is not None:
            set_exploring(source == "random")

    def _start_episodes(self, games: np.ndarray) -> None:
        n = int(games.sum())
        if n == 0:
            return
        self._elapsed[games] = 0
        if self.leader_source == "policy":
            self._k[games] = 0
            self._answers[games] = 0
        else:
            self._k[games] = self.num_queries
            if self.leader_source == "random":
                self._answers[games] = self._rng.integers(0, self.leader_actions, size=(n, self.num_queries))
            else:
                assert self._table is not None  # set_leader_source("table", ...) stored one
                self._answers[games] = self._table[games] if self._table.ndim == 2 else self._table

    def query_observations(self) -> np.ndarray:
        """[K, *leader_obs_shape]: the leader's observations at query steps 0..K-1."""
        return self._with_flag(self.query_set.copy(), np.ones(self.num_queries, bool))

    def _with_flag(self, obs: np.ndarray, in_query: np.ndarray) -> np.ndarray:
        """Mark query steps in the leader's observation when queries are observed."""
        if self.queries == "hidden":
            return obs
        space = self.base.observation_spaces[LEADER]
        if isinstance(space, Discrete):
            flagged: np.ndarray = obs + space.n * in_query.astype(obs.dtype)
            return flagged
        return np.concatenate([obs, in_query.astype(obs.dtype)[:, None]], axis=1)

    # -- observation --------------------------------------------------------------------------
    def _leader_obs(self, in_query: np.ndarray) -> np.ndarray:
        play = self._base_obs[LEADER]
        k = np.minimum(self._k, self.num_queries - 1)
        query = self.query_set[k]
        obs = np.where(in_query.reshape(-1, *([1] * (play.ndim - 1))), query, play)
        return self._with_flag(obs, in_query)

    def observe(self) -> StackelbergObs:
        in_query = self._k < self.num_queries
        in_play = ~in_query
        obs = {LEADER: self._leader_obs(in_query)}
        for r in self.followers:
            obs[r] = self._base_obs[r]
        forced = np.full(self.num_games, -1, np.int64)
        idx = self.base.query_index(self._base_obs[LEADER])
        queried = in_play & (idx >= 0)
        if self.leader_source != "policy" or self.commit:
            forced[queried] = self._answers[queried, idx[queried]]
        if self.leader_source == "random":
            # A random leader's move on an unqueried observation is drawn once per step and reused
            # by `step`, so the move the actor records is the move that is played.
            free = in_play & (idx < 0)
            if self._free_moves is None:
                self._free_moves = self._rng.integers(0, self.leader_actions, size=self.num_games)
            forced[free] = self._free_moves[free]
        if self.leader_source == "table":
            # A fixed table answers only queried observations; elsewhere it plays action 0.
            forced[in_play & (idx < 0)] = 0
        leader_acting = (
            (in_query | (forced < 0)) if self.leader_source == "policy" else np.zeros_like(in_query)
        )
        acting = {LEADER: leader_acting}
        for r in self.followers:
            acting[r] = in_play.copy()
        context = self._answers.copy()  # [B, K]
        if self.current_answer:
            # The committed move on a queried play observation (a random leader's free move is not
            # an answer): [B, K+1]
            now = np.where(queried, self._answers[np.arange(self.num_games), np.maximum(idx, 0)], 0)
            context = np.concatenate([context, now[:, None]], axis=1)
        return StackelbergObs(
            obs, context, acting, forced, in_query, self._elapsed.copy(), self.current_answer
        )

    # -- dynamics -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> StackelbergObs:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._base_obs = self.base.reset(seed=seed)
        self._free_moves = None
        for r in self.roles:
            self._returns[r][:] = 0
        self._start_episodes(np.ones(self.num_games, bool))
        return self.observe()

    def step(self, actions: dict[str, np.ndarray]) -> StackelbergStep:
        """Advance every game one step of its extended episode."""
        current = self.observe()
        a_l = np.asarray(actions[LEADER], np.int64).copy()
        forced = current.forced_leader >= 0
        a_l[forced] = current.forced_leader[forced]
        in_query = current.in_query
        b = self.num_games
        self._elapsed += 1
        self._free_moves = None
        rewards = {r: np.zeros(b, np.float32) for r in self.roles}
        dones = np.zeros(b, bool)
        # Query steps: record the answer, move on; the base game does not move.
        qi = np.flatnonzero(in_query)
        self._answers[qi, self._k[qi]] = a_l[qi]
        self._k[qi] += 1
        # Play steps: the base game moves for games in play.
        in_play = ~in_query
        env_steps = int(in_play.sum())
        self.play_steps_taken += env_steps
        if env_steps:
            base_actions = {LEADER: a_l}
            for r in self.followers:
                base_actions[r] = np.where(in_play, np.asarray(actions[r], np.int64), 0)
            res = self.base.step(base_actions, None if in_play.all() else in_play)
            self._base_obs = res.obs
            raw_l = res.rewards[LEADER]
            rewards[LEADER] = raw_l.astype(np.float32)
            for r in self.followers:
                rewards[r] = (res.rewards[r] + self.tie_break * raw_l).astype(np.float32)
            for r in self.roles:
                self._returns[r] += res.rewards[r]
            dones = res.dones & in_play
        episode_returns = {r: self._returns[r][dones].astype(np.float32) for r in self.roles}
        for r in self.roles:
            self._returns[r][dones] = 0
        self._start_episodes(dones)
        return StackelbergStep(self.observe(), rewards, dones, episode_returns, env_steps)

    def close(self) -> None:
        self.base.close()
