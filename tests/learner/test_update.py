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


def _atari_like_batch(t: int = 4, b: int = 4, k: int = 5, actions: int = 6, seed: int = 0):
    """A follower batch shaped like the Atari pricing game's: uint8 frame stacks and a context."""
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randint(0, 256, (t + 1, b, 4, 84, 84), generator=g, dtype=torch.uint8),
        "context": torch.randint(0, 5, (t + 1, b, k), generator=g),
        "elapsed": torch.randint(0, 50, (t + 1, b), generator=g, dtype=torch.int32),
        "actions": torch.randint(0, actions, (t, b), generator=g),
        "logp": torch.full((t, b), -float(np.log(actions))),
        "rewards": torch.randn((t, b), generator=g),
        "dones": torch.zeros((t, b), dtype=torch.bool),
        "valid": torch.ones((t, b), dtype=torch.bool),
    }


@pytest.mark.skipif(
    not __import__("stackrl.learner.models", fromlist=["x"]).bf16_supported(torch.device("cpu")),
    reason="this CPU has no bf16 instructions (learner.precision=bf16 is refused there, tested below)",
)
def test_bf16_loss_and_gradients_agree_with_fp32_on_an_atari_batch():
    """bf16 autocast changes rounding, not the loss: on a fixed Atari-shaped batch the total agrees
    with fp32 within 2% and the gradient points the same way (cosine > 0.99)."""
    from stackrl.envs.spaces import Box
    from stackrl.learner.models import PolicyNet

    torch.manual_seed(0)
    net = PolicyNet(Box((4, 84, 84), "uint8", 0, 255), 6, context_size=5, context_actions=5, horizon=60)
    batch = _atari_like_batch()
    out = {}
    for precision in ("fp32", "bf16"):
        lc = ExperimentConfig().learner
        lc.precision = precision
        net.zero_grad()
        total, _ = actor_critic_loss(net, batch, lc, 0.01, value_on_all_steps=False)
        total.backward()
        grad = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        out[precision] = (float(total.detach()), grad.clone())
        assert total.dtype == torch.float32
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    assert abs(l16 - l32) <= 0.02 * abs(l32) + 1e-3
    assert float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)) > 0.99
    assert not torch.equal(g16, g32)  # the bf16 pass really ran in bf16


def test_bf16_is_refused_where_the_cpu_cannot_run_it_and_auto_falls_back_to_fp32(monkeypatch):
    from stackrl.config import ConfigError
    from stackrl.learner import models

    monkeypatch.setattr(models, "bf16_supported", lambda device: False)
    cfg = ExperimentConfig(env=EnvConfig(name="prisoners_dilemma", num_games=2))
    cfg.learner.precision = "bf16"
    with pytest.raises(ConfigError, match="learner.precision"):
        Learner(cfg)
    cfg.learner.precision = "auto"
    assert Learner(cfg).step.precision == "fp32"
    monkeypatch.setattr(models, "bf16_supported", lambda device: True)
    assert Learner(cfg).step.precision == "bf16"
