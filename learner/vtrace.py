"""V-trace off-policy value targets and policy-gradient advantages (Espeholt et al., IMPALA, 2018).

A pure function of time-major tensors: no config, no logging. Actors act with weights that lag the
learner's; V-trace corrects for that lag with truncated importance weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class VTraceReturns(NamedTuple):
    vs: torch.Tensor  # [T, B] value targets v_s
    pg_advantages: torch.Tensor  # [T, B] rho_s * (r_s + gamma_s * v_{s+1} - V(x_s))


@torch.no_grad()
def vtrace(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """Compute V-trace targets (IMPALA eq. 1) and advantages.

    Args:
      log_rhos: [T, B, ...] float, log(pi(a_s|x_s) / mu(a_s|x_s)) of target over behaviour policy.
      discounts: [T, B, ...] float, gamma_s; 0 where the episode ended after step s.
      rewards: [T, B, ...] float, r_s.
      values: [T, B, ...] float, V(x_s) under the current value function.
      bootstrap_value: [B, ...] float, V(x_T).
      clip_rho_threshold: rho-bar; None disables clipping.
      clip_c_threshold: c-bar (trace cutting); None disables clipping.
      clip_pg_rho_threshold: clipping of rho in the policy-gradient advantage; None disables it.

    Returns:
      VTraceReturns(vs [T, B, ...], pg_advantages [T, B, ...]).
    """
    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos.clamp(max=clip_rho_threshold) if clip_rho_threshold is not None else rhos
    cs = rhos.clamp(max=clip_c_threshold) if clip_c_threshold is not None else rhos
    values_t_plus_1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = clipped_rhos * (rewards + discounts * values_t_plus_1 - values)

    # v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1})), computed backwards from T-1.
    acc = torch.zeros_like(bootstrap_value)
    vs_minus_v = []
    for t in range(log_rhos.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        vs_minus_v.append(acc)
    vs = torch.stack(vs_minus_v[::-1]) + values

    vs_t_plus_1 = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = rhos.clamp(max=clip_pg_rho_threshold) if clip_pg_rho_threshold is not None else rhos
    pg_advantages = pg_rhos * (rewards + discounts * vs_t_plus_1 - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)
