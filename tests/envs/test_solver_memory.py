"""The solver's observation variants (memory full / small / none) against a plain-Python brute force.

The brute force shares no code with `stackrl.envs.solver` or `matrix_games.observe`: it writes the
three observation rules out by hand, enumerates every pair of stationary deterministic policies
with itertools, and picks the strong Stackelberg value (follower best response, ties broken for the
leader) with plain loops. It also replays pairs on the real batched env to tie both to the game.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from stackrl.envs.base import LEADER, follower_role
from stackrl.envs.matrix_games import IteratedMatrixGame, observation_sizes
from stackrl.envs.solver import episode_values, solve


def next_states(memory, a_l, a_f, n_leader):
    if memory == "full":
        s = 1 + a_l + n_leader * a_f
        return s, s
    if memory == "small":  # each player sees the other's last action
        return 1 + a_f, 1 + a_l
    return 0, 0


def play(payoffs, lp, fp, length, memory):
    s_l = s_f = 0
    v_l = v_f = 0.0
    for _ in range(length):
        a_l, a_f = lp[s_l], fp[s_f]
        v_l += payoffs[a_l][a_f][0]
        v_f += payoffs[a_l][a_f][1]
        s_l, s_f = next_states(memory, a_l, a_f, len(payoffs))
    return v_l, v_f


def brute_force_value(payoffs, length, memory):
    n_l, n_f = len(payoffs), len(payoffs[0])
    sizes = {"full": (1 + n_l * n_f,) * 2, "small": (1 + n_f, 1 + n_l), "none": (1, 1)}[memory]
    best = -float("inf")
    for lp in itertools.product(range(n_l), repeat=sizes[0]):
        outcomes = [
            play(payoffs, lp, fp, length, memory) for fp in itertools.product(range(n_f), repeat=sizes[1])
        ]
        top_f = max(v_f for _, v_f in outcomes)
        best = max(best, max(v_l for v_l, v_f in outcomes if v_f == top_f))
    return best


GAMES = [np.random.default_rng(s).integers(0, 10, size=(2, 2, 2)).tolist() for s in range(6)]


@pytest.mark.parametrize("memory", ["full", "small", "none"])
@pytest.mark.parametrize("payoffs", GAMES)
def test_solver_matches_brute_force(payoffs, memory):
    assert solve(payoffs, 4, memory).value == brute_force_value(payoffs, 4, memory)


@pytest.mark.parametrize("memory", ["full", "small", "none"])
def test_episode_values_replay_on_the_real_env(memory):
    payoffs = GAMES[0]
    lp, fp, v_l, v_f = episode_values(np.array(payoffs, float), 6, memory)
    assert (lp.shape[1], fp.shape[1]) == observation_sizes(2, 2, memory)
    rng = np.random.default_rng(0)
    pairs = [(int(rng.integers(len(lp))), int(rng.integers(len(fp)))) for _ in range(16)]
    env = IteratedMatrixGame(np.array(payoffs, float), 6, len(pairs), memory)
    obs = env.reset()
    li, fi = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    ret = np.zeros((len(pairs), 2))
    for _ in range(6):
        act = {LEADER: lp[li, obs[LEADER]], follower_role(0): fp[fi, obs[follower_role(0)]]}
        res = env.step(act)
        ret[:, 0] += res.rewards[LEADER]
        ret[:, 1] += res.rewards[follower_role(0)]
        obs = res.obs
    assert np.allclose(ret[:, 0], v_l[li, fi]) and np.allclose(ret[:, 1], v_f[li, fi])
    for i, (a, b) in enumerate(pairs):
        assert tuple(ret[i]) == play(payoffs, lp[a].tolist(), fp[b].tolist(), 6, memory)


def test_memory_sizes():
    assert observation_sizes(2, 2, "full") == (5, 5)
    assert observation_sizes(2, 3, "small") == (4, 3)
    assert observation_sizes(2, 2, "none") == (1, 1)
    with pytest.raises(ValueError, match="memory"):
        observation_sizes(2, 2, "long")
