"""Loss terms of learner/losses.py on hand-computable inputs: values, masks and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from stackrl.learner import losses

LOG2 = math.log(2.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_dual_clip_gives_no_gradient_to_a_huge_ratio_with_a_negative_advantage():
    """Issue 13: a hostile in-range behaviour log-prob (-9999) makes pi/mu huge; plain PPO then keeps
    ratio * advantage for a negative advantage and every such step is a maximal gradient. Dual clip
    bounds it at DUAL_CLIP * advantage (no gradient), while an ordinary ratio still learns."""
    import torch
    from stackrl.learner import losses

    logits = torch.zeros(1, 2, 3, requires_grad=True)
    actions = torch.zeros(1, 2, dtype=torch.long)
    behaviour = torch.tensor([[-9999.0, float(torch.log(torch.tensor(1 / 3)))]])
    adv = torch.tensor([[-1.0, -1.0]])
    mask = torch.tensor([[True, False]])
    loss = losses.clipped_policy_loss(logits, actions, behaviour, adv, mask, epsilon=0.2)
    loss.backward()
    assert torch.isfinite(loss) and float(loss) == losses.DUAL_CLIP  # -(3 * -1)
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0
    logits.grad = None
    loss = losses.clipped_policy_loss(logits, actions, behaviour, adv, ~mask, epsilon=0.2)
    loss.backward()
    assert float(logits.grad.abs().sum()) > 0  # ratio 1: the ordinary PPO gradient
