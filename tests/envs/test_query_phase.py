"""The Stackelberg layer: query phase, context, hidden/observed queries, commitment, leader sources."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.config import EnvConfig
from stackrl.envs import Discrete, make_stackelberg_env
from stackrl.envs.base import LEADER
from stackrl.envs.matrix_games import GAMES
from stackrl.envs.solver import max_tie_break_weight

F0 = "follower_0"
K = 5  # memory-1 states of a 2x2 game = the query set
PD = np.array(GAMES["prisoners_dilemma"], float)  # [a_L, a_F, (r_L, r_F)]


def make(b=4, queries="hidden", commit=True, tie_break=0.0, source="policy", name="prisoners_dilemma"):
    env = make_stackelberg_env(
        EnvConfig(name=name, num_games=b, queries=queries, commit=commit, tie_break=tie_break), seed=3
    )
    env.set_leader_source(source)
    return env


def act(env, a_l, a_f):
    b = env.num_games
    return env.step(
        {
            LEADER: np.broadcast_to(np.asarray(a_l, np.int64), (b,)),
            F0: np.broadcast_to(np.asarray(a_f, np.int64), (b,)),
        }
    )


def answer_queries(env, obs, answers, rng):
    """Run the K query steps with the given [B, K] answers; checks what query steps must look like."""
    for k in range(K):
        assert obs.in_query.all()
        assert obs.acting[LEADER].all() and not obs.acting[F0].any()
        np.testing.assert_array_equal(obs.context[:, :k], answers[:, :k])
        np.testing.assert_array_equal(obs.context[:, k:], 0)
        np.testing.assert_array_equal(obs.obs[F0], 0)  # the base game waits at its start state
        step = act(env, answers[:, k], rng.integers(0, 2, env.num_games))
        assert step.env_steps == 0
        assert not step.dones.any()
        for role in env.roles:
            np.testing.assert_array_equal(step.rewards[role], 0)
            assert step.episode_returns[role].shape == (0,)
        obs = step.obs
    return obs


def test_context_equals_the_leaders_answers():
    env = make(b=6)
    rng = np.random.default_rng(0)
    obs = env.reset(seed=0)
    answers = rng.integers(0, 2, (6, K))
    obs = answer_queries(env, obs, answers, rng)
    for t in range(10):
        assert not obs.in_query.any()
        np.testing.assert_array_equal(obs.context, answers)
        step = act(env, rng.integers(0, 2, 6), rng.integers(0, 2, 6))
        assert step.dones.all() == (t == 9)
        obs = step.obs
    # A new extended episode: a new query phase with an empty context.
    assert obs.in_query.all()
    np.testing.assert_array_equal(obs.context, 0)
    np.testing.assert_array_equal(obs.obs[LEADER], env.query_set[0])


def leader_views(queries, episodes=4, b=8):
    """Leader observation at each query step k, and at play steps in base state s."""
    env = make(b=b, queries=queries, commit=False)
    rng = np.random.default_rng(1)
    obs = env.reset(seed=1)
    at_query, at_play = {}, {}
    for _ in range(episodes):
        for t_in_episode in range(K + 10):
            if t_in_episode < K:
                assert obs.in_query.all()
                at_query.setdefault(t_in_episode, set()).update(obs.obs[LEADER].tolist())
            else:
                assert not obs.in_query.any()
                for s, o in zip(obs.obs[F0], obs.obs[LEADER]):
                    at_play.setdefault(int(s), set()).add(int(o))
            obs = act(env, rng.integers(0, 2, b), rng.integers(0, 2, b)).obs
    return env, at_query, at_play


def test_hidden_queries_look_exactly_like_play():
    env, at_query, at_play = leader_views("hidden")
    assert env.observation_spaces[LEADER] == Discrete(K)
    assert sorted(at_query) == list(range(K)) and sorted(at_play) == list(range(K))
    for k in range(K):
        assert at_query[k] == {int(env.query_set[k])}
        assert at_play[int(env.query_set[k])] == at_query[k]
    np.testing.assert_array_equal(env.query_observations(), env.query_set)


def test_observed_queries_differ_only_by_the_flag():
    env, at_query, at_play = leader_views("observed")
    assert env.observation_spaces[LEADER] == Discrete(2 * K)
    assert env.observation_spaces[F0] == Discrete(K)
    assert sorted(at_play) == list(range(K))
    for k in range(K):
        (q,) = at_query[k]
        (p,) = at_play[int(env.query_set[k])]
        assert q != p
        assert q == p + K  # the flag: query observation q is encoded as q + n
    np.testing.assert_array_equal(env.query_observations(), env.query_set + K)


@pytest.mark.parametrize("queries", ["hidden", "observed"])
def test_commit_forces_the_answer_in_play(queries):
    b = 8
    env = make(b=b, queries=queries, commit=True)
    rng = np.random.default_rng(2)
    answers = rng.integers(0, 2, (b, K))
    obs = answer_queries(env, env.reset(seed=2), answers, rng)
    for _ in range(10):
        state = obs.obs[F0]
        expected = answers[np.arange(b), state]
        np.testing.assert_array_equal(obs.forced_leader, expected)
        assert not obs.acting[LEADER].any()
        assert obs.acting[F0].all()
        a_f = rng.integers(0, 2, b)
        step = act(env, 1 - expected, a_f)  # the leader tries to deviate; the env plays its answer
        np.testing.assert_array_equal(step.rewards[LEADER], PD[expected, a_f, 0])
        if not step.dones.any():
            np.testing.assert_array_equal(step.obs.obs[F0], 1 + expected + 2 * a_f)
        obs = step.obs


def test_without_commit_the_leader_plays_freely():
    b = 8
    env = make(b=b, commit=False)
    rng = np.random.default_rng(3)
    answers = rng.integers(0, 2, (b, K))
    obs = answer_queries(env, env.reset(seed=3), answers, rng)
    for _ in range(9):
        np.testing.assert_array_equal(obs.forced_leader, -1)
        assert obs.acting[LEADER].all()
        a_l = 1 - answers[np.arange(b), obs.obs[F0]]  # play against its own answers
        a_f = rng.integers(0, 2, b)
        step = act(env, a_l, a_f)
        np.testing.assert_array_equal(step.obs.obs[F0], 1 + a_l + 2 * a_f)
        np.testing.assert_array_equal(step.rewards[LEADER], PD[a_l, a_f, 0])
        np.testing.assert_array_equal(step.obs.context, answers)  # context is not rewritten by play
        obs = step.obs


def test_random_leaders_are_uniform_tables_without_query_steps():
    b = 4000
    env = make(b=b, source="random")
    obs = env.reset(seed=123)
    assert not obs.in_query.any()
    assert not obs.acting[LEADER].any() and obs.acting[F0].all()
    table = obs.context
    assert table.shape == (b, K) and set(np.unique(table)) == {0, 1}
    np.testing.assert_array_equal(obs.forced_leader, table[:, 0])  # start state 0 is queried
    # Each of the 2**5 tables equally likely: chi-square with 31 degrees of freedom; its 0.999
    # quantile is 61.1. Each entry is a fair coin.
    index = (table * (2 ** np.arange(K))).sum(axis=1)
    counts = np.bincount(index, minlength=2**K)
    expected = b / 2**K
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 61.1, chi2
    assert np.all(np.abs(table.mean(axis=0) - 0.5) < 0.04)
    # The leader plays its table; the first step is a play step.
    a_f = np.zeros(b, np.int64)
    step = env.step({LEADER: 1 - table[:, 0], F0: a_f})
    assert step.env_steps == b
    np.testing.assert_array_equal(step.obs.obs[F0], 1 + table[:, 0])
    # Every episode draws a fresh table.
    obs = step.obs
    for _ in range(9):
        step = env.step({LEADER: np.zeros(b, np.int64), F0: a_f})
    assert step.dones.all()
    same = np.all(step.obs.context == table, axis=1).mean()
    assert same < 0.1  # 1/32 expected


def test_table_leader_plays_the_given_table():
    b = 3
    env = make(b=b)
    table = np.array([1, 0, 0, 1, 1])  # the prisoner's dilemma optimum: open with D, then tit-for-tat
    env.set_leader_source("table", table)
    obs = env.reset(seed=0)
    assert not obs.in_query.any()
    np.testing.assert_array_equal(obs.context, np.tile(table, (b, 1)))
    total = np.zeros(b)
    for _ in range(10):
        np.testing.assert_array_equal(obs.forced_leader, table[obs.obs[F0]])
        step = act(env, 0, 0)
        total += step.rewards[LEADER]
        obs = step.obs
    assert step.dones.all()
    np.testing.assert_array_equal(total, 31)  # (D,C) then nine (C,C): 4 + 27


@pytest.mark.parametrize("table", [[0, 1, 0], [0, 1, 0, 1, 2], [0, -1, 0, 0, 0]])
def test_bad_tables_raise(table):
    env = make()
    with pytest.raises(ValueError, match="leader table"):
        env.set_leader_source("table", table)


def test_unknown_leader_source_raises():
    with pytest.raises(ValueError, match="leader source"):
        make().set_leader_source("oracle")


def test_tie_break_shapes_follower_rewards_but_not_returns():
    b = 2
    env = make(b=b, tie_break=0.25)
    assert env.tie_break == 0.25
    env.set_leader_source("table", [1, 0, 0, 1, 1])
    env.reset(seed=0)
    leader_sum = np.zeros(b)
    follower_sum = np.zeros(b)
    for t in range(10):
        step = act(env, 0, 0)  # the follower always cooperates
        r_l = 4.0 if t == 0 else 3.0
        r_f = 1.0 if t == 0 else 3.0
        np.testing.assert_allclose(step.rewards[LEADER], r_l)
        np.testing.assert_allclose(step.rewards[F0], r_f + 0.25 * r_l)
        leader_sum += step.rewards[LEADER]
        follower_sum += step.rewards[F0]
    assert step.dones.all()
    np.testing.assert_allclose(step.episode_returns[LEADER], [31, 31])
    np.testing.assert_allclose(step.episode_returns[F0], [28, 28])  # raw, without the shaping
    np.testing.assert_allclose(follower_sum, 28 + 0.25 * 31)


def test_automatic_tie_break_stays_below_the_solver_bound():
    env = make_stackelberg_env(EnvConfig(name="prisoners_dilemma", num_games=1, tie_break=None))
    bound = max_tie_break_weight(GAMES["prisoners_dilemma"], 10)
    assert 0 < env.tie_break < bound
    assert env.tie_break == pytest.approx(min(0.5 * bound, 0.1))


def test_env_steps_count_only_play_steps():
    b = 3
    env = make(b=b)
    env.reset(seed=0)
    rng = np.random.default_rng(4)
    counts, ends = [], []
    for _ in range(2 * (K + 10)):
        step = act(env, rng.integers(0, 2, b), rng.integers(0, 2, b))
        counts.append(step.env_steps)
        ends.append(bool(step.dones.all()))
        assert step.dones.all() or not step.dones.any()
    assert counts == ([0] * K + [b] * 10) * 2
    assert sum(counts) == 20 * b
    assert [i for i, e in enumerate(ends) if e] == [K + 9, 2 * (K + 10) - 1]


def test_current_answer_adds_the_committed_move_to_the_context():
    """With `current_answer`, the followers' context ends with the leader's committed move for its
    current observation: the posted price of the current phase, in the pricing games."""
    from stackrl.envs.factory import env_spec

    b = 6
    env = make_stackelberg_env(EnvConfig(name="prisoners_dilemma", num_games=b, current_answer=True), seed=3)
    env.set_leader_source("policy")
    assert env_spec(env).context_size(F0) == K + 1 and env_spec(env).context_size(LEADER) == 0
    rng = np.random.default_rng(4)
    obs = env.reset(seed=0)
    answers = rng.integers(0, 2, (b, K))
    for k in range(K):
        np.testing.assert_array_equal(obs.context[:, :k], answers[:, :k])
        obs = act(env, answers[:, k], 0).obs
    for _ in range(10):
        np.testing.assert_array_equal(obs.context[:, :K], answers)
        state = obs.obs[LEADER]  # memory-1 state = the leader's query index
        np.testing.assert_array_equal(obs.context[:, K], answers[np.arange(b), state])
        np.testing.assert_array_equal(obs.context[:, K], obs.forced_leader)
        # Followers without context (inner-outer, regret) keep only what play shows them.
        blind = obs.follower_context(False)
        np.testing.assert_array_equal(blind[:, :K], 0)
        np.testing.assert_array_equal(blind[:, K], obs.context[:, K])
        obs = act(env, rng.integers(0, 2, b), rng.integers(0, 2, b)).obs
    # Random leaders (pretraining): the extra entry is the random table's move in the current state.
    env.set_leader_source("random")
    obs = env.reset(seed=1)
    for _ in range(5):
        np.testing.assert_array_equal(obs.context[:, K], obs.context[np.arange(b), obs.obs[LEADER]])
        obs = act(env, 0, rng.integers(0, 2, b)).obs


def test_current_answer_needs_commitment():
    from stackrl.config import ConfigError

    with pytest.raises(ConfigError, match="env.current_answer"):
        EnvConfig(name="prisoners_dilemma", commit=False, current_answer=True).validate()
