"""Bring your own game: B copies of any PettingZoo `ParallelEnv` behind the batched interface.

The user names a factory by import path (`pettingzoo.classic.rps_v2:parallel_env`) with keyword
arguments, and the leader agent; every other agent is a follower, in `possible_agents` order
(`follower_0`, `follower_1`, ...). Spaces are converted from gymnasium's:
- `Discrete(n, start)` observations and actions -> `Discrete(n)` (shifted by `start`);
- 1-D `Box` -> float32 vector `Box`; other non-image `Box` -> flattened float32 vector;
- image `Box` (uint8, (H, W), (H, W, 1) or (H, W, 3), as PettingZoo Atari returns, channels last)
  -> grayscale 84x84 4-frame stack (C, H, W) uint8, with the multi-agent ALE's area resize, so the
  Nature CNN of `learner/models.py` reads it.
An episode ends when any agent terminates or is truncated (the batched interface needs every role
in every step), or after `max_episode_steps` agent steps; finished games reset themselves.

Leader query sets: `enumerate` (every leader observation; needs a Discrete leader observation) or
`probe` (K observations from a seeded random rollout; see `envs/probe.py`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from stackrl.envs.base import LEADER, StepResult, follower_role
from stackrl.envs.multi_agent_ale import SIZE, STACK, AreaResize, rom_dir
from stackrl.envs.probe import resolve_probe_set, select_probes
from stackrl.envs.registry import check_factory
from stackrl.envs.spaces import Box, Discrete, Space

QUERY_SETS = ("enumerate", "probe")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as OpenCV's RGB->GRAY


def load_factory(path: str) -> Callable[..., Any]:
    """`package.module:callable` -> the callable (a PettingZoo `parallel_env` function or class).

    Only a factory the operator allowed on this machine is imported (`envs/registry.py`); the
    config naming it may have come from the network or from someone else's run directory.

    Raises:
        FactoryNotAllowed: `path` is not in the registry (a ConfigError; nothing was imported).
        ValueError: malformed, missing or not callable.
    """
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"env.pettingzoo: expected 'package.module:callable', got {path!r}")
    check_factory(path)
    try:
        fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"env.pettingzoo: cannot load {path!r}: {e}") from None
    if not callable(fn):
        raise ValueError(f"env.pettingzoo: {path!r} is not callable")
    return fn


def parallel_env_maker(path: str, kwargs: dict[str, Any] | None = None) -> Callable[[], Any]:
    """A no-argument maker of one `ParallelEnv`; PettingZoo Atari gets `ale_py`'s bundled ROMs."""
    fn = load_factory(path)
    kw = dict(kwargs or {})
    if path.startswith("pettingzoo.atari") and "auto_rom_install_path" not in kw:
        kw["auto_rom_install_path"] = rom_dir()  # nothing is downloaded
    return lambda: fn(**kw)


def _is_image(space: Any) -> bool:
    shape = tuple(space.shape)
    return space.dtype == np.uint8 and (
        len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3) and min(shape[:2]) >= 32)
    )


