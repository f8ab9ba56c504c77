"""learner/servicer.py: the handlers' checks, the broadcast publisher, and the rejected count the
servicer owns (continued across a resume and copied into checkpoints).

Handlers (coroutines: the learner's server is `grpc.aio`) are run directly with a stand-in for gRPC's
call context; the last test goes through real gRPC on 127.0.0.1 (tests/service_harness.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time

import grpc
import numpy as np
import pytest
from service_harness import env_spec_of, fake_unroll, make_cfg, raw_stub, serving, wait_until
from stackrl.learner.checkpoint import load_checkpoint
from stackrl.learner.service import LearnerServer
from stackrl.learner.servicer import (
    LearnerServicer,
    Publisher,
    Unroll,
    _Ahead,
    _check_unroll,
    check_values,
    expected_specs,
)
from stackrl.protos import codec
from stackrl.protos.transport import Broadcast

PRETRAIN = Broadcast(
    phase_id=0,
    phase_kind="pretrain",
    leader_source="random",
    send_roles=("follower_0",),
    versions={"leader": 1, "follower_0": 1},
)


class Aborted(Exception):
    pass


class FakeContext:
    """What the handlers use of `grpc.aio.ServicerContext`; `abort` raises, as gRPC's does."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def done(self) -> bool:
        return False

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted(details)


async def _stream(items):
    for item in items:
        yield item


def make_servicer(rejected: int = 0, closing: bool = False, queue_size: int = 4):
    cfg = make_cfg()
    env = env_spec_of(cfg)
    unrolls: queue.Queue[Unroll] = queue.Queue(maxsize=queue_size)
    publisher = Publisher()
    publisher.publish(PRETRAIN)
    servicer = LearnerServicer(
        env,
        expected_specs(env, cfg),
        cfg,
        unrolls,
        publisher,
        status=codec.LearnerStatus,
        closing=lambda: closing,
        rejected=rejected,
    )
    return servicer, unrolls, cfg


def push(servicer: LearnerServicer, trajs, context: FakeContext | None = None):
    msgs = [codec.encode_trajectory(t) for t in trajs]
    return asyncio.run(servicer.PushTrajectories(_stream(msgs), context or FakeContext())), msgs


# -- the handlers -----------------------------------------------------------------------------------
def test_a_valid_unroll_is_queued_whole_with_its_wire_size():
    servicer, unrolls, cfg = make_servicer(rejected=2)
    reply, msgs = push(servicer, fake_unroll(cfg))
    assert reply.accepted == 1 and not reply.done
    unroll = unrolls.get_nowait()
    assert [t.role for t in unroll.trajs] == ["follower_0"]
    assert unroll.nbytes == sum(m.ByteSize() for m in msgs)
    assert servicer.rejected == 2


