"""The batched multi-agent interface of envs/base.py: role names, the spec's context size, and
`check_env`, which passes a conforming game and catches each kind of non-conforming one."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.envs.base import LEADER, EnvSpec, StepResult, check_env, follower_role
from stackrl.envs.matrix_games import GAMES, IteratedMatrixGame
from stackrl.envs.spaces import Discrete


def game(cls=IteratedMatrixGame, num_games: int = 3) -> IteratedMatrixGame:
    return cls(np.array(GAMES["chicken"], np.float64), 4, num_games)


def test_role_names():
    assert LEADER == "leader"
    assert [follower_role(i) for i in range(3)] == ["follower_0", "follower_1", "follower_2"]


def test_context_size_is_the_query_count_for_followers_only():
    spaces = {LEADER: Discrete(5), "follower_0": Discrete(5)}
    spec = EnvSpec((LEADER, "follower_0"), spaces, {LEADER: Discrete(2), "follower_0": Discrete(2)}, 5, 2, 15)
    assert spec.context_size(LEADER) == 0 and spec.context_size("follower_0") == 5
    with_answer = EnvSpec(spec.roles, spaces, spec.action_spaces, 5, 2, 15, current_answer=True)
    assert with_answer.context_size("follower_0") == 6 and with_answer.context_size(LEADER) == 0


def test_a_conforming_game_passes():
    check_env(game(), steps=30)
    check_env(game(num_games=1), steps=10)  # one game: no inactive-game check, still conforming


class FollowerFirst(IteratedMatrixGame):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.roles = (self.roles[1], self.roles[0])


class Float64Rewards(IteratedMatrixGame):
    def step(self, actions, active=None):
        res = super().step(actions, active)
        return StepResult(res.obs, {r: v.astype(np.float64) for r, v in res.rewards.items()}, res.dones)


class IgnoresActive(IteratedMatrixGame):
    def step(self, actions, active=None):
        return super().step(actions, None)


class RewardsInactive(IteratedMatrixGame):
    def step(self, actions, active=None):
        res = super().step(actions, active)
        res.rewards[LEADER][:] = 1.0
        return res


class SeedlessReset(IteratedMatrixGame):
    """Reset draws from a generator that the seed does not reset."""

    calls = 0

    def reset(self, seed=None):
        obs = super().reset(seed)
        SeedlessReset.calls += 1
        obs[LEADER] = np.full(self.num_games, SeedlessReset.calls % 2, np.int64)
        return obs


class WrongObsDtype(IteratedMatrixGame):
    def reset(self, seed=None):
        return {r: o.astype(np.int32) for r, o in super().reset(seed).items()}


class ObsOutsideSpace(IteratedMatrixGame):
    def reset(self, seed=None):
        obs = super().reset(seed)
        obs["follower_0"] = np.full(self.num_games, 99, np.int64)
        return obs


class WrongQueryIndex(IteratedMatrixGame):
    def query_index(self, leader_obs):
        return np.zeros(len(leader_obs), np.int64)


class IntDones(IteratedMatrixGame):
    def step(self, actions, active=None):
        res = super().step(actions, active)
        return StepResult(res.obs, res.rewards, res.dones.astype(np.int64))


class NoClose:
    """Everything but `close`: not a BatchedMultiAgentEnv at all."""

    def __init__(self):
        inner = game()
        for name in ("num_games", "action_spaces", "max_episode_steps", "roles", "observation_spaces"):
            setattr(self, name, getattr(inner, name))
        self.reset, self.step = inner.reset, inner.step
        self.leader_query_set, self.query_index = inner.leader_query_set, inner.query_index


BROKEN = [
    (FollowerFirst, "roles must start with 'leader'"),
    (Float64Rewards, "rewards must be float32"),
    (IgnoresActive, "an inactive game moved"),
    (RewardsInactive, "an inactive game was rewarded"),
    (SeedlessReset, "reset with the same seed differs"),
    (WrongObsDtype, "obs dtype"),
    (ObsOutsideSpace, "obs outside its space"),
    (WrongQueryIndex, "query_index"),
    (IntDones, "dones must be"),
    (NoClose, "does not implement BatchedMultiAgentEnv"),
]


@pytest.mark.parametrize(("cls", "message"), BROKEN, ids=[c.__name__ for c, _ in BROKEN])
def test_check_env_catches_a_non_conforming_game(cls, message):
    env = cls() if cls is NoClose else game(cls)
    with pytest.raises(AssertionError, match=message):
        check_env(env, steps=10)
