"""Enumerated small matrix games for the tabular studies (divergence demo, Q-learning oracle)."""

from __future__ import annotations

import numpy as np
from stackrl.envs.matrix_games import num_states, resolve_game
from stackrl.envs.solver import episode_values, strong_best_response


class TabularGame:
    """A small matrix game enumerated once: every deterministic policy pair's value and the strong
    best response, shared by the tabular leaders of the divergence demo and the Q-learning oracle."""

    def __init__(self, game: str, episode_length: int | None = None):
        p, length = resolve_game(game, None, episode_length)
        self.payoffs, self.length = p, length
        self.n_l, self.n_f = p.shape[0], p.shape[1]
        self.s = num_states(self.n_l, self.n_f)
        self.lp, self.fp, self.v_l, self.v_f = episode_values(p, length)
        self.br, self.value = strong_best_response(self.v_l, self.v_f)
        self.exact = float(self.value.max())
        self.weights = self.n_l ** np.arange(self.s - 1, -1, -1)  # lexicographic index of a table

    def index(self, tables: np.ndarray) -> np.ndarray:
        return tables @ self.weights


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
