"""learner/admission.py over real gRPC on 127.0.0.1: stream budgets, push deadlines, idle reaping, and
a learner that keeps serving Status and real pushes while peers hold streams open (issue 13, defect 5)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from service_harness import fake_unroll, make_cfg, raw_stub, serving, wait_until
from stackrl.protos import codec


def blocked_pushes(release: threading.Event) -> Iterator[codec.TrajectoryMsg]:
    """A push whose client stream never finishes (until `release`): it holds a server thread."""
    release.wait()
    yield from ()


def status(stub, timeout: float = 3.0) -> codec.LearnerStatus:
    return codec.decode_status(stub.Status(codec.status_request(), timeout=timeout))


def test_held_streams_do_not_stall_status_or_a_real_push():
    """Issue 13, defect 5: the pool was sized from actor.num_actors (16 threads for one actor), so 15
    held weight streams plus a few idle pushes left no thread: Status timed out and the real actor
    made no progress. Budgets per kind of call keep Register, Status and pushes served."""
    cfg = make_cfg()
    release = threading.Event()
    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        held = []
        try:
            for i in range(24):
                stream = stub.StreamWeights(codec.weights_request(i), timeout=60)
                next(stream)  # the first broadcast: the stream is open on the server
                held.append(stream)
            for _ in range(12):
                held.append(stub.PushTrajectories.future(blocked_pushes(release), timeout=60))
            time.sleep(0.5)
            t0 = time.monotonic()
            status(stub)
            assert time.monotonic() - t0 < 2.0
            msgs = [codec.encode_trajectory(t) for t in fake_unroll(cfg)]
            assert stub.PushTrajectories(iter(msgs), timeout=5).accepted == 1
            wait_until(lambda: status(stub).trajectories_received >= 1, 10)
        finally:
            release.set()
            for call in held:
                call.cancel()
            channel.close()


def test_limits_answer_resource_exhausted():
    cfg = make_cfg(max_weight_streams=2, max_pushes=1)
    release = threading.Event()
    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        streams, push = [], None
        try:
            streams = [stub.StreamWeights(codec.weights_request(i), timeout=30) for i in range(2)]
            for s in streams:
                next(s)
            with pytest.raises(grpc.RpcError) as err:
                next(stub.StreamWeights(codec.weights_request(2), timeout=10))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            push = stub.PushTrajectories.future(blocked_pushes(release), timeout=30)
            wait_until(lambda: server.servicer.guard.open_counts()["push"] == 1, 10)
            msgs = [codec.encode_trajectory(t) for t in fake_unroll(cfg)]
            with pytest.raises(grpc.RpcError) as err:
                stub.PushTrajectories(iter(msgs), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert server.servicer.rejected == 0  # turned away, not an invalid unroll
        finally:
            release.set()
            if push is not None:
                push.cancel()
            for s in streams:
                s.cancel()
            channel.close()


def test_a_push_that_never_finishes_sending_is_cancelled_at_the_deadline():
    cfg = make_cfg(push_deadline_s=1.0)
    release = threading.Event()
    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        try:
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                stub.PushTrajectories(blocked_pushes(release), timeout=20)
            assert time.monotonic() - t0 < 5.0
            assert err.value.code() == grpc.StatusCode.CANCELLED
            assert "push not finished within 1 s" in err.value.details()
            wait_until(lambda: server.servicer.guard.open_counts()["push"] == 0, 5)
        finally:
            release.set()
            channel.close()


def test_an_idle_weight_stream_is_reaped_and_a_newer_one_replaces_an_older():
    cfg = make_cfg(idle_stream_s=1.0)
    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        try:
            old = stub.StreamWeights(codec.weights_request(7), timeout=30)
            next(old)
            new = stub.StreamWeights(codec.weights_request(7), timeout=30)
            next(new)
            with pytest.raises(grpc.RpcError) as err:  # the older stream of actor 7 was closed
                next(old)
            assert err.value.code() == grpc.StatusCode.CANCELLED
            assert err.value.details() == "weight stream replaced by a newer one of actor 7"
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:  # actor 7 never pushes: its stream is idle
                for _ in new:
                    pass
            assert err.value.code() == grpc.StatusCode.CANCELLED
            assert re.fullmatch(
                r"weight stream idle: actor 7 silent for \d+ s \(limit 1 s\)", err.value.details()
            )
            assert time.monotonic() - t0 < 5.0
            assert server.servicer.guard.reaped >= 1
        finally:
            channel.close()


@pytest.mark.parametrize("method", ["Register", "StreamWeights", "Status", "PushTrajectories"])
def test_bytes_that_do_not_parse_are_refused_by_every_rpc_and_the_learner_still_exits(method):
    """Issue 13, defect 2: requests failing protobuf parsing left gRPC calls unfinished, and the
    learner's close() hung in stop().wait(). They are refused by name now, and shutdown is prompt."""
    cfg = make_cfg()
    channel = None
    with serving(cfg) as server:
        channel, _ = raw_stub(server.port)
        path = f"/stackrl.Learner/{method}"
        for i in range(10):
            junk = b"\xff\xff\xff" + bytes([i])
            with pytest.raises(grpc.RpcError) as err:
                if method == "PushTrajectories":
                    channel.stream_unary(path, request_serializer=lambda b: b)(iter([junk]), timeout=5)
                elif method == "StreamWeights":
                    next(channel.unary_stream(path, request_serializer=lambda b: b)(junk, timeout=5))
                else:
                    channel.unary_unary(path, request_serializer=lambda b: b)(junk, timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        t0 = time.monotonic()
    channel.close()
    assert time.monotonic() - t0 < 10.0
