"""Loss terms on hand-computable inputs, their masks and gradients, and the actor-critic loss on a real unroll."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stackrl.config import ActorConfig, EnvConfig, ExperimentConfig, PhaseConfig, ScheduleConfig
from stackrl.envs.base import LEADER
from stackrl.learner import losses
from stackrl.learner.learner import Learner
from stackrl.learner.update import actor_critic_loss

F0 = "follower_0"
LOG2 = math.log(2.0)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks: extra intra-op threads only add contention (actors run with one thread too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_action_log_probs_picks_the_taken_action():
    logits = torch.log(torch.tensor([[[0.25, 0.75]], [[0.5, 0.5]]]))  # [T=2, B=1, A=2]
    actions = torch.tensor([[1], [0]])
    torch.testing.assert_close(
        losses.action_log_probs(logits, actions), torch.log(torch.tensor([[0.75], [0.5]]))
    )


def test_policy_gradient_loss_by_hand_and_mask():
    logits = torch.zeros(2, 1, 2, requires_grad=True)  # uniform: log pi = -log 2 everywhere
    actions = torch.tensor([[0], [1]])
    advantages = torch.tensor([[1.0], [2.0]], requires_grad=True)
    everything = torch.ones(2, 1, dtype=torch.bool)
    # -(1/2) * (-log2 * 1 + -log2 * 2) = 1.5 log 2
    assert losses.policy_gradient_loss(logits, actions, advantages, everything).item() == pytest.approx(
        1.5 * LOG2
    )
    mask = torch.tensor([[True], [False]])
    loss = losses.policy_gradient_loss(logits, actions, advantages, mask)
    assert loss.item() == pytest.approx(LOG2)  # only step 0 counts, averaged over 1 step
    loss.backward()
    # d/dlogits of -A log softmax(logits)[a] = -A (onehot(a) - pi) at the unmasked step only.
    torch.testing.assert_close(logits.grad[0, 0], torch.tensor([-0.5, 0.5]))
    torch.testing.assert_close(logits.grad[1, 0], torch.zeros(2))
    assert advantages.grad is None  # advantages are constants


def test_clipped_policy_loss_by_hand():
    # pi(a) = 0.5 at every step; behaviour probabilities set the ratios 1.5, 1.5, 0.5, 0.5.
    logits = torch.zeros(4, 1, 2, requires_grad=True)
    actions = torch.zeros(4, 1, dtype=torch.long)
    ratios = torch.tensor([[1.5], [1.5], [0.5], [0.5]])
    behaviour_logp = torch.log(0.5 / ratios)
    advantages = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    mask = torch.ones(4, 1, dtype=torch.bool)
    loss = losses.clipped_policy_loss(logits, actions, behaviour_logp, advantages, mask, epsilon=0.2)
    # min(r A, clip(r, 0.8, 1.2) A): 1.2, -1.5, 0.5, -0.8 -> mean -0.15, loss 0.15
    assert loss.item() == pytest.approx(0.15)
    loss.backward()
    # Step 0 is clipped (1.5 > 1.2 with A > 0) and step 3 too (0.5 < 0.8 with A < 0): no gradient.
    torch.testing.assert_close(logits.grad[0, 0], torch.zeros(2))
    torch.testing.assert_close(logits.grad[3, 0], torch.zeros(2))
    assert logits.grad[1].abs().sum() > 0 and logits.grad[2].abs().sum() > 0


def test_clipped_policy_loss_equals_policy_gradient_value_on_policy():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 4)
    actions = torch.randint(0, 4, (5, 3))
    behaviour = losses.action_log_probs(logits, actions)
    adv = torch.randn(5, 3)
    mask = torch.rand(5, 3) > 0.3
    # ratio = 1: the surrogate is A itself; its gradient equals the policy gradient's.
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    losses.clipped_policy_loss(a, actions, behaviour, adv, mask, 0.2).backward()
    losses.policy_gradient_loss(b, actions, adv, mask).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_baseline_loss_by_hand_and_mask():
    values = torch.tensor([[1.0], [2.0], [3.0]], requires_grad=True)
    targets = torch.zeros(3, 1, requires_grad=True)
    mask = torch.tensor([[True], [False], [True]])
    loss = losses.baseline_loss(values, targets, mask)
    assert loss.item() == pytest.approx(0.5 * (1 + 9) / 2)
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.5], [0.0], [1.5]]))  # (v - target) / 2
    assert targets.grad is None  # targets are constants


def test_entropy_loss_by_hand_and_mask():
    p = torch.tensor([0.25, 0.75])
    logits = torch.log(torch.stack([p, p])).unsqueeze(1).requires_grad_(True)  # [T=2, B=1, A=2]
    h = float(-(p * p.log()).sum())
    both = torch.ones(2, 1, dtype=torch.bool)
    assert losses.entropy_loss(logits, both).item() == pytest.approx(-h)
    uniform = torch.zeros(2, 1, 4)
    assert losses.entropy_loss(uniform, both).item() == pytest.approx(-math.log(4))
    loss = losses.entropy_loss(logits, torch.tensor([[False], [True]]))
    assert loss.item() == pytest.approx(-h)
    loss.backward()
    torch.testing.assert_close(logits.grad[0], torch.zeros(1, 2))
    # Minimising -H pushes the 0.75 action down towards uniform.
    assert logits.grad[1, 0, 1] > 0 > logits.grad[1, 0, 0]


def test_empty_mask_gives_zero_loss_and_no_gradient():
    logits = torch.randn(3, 2, 2, requires_grad=True)
    values = torch.randn(3, 2, requires_grad=True)
    none = torch.zeros(3, 2, dtype=torch.bool)
    total = (
        losses.policy_gradient_loss(logits, torch.zeros(3, 2, dtype=torch.long), torch.ones(3, 2), none)
        + losses.baseline_loss(values, torch.zeros(3, 2), none)
        + losses.entropy_loss(logits, none)
    )
    assert total.item() == 0.0
    total.backward()
    assert logits.grad.abs().sum() == 0 and values.grad.abs().sum() == 0


# -- the actor-critic loss on a real unroll ---------------------------------------------------------


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