def test_rejections_count_on_from_the_start_value_and_queue_nothing():
    servicer, unrolls, cfg = make_servicer(rejected=5)
    unknown = fake_unroll(cfg)
    unknown[0].role = "follower_7"
    context = FakeContext()
    with pytest.raises(Aborted, match="unknown role 'follower_7'"):
        push(servicer, unknown, context)
    assert context.aborted[0] == grpc.StatusCode.INVALID_ARGUMENT
    ahead = fake_unroll(cfg)
    ahead[0].version = 2  # the learner has only published version 1
    context = FakeContext()
    with pytest.raises(Aborted, match="ahead of the learner's 1"):
        push(servicer, ahead, context)
    assert context.aborted[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert servicer.rejected == 7 and unrolls.empty()


def test_a_closing_service_answers_done_and_queues_nothing():
    servicer, unrolls, cfg = make_servicer(closing=True)
    reply, _ = push(servicer, fake_unroll(cfg))
    assert reply.done and reply.accepted == 0 and unrolls.empty()


def test_register_hands_out_ids_and_counts_actors():
    servicer, _, cfg = make_servicer()
    request = codec.register_request("host", 1)
    ids = [
        codec.decode_register_reply(asyncio.run(servicer.Register(request, FakeContext())))[0]
        for _ in range(3)
    ]
    assert ids == [0, 1, 2] and servicer.registered == 3


# -- value checks -----------------------------------------------------------------------------------
def _set(name, value):
    def edit(t):
        t.arrays[name][...] = value

    return edit


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (_set("actions", 2), r"'actions': values outside \[0, 2\)"),
        (_set("obs", 5), r"'obs': values outside \[0, 5\)"),
        (_set("context", 2), r"'context': values outside \[-1, 2\)"),
        (_set("elapsed", 16), r"'elapsed': values outside \[0, 15\]"),
        (_set("logp", 0.5), r"'logp': log-probabilities outside"),
        (_set("rewards", 2e6), r"'rewards': \|value\| above 4\.1"),
        # Issue 13: in range for the generic 1e6 bound, but no stag_hunt step pays 1000 (max payoff 4
        # plus the tie-break share): such a value is poison and inflated Adam's moments.
        (_set("rewards", 1000.0), r"'rewards': \|value\| above 4\.1"),
        (lambda t: setattr(t, "episode_returns", np.full((1, 2), 500.0, np.float32)), r"'episode_returns'"),
        (lambda t: setattr(t, "episode_returns", np.zeros((1, 3), np.float32)), "3 columns, expected 2"),
        (lambda t: setattr(t, "env_steps", 81), r"'env_steps': 81 > T\*B = 80"),
    ],
)
def test_values_outside_the_game_are_refused_naming_the_field(tamper, match):
    cfg = make_cfg()
    env = env_spec_of(cfg)
    traj = fake_unroll(cfg)[0]
    check_values(traj, env)  # the untouched unroll passes
    tamper(traj)
    with pytest.raises(codec.CodecError, match=match):
        check_values(traj, env)


def _add_leader(trajs):
    """A leader trajectory in a pretraining unroll (env steps counted once per unroll, as actors do)."""
    leader = fake_unroll(make_cfg(), "leader")[0]
    leader.env_steps = 0
    trajs.append(leader)


@pytest.mark.parametrize(
    ("tamper", "error", "match"),
    [
        (lambda ts: setattr(ts[0], "version", 3), _Ahead, "follower_0 version 3 is ahead"),
        (lambda ts: [setattr(t, "phase_id", 1) for t in ts], _Ahead, "phase_id': 1 is ahead"),
        (lambda ts: setattr(ts[0], "role", "leader"), codec.CodecError, "the phase expects"),
        (_add_leader, codec.CodecError, "the phase expects"),
        (lambda ts: ts.clear(), codec.CodecError, "at least one trajectory"),
    ],
)
def test_an_unroll_must_fit_the_learners_phase_and_versions(tamper, error, match):
    cfg = make_cfg()
    trajs = fake_unroll(cfg)
    _check_unroll(trajs, env_spec_of(cfg), PRETRAIN)
    tamper(trajs)
    with pytest.raises(error, match=match):
        _check_unroll(trajs, env_spec_of(cfg), PRETRAIN)


# -- the publisher ----------------------------------------------------------------------------------
def _weights(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 2), value, np.float32)}


