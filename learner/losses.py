"""Actor-critic loss terms, written once; leader and follower updates call them with their own inputs.

Every term takes a [T, B] `mask` of the steps that count (a role's own decisions), and averages over
those steps only, so query steps (followers) and committed play steps (leader) add nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_LOG_RATIO = 20.0
"""Bound on |log pi - log mu| wherever the ratio is exponentiated. Behaviour log-probs arrive from the
network: one in-range value of -100 made exp(log pi - log mu) overflow float32 and turned every weight
NaN (issue 13, defect 3). exp(20) is far past any clip threshold, so honest data never meets the bound."""


DUAL_CLIP = 3.0
"""c of dual-clip PPO (Ye et al., 2020, who use 3): the most a negative advantage is weighted by."""


def log_ratio(target_logp: torch.Tensor, behaviour_logp: torch.Tensor) -> torch.Tensor:
    """log(pi/mu), clamped to [-MAX_LOG_RATIO, MAX_LOG_RATIO] so that its exp stays finite."""
    return (target_logp - behaviour_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


def action_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a|x): logits [T, B, A], actions [T, B] int64 -> [T, B]."""
    return F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def policy_gradient_loss(
    logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """-E[log pi(a|x) * A]; advantages are treated as constants."""
    return -_masked_mean(action_log_probs(logits, actions) * advantages.detach(), mask)


def clipped_policy_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    behaviour_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
) -> torch.Tensor:
    """PPO-style clipped surrogate on the ratio pi/mu (Schulman et al., 2017), dual-clipped (Ye et al.,
    2020): with a negative advantage the surrogate is bounded below by DUAL_CLIP * advantage.

    Plain PPO keeps the unclipped ratio * advantage when the advantage is negative, so a huge ratio
    (a behaviour log-prob far below the current one: stale data, or a hostile actor's in-range -9999)
    gives a maximal gradient every time; the dual clip makes its gradient zero beyond DUAL_CLIP."""
    ratio = torch.exp(log_ratio(action_log_probs(logits, actions), behaviour_logp))
    adv = advantages.detach()
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv)
    surrogate = torch.where(adv < 0, torch.max(surrogate, DUAL_CLIP * adv), surrogate)
    return -_masked_mean(surrogate, mask)


def baseline_loss(values: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5 * E[(v_s - V(x_s))^2] with the targets treated as constants."""
    return 0.5 * _masked_mean((targets.detach() - values) ** 2, mask)


def entropy_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-E[H(pi(.|x))]: minimising it raises the policy's entropy."""
    logp = F.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return -_masked_mean(entropy, mask)
