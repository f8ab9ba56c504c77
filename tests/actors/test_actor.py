"""The actor: complete unrolls in the declared layout, overlapping unrolls, weight swaps between unrolls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stackrl.actors.actor import Actor
from stackrl.config import ActorConfig, EnvConfig, ExperimentConfig, PhaseConfig, ScheduleConfig
from stackrl.envs.base import LEADER
from stackrl.learner.learner import Learner
from stackrl.protos.transport import InProcessTransport
from stackrl.trajectory import SENTINEL_INT, TrajectorySpec

F0 = "follower_0"
B = 4
T = 7  # not a divisor of the 15-step extended episode: episodes straddle unrolls
EPISODE = 15  # 5 query steps + 10 play steps


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_cfg(phase=None, unroll_length=T):
    return ExperimentConfig(
        env=EnvConfig(name="prisoners_dilemma", num_games=B),
        actor=ActorConfig(unroll_length=unroll_length),
        schedule=ScheduleConfig(phases=[phase or PhaseConfig("leader", 10_000, finetune_followers=True)]),
    )


@pytest.fixture(scope="module")
def learner():
    return Learner(make_cfg())


def started_actor(learner, cfg=None):
    transport = InProcessTransport()
    actor = Actor(cfg or learner.cfg, 0, transport.actor())
    transport.publish(learner.broadcast())
    actor.wait_for_broadcast(1.0)
    return actor, transport


def by_role(trajs):
    return {t.role: t for t in trajs}


def poison(actor):
    """Refill the actor's storage with values it never writes, bools included, to catch unwritten slots."""
    for role, spec in actor.storage_specs.items():
        actor.storage[role] = spec.allocate()
        actor.storage[role]["valid"][:] = True
        actor.storage[role]["dones"][:] = True


def test_unroll_fills_every_slot_in_the_declared_layout(learner):
    actor, _ = started_actor(learner)
    for u in range(3):
        poison(actor)
        trajs = by_role(actor.unroll())
        assert set(trajs) == {LEADER, F0}
        for role, traj in trajs.items():
            spec = TrajectorySpec(T, B, (), "int64", 0 if role == LEADER else 5)
            assert actor.storage_specs[role] == spec
            traj.validate(spec)
            for name, (shape, dtype) in spec.fields().items():
                arr = traj.arrays[name]
                assert arr.shape == shape and arr.dtype == np.dtype(dtype), name
                if arr.dtype.kind == "f":
                    assert np.isfinite(arr).all(), f"{role}.{name} has unwritten (NaN) slots"
                elif arr.dtype.kind == "i":
                    assert (arr != SENTINEL_INT).all(), f"{role}.{name} has unwritten slots"
            # The bool fields hold the real pattern of the extended episode, not the poison.
            step = u * T + np.arange(T)
            in_query = step % EPISODE < 5
            expected_valid = in_query if role == LEADER else ~in_query  # commit: the leader only answers
            np.testing.assert_array_equal(traj.arrays["valid"], np.repeat(expected_valid[:, None], B, 1))
            expected_dones = step % EPISODE == EPISODE - 1
            np.testing.assert_array_equal(traj.arrays["dones"], np.repeat(expected_dones[:, None], B, 1))
            assert np.isin(traj.arrays["actions"], [0, 1]).all()
            assert (traj.arrays["logp"][~traj.arrays["valid"]] == 0).all()
            assert (traj.arrays["logp"][traj.arrays["valid"]] < 0).all()


def test_bootstrap_row_is_the_next_unrolls_first_row(learner):
    actor, _ = started_actor(learner)
    previous = by_role(actor.unroll())
    for _ in range(4):
        current = by_role(actor.unroll())
        for role in (LEADER, F0):
            np.testing.assert_array_equal(previous[role].arrays["obs"][T], current[role].arrays["obs"][0])
            np.testing.assert_array_equal(
                previous[role].arrays["context"][T], current[role].arrays["context"][0]
            )
        previous = current


def test_trajectories_carry_version_and_phase(learner):
    actor, _ = started_actor(learner)
    trajs = actor.unroll()
    for t in trajs:
        assert t.version == learner.versions[t.role] == actor.versions[t.role]
        assert t.phase_id == learner.broadcast().phase_id == 0
        assert t.actor_id == 0


