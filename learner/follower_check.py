"""Follower check: on what fraction of all leader answer tables the greedy contextual follower
plays an exact, leader-favoured best response (small matrix games).

The contextual follower is the leader's oracle: a leader trained against it can only be as right as
its responses. This check plays the greedy follower against every deterministic leader table at
once (one game per table) and compares both players' raw returns with the exact solver's strong best
response to that table. It only evaluates; nothing it computes feeds back into training.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from stackrl.config import EnvConfig
from stackrl.envs.factory import is_matrix_game, make_stackelberg_env
from stackrl.envs.matrix_games import observation_sizes, resolve_game
from stackrl.envs.solver import enumerate_policies, episode_values, strong_best_response
from stackrl.learner.evaluation import play_first_episodes
from stackrl.learner.models import PolicyNet

MAX_TABLES = 4096


class FollowerCheck:
    """Built once per run; `__call__(nets)` returns the fraction in [0, 1]."""

    def __init__(self, env_cfg: EnvConfig, seed: int = 0):
        payoffs, length = resolve_game(env_cfg.name, env_cfg.payoffs, env_cfg.episode_length)
        lp, _, v_l, v_f = episode_values(payoffs, length, env_cfg.memory)
        _, self.leader_target = strong_best_response(v_l, v_f)  # [N] leader value under strong BR
        self.follower_target = v_f.max(axis=1)  # [N] the follower's best value
        n_l, n_f = payoffs.shape[:2]
        # The matrix games' query set is every leader state in order, so a policy is an answer table.
        self.tables = enumerate_policies(n_l, observation_sizes(n_l, n_f, env_cfg.memory)[0])
        assert (self.tables == lp).all()
        self.env = make_stackelberg_env(dataclasses.replace(env_cfg, num_games=len(self.tables)), seed=seed)

    @staticmethod
    def applies(env_cfg: EnvConfig) -> bool:
        """Small matrix games only: every leader table is played at once."""
        if not is_matrix_game(env_cfg):
            return False
        payoffs, _ = resolve_game(env_cfg.name, env_cfg.payoffs, env_cfg.episode_length)
        n_l, n_f = payoffs.shape[:2]
        return bool(n_l ** observation_sizes(n_l, n_f, env_cfg.memory)[0] <= MAX_TABLES)

    def correct(self, nets: dict[str, PolicyNet], device: torch.device | str = "cpu") -> np.ndarray:
        """[N] bool: the greedy follower best-responds exactly (leader-favoured) to table i."""
        returns = play_first_episodes(self.env, nets, "table", self.tables, device=device)  # [N, 2]
        ok: np.ndarray = np.isclose(returns[:, 1], self.follower_target, atol=1e-6) & np.isclose(
            returns[:, 0], self.leader_target, atol=1e-6
        )
        return ok

    def __call__(self, nets: dict[str, PolicyNet], device: torch.device | str = "cpu") -> float:
        return float(self.correct(nets, device).mean())

    def close(self) -> None:
        self.env.close()