def test_publisher_encodes_a_role_once_per_version_and_wakes_waiters():
    pub = Publisher()

    def wait(seen: int, timeout: float):
        return asyncio.run(pub.wait(seen, timeout))

    assert pub.latest() is None and wait(0, timeout=0.01) is None
    first = Broadcast(0, "leader", "policy", ("leader",), versions={"leader": 1, "follower_0": 1},
                      weights={"leader": _weights(0.0), "follower_0": _weights(1.0)})  # fmt: skip
    pub.publish(first)
    serial, got, encoded = wait(0, timeout=1)
    assert serial == 1 and got is first and pub.latest() is first
    # each role as (version, its serialized weights entry), encoded once
    assert encoded["leader"] == (
        1,
        codec.weights_field(codec.encode_role_weights("leader", 1, _weights(0.0))),
    )
    second = Broadcast(0, "leader", "policy", ("leader",), versions={"leader": 2, "follower_0": 1},
                       weights={"leader": _weights(5.0), "follower_0": _weights(1.0)})  # fmt: skip
    pub.publish(second)
    serial2, _, encoded2 = wait(serial, timeout=1)
    assert serial2 == 2
    assert encoded2["follower_0"] is encoded["follower_0"]  # unchanged version: not encoded again
    assert encoded2["leader"] == (
        2,
        codec.weights_field(codec.encode_role_weights("leader", 2, _weights(5.0))),
    )
    t0 = time.monotonic()
    assert wait(serial2, timeout=0.2) is None and time.monotonic() - t0 >= 0.15
    # A publish from another thread wakes a waiter on an event loop at once; so does close().
    third = dataclasses.replace(second, versions={"leader": 3, "follower_0": 1})
    threading.Timer(0.1, pub.publish, (third,)).start()
    t0 = time.monotonic()
    serial3, got3, _ = wait(serial2, timeout=30)
    assert serial3 == 3 and got3 is third and time.monotonic() - t0 < 5
    threading.Timer(0.1, pub.close).start()
    t0 = time.monotonic()
    assert wait(serial3, timeout=30) is None and pub.closed and time.monotonic() - t0 < 5


# -- over gRPC, across a resume ---------------------------------------------------------------------
def test_a_resumed_service_counts_rejections_on_from_its_checkpoint(tmp_path):
    cfg = make_cfg()
    run_dir = tmp_path / "svc"
    first = LearnerServer(cfg, run_dir)
    first.learner.rejected = 3
    first.learner.save()
    first.close(grace_s=0)

    def status(stub):
        return codec.decode_status(stub.Status(codec.status_request()))

    with serving(cfg, run_dir=run_dir, resume=True) as server:
        channel, stub = raw_stub(server.port)
        assert server.servicer.rejected == 3 and status(stub).rejected == 3
        ahead = fake_unroll(cfg)
        ahead[0].version = 9
        with pytest.raises(grpc.RpcError) as err:
            stub.PushTrajectories(iter([codec.encode_trajectory(ahead[0])]))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert status(stub).rejected == 4
        stub.PushTrajectories(iter([codec.encode_trajectory(fake_unroll(cfg)[0])]))
        wait_until(lambda: status(stub).env_steps == 80)  # consumed by the learner loop
        channel.close()
    assert server.learner.rejected == 4  # the checkpoint's copy follows the servicer's count
    server.learner.save()
    assert load_checkpoint(run_dir / "checkpoint.pt")["counters"]["rejected"] == 4


def test_a_resumed_run_takes_its_followers_from_its_checkpoint_not_from_followers_from(tmp_path):
    """`learner.followers_from` seeds a fresh run only: on resume the run's own checkpoint holds the
    followers, so the source run may be gone (and would be wrong: the followers trained since)."""
    import shutil

    import torch

    source = LearnerServer(make_cfg(), tmp_path / "source")
    source.learner.save()
    source.close(grace_s=0)
    cfg = dataclasses.replace(
        make_cfg(), learner=dataclasses.replace(make_cfg().learner, followers_from=str(tmp_path / "source"))
    )
    run_dir = tmp_path / "run"
    first = LearnerServer(cfg, run_dir)
    with torch.no_grad():
        for p in first.learner.step.nets["follower_0"].parameters():
            p.add_(0.5)  # what the followers learned in this run
    trained = {k: v.clone() for k, v in first.learner.step.nets["follower_0"].state_dict().items()}
    first.learner.save()
    first.close(grace_s=0)
    shutil.rmtree(tmp_path / "source")
    resumed = LearnerServer(cfg, run_dir, resume=True)
    try:
        state = resumed.learner.step.nets["follower_0"].state_dict()
        assert all(torch.equal(state[k], v) for k, v in trained.items())
    finally:
        resumed.close(grace_s=0)
