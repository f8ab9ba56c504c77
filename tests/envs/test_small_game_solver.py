"""The exact solver for small PettingZoo games (envs/small_game_solver.py), cross-checked against the
matrix-game solver (envs/solver.py) on iterated bimatrix games written as PettingZoo environments,
and its refusals: too many policy pairs, a third agent, a game that depends on the seed."""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from gymnasium import spaces as gs  # noqa: E402
from pettingzoo.utils.env import ParallelEnv  # noqa: E402
from stackrl.envs.matrix_games import GAMES  # noqa: E402
from stackrl.envs.pettingzoo_adapter import PettingZooBatch  # noqa: E402
from stackrl.envs.small_game_solver import policy_tables, solve_small_game  # noqa: E402
from stackrl.envs.solver import solve  # noqa: E402


class Bimatrix(ParallelEnv):
    """An iterated bimatrix game; `memory` as in envs/matrix_games.py: 'none' (nothing observed) or
    'small' (each player sees the other's previous action, 0 at the start). `noise` adds a reward
    drawn from the reset seed, which makes the game depend on the seed."""

    metadata: dict = {}

    def __init__(self, payoffs, rounds: int, memory: str = "small", agents=("row", "col"), noise=False):
        self.p = np.asarray(payoffs, np.float64)
        self.rounds, self.memory, self.noise = rounds, memory, noise
        self.possible_agents = list(agents)
        self.n_obs = {"none": 1, "small": 1 + max(self.p.shape[:2])}[memory]

    def observation_space(self, agent):
        return gs.Discrete(self.n_obs)

    def action_space(self, agent):
        return gs.Discrete(self.p.shape[self.possible_agents.index(agent) % 2])

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        self.bonus = float(np.random.default_rng(seed).integers(0, 100)) if self.noise else 0.0
        return {a: 0 for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        a_l, a_f = actions["row"], actions["col"]
        self.t += 1
        r = {"row": self.p[a_l, a_f, 0] + self.bonus, "col": self.p[a_l, a_f, 1]}
        r.update({a: 0.0 for a in self.agents if a not in r})
        small = self.memory == "small"
        obs = {"row": 1 + a_f if small else 0, "col": 1 + a_l if small else 0}
        obs.update({a: 0 for a in self.agents if a not in obs})
        done = self.t >= self.rounds
        return (
            obs,
            r,
            {a: done for a in self.agents},
            {a: False for a in self.agents},
            {a: {} for a in self.agents},
        )


def maker(**kw):
    def make(b: int) -> PettingZooBatch:
        return PettingZooBatch(functools.partial(Bimatrix, **kw), b, "row", max_episode_steps=100)

    return make


def test_policy_tables_are_every_table_in_lexicographic_order():
    t = policy_tables(2, 3)
    assert t.shape == (9, 2) and t.dtype == np.int64
    assert t.tolist()[:4] == [[0, 0], [0, 1], [0, 2], [1, 0]] and t.tolist()[-1] == [2, 2]


@pytest.mark.parametrize("memory", ["none", "small"])
@pytest.mark.parametrize("game", ["prisoners_dilemma", "chicken", "battle_of_the_sexes", "coordination"])
def test_agrees_with_the_matrix_solver(game, memory):
    rounds = 4
    sol = solve_small_game(maker(payoffs=GAMES[game], rounds=rounds, memory=memory))
    exact = solve(GAMES[game], rounds, memory)
    assert sol.value == exact.value
    assert sol.follower_value == exact.follower_value
    assert list(sol.leader_policy) in exact.leader_policies
    n = 1 if memory == "none" else 3
    assert sol.leader_values.shape == sol.follower_values.shape == (2**n, 2**n)


def test_ties_go_the_leaders_way():
    # The follower is indifferent (always 0); the leader's value depends on the follower's action.
    payoffs = [[[1, 0], [5, 0]], [[2, 0], [0, 0]]]
    sol = solve_small_game(maker(payoffs=payoffs, rounds=1, memory="none"))
    assert sol.value == 5.0 and sol.leader_policy == (0,) and sol.follower_policy == (1,)


def test_refuses_too_many_policy_pairs():
    with pytest.raises(ValueError, match="exceed max_pairs=10"):
        solve_small_game(maker(payoffs=GAMES["chicken"], rounds=2), max_pairs=10)


def test_refuses_a_third_agent():
    with pytest.raises(ValueError, match="one leader and one follower"):
        solve_small_game(maker(payoffs=GAMES["chicken"], rounds=2, agents=("row", "col", "extra")))


def test_refuses_a_game_that_depends_on_the_seed():
    with pytest.raises(ValueError, match="not deterministic"):
        solve_small_game(maker(payoffs=GAMES["chicken"], rounds=2, noise=True))
