"""Exact strong Stackelberg solver for iterated bimatrix games over deterministic memory-1 policies.

Enumerate every leader policy (an action per memory-1 state) and every follower policy, simulate
each pair for the episode, let the follower best-respond with ties broken in the leader's favour
(strong Stackelberg equilibrium), and report the leader's optimal value. This is the ground truth
for tests and for the optimality gap logged during training.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from stackrl.config import EnvConfig
from stackrl.envs.matrix_games import (
    GAMES,
    num_states,
    observation_sizes,
    observe,
    payoff_array,
    resolve_game,
)

MAX_PAIRS = 20_000_000


def enumerate_policies(n_actions: int, n_states: int) -> np.ndarray:
    """[n_actions**n_states, n_states] int64: every deterministic policy, lexicographic order."""
    return np.array(list(itertools.product(range(n_actions), repeat=n_states)), dtype=np.int64)


def episode_values(
    payoffs: np.ndarray, episode_length: int, memory: str = "full"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate every (leader, follower) policy pair; `memory` as in `matrix_games.MEMORIES`.

    Returns:
      leader_pols [NL, S_L], follower_pols [NF, S_F], v_leader [NL, NF], v_follower [NL, NF]:
      undiscounted sums of raw payoffs over one episode.
    """
    p = payoff_array(payoffs)
    n_l, n_f = p.shape[:2]
    s_l, s_f = observation_sizes(n_l, n_f, memory)
    if n_l**s_l * n_f**s_f > MAX_PAIRS:
        raise ValueError(
            f"game too large for the exact solver: {n_l}x{n_f} actions give {n_l**s_l} x {n_f**s_f} policy "
            f"pairs (limit {MAX_PAIRS})"
        )
    lp = enumerate_policies(n_l, s_l)
    fp = enumerate_policies(n_f, s_f)
    state_l = np.zeros((len(lp), len(fp)), np.int64)
    state_f = np.zeros_like(state_l)
    v_l = np.zeros(state_l.shape)
    v_f = np.zeros(state_l.shape)
    li = np.arange(len(lp))[:, None]
    fi = np.arange(len(fp))[None, :]
    for _ in range(episode_length):
        a_l = lp[li, state_l]  # [NL, NF]
        a_f = fp[fi, state_f]
        v_l += p[a_l, a_f, 0]
        v_f += p[a_l, a_f, 1]
        state_l, state_f = observe(a_l, a_f, n_l, memory)
    return lp, fp, v_l, v_f


@dataclass
class Solution:
    value: float
    """Leader's strong-Stackelberg value: undiscounted sum of raw payoffs over the episode."""
    leader_policies: list[list[int]]
    """Every optimal leader policy (an action per state 0..S-1)."""
    follower_response: list[int]
    """The follower's (leader-favoured) best response to the first optimal leader policy."""
    follower_value: float
    """The follower's value in that equilibrium."""

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "leader_policies": self.leader_policies,
            "follower_response": self.follower_response,
            "follower_value": self.follower_value,
        }


