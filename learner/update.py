"""One role's V-trace actor-critic loss on a batch of trajectories (the same code for every role)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from stackrl.config import LearnerConfig
from stackrl.learner import losses
from stackrl.learner.models import PolicyNet, precision_autocast
from stackrl.learner.vtrace import vtrace


@dataclass
class LossStats:
    total: float
    policy: float
    baseline: float
    entropy: float
    mean_rho: float
    valid_fraction: float


def actor_critic_loss(
    net: PolicyNet,
    batch: dict[str, torch.Tensor],
    cfg: LearnerConfig,
    entropy_cost: float,
    value_on_all_steps: bool,
) -> tuple[torch.Tensor, LossStats]:
    """V-trace actor-critic loss for one role.

    Args:
      net: the role's network.
      batch: trajectory arrays as tensors (see `stackrl.trajectory.Trajectory`): obs [T+1, B, ...],
        context [T+1, B, K], elapsed [T+1, B], actions/logp/rewards/dones/valid [T, B].
      cfg: learner hyperparameters.
      entropy_cost: weight of the entropy bonus for this role.
      value_on_all_steps: train the value on every step (the leader, whose extended episode is all
        steps) rather than only on the role's decisions (followers sit out query steps).
    """
    obs, context = batch["obs"], batch["context"]
    t1, b = obs.shape[:2]
    ctx = context.flatten(0, 1) if context.shape[-1] else None
    # bf16: only the network runs under autocast; everything after it (V-trace, losses) is fp32.
    with precision_autocast(obs.device.type, cfg.precision):
        logits, values = net(
            obs.flatten(0, 1), ctx, batch["elapsed"].flatten(0, 1)
        )  # [(T+1)*B, A], [(T+1)*B]
    logits = logits.float().view(t1, b, -1)
    values = values.float().view(t1, b)

    valid = batch["valid"]
    target_logp = losses.action_log_probs(logits[:-1], batch["actions"])  # [T, B]
    # Steps that are not this role's decisions have rho = c = 1: the trace passes through them.
    log_rhos = torch.where(
        valid, losses.log_ratio(target_logp.detach(), batch["logp"]), torch.zeros_like(target_logp)
    )
    not_done = (~batch["dones"]).float()
    discounts = (
        torch.where(valid, torch.full_like(not_done, cfg.discount), torch.ones_like(not_done)) * not_done
    )
    rewards = batch["rewards"] * cfg.reward_scale
    vt = vtrace(
        log_rhos,
        discounts,
        rewards,
        values[:-1].detach(),
        values[-1].detach(),
        clip_rho_threshold=cfg.clip_rho,
        clip_c_threshold=cfg.clip_c,
    )
    if cfg.ppo_clip > 0:
        pg = losses.clipped_policy_loss(
            logits[:-1], batch["actions"], batch["logp"], vt.pg_advantages, valid, cfg.ppo_clip
        )
    else:
        pg = losses.policy_gradient_loss(logits[:-1], batch["actions"], vt.pg_advantages, valid)
    value_mask = torch.ones_like(valid) if value_on_all_steps else valid
    base = losses.baseline_loss(values[:-1], vt.vs, value_mask)
    ent = losses.entropy_loss(logits[:-1], valid)
    total = pg + cfg.baseline_cost * base + entropy_cost * ent
    n_valid = valid.float().sum().clamp(min=1)
    stats = LossStats(
        total=float(total.detach()),
        policy=float(pg.detach()),
        baseline=float(base.detach()),
        entropy=float(-ent.detach()),
        mean_rho=float((log_rhos.exp() * valid).sum() / n_valid),
        valid_fraction=float(valid.float().mean()),
    )
    return total, stats
