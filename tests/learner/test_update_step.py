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


def poisoned_batch(cfg, env, role: str, logp: float) -> dict[str, np.ndarray]:
    """A follower batch whose first step has behaviour log-prob `logp` and a large negative reward
    (a negative advantage: the PPO surrogate then takes the unclipped ratio)."""
    from stackrl.learner.servicer import expected_specs

    spec = expected_specs(env_spec(env), cfg)[role]
    arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in spec.fields().items()}
    arrays["valid"][:] = True
    arrays["logp"][:] = np.log(0.5)
    arrays["logp"][0, 0] = logp
    arrays["rewards"][0, 0] = -1000.0
    return arrays


def test_an_in_range_poison_log_prob_never_makes_the_weights_nan():
    """Issue 13, defect 3: one behaviour log-prob of -100 passes the value checks (bound -1e4), and
    exp(logp_new - logp_old) overflowed float32: every follower weight went NaN under ppo_clip > 0.
    The log-ratio is clamped, so the update stays finite."""
    cfg, env, step = setup(ppo_clip=0.2, epochs=2)
    step.step("follower_0", poisoned_batch(cfg, env, "follower_0", -100.0), 1.0, Metrics(None), 0)
    for p in step.nets["follower_0"].parameters():
        assert torch.isfinite(p).all()
    assert step.updates["follower_0"] == 1


def test_a_non_finite_loss_skips_the_update_and_counts_it():
    """Whatever slips past the checks and the clamp (here: NaN rewards), the weights, the Adam state
    and the version stay as they were, and the skip is counted."""
    cfg, env, step = setup(ppo_clip=0.2)
    before = {k: v.clone() for k, v in step.nets["follower_0"].state_dict().items()}
    version = step.versions["follower_0"]
    batch = poisoned_batch(cfg, env, "follower_0", -1.0)
    batch["rewards"][1, 1] = np.nan
    step.step("follower_0", batch, 1.0, Metrics(None), 0)
    after = step.nets["follower_0"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert step.skipped["follower_0"] == 1 and step.versions["follower_0"] == version
    assert step.updates["follower_0"] == 0


def _save_run(tmp_path, step: UpdateStep):
    from stackrl.learner.checkpoint import save_checkpoint

    run = tmp_path / "pretrained"
    run.mkdir()
    save_checkpoint(
        run / "checkpoint.pt", {"format": "stackrl-checkpoint-v1", "nets": step.state_dict()["nets"]}
    )
    return run


def test_followers_start_from_another_runs_checkpoint_and_the_leader_stays_fresh(tmp_path):
    cfg, env, trained = setup()
    with torch.no_grad():
        for p in trained.nets["follower_0"].parameters():
            p.add_(1.0)
    run = _save_run(tmp_path, trained)
    fresh = UpdateStep(cfg, env_spec(env), torch.device("cpu"))
    leader_before = {k: v.clone() for k, v in fresh.nets[LEADER].state_dict().items()}
    assert fresh.load_followers(run) == ["follower_0"]
    for k, v in trained.nets["follower_0"].state_dict().items():
        assert torch.equal(v, fresh.nets["follower_0"].state_dict()[k])
    for k, v in fresh.nets[LEADER].state_dict().items():
        assert torch.equal(v, leader_before[k])


def test_followers_from_a_run_of_another_model_is_refused_naming_the_tensor(tmp_path):
    import pytest
    from stackrl.learner.checkpoint import CheckpointError

    other_cfg = ExperimentConfig.from_dict(
        {"env": {"name": "chicken", "num_games": 4}, "model": {"hidden": 16}}
    )
    other_env = make_stackelberg_env(other_cfg.env)
    run = _save_run(tmp_path, UpdateStep(other_cfg, env_spec(other_env), torch.device("cpu")))
    _, _, step = setup()
    with pytest.raises(CheckpointError, match=r"follower_0\..*this run's is"):
        step.load_followers(run)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        step.load_followers(tmp_path / "missing")


def test_a_leader_batch_without_decisions_is_no_update_only_in_episodes_mode():
    cfg, env, step = setup()
    empty = {"valid": np.zeros((3, 2), bool)}
    assert step.has_data(LEADER, empty)  # steps mode: the leader's value trains on every step
    assert not step.has_data("follower_0", empty)
    episodes = ExperimentConfig.from_dict(
        {"env": {"name": "chicken", "num_games": 4}, "actor": {"leader_trajectories": "episodes"}}
    )
    step2 = UpdateStep(episodes, env_spec(env), torch.device("cpu"))
    assert not step2.has_data(LEADER, empty) and not step2.value_on_all_steps(LEADER)
    assert step2.has_data(LEADER, {"valid": np.eye(2, dtype=bool)})