def test_env_steps_on_exactly_one_trajectory_per_unroll(learner):
    actor, _ = started_actor(learner)
    for u in range(5):
        trajs = actor.unroll()
        steps = [t.env_steps for t in trajs]
        play = int(np.sum((u * T + np.arange(T)) % EPISODE >= 5))
        assert sum(steps) == play * B
        assert sum(s != 0 for s in steps) == (1 if play else 0)
        assert steps[1:] == [0] * (len(steps) - 1)


def test_episode_returns_are_raw_sums_of_the_episode(learner):
    actor, _ = started_actor(learner)
    trajs = [by_role(actor.unroll()) for _ in range(3)]  # 21 steps: one extended episode ends at step 14
    rewards = np.concatenate([u[LEADER].arrays["rewards"] for u in trajs])[:EPISODE]
    returns = trajs[2][LEADER].episode_returns
    assert returns.shape == (B, 2)
    np.testing.assert_allclose(returns[:, 0], rewards.sum(axis=0))  # the leader's rewards are raw
    assert ((returns >= 10) & (returns <= 40)).all()  # ten steps of payoffs in [1, 4]
    assert trajs[0][LEADER].episode_returns.shape == (0, 2)


def shifted_broadcast(learner, bump):
    """The learner's broadcast with versions raised by `bump` and every weight shifted by 0.5."""
    b = learner.broadcast()
    return dataclasses.replace(
        b,
        versions={r: v + bump for r, v in b.versions.items()},
        weights={r: {k: v + 0.5 for k, v in w.items()} for r, w in b.weights.items()},
    )


def weights_of(actor, role):
    return {k: v.clone() for k, v in actor.nets[role].state_dict().items()}


def test_apply_swaps_only_newer_weights(learner):
    actor, _ = started_actor(learner)
    old = weights_of(actor, LEADER)
    newer = shifted_broadcast(learner, bump=3)
    actor.apply(newer)
    assert actor.versions == {r: learner.versions[r] + 3 for r in (LEADER, F0)}
    for k, v in actor.nets[LEADER].state_dict().items():
        torch.testing.assert_close(v, old[k] + 0.5)
    assert all(t.version == learner.versions[t.role] + 3 for t in actor.unroll())
    # A broadcast that is not newer (same or older version) does not touch the weights.
    for bump in (3, 0):
        stale = shifted_broadcast(learner, bump=bump)
        stale.weights = {r: {k: v + 10.0 for k, v in w.items()} for r, w in stale.weights.items()}
        actor.apply(stale)
        assert actor.versions[LEADER] == learner.versions[LEADER] + 3
        for k, v in actor.nets[LEADER].state_dict().items():
            torch.testing.assert_close(v, old[k] + 0.5)


def test_weights_are_swapped_between_unrolls_never_inside_one(learner):
    actor, transport = started_actor(learner)
    actor.run(max_unrolls=1)
    first = transport.get()
    old = weights_of(actor, F0)
    v0 = dict(actor.versions)

    # A newer broadcast arrives in the middle of the next unroll.
    env_step = actor.env.step
    calls = []

    def step_and_publish(actions):
        calls.append(1)
        if len(calls) == 3:
            transport.publish(shifted_broadcast(learner, bump=1))
        return env_step(actions)

    actor.env.step = step_and_publish
    actor.run(max_unrolls=2)
    during = transport.get()
    assert len(calls) == T
    assert actor.versions == v0  # not taken inside the unroll
    assert [t.version for t in during] == [t.version for t in first] == [v0[t.role] for t in during]
    for k, v in actor.nets[F0].state_dict().items():
        torch.testing.assert_close(v, old[k])

    actor.run(max_unrolls=3)  # the next unroll starts by taking it
    after = transport.get()
    assert actor.versions == {r: v + 1 for r, v in v0.items()}
    assert [t.version for t in after] == [v0[t.role] + 1 for t in after]
    for k, v in actor.nets[F0].state_dict().items():
        torch.testing.assert_close(v, old[k] + 0.5)
    # Same phase: the games were not restarted, the unrolls still overlap by one row.
    for a, b in zip(during, after):
        np.testing.assert_array_equal(a.arrays["obs"][T], b.arrays["obs"][0])
    assert transport.get() is None


