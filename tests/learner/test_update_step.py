"""The update step: one optimizer step per call, versions and counts, annealing, restarts."""

from __future__ import annotations

import numpy as np
import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import env_spec, make_stackelberg_env
from stackrl.learner.metrics import Metrics
from stackrl.learner.update_step import UpdateStep


def setup(**learner):
    cfg = ExperimentConfig.from_dict({"env": {"name": "chicken", "num_games": 4}, "learner": learner})
    env = make_stackelberg_env(cfg.env)
    return cfg, env, UpdateStep(cfg, env_spec(env), torch.device("cpu"))


def test_weights_are_numpy_copies_of_every_role():
    _, env, step = setup()
    w = step.weights()
    assert set(w) == set(env.roles)
    name, arr = next(iter(w[LEADER].items()))
    arr += 1.0  # a copy: the network is untouched
    assert not np.allclose(step.nets[LEADER].state_dict()[name].numpy(), arr)


def test_fresh_leader_bumps_the_version_and_starts_from_the_fitted_commitment():
    cfg, env, step = setup()
    q = env.query_observations()
    before = step.versions[LEADER]
    step.fresh_leader(seed=3, query_obs=q, confidence=0.9)
    assert step.versions[LEADER] == before + 1
    logits, _ = step.nets[LEADER](torch.as_tensor(q))
    probs = torch.softmax(logits, -1).max(-1).values
    assert torch.allclose(probs, torch.full_like(probs, 0.9), atol=0.03)
    # Another seed draws another commitment (with 5 binary answers, 1/32 chance of equal tables).
    other = UpdateStep(cfg, env_spec(env), torch.device("cpu"))
    other.fresh_leader(seed=4, query_obs=q, confidence=0.9)
    a = step.nets[LEADER](torch.as_tensor(q))[0].argmax(-1)
    b = other.nets[LEADER](torch.as_tensor(q))[0].argmax(-1)
    assert not torch.equal(a, b)


def test_lr_anneal_sets_the_step_size_from_the_phase_remaining(monkeypatch):
    _, _, step = setup(lr_anneal=True, lr_leader=0.02)
    calls = []

    def fake_loss(net, tensors, lc, entropy_cost, value_on_all_steps):
        calls.append(entropy_cost)
        out = sum(p.sum() for p in net.parameters()) * 0.0
        stats = type("S", (), {"total": 0.0, "policy": 0.0, "baseline": 0.0, "entropy": 0.0, "mean_rho": 1.0})
        return out, stats

    monkeypatch.setattr("stackrl.learner.update_step.actor_critic_loss", fake_loss)
    step.step(LEADER, {}, phase_remaining=0.25, metrics=Metrics(None), log_step=0)
    assert step.optimizers[LEADER].param_groups[0]["lr"] == 0.02 * 0.25
    assert calls == [0.01 * 0.25]  # entropy_leader annealed the same way
    assert step.updates[LEADER] == 1 and step.versions[LEADER] == 2


def test_state_round_trips():
    cfg, env, step = setup()
    step.versions[LEADER] = 7
    step.updates[LEADER] = 3
    other = UpdateStep(cfg, env_spec(env), torch.device("cpu"))
    other.load_state_dict(step.state_dict())
    assert other.versions[LEADER] == 7 and other.updates[LEADER] == 3
    for k, v in step.nets[LEADER].state_dict().items():
        assert torch.equal(v, other.nets[LEADER].state_dict()[k])
