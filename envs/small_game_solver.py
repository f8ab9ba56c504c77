"""Exact strong-Stackelberg solver for small deterministic two-agent PettingZoo games.

Ground truth for the bring-your-own-game pipeline (tests/test_byog_examples.py): with Discrete
observations for the leader (n_L values) and the follower (n_F), deterministic stationary policies
are tables, A_L^n_L of them for the leader and A_F^n_F for the follower (81 each for rock-paper-
scissors, whose agents observe the opponent's last move). Every pair is simulated on the *real*
environment (no model of it), through the same adapter the actors use, for one episode from a
fixed seed, which is exact when the game is deterministic (checked: two seeds must agree).
The follower best-responds to each leader table, ties broken in the leader's favour; the leader
takes the table with the best resulting value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from stackrl.envs.base import LEADER
from stackrl.envs.pettingzoo_adapter import PettingZooBatch
from stackrl.envs.spaces import Discrete

MAX_PAIRS = 1_000_000


@dataclass
class SmallGameSolution:
    value: float  # the leader's strong-Stackelberg value (episode sum of raw rewards)
    follower_value: float
    leader_policy: tuple[int, ...]  # action per leader observation
    follower_policy: tuple[int, ...]  # the follower's (leader-favouring) best response
    leader_values: np.ndarray  # [N_L, N_F] float64 leader return of every pair of tables
    follower_values: np.ndarray  # [N_L, N_F] float64 follower return


def policy_tables(num_obs: int, num_actions: int) -> np.ndarray:
    """[A^n, n] int64: every deterministic policy, one action per observation (lexicographic)."""
    return np.array(list(itertools.product(range(num_actions), repeat=num_obs)), np.int64)


def episode_returns(
    env: PettingZooBatch, leader_tables: np.ndarray, follower_tables: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns of one episode per game, game i playing (leader_tables[i], follower_tables[i]).

    Args:
        env: a two-role PettingZooBatch with B = len(leader_tables) games.
        leader_tables, follower_tables: [B, n_L], [B, n_F] int64.

    Returns:
        leader, follower returns [B] float64.
    """
    b = env.num_games
    obs = env.reset(seed=seed)
    returns = {r: np.zeros(b) for r in env.roles}
    live = np.ones(b, bool)
    rows = np.arange(b)
    for _ in range(env.max_episode_steps):
        actions = {
            LEADER: leader_tables[rows, obs[LEADER]],
            env.roles[1]: follower_tables[rows, obs[env.roles[1]]],
        }
        res = env.step(actions, live)
        for r in env.roles:
            returns[r] += res.rewards[r]
        live &= ~res.dones
        obs = res.obs
        if not live.any():
            break
    if live.any():
        raise ValueError("an episode outlived max_episode_steps")
    return returns[LEADER], returns[env.roles[1]]


def solve_small_game(
    make_env: Callable[[int], PettingZooBatch], max_pairs: int = MAX_PAIRS, seed: int = 0
) -> SmallGameSolution:
    """Strong Stackelberg equilibrium over deterministic stationary policies, by simulation.

    Args:
        make_env: num_games -> a two-role `PettingZooBatch` (Discrete observations for both roles).
        max_pairs: refuse games with more (leader table, follower table) pairs than this.
        seed: the episode seed; the result is checked against seed + 1 (determinism).
    """
    probe = make_env(1)
    try:
        if len(probe.roles) != 2:
            raise ValueError(f"the small-game solver handles one leader and one follower, got {probe.roles}")
        leader_space, follower_space = (probe.observation_spaces[r] for r in probe.roles)
        if not (isinstance(leader_space, Discrete) and isinstance(follower_space, Discrete)):
            raise ValueError("the small-game solver needs Discrete observations for both roles")
        lt = policy_tables(leader_space.n, probe.action_spaces[LEADER].n)
        ft = policy_tables(follower_space.n, probe.action_spaces[probe.roles[1]].n)
    finally:
        probe.close()
    if len(lt) * len(ft) > max_pairs:
        raise ValueError(f"{len(lt)} x {len(ft)} policy pairs exceed max_pairs={max_pairs}")
    env = make_env(len(ft))  # one batch plays every follower table against one leader table
    try:
        lv = np.zeros((len(lt), len(ft)))
        fv = np.zeros((len(lt), len(ft)))
        for i, table in enumerate(lt):
            leader = np.broadcast_to(table, (len(ft), len(table)))
            lv[i], fv[i] = episode_returns(env, leader, ft, seed)
        # Determinism check on a handful of leaders with another seed.
        for i in np.linspace(0, len(lt) - 1, 3).astype(int):
            leader = np.broadcast_to(lt[i], (len(ft), lt.shape[1]))
            l2, f2 = episode_returns(env, leader, ft, seed + 1)
            if not (np.allclose(l2, lv[i]) and np.allclose(f2, fv[i])):
                raise ValueError("the game is not deterministic: returns depend on the seed")
    finally:
        env.close()
    best_f = fv.max(axis=1, keepdims=True)
    induced = np.where(np.isclose(fv, best_f, atol=1e-9), lv, -np.inf)  # strong tie-breaking
    response = induced.argmax(axis=1)  # [N_L]
    values = induced[np.arange(len(lt)), response]
    i = int(values.argmax())
    j = int(response[i])
    return SmallGameSolution(
        float(values[i]), float(fv[i, j]), tuple(lt[i].tolist()), tuple(ft[j].tolist()), lv, fv
    )
