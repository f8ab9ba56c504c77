"""The batched iterated matrix games: conformance, memory-1 observations, payoffs, episode ends."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.config import EnvConfig
from stackrl.envs import Discrete, check_env, make_env
from stackrl.envs.base import LEADER, StepResult
from stackrl.envs.matrix_games import BENCHMARK_GAMES, GAMES, IteratedMatrixGame

F0 = "follower_0"
PD = GAMES["prisoners_dilemma"]


def make(payoffs=PD, length=10, b=4):
    return IteratedMatrixGame(np.array(payoffs, float), length, b)


def step(env, a_l, a_f, active=None):
    return env.step({LEADER: np.asarray(a_l), F0: np.asarray(a_f)}, active)


@pytest.mark.parametrize("name", [*BENCHMARK_GAMES, "battle_of_the_sexes"])
def test_every_game_passes_conformance(name):
    env = make_env(EnvConfig(name=name, num_games=5))
    check_env(env, steps=25)


def test_user_bimatrix_passes_conformance():
    env = make_env(EnvConfig(name="matrix", payoffs=[[[1, 0], [0, 2]], [[2, 1], [3, 0]], [[0, 0], [1, 1]]]))
    assert env.action_spaces[LEADER] == Discrete(3) and env.action_spaces[F0] == Discrete(2)
    check_env(env, steps=25)


def test_conformance_check_catches_an_env_that_ignores_active():
    class IgnoresActive(IteratedMatrixGame):
        def step(self, actions, active=None) -> StepResult:
            return super().step(actions, None)

    with pytest.raises(AssertionError, match="inactive"):
        check_env(IgnoresActive(np.array(PD, float), 10, 3))


def test_memory_one_observations_and_payoffs():
    env = make(b=4)
    obs = env.reset(seed=0)
    assert env.observation_spaces[LEADER] == Discrete(5)
    for role in env.roles:
        np.testing.assert_array_equal(obs[role], [0, 0, 0, 0])
        assert obs[role].dtype == np.int64
    a_l = np.array([0, 0, 1, 1])
    a_f = np.array([0, 1, 0, 1])
    res = step(env, a_l, a_f)
    for role in env.roles:
        np.testing.assert_array_equal(res.obs[role], [1, 3, 2, 4])  # 1 + a_L + 2 a_F
    # PD table: (C,C)=(3,3), (C,D)=(1,4), (D,C)=(4,1), (D,D)=(2,2)
    np.testing.assert_array_equal(res.rewards[LEADER], [3, 1, 4, 2])
    np.testing.assert_array_equal(res.rewards[F0], [3, 4, 1, 2])
    assert res.rewards[LEADER].dtype == np.float32
    assert not res.dones.any()
    # The next observation depends only on the latest joint action.
    res = step(env, a_l[::-1], a_f[::-1])
    np.testing.assert_array_equal(res.obs[LEADER], [4, 2, 3, 1])


def test_three_by_two_observation_rule():
    payoffs = [[(1, 0), (0, 2)], [(2, 1), (3, 0)], [(0, 0), (1, 1)]]
    env = make(payoffs, b=6)
    env.reset()
    assert env.observation_spaces[F0] == Discrete(7)
    np.testing.assert_array_equal(env.leader_query_set(), np.arange(7))
    a_l = np.array([0, 1, 2, 0, 1, 2])
    a_f = np.array([0, 0, 0, 1, 1, 1])
    res = step(env, a_l, a_f)
    np.testing.assert_array_equal(res.obs[F0], 1 + a_l + 3 * a_f)
    np.testing.assert_array_equal(res.rewards[LEADER], [1, 2, 0, 0, 3, 1])
    np.testing.assert_array_equal(res.rewards[F0], [0, 1, 0, 2, 0, 1])


def test_episodes_end_after_ten_steps_and_reset():
    env = make(b=3)
    env.reset()
    rng = np.random.default_rng(1)
    for episode in range(2):
        for t in range(10):
            res = step(env, rng.integers(0, 2, 3), rng.integers(0, 2, 3))
            if t < 9:
                assert not res.dones.any(), f"episode {episode} ended early at step {t}"
                assert np.all(res.obs[LEADER] >= 1)
            else:
                assert res.dones.all()
                # The returned observation is the first of the next episode.
                np.testing.assert_array_equal(res.obs[LEADER], [0, 0, 0])
                np.testing.assert_array_equal(res.obs[F0], [0, 0, 0])


def test_one_shot_game_ends_every_step():
    env = make_env(EnvConfig(name="battle_of_the_sexes", num_games=2))
    env.reset()
    res = step(env, [0, 1], [0, 1])
    assert res.dones.all()
    np.testing.assert_array_equal(res.rewards[LEADER], [2, 1])
    np.testing.assert_array_equal(res.rewards[F0], [1, 2])
    np.testing.assert_array_equal(res.obs[LEADER], [0, 0])


def test_active_mask_freezes_games():
    env = make(b=3)
    env.reset()
    step(env, [1, 1, 1], [0, 0, 0])  # every game in state 2
    frozen = np.array([True, False, True])
    for _ in range(3):
        res = step(env, [0, 0, 0], [1, 1, 1], active=frozen)
        np.testing.assert_array_equal(res.obs[LEADER], [3, 2, 3])
        np.testing.assert_array_equal(res.rewards[LEADER], [1, 0, 1])
        np.testing.assert_array_equal(res.rewards[F0], [4, 0, 4])
        assert not res.dones.any()
    # Games 0 and 2 have taken 4 steps of their episode, game 1 only 1: it ends three steps later.
    ended_after = {}
    for n in range(1, 12):
        res = step(env, [0, 0, 0], [0, 0, 0])
        for g in np.flatnonzero(res.dones):
            ended_after.setdefault(int(g), n)
    assert ended_after == {0: 6, 2: 6, 1: 9}


def test_active_mask_end_step_exact():
    env = make(b=2)
    env.reset()
    active = np.array([True, False])
    dones = []
    for _ in range(10):
        dones.append(step(env, [0, 0], [0, 0], active=active).dones.copy())
    assert dones[-1].tolist() == [True, False]
    assert not np.any(np.array(dones[:-1]))
    # Game 1 has not moved; its first episode and game 0's second both end ten steps later.
    for _ in range(9):
        assert not step(env, [0, 0], [0, 0]).dones.any()
    assert step(env, [0, 0], [0, 0]).dones.tolist() == [True, True]


@pytest.mark.parametrize(
    "a_l, a_f",
    [
        (np.zeros(3, np.int64), np.zeros(4, np.int64)),  # wrong batch
        (np.zeros((4, 1), np.int64), np.zeros(4, np.int64)),  # extra axis
        (np.zeros(4, np.int64), 0),  # scalar
    ],
)
def test_bad_action_shapes_raise(a_l, a_f):
    env = make(b=4)
    env.reset()
    with pytest.raises(ValueError, match="actions must be"):
        step(env, a_l, a_f)


@pytest.mark.parametrize(
    "a_l, a_f", [([0, 0, 2, 0], [0, 0, 0, 0]), ([0, 0, 0, 0], [0, -1, 0, 0]), ([-1, 0, 0, 0], [0, 0, 0, 5])]
)
def test_out_of_range_actions_raise(a_l, a_f):
    env = make(b=4)
    env.reset()
    with pytest.raises(ValueError, match="out of range"):
        step(env, a_l, a_f)


def test_query_set_is_every_state():
    env = make()
    q = env.leader_query_set()
    np.testing.assert_array_equal(q, np.arange(5))
    np.testing.assert_array_equal(env.query_index(q), np.arange(5))


def test_unknown_game_raises():
    with pytest.raises(ValueError, match="unknown"):
        make_env(EnvConfig(name="no_such_game"))


def test_exploring_starts_only_while_followers_learn_against_random_leaders():
    from stackrl.config import EnvConfig
    from stackrl.envs.factory import make_stackelberg_env

    env = make_stackelberg_env(EnvConfig(name="chicken", num_games=256, explore_starts=1.0))
    env.set_leader_source("random")
    obs = env.reset(seed=0)
    starts = obs.obs["follower_0"]
    assert starts.min() >= 1 and set(starts.tolist()) == {1, 2, 3, 4}  # a random previous joint action
    env.set_leader_source("policy")
    obs = env.reset(seed=0)
    assert (env.base._state == 0).all() and (env.base._state_f == 0).all()


def test_exploring_starts_fraction_and_memory_small():
    from stackrl.envs.base import LEADER, follower_role

    game = IteratedMatrixGame(
        np.array(GAMES["chicken"], float), 10, 4000, memory="small", explore_starts=0.25
    )
    game.set_exploring_starts(True)
    obs = game.reset(seed=1)
    random_start = obs[LEADER] != 0
    assert 0.2 < random_start.mean() < 0.3
    # small memory: each player sees the other's action, so the states pair up consistently.
    assert (random_start == (obs[follower_role(0)] != 0)).all()
    game.set_exploring_starts(False)
    assert (game.reset(seed=1)[LEADER] == 0).all()