def test_new_phase_restarts_the_games_and_stamps_the_phase(learner):
    actor, _ = started_actor(learner)
    actor.unroll()
    b = dataclasses.replace(shifted_broadcast(learner, bump=1), phase_id=7)
    actor.apply(b)
    trajs = by_role(actor.unroll())
    assert all(t.phase_id == 7 for t in trajs.values())
    # Restarted: the unroll opens with the query phase at the start state.
    np.testing.assert_array_equal(trajs[LEADER].arrays["obs"][:5, 0], np.arange(5))
    assert trajs[LEADER].arrays["valid"][:5].all()


def test_pretrain_phase_sends_only_followers_with_random_leaders():
    cfg = make_cfg(PhaseConfig("pretrain", 10_000))
    learner = Learner(cfg)
    actor, _ = started_actor(learner, cfg)
    poison(actor)
    trajs = actor.unroll()
    assert [t.role for t in trajs] == [F0]
    (traj,) = trajs
    assert traj.env_steps == T * B  # no query steps
    assert traj.arrays["valid"].all()
    contexts = traj.arrays["context"]
    assert np.isin(contexts, [0, 1]).all()
    # Each game keeps one random table for the whole episode (10 steps > T).
    assert (contexts == contexts[0]).all()


# -- precision ------------------------------------------------------------------------------------
def test_bf16_acting_logs_the_probabilities_it_sampled_with_and_is_refused_where_emulated(monkeypatch):
    """actor.precision: bf16 runs the acting forward pass under autocast; the unroll's logp are fp32
    log-probabilities of the bf16 logits (what V-trace's behaviour policy must be). On a CPU without
    bf16 instructions an explicit bf16 is a ConfigError and `auto` acts in fp32."""
    from stackrl.config import ConfigError
    from stackrl.learner import models

    monkeypatch.setattr(models, "bf16_supported", lambda device: True)
    learner = Learner(make_cfg())
    cfg = dataclasses.replace(learner.cfg, actor=dataclasses.replace(learner.cfg.actor, precision="bf16"))
    actor, _ = started_actor(learner, cfg)
    assert actor.precision == "bf16"
    seen = []
    forward = actor.nets[F0].forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen.append((torch.is_autocast_enabled("cpu"), out[0].dtype))
        return out

    monkeypatch.setattr(actor.nets[F0], "forward", spy)
    traj = by_role(actor.unroll())[F0]
    assert seen and all(on and dtype == torch.bfloat16 for on, dtype in seen)
    assert traj.arrays["logp"].dtype == np.float32 and np.all(traj.arrays["logp"] <= 0)

    monkeypatch.setattr(models, "bf16_supported", lambda device: False)
    with pytest.raises(ConfigError, match="actor.precision"):
        Actor(cfg, 0, InProcessTransport().actor())
    auto = dataclasses.replace(cfg, actor=dataclasses.replace(cfg.actor, precision="auto"))
    assert Actor(auto, 0, InProcessTransport().actor()).precision == "fp32"


def test_bf16_and_fp32_acting_agree_on_an_atari_batch():
    """What bf16 changes when acting: the Nature CNN's action probabilities, within 1e-2 of fp32's
    (measured ~1e-4), so sampling is as good as unchanged."""
    from stackrl.envs.spaces import Box
    from stackrl.learner.models import PolicyNet

    torch.manual_seed(0)
    net = PolicyNet(
        Box((4, 84, 84), "uint8", 0, 255), 6, context_size=5, context_actions=5, horizon=60
    ).eval()
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    ctx = torch.randint(0, 5, (8, 5))
    with torch.no_grad():
        p32 = net(obs, ctx)[0].softmax(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits16 = net(obs, ctx)[0]
    assert logits16.dtype == torch.bfloat16
    assert float((logits16.float().softmax(-1) - p32).abs().max()) < 1e-2
