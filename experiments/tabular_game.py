"""Enumerated small matrix games for the tabular studies (divergence demo, Q-learning oracle, ES leader)."""

from __future__ import annotations

from typing import Any

import numpy as np
from stackrl.envs.matrix_games import observation_sizes, resolve_game
from stackrl.envs.solver import episode_values, strong_best_response
from stackrl.learner.tabular_q import MatrixGameSpec

# Games the ablations name that are not in `matrix_games.GAMES`: the reference implementation's 2x2
# game for hidden vs observed queries (its `smipd_hiddenqueries` and `smipd_es` configs), where each
# player sees only the other's last action (`memory: small`) over a 5-step episode.
EXTRA_GAMES: dict[str, dict[str, Any]] = {
    "hidden_queries_2x2": {
        "payoffs": [[[4, 3], [2, 4]], [[3, 1], [1, 2]]],
        "memory": "small",
        "episode_length": 5,
    },
    # The reference's one-shot battle of the sexes for `leader_reward_during_q` (its
    # `bots_dqn_tabularq_out_of_eq` config): the follower barely prefers the leader's equilibrium
    # (0.001) and miscoordination costs the leader 5, so a leader paid while the follower explores
    # is pushed away from committing to it.
    "battle_of_the_sexes_out_of_eq": {
        "payoffs": [[[2, 0.001], [-5, 0]], [[-5, 0], [1, 2]]],
        "memory": "full",
        "episode_length": 1,
    },
}


def env_fields(game: str) -> dict[str, Any]:
    """The `env` config section that plays `game` (a named game, or one of `EXTRA_GAMES`)."""
    if game in EXTRA_GAMES:
        return {"name": "matrix", **EXTRA_GAMES[game]}
    return {"name": game}


class TabularGame:
    """A small matrix game enumerated once: every deterministic policy pair's value and the strong
    best response, shared by the tabular leaders of the divergence demo, the Q-learning oracle and
    the ES leader. `game` is a named game or one of `EXTRA_GAMES`."""

    def __init__(self, game: str, episode_length: int | None = None):
        extra = EXTRA_GAMES.get(game, {})
        p, length = resolve_game(game, extra.get("payoffs"), episode_length or extra.get("episode_length"))
        self.memory: str = extra.get("memory", "full")
        self.payoffs, self.length = p, length
        self.n_l, self.n_f = p.shape[0], p.shape[1]
        self.s, self.s_f = observation_sizes(self.n_l, self.n_f, self.memory)  # leader, follower states
        self.spec = MatrixGameSpec(p, length, self.memory)
        self.lp, self.fp, self.v_l, self.v_f = episode_values(p, length, self.memory)
        self.br, self.value = strong_best_response(self.v_l, self.v_f)
        self.exact = float(self.value.max())
        self.weights = self.n_l ** np.arange(self.s - 1, -1, -1)  # lexicographic index of a table
        self.f_weights = self.n_f ** np.arange(self.s_f - 1, -1, -1)

    def index(self, tables: np.ndarray) -> np.ndarray:
        """Lexicographic index of leader tables [..., S_L] (the row of `value`, `v_l`)."""
        return tables @ self.weights

    def f_index(self, tables: np.ndarray) -> np.ndarray:
        """Lexicographic index of follower tables [..., S_F] (the column of `v_l`, `v_f`)."""
        return tables @ self.f_weights


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
