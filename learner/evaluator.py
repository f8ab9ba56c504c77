"""The run's evaluations: deterministic evaluation on its own env, the history a result reports, and
the matrix games' exact yardsticks (optimality gap, the commitment against the exact best response,
the follower check). The exact solver only measures here; nothing it computes feeds training.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import make_stackelberg_env
from stackrl.envs.matrix_games import resolve_game
from stackrl.envs.query_phase import StackelbergEnv
from stackrl.envs.solver import commitment_value, solve_env
from stackrl.learner.equilibrium_check import equilibrium_check
from stackrl.learner.evaluation import EvalResult, evaluate
from stackrl.learner.follower_check import FollowerCheck
from stackrl.learner.metrics import Metrics
from stackrl.learner.models import PolicyNet
from stackrl.learner.tabular_q import MatrixGameSpec


class Evaluator:
    def __init__(self, cfg: ExperimentConfig, device: torch.device, enabled: bool = True):
        """`enabled=False`: no evaluations at all (a caller that evaluates the networks itself)."""
        self.cfg = cfg
        self.device = device
        self.enabled = enabled
        eval_cfg = dataclasses.replace(cfg.env, num_games=cfg.schedule.eval_games)
        self.env: StackelbergEnv = make_stackelberg_env(eval_cfg, seed=cfg.seed + 99_991)
        self.exact = solve_env(cfg.env)
        self.contextual = not any(p.kind == "inner_outer" for p in cfg.schedule.phases)
        self.follower_check = (
            FollowerCheck(cfg.env, seed=cfg.seed + 99_992)
            if enabled and self.contextual and FollowerCheck.applies(cfg.env)
            else None
        )
        self.history: list[dict[str, Any]] = []
        self.last: EvalResult | None = None

    def play(
        self, nets: dict[str, PolicyNet], source: str = "policy", table: Any = None, context: bool = True
    ) -> EvalResult:
        """One deterministic evaluation (greedy leader; followers as `schedule.eval_followers` says)."""
        sampled = self.cfg.schedule.eval_followers == "sampled"
        return evaluate(
            self.env,
            nets,
            source,
            table,
            follower_context=context,
            device=self.device,
            sample_followers=sampled,
        )

    def record(
        self, res: EvalResult, nets: dict[str, PolicyNet], env_steps: int, wall: float, metrics: Metrics
    ) -> None:
        """Add an evaluation to the history and to TensorBoard (with the exact yardsticks)."""
        self.last = res
        point: dict[str, Any] = {
            "env_steps": env_steps,
            "leader_value": res.leader_value,
            "follower_values": res.follower_values,
            "leader_answers": res.leader_answers,
            "wall_seconds": wall,
        }
        metrics.scalar("eval/leader_value", res.leader_value, env_steps)
        for role, v in zip(self.env.roles[1:], res.follower_values):
            metrics.scalar(f"eval/{role}_value", v, env_steps)
        if self.exact is not None:
            point["gap"] = self.exact.value - res.leader_value
            metrics.scalar("eval/optimality_gap", point["gap"], env_steps)
        if self.follower_check is not None:
            point["follower_check"] = self.follower_check(nets, self.device)
            metrics.scalar("eval/follower_check", point["follower_check"], env_steps)
        self.history.append(point)

    def exact_fields(self, nets: dict[str, PolicyNet], res: EvalResult) -> dict[str, Any]:
        """result.json's exact yardsticks (matrix games), empty elsewhere."""
        out: dict[str, Any] = {}
        if self.exact is not None:
            out["exact_value"] = self.exact.value
            out["gap"] = self.exact.value - res.leader_value
            # The greedy commitment against the exact strong best response: tells a leader error
            # from a follower error (a leader_value above exact_value is a follower error).
            out["leader_value_vs_best_response"] = commitment_value(self.cfg.env, res.leader_answers)
        if self.follower_check is not None:
            out["follower_check"] = self.follower_check(nets, self.device)
        if self.enabled and self.exact is not None and len(res.follower_values) == 1:
            out["equilibrium_check"] = self.equilibrium_fields(nets, res)
        return out

    @torch.no_grad()
    def play_table(self, nets: dict[str, PolicyNet], res: EvalResult) -> list[int]:
        """What the greedy leader of `res` plays per play observation (a matrix game's leader table)."""
        if self.cfg.env.commit:
            return list(res.leader_answers)  # committed: it plays its answers
        # it samples again in play: its greedy move on each (unflagged) play observation
        obs = torch.as_tensor(self.env.query_set, device=self.device)
        return [int(a) for a in nets[LEADER](obs)[0].argmax(-1).cpu().tolist()]

    def equilibrium_fields(self, nets: dict[str, PolicyNet], res: EvalResult) -> dict[str, Any]:
        """The post-training equilibrium check (learner/equilibrium_check.py): a fresh tabular follower
        trained against what the frozen greedy leader plays, next to the run's own follower."""
        play = self.play_table(nets, res)
        payoffs, length = resolve_game(self.cfg.env.name, self.cfg.env.payoffs, self.cfg.env.episode_length)
        game = MatrixGameSpec.of(payoffs, length, self.cfg.env.memory)
        return equilibrium_check(game, np.asarray(play, np.int64), res.follower_values[0], seed=self.cfg.seed)

    def close(self) -> None:
        self.env.close()
        if self.follower_check is not None:
            self.follower_check.close()


def steps_to_value(history: list[dict[str, Any]], value: float) -> int | None:
    """Env steps at the first evaluation from which the leader value stayed at `value` (None: never)."""
    first = None
    for point in history:
        if math.isclose(point["leader_value"], value, abs_tol=1e-6):
            first = int(point["env_steps"]) if first is None else first
        else:
            first = None
    return first


def steps_to_final(history: list[dict[str, Any]]) -> int | None:
    """Env steps at the first evaluation from which the leader value never changed again."""
    return steps_to_value(history, history[-1]["leader_value"]) if history else None
