"""The V-trace actor-critic loss of learner/update.py on a real unroll: which steps carry gradient,
on-policy importance ratios, and the total as the sum of its terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stackrl.config import ActorConfig, EnvConfig, ExperimentConfig, PhaseConfig, ScheduleConfig
from stackrl.envs.base import LEADER
from stackrl.learner.learner import Learner
from stackrl.learner.update import actor_critic_loss

F0 = "follower_0"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recording(torch.nn.Module):
    """Wraps a PolicyNet and keeps its outputs so tests can read their gradients."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.logits = self.values = None

    def forward(self, obs, context=None, elapsed=None):
        logits, values = self.net(obs, context, elapsed)
        logits.retain_grad()
        values.retain_grad()
        self.logits, self.values = logits, values
        return logits, values


@pytest.fixture(scope="module")
def unroll(in_process_actor):
    """One unroll of T = 15 (one whole extended episode: 5 query + 10 play steps), every role sent."""
    cfg = ExperimentConfig(
        env=EnvConfig(name="prisoners_dilemma", num_games=6),
        actor=ActorConfig(unroll_length=15),
        schedule=ScheduleConfig(phases=[PhaseConfig("leader", 10_000, finetune_followers=True)]),
    )
    learner = Learner(cfg)
    actor, _ = in_process_actor(learner)
    trajs = {t.role: t for t in actor.unroll()}
    assert set(trajs) == {LEADER, F0}
    return cfg, learner, trajs


def loss_with_recording(learner, cfg, traj, role, value_on_all_steps):
    net = Recording(learner.nets[role])
    batch = {k: torch.as_tensor(v) for k, v in traj.arrays.items()}
    total, stats = actor_critic_loss(net, batch, cfg.learner, 0.01, value_on_all_steps)
    net.net.zero_grad()
    total.backward()
    t1, b = batch["obs"].shape[:2]
    return total, stats, net.logits.grad.view(t1, b, -1), net.values.grad.view(t1, b), batch


def test_leader_committed_play_steps_carry_no_policy_gradient(unroll):
    cfg, learner, trajs = unroll
    traj = trajs[LEADER]
    # With commit on and every memory-1 state queried, the leader decides only in the query phase.
    valid = traj.arrays["valid"]
    assert valid[:5].all() and not valid[5:].any()
    total, stats, logit_grad, value_grad, _ = loss_with_recording(learner, cfg, traj, LEADER, True)
    assert torch.isfinite(total)
    assert stats.valid_fraction == pytest.approx(5 / 15)
    assert logit_grad[:5].abs().sum() > 0  # the commitment (query answers) is what gets the gradient
    assert logit_grad[5:].abs().sum() == 0  # committed play steps and the bootstrap row: none
    # The leader's value learns on every step of its extended episode, not on the bootstrap row.
    assert (value_grad[:15].abs() > 0).float().mean() > 0.9
    assert value_grad[15].abs().sum() == 0
    assert sum(p.grad.abs().sum() for p in learner.nets[LEADER].parameters() if p.grad is not None) > 0


def test_follower_query_steps_carry_no_gradient(unroll):
    cfg, learner, trajs = unroll
    traj = trajs[F0]
    valid = traj.arrays["valid"]
    assert not valid[:5].any() and valid[5:].all()
    total, stats, logit_grad, value_grad, _ = loss_with_recording(learner, cfg, traj, F0, False)
    assert torch.isfinite(total)
    assert stats.valid_fraction == pytest.approx(10 / 15)
    assert logit_grad[:5].abs().sum() == 0 and value_grad[:5].abs().sum() == 0
    assert logit_grad[5:15].abs().sum() > 0 and value_grad[5:15].abs().sum() > 0


def test_actor_critic_loss_on_policy_has_unit_rhos(unroll):
    cfg, learner, trajs = unroll
    # The actor acted with exactly the learner's weights: target and behaviour log-probs agree.
    _, stats, *_ = loss_with_recording(learner, cfg, trajs[F0], F0, False)
    assert stats.mean_rho == pytest.approx(1.0, abs=1e-5)
    assert stats.entropy > 0


def test_actor_critic_loss_matches_its_terms(unroll):
    cfg, learner, trajs = unroll
    traj = trajs[F0]
    batch = {k: torch.as_tensor(v) for k, v in traj.arrays.items()}
    total, stats = actor_critic_loss(learner.nets[F0], batch, cfg.learner, 0.3, False)
    expected = stats.policy + cfg.learner.baseline_cost * stats.baseline - 0.3 * stats.entropy
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert np.isfinite([stats.policy, stats.baseline, stats.entropy]).all()