class ObsConverter:
    """One agent's gymnasium observations -> arrays of our space, with frame stacks for images."""

    def __init__(self, gym_space: Any, num_games: int):
        from gymnasium import spaces as gs

        self.kind: str
        if isinstance(gym_space, gs.Discrete):
            self.kind, self.offset = "discrete", int(gym_space.start)
            self.space: Space = Discrete(int(gym_space.n))
        elif isinstance(gym_space, gs.Box) and _is_image(gym_space):
            self.kind = "image"
            h, w = gym_space.shape[:2]
            self.resize = AreaResize((h, w), (SIZE, SIZE))
            self.stack = np.zeros((num_games, STACK, SIZE, SIZE), np.uint8)
            self.space = Box((STACK, SIZE, SIZE), "uint8", 0, 255)
        elif isinstance(gym_space, gs.Box):
            self.kind = "vector"
            low, high = np.asarray(gym_space.low), np.asarray(gym_space.high)
            self.space = Box(
                (int(np.prod(gym_space.shape)),),
                "float32",
                float(low.min()) if np.all(np.isfinite(low)) else -np.inf,
                float(high.max()) if np.all(np.isfinite(high)) else np.inf,
            )
        else:
            raise ValueError(
                f"observation space {gym_space} is not supported (Discrete or Box); wrap the env to "
                "flatten it (e.g. drop a Dict's action mask)"
            )

    def frames(self, raw: list[Any]) -> np.ndarray:
        """[n] raw observations -> [n, *frame]: what enters the stack (or the observation itself)."""
        if self.kind == "discrete":
            return np.asarray([int(np.asarray(o)) - self.offset for o in raw], np.int64)
        if self.kind == "vector":
            return np.stack([np.asarray(o, np.float32).ravel() for o in raw])
        x = np.stack([np.asarray(o) for o in raw])
        if x.ndim == 4:  # [n, H, W, C]
            x = x[..., 0] if x.shape[-1] == 1 else np.clip(x.astype(np.float32) @ _LUMA + 0.5, 0, 255)
        return self.resize(x.astype(np.uint8))

    def start(self, ids: np.ndarray, raw: list[Any], out: np.ndarray) -> None:
        """New episodes in games `ids`: write their first observations into `out` [B, ...]."""
        f = self.frames(raw)
        if self.kind == "image":
            self.stack[ids] = f[:, None]
            f = self.stack[ids]
        out[ids] = f

    def advance(self, ids: np.ndarray, raw: list[Any], out: np.ndarray) -> None:
        f = self.frames(raw)
        if self.kind == "image":
            s = self.stack[ids]
            s[:, :-1] = s[:, 1:]
            s[:, -1] = f
            self.stack[ids] = s
            f = s
        out[ids] = f


