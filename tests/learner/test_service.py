"""learner/service.py over real gRPC on 127.0.0.1: the failure modes of SEED RL's ops_test, and security.

Server not yet up, deadlines, large payloads, malformed trajectories, back-pressure, shutdown during
a call, the weight stream's per-role deltas, the token interceptor, TLS and the loopback rule.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from service_harness import fake_unroll, free_port, make_cfg, raw_stub, serving, wait_until
from stackrl.actors.actor import Actor
from stackrl.actors.grpc_client import GrpcActorEndpoint, LearnerError, LearnerUnavailable
from stackrl.learner.service import LearnerServer
from stackrl.protos import codec
from stackrl.protos.security import ServiceConfigError, check_bind, is_loopback
from stackrl.protos.transport import InProcessTransport

TOKEN = "t0ken-for-the-tests"  # 16+ characters: shorter tokens are refused off loopback


# -- connecting ---------------------------------------------------------------------------------
def test_client_retries_until_the_server_comes_up(caplog):
    cfg = make_cfg(port=free_port())
    endpoint = GrpcActorEndpoint(f"127.0.0.1:{cfg.server.port}", connect_deadline_s=30)
    got = {}
    caplog.set_level(logging.WARNING, logger="stackrl.actors.grpc_client")
    thread = threading.Thread(target=lambda: got.update(reply=endpoint.register()))
    thread.start()
    try:
        time.sleep(1.5)  # the client is retrying against a closed port
        assert "reply" not in got
        with serving(cfg):
            thread.join(20)
            actor_id, run_cfg = got["reply"]
            assert actor_id == 0 and run_cfg.env == cfg.env
            assert endpoint.status().actors_registered == 1
    finally:
        endpoint.close()
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries and all(f"127.0.0.1:{cfg.server.port} unavailable (Register:" in m for m in retries)


def test_connect_deadline_expiring_raises_a_clear_error():
    address = f"127.0.0.1:{free_port()}"
    endpoint = GrpcActorEndpoint(address, connect_deadline_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(
        LearnerUnavailable, match=rf"learner at {address} unreachable for 1s \(Register: UNAVAILABLE"
    ):
        endpoint.register()
    assert time.monotonic() - t0 < 10
    endpoint.close()


def test_register_hands_out_increasing_ids_and_a_config_without_secrets():
    cfg = make_cfg(token=TOKEN)
    with serving(cfg, loop=False) as server:
        endpoints = [GrpcActorEndpoint(server.address, TOKEN) for _ in range(3)]
        try:
            ids = [e.register()[0] for e in endpoints]
            assert ids == [0, 1, 2]
            _, run_cfg = endpoints[0].register()
            assert run_cfg.server.token is None and run_cfg.actor == cfg.actor
        finally:
            for e in endpoints:
                e.close()


# -- trajectories ---------------------------------------------------------------------------------
def test_actor_over_grpc_feeds_the_learner_and_gets_newer_weights():
    cfg = make_cfg()
    with serving(cfg) as server:
        endpoint = GrpcActorEndpoint(server.address)
        try:
            actor_id, run_cfg = endpoint.register()
            actor = Actor(run_cfg, actor_id, endpoint)
            assert actor.storage_specs == server.specs  # the learner expects what the actor builds
            actor.wait_for_broadcast(10)
            first = dict(actor.versions)
            actor.run(max_unrolls=4)
            wait_until(lambda: endpoint.status().versions["follower_0"] > first["follower_0"])
            actor.run(max_unrolls=8)  # takes in the newer weights between unrolls
            assert actor.versions["follower_0"] > first["follower_0"]
            assert actor.versions["leader"] == first["leader"]  # frozen in pretraining
            assert server.stats.per_actor[0]["max_version"]["follower_0"] > 1
        finally:
            endpoint.close()


def test_large_payload_within_the_limit_is_accepted_and_over_it_rejected():
    cfg = make_cfg(num_games=1100, max_message_mb=1)
    ok, big = fake_unroll(cfg), fake_unroll(cfg, num_games=2000)
    assert (
        0.5
        < codec.encode_trajectory(ok[0]).ByteSize() / 2**20
        < 1
        < codec.encode_trajectory(big[0]).ByteSize() / 2**20
    )
    with serving(cfg) as server:
        endpoint = GrpcActorEndpoint(server.address, max_message_mb=64)
        try:
            endpoint.register()
            endpoint.push(ok)
            wait_until(lambda: endpoint.status().trajectories_received == 1)

            channel, stub = raw_stub(server.port, [("grpc.max_send_message_length", 64 << 20)])
            with pytest.raises(grpc.RpcError) as err:
                stub.PushTrajectories(iter([codec.encode_trajectory(big[0])]))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            channel.close()

            small_client = GrpcActorEndpoint(server.address, max_message_mb=1)
            with pytest.raises(LearnerError, match="RESOURCE_EXHAUSTED"):
                small_client.push(big)
            small_client.close()
            status = endpoint.status()
            assert status.trajectories_received == 1 and status.rejected == 0
        finally:
            endpoint.close()


def _tampered(cfg, how):
    msg = codec.encode_trajectory(fake_unroll(cfg)[0])
    how(msg)
    return [msg]


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda c: _tampered(c, lambda m: m.actions.CopyFrom(codec.encode_tensor(np.zeros((10, 8), np.float32)))),
         "trajectory field 'actions': dtype float32, expected int64"),
        (lambda c: _tampered(c, lambda m: m.logp.CopyFrom(codec.encode_tensor(np.zeros((10, 9), np.float32)))),
         r"trajectory field 'logp': shape \(10, 9\), expected \(10, 8\)"),
        (lambda c: _tampered(c, lambda m: setattr(m.obs, "data", b"\x00" * 3)),
         "trajectory field 'obs': 3 data bytes"),
        (lambda c: _tampered(c, lambda m: setattr(m.obs, "dtype", 99)), "trajectory field 'obs': unknown dtype 99"),
        (lambda c: _tampered(c, lambda m: setattr(m, "role", "follower_7")), "unknown role 'follower_7'"),
        (lambda c: _tampered(c, lambda m: m.rewards.CopyFrom(codec.encode_tensor(np.full((10, 8), np.nan, np.float32)))),
         "trajectory field 'rewards' holds non-finite values"),
        (lambda c: [codec.encode_trajectory(fake_unroll(c)[0])] * 2, "repeated in one unroll"),
        (lambda c: [], "at least one trajectory"),
    ],
)  # fmt: skip
def test_invalid_trajectory_is_rejected_and_the_learner_keeps_working(make, reason):
    cfg = make_cfg()
    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        with pytest.raises(grpc.RpcError) as err:
            stub.PushTrajectories(iter(make(cfg)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert re.search(reason, err.value.details()), err.value.details()
        status = codec.decode_status(stub.Status(codec.status_request()))
        assert status.rejected == 1 and status.trajectories_received == 0
        reply = stub.PushTrajectories(iter([codec.encode_trajectory(fake_unroll(cfg)[0])]))
        assert reply.accepted == 1 and not reply.done
        wait_until(lambda: codec.decode_status(stub.Status(codec.status_request())).env_steps == 80)
        assert server.learner.updates["follower_0"] == 1
        channel.close()


def test_push_blocks_while_the_queue_is_full_and_resumes_when_it_drains():
    cfg = make_cfg(queue_size=1)
    with serving(cfg, loop=False) as server:  # nothing consumes the queue
        endpoint = GrpcActorEndpoint(server.address)
        try:
            endpoint.register()
            endpoint.push(fake_unroll(cfg))  # fills the queue
            blocked = threading.Thread(target=endpoint.push, args=(fake_unroll(cfg),), daemon=True)
            blocked.start()
            blocked.join(1.0)
            assert blocked.is_alive(), "push returned although the queue was full"
            assert endpoint.status().queue_depth == 1
            server.queue.get_nowait()
            blocked.join(10)
            assert not blocked.is_alive()
            assert server.queue.qsize() == 1
        finally:
            endpoint.close()


def test_shutdown_during_a_blocked_push_tells_the_actor_the_run_is_over():
    cfg = make_cfg(queue_size=1)
    with serving(cfg, loop=False) as server:
        endpoint = GrpcActorEndpoint(server.address)
        endpoint.register()
        wait_until(lambda: endpoint.poll() is not None)
        endpoint.push(fake_unroll(cfg))
        blocked = threading.Thread(target=endpoint.push, args=(fake_unroll(cfg),), daemon=True)
        blocked.start()
        time.sleep(0.5)
        closer = threading.Thread(target=server.close)
        closer.start()
        blocked.join(10)
        assert not blocked.is_alive()
        seen = []
        wait_until(lambda: seen.append(endpoint.poll()) or any(b is not None and b.done for b in seen))
        closer.join(10)
        endpoint.push(fake_unroll(cfg))  # the learner is gone and said so: no retries, no error
        endpoint.close()


# -- the weight stream ------------------------------------------------------------------------------
def test_weight_stream_announces_versions_without_weights_and_a_pull_sends_only_stale_roles():
    """Issue 16: the stream used to carry a role's weights on every version to every actor (egress
    versions x actors). It now carries no weights; PullWeights sends the newest copy of the roles whose
    version the caller does not hold, nothing for the ones it does."""
    cfg = make_cfg()
    me = 90_001  # no id the server hands out: a stray client of another test (the port may be one a
    # closed server used) streaming as actor 0 would replace this stream (one CI run saw CANCELLED)
    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        stream = stub.StreamWeights(codec.weights_request(me))
        first = next(stream)
        assert not first.weights
        assert dict(first.versions) == {"leader": 1, "follower_0": 1} and first.phase_kind == "pretrain"
        full = stub.PullWeights(codec.weights_request(me, {}))
        assert {w.role for w in full.weights} == {"leader", "follower_0"}
        for _ in range(3):  # three follower updates while this actor does not pull
            unroll = dataclasses.replace(fake_unroll(cfg)[0], actor_id=me)
            stub.PushTrajectories(iter([codec.encode_trajectory(unroll)]))
        wait_until(lambda: server.publisher.latest().versions["follower_0"] == 4)
        announced = [next(stream) for _ in range(3)]
        assert all(not m.weights for m in announced)
        copies = server.servicer.weight_copies
        pulled = stub.PullWeights(codec.weights_request(me, {"leader": 1, "follower_0": 1}))
        assert [(w.role, w.version) for w in pulled.weights] == [("follower_0", 4)]
        assert server.servicer.weight_copies == copies + 1
        current = stub.PullWeights(codec.weights_request(me, {"leader": 1, "follower_0": 4}))
        assert not current.weights and dict(current.versions) == {"leader": 1, "follower_0": 4}
        stream.cancel()
        channel.close()


# -- security -------------------------------------------------------------------------------------
def _every_rpc(stub, metadata):
    """Call each RPC once; yields (name, status code or None on success)."""
    calls = {
        "Register": lambda: stub.Register(codec.register_request("h", 1), metadata=metadata, timeout=5),
        "PushTrajectories": lambda: stub.PushTrajectories(iter([]), metadata=metadata, timeout=5),
        "StreamWeights": lambda: next(
            stub.StreamWeights(codec.weights_request(0), metadata=metadata, timeout=5)
        ),
        "Status": lambda: stub.Status(codec.status_request(), metadata=metadata, timeout=5),
    }
    for name, call in calls.items():
        try:
            call()
            yield name, None
        except grpc.RpcError as e:
            yield name, e.code()


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("x-stackrl-token", "wrong"),), (("authorization", TOKEN),)],
)
def test_missing_or_wrong_token_is_unauthenticated_on_every_rpc(metadata):
    with serving(make_cfg(), token=TOKEN) as server:
        channel, stub = raw_stub(server.port)
        results = dict(_every_rpc(stub, metadata))
        assert results == dict.fromkeys(results, grpc.StatusCode.UNAUTHENTICATED)
        assert len(results) == 4
        assert server.servicer.registered == 0 and server.queue.qsize() == 0  # no state was touched
        channel.close()


@pytest.mark.parametrize("header", ["authorization", "x-stackrl-token"])
def test_right_token_works(header):
    with serving(make_cfg(), token=TOKEN) as server:
        channel, stub = raw_stub(server.port)
        value = f"Bearer {TOKEN}" if header == "authorization" else TOKEN
        results = dict(_every_rpc(stub, ((header, value),)))
        # An empty push is invalid, but it got past the interceptor to the handler.
        assert results == {"Register": None, "PushTrajectories": grpc.StatusCode.INVALID_ARGUMENT,
                           "StreamWeights": None, "Status": None}  # fmt: skip
        channel.close()


def test_endpoint_with_wrong_token_fails_fast_with_a_clear_error():
    with serving(make_cfg(), token=TOKEN) as server:
        endpoint = GrpcActorEndpoint(server.address, "nope", connect_deadline_s=30)
        t0 = time.monotonic()
        with pytest.raises(LearnerError, match="Register to learner at .* failed: UNAUTHENTICATED"):
            endpoint.register()
        assert time.monotonic() - t0 < 5  # not retried: retrying cannot fix a wrong token
        endpoint.close()


def test_non_loopback_bind_without_token_refuses_to_start():
    for host in ("0.0.0.0", "::", "10.1.2.3", "learner.example.org"):
        cfg = make_cfg(host=host)
        with pytest.raises(ServiceConfigError, match=rf"server.host='{host}' is not a loopback address"):
            LearnerServer(cfg)  # refuses before building a learner or binding anything
        check_bind(cfg.server, TOKEN)  # with a token it would be allowed
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(make_cfg(host=host).server, None)


def test_port_in_use_is_an_error():
    with serving(make_cfg(), loop=False) as server:
        cfg = make_cfg(port=server.port)
        other = LearnerServer(cfg)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{server.port}"):
            other.start()
        other.close(grace_s=0)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_with_token(tmp_path: Path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    cfg = make_cfg(tls_cert=str(cert), tls_key=str(key))
    with serving(cfg, token=TOKEN, loop=False) as server:
        secure = GrpcActorEndpoint(server.address, TOKEN, tls_ca=str(cert))
        assert secure.register()[0] == 0
        secure.close()
        plain = GrpcActorEndpoint(server.address, TOKEN, connect_deadline_s=1.0)
        with pytest.raises(LearnerUnavailable):
            plain.register()
        plain.close()


def test_in_process_and_grpc_transports_carry_the_same_broadcast():
    cfg = make_cfg()
    with serving(cfg, loop=False) as server:
        endpoint = GrpcActorEndpoint(server.address)
        try:
            endpoint.register()
            seen = []
            wait_until(lambda: seen.append(endpoint.poll()) or seen[-1] is not None)
            over_grpc = seen[-1]
            local = InProcessTransport()
            local.publish(server.learner.broadcast())
            in_process = local.actor().poll()
            for f in (
                "phase_id",
                "phase_kind",
                "leader_source",
                "send_roles",
                "follower_context",
                "versions",
                "done",
            ):
                assert getattr(over_grpc, f) == getattr(in_process, f), f
            for role, state in in_process.weights.items():
                for k, v in state.items():
                    np.testing.assert_array_equal(over_grpc.weights[role][k], v)
        finally:
            endpoint.close()