def strong_best_response(v_l: np.ndarray, v_f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each leader policy: (index of the leader-favoured follower best response, leader value)."""
    best_f = v_f.max(axis=1, keepdims=True)
    masked = np.where(np.isclose(v_f, best_f, rtol=0, atol=1e-9), v_l, -np.inf)
    br = masked.argmax(axis=1)
    return br, masked.max(axis=1)


def solve(payoffs: np.ndarray | list[Any], episode_length: int, memory: str = "full") -> Solution:
    lp, fp, v_l, v_f = episode_values(payoff_array(payoffs), episode_length, memory)
    br, value = strong_best_response(v_l, v_f)
    best = value.max()
    opt = np.flatnonzero(np.isclose(value, best, rtol=0, atol=1e-9))
    i = opt[0]
    return Solution(
        value=float(best),
        leader_policies=[lp[j].tolist() for j in opt],
        follower_response=fp[br[i]].tolist(),
        follower_value=float(v_f[i, br[i]]),
    )


def leader_value_of(
    payoffs: np.ndarray | list[Any], episode_length: int, leader_policy: list[int], memory: str = "full"
) -> tuple[float, float]:
    """(leader value, follower value) when the follower strongly best-responds to `leader_policy`."""
    lp, _, v_l, v_f = episode_values(payoff_array(payoffs), episode_length, memory)
    idx = int(np.flatnonzero((lp == np.asarray(leader_policy)).all(axis=1))[0])
    br, value = strong_best_response(v_l[idx : idx + 1], v_f[idx : idx + 1])
    return float(value[0]), float(v_f[idx, br[0]])


def solve_env(env: EnvConfig) -> Solution | None:
    """The exact strong-Stackelberg solution of a matrix-game config (None for other domains)."""
    if env.payoffs is None and env.name not in GAMES:
        return None
    table, length = resolve_game(env.name, env.payoffs, env.episode_length)
    return solve(table, length, env.memory)


def commitment_value(env: EnvConfig, answers: list[int]) -> float | None:
    """A matrix-game commitment's value against the exact strong best response (None elsewhere)."""
    try:
        table, length = resolve_game(env.name, env.payoffs, env.episode_length)
    except (KeyError, ValueError):
        return None
    if len(answers) != observation_sizes(table.shape[0], table.shape[1], env.memory)[0]:
        return None
    return leader_value_of(table, length, answers, env.memory)[0]


def max_tie_break_weight(payoffs: np.ndarray | list[Any], episode_length: int, memory: str = "full") -> float:
    """Largest eps such that a follower maximising r_F + eps * r_L keeps every strict preference.

    For each leader policy and follower policies j, k with V_F(j) > V_F(k) but V_L(k) > V_L(j), the
    shaped follower still prefers j iff eps < (V_F(j) - V_F(k)) / (V_L(k) - V_L(j)). Below the
    minimum of these ratios, the shaped follower's best responses are exactly the leader-favoured
    best responses of the original game (strong Stackelberg tie-breaking). Returns inf if no pair
    constrains eps.
    """
    _, _, v_l, v_f = episode_values(payoff_array(payoffs), episode_length, memory)
    dvf = v_f[:, :, None] - v_f[:, None, :]  # [NL, j, k]
    dvl = v_l[:, None, :] - v_l[:, :, None]  # V_L(k) - V_L(j)
    constrained = (dvf > 1e-9) & (dvl > 1e-9)
    if not constrained.any():
        return float("inf")
    return float((dvf[constrained] / dvl[constrained]).min())


def format_solution(name: str, sol: Solution, n_leader: int, n_follower: int, memory: str = "full") -> str:
    """A readable table of the solution for the terminal (a row per leader state; under `small`
    memory the follower's states differ from the leader's and are listed after them)."""
    if memory == "full":
        s = num_states(n_leader, n_follower)
        states = ["start"] + [f"(aL={(k - 1) % n_leader},aF={(k - 1) // n_leader})" for k in range(1, s)]
    elif memory == "small":
        states = ["start"] + [f"(other={k - 1})" for k in range(1, 1 + max(n_leader, n_follower))]
    else:
        states = ["any"]
    s_l, s_f = len(sol.leader_policies[0]), len(sol.follower_response)
    s = max(s_l, s_f)
    states = states[:s]
    w = max(len(x) for x in states)
    lines = [
        f"game: {name}",
        f"strong Stackelberg value (leader, episode sum): {sol.value:g}",
        f"follower value: {sol.follower_value:g}",
        f"optimal leader policies: {len(sol.leader_policies)}",
        "",
        f"{'state':<{w}}  leader  follower",
    ]
    for k in range(s):
        lead = str(sol.leader_policies[0][k]) if k < s_l else "-"
        follow = str(sol.follower_response[k]) if k < s_f else "-"
        lines.append(f"{states[k]:<{w}}  {lead:>6}  {follow:>8}")
    if len(sol.leader_policies) > 1:
        lines.append("")
        lines.append(
            "all optimal leader policies: " + " ".join("".join(map(str, p)) for p in sol.leader_policies)
        )
    return "\n".join(lines)
