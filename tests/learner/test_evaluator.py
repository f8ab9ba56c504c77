"""The evaluator: history, exact yardsticks, and the steps-to-value helpers."""

from __future__ import annotations

import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER, follower_role
from stackrl.learner.evaluation import EvalResult
from stackrl.learner.evaluator import Evaluator, steps_to_final, steps_to_value
from stackrl.learner.metrics import Metrics


class Constant(torch.nn.Module):
    def __init__(self, action: int):
        super().__init__()
        self.action = action

    def forward(self, obs, context=None):
        logits = torch.zeros(obs.shape[0], 2)
        logits[:, self.action] = 1.0
        return logits, torch.zeros(obs.shape[0])


def test_steps_to_value_counts_from_the_evaluation_after_which_it_held():
    h = [
        {"env_steps": s, "leader_value": v}
        for s, v in [(10, 1.0), (20, 2.0), (30, 1.0), (40, 2.0), (50, 2.0)]
    ]
    assert steps_to_value(h, 2.0) == 40
    assert steps_to_value(h, 3.0) is None
    assert steps_to_final(h) == 40 and steps_to_final([]) is None


def test_records_the_gap_and_the_commitment_against_the_exact_best_response():
    cfg = ExperimentConfig.from_dict({"env": {"name": "prisoners_dilemma", "num_games": 2}})
    ev = Evaluator(cfg, torch.device("cpu"))
    nets = {LEADER: Constant(1), follower_role(0): Constant(1)}  # always defect, both
    res = ev.play(nets)
    assert res.leader_value == 20.0 and res.leader_answers == [1, 1, 1, 1, 1]
    metrics = Metrics(None)
    ev.record(res, nets, env_steps=7, wall=1.0, metrics=metrics)
    assert ev.history[-1]["gap"] == 31.0 - 20.0 and metrics.latest["eval/optimality_gap"] == 11.0
    assert 0.0 <= ev.history[-1]["follower_check"] <= 1.0
    fields = ev.exact_fields(nets, res)
    # Constant defection is worth 20 against the exact best response (mutual defection, 2 x 10).
    assert fields["exact_value"] == 31.0 and fields["leader_value_vs_best_response"] == 20.0
    # Against always-defect the follower's best response is to defect too (2 x 10): the run's own
    # always-defect follower has no regret, and the fresh follower trained after the run agrees.
    check = fields["equilibrium_check"]
    assert check["leader_play_table"] == [1, 1, 1, 1, 1]
    assert check["contextual_follower_value"] == 20.0 and check["fresh_follower_value"] == 20.0
    assert check["follower_regret"] == 0.0 and check["agrees_with_best_response"]
    ev.close()


def test_the_equilibrium_check_finds_regret_when_the_follower_does_not_best_respond():
    cfg = ExperimentConfig.from_dict({"env": {"name": "prisoners_dilemma", "num_games": 2}})
    ev = Evaluator(cfg, torch.device("cpu"))
    nets = {LEADER: Constant(1), follower_role(0): Constant(0)}  # the follower cooperates with a defector
    res = ev.play(nets)
    check = ev.exact_fields(nets, res)["equilibrium_check"]
    assert check["contextual_follower_value"] == 10.0  # 1 x 10
    assert check["fresh_follower_value"] == 20.0 and check["follower_regret"] == 10.0
    ev.close()


def test_no_exact_fields_without_a_solver():
    ev_res = EvalResult(1.0, [1.0], [0], 1)
    cfg = ExperimentConfig.from_dict({"env": {"name": "prisoners_dilemma", "num_games": 1}})
    ev = Evaluator(cfg, torch.device("cpu"), enabled=False)
    assert ev.follower_check is None
    assert "follower_check" not in ev.exact_fields({}, ev_res)
    assert "equilibrium_check" not in ev.exact_fields({}, ev_res)
    ev.close()


class AnswersZeroPlaysOne(torch.nn.Module):
    """A leader that tells query steps (flagged observations s + 5) from play: it answers 0, plays 1."""

    def forward(self, obs, context=None):
        logits = torch.zeros(obs.shape[0], 2)
        logits[obs >= 5, 0] = 1.0
        logits[obs < 5, 1] = 1.0
        return logits, torch.zeros(obs.shape[0])


def test_the_equilibrium_check_trains_against_what_an_uncommitted_leader_plays():
    cfg = ExperimentConfig.from_dict(
        {"env": {"name": "prisoners_dilemma", "num_games": 2, "queries": "observed", "commit": False}}
    )
    ev = Evaluator(cfg, torch.device("cpu"))
    nets = {LEADER: AnswersZeroPlaysOne(), follower_role(0): Constant(0)}
    res = ev.play(nets)
    assert res.leader_answers == [0, 0, 0, 0, 0]
    check = ev.exact_fields(nets, res)["equilibrium_check"]
    # it answers "always cooperate" but plays "always defect": the fresh follower meets the defector
    assert check["leader_play_table"] == [1, 1, 1, 1, 1] and check["fresh_follower_value"] == 20.0
    assert check["contextual_follower_value"] == 10.0 and check["follower_regret"] == 10.0
    ev.close()
