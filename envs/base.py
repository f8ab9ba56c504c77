"""The batched multi-agent interface every domain implements, and its conformance check.

B games step together. Roles are `leader` and `follower_0..N-1`; every call takes and returns a
dict role -> array with a leading batch axis. Finished games reset themselves inside `step` (the
returned observation of a finished game is the first of its next episode), as envpool does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from stackrl.envs.spaces import Discrete, Space

LEADER = "leader"


def follower_role(i: int) -> str:
    return f"follower_{i}"


@dataclass(frozen=True)
class EnvSpec:
    """What the networks and trajectory storage need to know about an (extended) game."""

    roles: tuple[str, ...]
    observation_spaces: dict[str, Space]
    action_spaces: dict[str, Discrete]
    num_queries: int  # K
    leader_actions: int  # answers per query
    horizon: int  # steps of the longest extended episode (K + play steps); normalises the critic's clock
    current_answer: bool = False  # followers' context ends with the leader's current committed answer
    max_abs_reward: float | None = None
    """Largest |reward| one step can pay any role (None: not known for this domain). The learner
    refuses received rewards beyond it: a value the game cannot produce is poison, even when it is
    below the generic bound (issue 13: rewards of 9.9e5 inflated Adam's moments and stalled learning)."""

    def context_size(self, role: str) -> int:
        return 0 if role == LEADER else self.num_queries + int(self.current_answer)


@dataclass
class StepResult:
    """What `step` returns for B games."""

    obs: dict[str, np.ndarray]  # role -> [B, *obs_shape], next observation (after auto-reset)
    rewards: dict[str, np.ndarray]  # role -> [B] float32
    dones: np.ndarray  # [B] bool: the episode ended with this step
    info: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class BatchedMultiAgentEnv(Protocol):
    """B games of one Markov game with a leader and followers."""

    num_games: int
    action_spaces: dict[str, Discrete]
    max_episode_steps: int  # longest possible episode (play steps)

    # Read-only members, so that a domain may declare narrower types (a matrix game's
    # `tuple[str, str]` roles and Discrete-only observation spaces).
    @property
    def roles(self) -> tuple[str, ...]: ...

    @property
    def observation_spaces(self) -> Mapping[str, Space]: ...

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start all B games; returns role -> [B, *obs_shape]."""
        ...

    def step(self, actions: dict[str, np.ndarray], active: np.ndarray | None = None) -> StepResult:
        """Advance the games where `active` [B] is True (all if None); others keep their state and
        return reward 0, done False and their unchanged observation."""
        ...

    def leader_query_set(self) -> np.ndarray:
        """[K, *leader_obs_shape]: the observations on which followers query the leader."""
        ...

    def query_index(self, leader_obs: np.ndarray) -> np.ndarray:
        """[B] index k of each leader observation in the query set, -1 where it is not queried."""
        ...

    def close(self) -> None: ...


def check_env(env: BatchedMultiAgentEnv, steps: int = 50, seed: int = 0) -> None:
    """Conformance check for any domain (PettingZoo's parallel_api_test, batched): raises AssertionError."""
    assert isinstance(env, BatchedMultiAgentEnv), "env does not implement BatchedMultiAgentEnv"
    assert env.roles[0] == LEADER and len(env.roles) >= 2, f"roles must start with 'leader': {env.roles}"
    b = env.num_games
    obs = env.reset(seed=seed)
    obs2 = env.reset(seed=seed)
    for role in env.roles:
        space = env.observation_spaces[role]
        assert obs[role].shape == (b, *space.shape), f"{role} obs shape {obs[role].shape}"
        assert str(obs[role].dtype) == space.dtype, f"{role} obs dtype {obs[role].dtype} != {space.dtype}"
        assert space.contains(obs[role]), f"{role} obs outside its space"
        assert np.array_equal(obs[role], obs2[role]), f"{role}: reset with the same seed differs"
    q = env.leader_query_set()
    lspace = env.observation_spaces[LEADER]
    assert q.ndim == 1 + len(lspace.shape) and q.shape[0] >= 1, f"query set shape {q.shape}"
    assert np.array_equal(env.query_index(q), np.arange(len(q))), "query_index(query set) != 0..K-1"
    rng = np.random.default_rng(seed)
    inactive_checked = False
    for t in range(steps):
        actions = {r: rng.integers(0, env.action_spaces[r].n, size=b) for r in env.roles}
        active = None
        if b > 1 and not inactive_checked:
            active = np.ones(b, bool)
            active[0] = False
        before = {r: obs[r].copy() for r in env.roles}
        res = env.step(actions, active)
        assert res.dones.shape == (b,) and res.dones.dtype == bool, "dones must be [B] bool"
        for role in env.roles:
            assert res.obs[role].shape == obs[role].shape, f"{role} obs shape changed at step {t}"
            assert res.rewards[role].shape == (b,), f"{role} rewards must be [B]"
            assert res.rewards[role].dtype == np.float32, f"{role} rewards must be float32"
            assert np.all(np.isfinite(res.rewards[role])), f"{role} rewards not finite"
        if active is not None:
            for role in env.roles:
                assert np.array_equal(res.obs[role][0], before[role][0]), "an inactive game moved"
                assert res.rewards[role][0] == 0, "an inactive game was rewarded"
            assert not res.dones[0], "an inactive game ended"
            inactive_checked = True
        obs = res.obs
