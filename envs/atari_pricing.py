"""Atari pricing games (docs/design.md §4.2): a leader sells shots to followers who play Space Invaders.

The leader observes the episode phase (a bucket of elapsed agent steps by `phase_edges`) and sets a
price from `prices`; every follower step whose action contains FIRE costs `price_scale * price` game
points, and the leader earns what the followers pay. The query set is the K phases, so a context is
a price schedule. The emulator side is a small backend with one interface, so both games share the
pricing, phase, truncation, auto-reset and `active`-mask logic here:

- `space_invaders_pricing`: one follower on envpool's `SpaceInvaders-v5` (84x84 gray, stack 4,
  frameskip 4, ROM shipped with envpool), stepping only the active games through `step(a, env_id)`.
- `space_invaders_pricing_2p`: two followers on two-player Space Invaders (multi-agent ALE through
  PettingZoo, `envs/multi_agent_ale.py`), same preprocessing; each follower pays for its own shots.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np
from stackrl.config import EnvConfig
from stackrl.envs.base import LEADER, StepResult, follower_role
from stackrl.envs.spaces import Box, Discrete, Space

FRAME_SHAPE = (4, 84, 84)  # stacked grayscale frames, as envpool returns them
ENVPOOL_TASK = "SpaceInvaders-v5"


class AtariBackend(Protocol):
    """B emulated games whose P players' actions index a minimal action set."""

    num_games: int
    num_players: int
    num_actions: int
    fire_actions: np.ndarray  # [A] bool: the action contains FIRE

    def reset(self, seed: int | None = None) -> np.ndarray:
        """All games; returns frames [B, 4, 84, 84] uint8."""
        ...

    def reset_games(self, ids: np.ndarray) -> np.ndarray:
        """New episodes in games ids [n]; returns their frames [n, 4, 84, 84] uint8."""
        ...

    def step(self, actions: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """actions [n, P] for games ids [n] -> frames [n, 4, 84, 84], points [n, P] f32, game over [n]."""
        ...

    def close(self) -> None: ...


def _fire_actions_single_player(task: str = "space_invaders") -> np.ndarray:
    """[A] bool over the game's minimal action set (the order envpool uses), from ALE's action names."""
    import ale_py
    from stackrl.envs.multi_agent_ale import rom_dir

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(os.path.join(rom_dir(), f"{task}.bin"))
    return np.array(["FIRE" in a.name for a in ale.getMinimalActionSet()])


class EnvpoolBackend:
    """B single-player games in one envpool (C++ threads); only the requested env ids step.

    envpool fixes its seeds when the pool is made (`reset(seed=...)` is ignored), so `reset(seed)`
    rebuilds the pool unless it is still untouched since it was made with that seed.
    """

    num_players = 1

    def __init__(self, num_games: int, seed: int, num_threads: int, max_episode_steps: int):
        self.num_games = num_games
        self._threads = num_threads
        self._max_steps = max_episode_steps
        self.fire_actions = _fire_actions_single_player()
        self.num_actions = len(self.fire_actions)
        self._make(seed)

    def _make(self, seed: int) -> None:
        import envpool

        self.pool = envpool.make(
            ENVPOOL_TASK,
            env_type="gymnasium",
            num_envs=self.num_games,
            num_threads=self._threads,
            seed=seed,
            # We cut episodes ourselves; envpool's own limit must not come first.
            max_episode_steps=self._max_steps + 1,
        )
        if self.pool.action_space.n != self.num_actions:
            raise RuntimeError(
                f"envpool {ENVPOOL_TASK}: {self.pool.action_space.n} actions, ALE says {self.num_actions}"
            )
        self._seed, self._pristine = seed, True

    @staticmethod
    def _ordered(obs: np.ndarray, info: dict[str, Any], ids: np.ndarray) -> np.ndarray:
        """Rows of an envpool result sorted to match ascending `ids` [n]."""
        env_id = np.asarray(info["env_id"])
        order = np.argsort(env_id, kind="stable")
        if not np.array_equal(env_id[order], ids):
            raise RuntimeError(f"envpool answered env ids {env_id.tolist()}, asked {ids.tolist()}")
        return order

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None and not (self._pristine and seed == self._seed):
            self.pool.close()
            self._make(seed)
        self._pristine = False
        obs, info = self.pool.reset()
        frames: np.ndarray = obs[self._ordered(obs, info, np.arange(self.num_games))]
        return frames

    def reset_games(self, ids: np.ndarray) -> np.ndarray:
        obs, info = self.pool.reset(ids.astype(np.int32))
        frames: np.ndarray = obs[self._ordered(obs, info, ids)]
        return frames

    def step(self, actions: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, rew, term, trunc, info = self.pool.step(actions[:, 0].astype(np.int32), ids.astype(np.int32))
        o = self._ordered(obs, info, ids)
        return obs[o], rew[o].astype(np.float32)[:, None], (term | trunc)[o].astype(bool)

    def close(self) -> None:
        self.pool.close()


class AtariPricingEnv:
    """Batched Atari pricing game; implements `BatchedMultiAgentEnv`.

    Leader: observation Discrete(K) phase, action Discrete(len(prices)) price index. Followers:
    observation Box((4, 84, 84), uint8), action Discrete(A) over the minimal action set.
    `info` of every step (B entries each, filled for the games that moved, zeros elsewhere):
    `phase` [B] int64 the phase the step was priced in, `price` [B] float32 the price charged,
    `fire_<role>` [B] bool the follower's action contained FIRE, `points_<role>` [B] float32 its
    raw game points, `truncated` [B] bool the episode was cut at `max_episode_steps`.
    """

    def __init__(
        self,
        backend: AtariBackend,
        phase_edges: list[int],
        prices: list[float],
        price_scale: float,
        max_episode_steps: int,
    ):
        self.backend = backend
        self.num_games = backend.num_games
        self.followers = tuple(follower_role(i) for i in range(backend.num_players))
        self.roles = (LEADER, *self.followers)
        self.phase_edges = np.asarray(phase_edges, np.int64)  # [K]
        self.prices = np.asarray(prices, np.float32)  # [len(prices)]
        self.price_scale = float(price_scale)
        self.max_episode_steps = int(max_episode_steps)
        self.num_phases = len(self.phase_edges)
        self.fire_actions = np.asarray(backend.fire_actions, bool)  # [A]
        self.observation_spaces: dict[str, Space] = {LEADER: Discrete(self.num_phases)}
        self.action_spaces = {LEADER: Discrete(len(self.prices))}
        for f in self.followers:
            self.observation_spaces[f] = Box(FRAME_SHAPE, "uint8", 0, 255)
            self.action_spaces[f] = Discrete(backend.num_actions)
        b = self.num_games
        self._t = np.zeros(b, np.int64)  # elapsed agent steps of each game's episode
        self._frames = np.zeros((b, *FRAME_SHAPE), np.uint8)

    def phase(self, t: np.ndarray) -> np.ndarray:
        """[B] elapsed agent steps -> [B] int64 phase k with phase_edges[k] <= t < phase_edges[k+1]."""
        return np.searchsorted(self.phase_edges, t, side="right") - 1

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {LEADER: self.phase(self._t)}
        for f in self.followers:
            obs[f] = self._frames.copy()  # a copy per follower: callers may write into theirs
        return obs

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        self._frames[:] = self.backend.reset(seed)
        self._t[:] = 0
        return self._obs()

    def _action(self, actions: dict[str, np.ndarray], role: str, ids: np.ndarray) -> np.ndarray:
        a: np.ndarray = np.asarray(actions[role]).reshape(-1)
        if a.shape != (self.num_games,):
            raise ValueError(f"actions[{role!r}] must have shape [{self.num_games}], got {a.shape}")
        a = a[ids].astype(np.int64)
        n = self.action_spaces[role].n
        if np.any((a < 0) | (a >= n)):
            raise ValueError(f"actions[{role!r}] of active games must lie in [0, {n}), got {a.tolist()}")
        return a

    def step(self, actions: dict[str, np.ndarray], active: np.ndarray | None = None) -> StepResult:
        b = self.num_games
        ids = np.arange(b) if active is None else np.flatnonzero(np.asarray(active, bool))
        rewards = {r: np.zeros(b, np.float32) for r in self.roles}
        dones = np.zeros(b, bool)
        info: dict[str, np.ndarray] = {
            "phase": np.zeros(b, np.int64),
            "price": np.zeros(b, np.float32),
            "truncated": np.zeros(b, bool),
        }
        for f in self.followers:
            info[f"fire_{f}"] = np.zeros(b, bool)
            info[f"points_{f}"] = np.zeros(b, np.float32)
        if len(ids) == 0:
            return StepResult(self._obs(), rewards, dones, info)

        price = self.prices[self._action(actions, LEADER, ids)]  # [n]
        follower_actions = np.stack([self._action(actions, f, ids) for f in self.followers], 1)  # [n, P]
        frames, points, over = self.backend.step(follower_actions, ids)  # [n,4,84,84], [n,P], [n]
        fired = self.fire_actions[follower_actions]  # [n, P]
        cost = self.price_scale * price[:, None] * fired  # [n, P] what each follower pays
        info["phase"][ids] = self.phase(self._t[ids])
        info["price"][ids] = price
        for p, f in enumerate(self.followers):
            rewards[f][ids] = points[:, p] - cost[:, p]
            info[f"fire_{f}"][ids] = fired[:, p]
            info[f"points_{f}"][ids] = points[:, p]
        rewards[LEADER][ids] = cost.sum(1)

        self._t[ids] += 1
        self._frames[ids] = frames
        cut = self._t[ids] >= self.max_episode_steps
        done = over | cut
        info["truncated"][ids] = cut & ~over
        dones[ids] = done
        ended = ids[done]
        if len(ended):  # auto-reset: a finished game shows the first frames of its next episode
            self._frames[ended] = self.backend.reset_games(ended)
            self._t[ended] = 0
        return StepResult(self._obs(), rewards, dones, info)

    def leader_query_set(self) -> np.ndarray:
        return np.arange(self.num_phases, dtype=np.int64)  # [K]

    def query_index(self, leader_obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(leader_obs, np.int64)
        return np.where((obs >= 0) & (obs < self.num_phases), obs, -1)

    def close(self) -> None:
        self.backend.close()


def _threads(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def make_atari_pricing(cfg: EnvConfig, seed: int = 0) -> AtariPricingEnv:
    """`space_invaders_pricing` (envpool, 1 follower) or `space_invaders_pricing_2p` (MA-ALE, 2)."""
    if cfg.name == "space_invaders_pricing":
        backend: AtariBackend = EnvpoolBackend(
            cfg.num_games, seed, min(_threads(cfg.num_threads), cfg.num_games), cfg.max_episode_steps
        )
    elif cfg.name == "space_invaders_pricing_2p":
        from stackrl.envs.multi_agent_ale import MultiAgentAtariBatch

        backend = MultiAgentAtariBatch(cfg.num_games, seed=seed, num_threads=_threads(cfg.num_threads))
    else:
        raise ValueError(f"env.name: {cfg.name!r} is not an Atari pricing game")
    return AtariPricingEnv(backend, cfg.phase_edges, cfg.prices, cfg.price_scale, cfg.max_episode_steps)