class PettingZooBatch:
    """B copies of one PettingZoo `ParallelEnv` with a named leader (BatchedMultiAgentEnv).

    Args:
        make_game: builds one `ParallelEnv`.
        num_games: B.
        leader_agent: the PettingZoo agent that leads; the others follow in `possible_agents` order.
        max_episode_steps: agent steps before an episode is cut (the env may end it sooner).
        query_set: `enumerate` or `probe`.
        probe_size, probe_seed, probe_steps: K, the rollout seed, and the most rollout steps.
        probe_path, probe_hash: where the probe set is stored / the hash it must have (envs/probe.py).
        frame_skip: each agent step repeats the actions this many env steps, rewards summed.
        follower_last_action: followers with a Discrete observation `o` in [0, n) see
            `o + n * (a + 1)` in [0, n * (A + 1)), `a` their previous action (-1 at an episode's start).
        seed: seeds the games of the first `reset(None)`.
    """

    def __init__(
        self,
        make_game: Callable[[], Any],
        num_games: int,
        leader_agent: str,
        max_episode_steps: int,
        query_set: str | None = "enumerate",
        probe_size: int = 8,
        probe_seed: int = 0,
        probe_steps: int = 1000,
        probe_path: str | None = None,
        probe_hash: str | None = None,
        frame_skip: int = 1,
        follower_last_action: bool = False,
        seed: int = 0,
    ):
        if num_games < 1:
            raise ValueError(f"num_games must be >= 1, got {num_games}")
        if query_set is not None and query_set not in QUERY_SETS:
            raise ValueError(f"env.query_set must be one of {QUERY_SETS}, got {query_set!r}")
        self.make_game = make_game
        self.num_games = num_games
        self.max_episode_steps = max_episode_steps
        self.frame_skip = frame_skip
        self.games = [make_game() for _ in range(num_games)]
        agents = tuple(self.games[0].possible_agents)
        if leader_agent not in agents:
            raise ValueError(f"env.leader_agent: {leader_agent!r} is not an agent of this game {agents}")
        self.agents = (leader_agent, *[a for a in agents if a != leader_agent])
        self.roles = (LEADER, *[follower_role(i) for i in range(len(self.agents) - 1)])
        self.role_of = dict(zip(self.agents, self.roles))
        g = self.games[0]
        self.conv = {
            r: ObsConverter(g.observation_space(a), num_games) for a, r in zip(self.agents, self.roles)
        }
        self.action_spaces: dict[str, Discrete] = {}
        self._action_start: dict[str, int] = {}
        for a, r in zip(self.agents, self.roles):
            sp = g.action_space(a)
            if not hasattr(sp, "n"):
                raise ValueError(f"agent {a!r}: action space {sp} is not Discrete")
            self.action_spaces[r] = Discrete(int(sp.n))
            self._action_start[r] = int(getattr(sp, "start", 0))
        self.observation_spaces = {r: c.space for r, c in self.conv.items()}
        # Followers that recall their own previous action: role -> n (their raw observation count).
        self._recall: dict[str, int] = {}
        if follower_last_action:
            for r in self.roles[1:]:
                sp = self.observation_spaces[r]
                if not isinstance(sp, Discrete):
                    raise ValueError(
                        f"env.follower_last_action needs Discrete follower observations; {r} has {sp}"
                    )
                self._recall[r] = sp.n
                self.observation_spaces[r] = Discrete(sp.n * (self.action_spaces[r].n + 1))
        self._last_action = {r: np.full(num_games, -1, np.int64) for r in self._recall}
        self._obs = {r: np.zeros((num_games, *s.shape), s.dtype) for r, s in self.observation_spaces.items()}
        self._t = np.zeros(num_games, np.int64)
        self._last_raw: dict[str, list[Any]] = {r: [None] * num_games for r in self.roles}
        self._seed = seed
        self._started = False
        lspace = self.observation_spaces[LEADER]
        self._query_set: np.ndarray
        if query_set is None:  # internal: the probe rollout's own copy needs no query set
            self._query_set = np.zeros((0, *lspace.shape), lspace.dtype)
        elif query_set == "enumerate":
            if not isinstance(lspace, Discrete):
                raise ValueError(
                    f"env.query_set=enumerate needs a Discrete leader observation, got {lspace}; use 'probe'"
                )
            self._query_set = np.arange(lspace.n, dtype=np.int64)
        else:
            self._query_set = resolve_probe_set(
                lambda: select_probes(
                    self._reference_rollout(probe_seed, probe_steps), probe_size, 4 * probe_size
                ),
                probe_path,
                probe_hash,
            )
        self._index = {np.ascontiguousarray(q).tobytes(): k for k, q in enumerate(self._query_set)}
        self._lookup: np.ndarray | None = None  # Discrete leader: observation -> k, vectorised
        if isinstance(lspace, Discrete) and len(self._query_set):
            self._lookup = np.full(lspace.n, -1, np.int64)
            self._lookup[self._query_set] = np.arange(len(self._query_set))

    # -- query set ------------------------------------------------------------------------------
    def leader_query_set(self) -> np.ndarray:
        out: np.ndarray = self._query_set.copy()
        return out

    def query_index(self, leader_obs: np.ndarray) -> np.ndarray:
        """[B] position of each leader observation in the query set (exact match), -1 elsewhere."""
        leader_obs = np.asarray(leader_obs)
        if self._lookup is not None:
            index: np.ndarray = self._lookup[leader_obs.astype(np.int64)]
            return index
        dtype = self._query_set.dtype
        return np.array(
            [self._index.get(np.ascontiguousarray(o, dtype).tobytes(), -1) for o in leader_obs], np.int64
        )

    def _reference_rollout(self, seed: int, steps: int) -> Iterator[np.ndarray]:
        """The leader's converted observations along a uniformly random rollout of a fresh copy."""
        probe = PettingZooBatch(
            self.make_game,
            1,
            self.agents[0],
            self.max_episode_steps,
            query_set=None,
            frame_skip=self.frame_skip,
        )
        rng = np.random.default_rng([seed, 0x9E0B])
        try:
            yield probe.reset(seed=seed)[LEADER][0]
            for _ in range(steps):
                actions = {r: rng.integers(0, sp.n, size=1) for r, sp in self.action_spaces.items()}
                yield probe.step(actions).obs[LEADER][0]
        finally:
            probe.close()

    # -- dynamics -------------------------------------------------------------------------------
    def _reset_games(self, ids: np.ndarray, seed: int | None) -> None:
        raws: dict[str, list[Any]] = {r: [] for r in self.roles}
        for i in ids:
            game_seed = (
                None if seed is None else int(np.random.SeedSequence([seed, int(i)]).generate_state(1)[0])
            )
            obs, _ = self.games[i].reset(seed=game_seed)
            for a, r in zip(self.agents, self.roles):
                raws[r].append(obs[a])
                self._last_raw[r][i] = obs[a]
        for r in self.roles:
            self.conv[r].start(ids, raws[r], self._obs[r])
        for r in self._recall:
            self._last_action[r][ids] = -1
        self._t[ids] = 0

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start all B games; the same seed gives the same first observations and dynamics."""
        if seed is None and not self._started:
            seed = self._seed
        self._started = True
        self._reset_games(np.arange(self.num_games), seed)
        return self._observations()

    def step(self, actions: dict[str, np.ndarray], active: np.ndarray | None = None) -> StepResult:
        b = self.num_games
        ids = np.arange(b) if active is None else np.flatnonzero(active)
        rewards = {r: np.zeros(b, np.float32) for r in self.roles}
        dones = np.zeros(b, bool)
        acts = {r: np.asarray(actions[r], np.int64) + self._action_start[r] for r in self.roles}
        raws: dict[str, list[Any]] = {r: [] for r in self.roles}
        for i in ids:
            game = self.games[i]
            joint = {a: int(acts[r][i]) for a, r in zip(self.agents, self.roles)}
            for _ in range(self.frame_skip):
                obs, rew, term, trunc, _ = game.step(joint)
                for a, r in zip(self.agents, self.roles):
                    rewards[r][i] += float(rew.get(a, 0.0))
                over = not game.agents or any(term.values()) or any(trunc.values())
                if over:
                    break
            self._t[i] += 1
            dones[i] = over or self._t[i] >= self.max_episode_steps
            for a, r in zip(self.agents, self.roles):
                # An agent that left has no observation; the episode is over then (reset below), so
                # its last one stands in.
                raw = obs[a] if a in obs else self._last_raw[r][i]
                raws[r].append(raw)
                self._last_raw[r][i] = raw
        if len(ids):
            for r in self.roles:
                self.conv[r].advance(ids, raws[r], self._obs[r])
            for r in self._recall:
                self._last_action[r][ids] = acts[r][ids] - self._action_start[r]
        finished = np.flatnonzero(dones)
        if len(finished):
            self._reset_games(finished, None)
        return StepResult(self._observations(), rewards, dones)

    def _observations(self) -> dict[str, np.ndarray]:
        out = {r: o.copy() for r, o in self._obs.items()}
        for r, n in self._recall.items():
            out[r] += n * (self._last_action[r] + 1)
        return out

    def close(self) -> None:
        for game in self.games:
            game.close()


def make_pettingzoo(cfg: Any, seed: int = 0) -> PettingZooBatch:
    """The batched game of an `EnvConfig` with `name: pettingzoo` (see config.py for the fields)."""
    return PettingZooBatch(
        parallel_env_maker(cfg.pettingzoo, cfg.pettingzoo_kwargs),
        num_games=cfg.num_games,
        leader_agent=cfg.leader_agent,
        max_episode_steps=cfg.max_episode_steps,
        query_set=cfg.query_set,
        probe_size=cfg.probe_size,
        probe_seed=cfg.probe_seed,
        probe_steps=cfg.probe_steps,
        probe_path=cfg.probe_path,
        probe_hash=cfg.probe_hash,
        frame_skip=cfg.frame_skip,
        follower_last_action=cfg.follower_last_action,
        seed=seed,
    )
