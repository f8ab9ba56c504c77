"""actors/grpc_client.py against a real learner service on 127.0.0.1 (tests/service_harness.py): the
weights it hands the actor, what it does with an unroll the learner refuses as ahead of it, the
actor id it stamps, and closing."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import numpy as np
import pytest
from service_harness import fake_unroll, make_cfg, serving, wait_until
from stackrl.actors.grpc_client import GrpcActorEndpoint, LearnerError


def _next_broadcast(endpoint: GrpcActorEndpoint, cond=lambda b: True):
    seen = []
    wait_until(lambda: seen.append(endpoint.poll()) or (seen[-1] is not None and cond(seen[-1])))
    return seen[-1]


def test_poll_returns_each_broadcast_once_holding_every_roles_latest_weights():
    cfg = make_cfg()
    with serving(cfg) as server:
        endpoint = GrpcActorEndpoint(server.address)
        try:
            endpoint.register()
            first = _next_broadcast(endpoint)
            assert first.versions == {"leader": 1, "follower_0": 1}
            assert set(first.weights) == {"leader", "follower_0"}
            assert endpoint.poll() is None  # nothing newer: the same broadcast is not returned twice
            # One follower update: the stream announces it, the client pulls the follower's weights
            # only and merges in the leader's it holds.
            endpoint.push(fake_unroll(cfg))
            second = _next_broadcast(endpoint, lambda b: b.versions["follower_0"] == 2)
            assert second.versions["leader"] == 1 and set(second.weights) == {"leader", "follower_0"}
            for name, value in first.weights["leader"].items():
                np.testing.assert_array_equal(second.weights["leader"][name], value)
            learner_now = server.learner.nets["follower_0"].state_dict()
            for name, value in second.weights["follower_0"].items():
                np.testing.assert_array_equal(value, learner_now[name].numpy())
        finally:
            endpoint.close()


def test_a_stale_actor_gets_only_the_newest_weights_at_its_next_unroll_boundary():
    """Issue 16: weights used to be pushed to every actor on every version. Now nothing is sent while
    the actor unrolls; at its boundary (poll) it receives one copy, of the newest version."""
    cfg = make_cfg()
    with serving(cfg) as server:
        endpoint = GrpcActorEndpoint(server.address)
        try:
            endpoint.register()
            assert _next_broadcast(endpoint).versions["follower_0"] == 1
            copies, received = server.servicer.weight_copies, endpoint.weight_bytes
            for _ in range(3):  # three unrolls pushed, three follower versions, no boundary between
                endpoint.push(fake_unroll(cfg))
            wait_until(lambda: server.publisher.latest().versions["follower_0"] == 4)
            time.sleep(0.5)  # the stream announced every version meanwhile
            assert (server.servicer.weight_copies, endpoint.weight_bytes) == (copies, received)
            b = endpoint.poll()  # the unroll boundary
            assert b is not None and b.versions == {"leader": 1, "follower_0": 4}
            learner_now = server.learner.nets["follower_0"].state_dict()
            for name, value in b.weights["follower_0"].items():
                np.testing.assert_array_equal(value, learner_now[name].numpy())
            assert server.servicer.weight_copies == copies + 1  # the follower's, once; not the leader's
            one_copy = sum(v.nbytes for v in b.weights["follower_0"].values())
            assert one_copy < endpoint.weight_bytes - received < 2 * one_copy
            assert endpoint.poll() is None
        finally:
            endpoint.close()


def test_actors_beyond_the_configured_actor_count_are_served():
    """Issue 16, elastic actors: the server's pool was sized from actor.num_actors (16 threads for
    one), so the 17th actor's weight stream and registration stalled. Limits now come from
    ServerConfig alone: 20 actors join a learner configured for one, and every one is served."""
    cfg = make_cfg()
    cfg = dataclasses.replace(cfg, actor=dataclasses.replace(cfg.actor, num_actors=1))
    with serving(cfg) as server:
        endpoints = [GrpcActorEndpoint(server.address, connect_deadline_s=10) for _ in range(20)]
        try:
            for e in endpoints:
                e.register()
            for e in endpoints:
                assert _next_broadcast(e).versions["follower_0"] >= 1
                e.push(fake_unroll(cfg))
            wait_until(lambda: endpoints[0].status().trajectories_received == 20)
            assert server.servicer.registered == 20 and server.servicer.rejected == 0
        finally:
            for e in endpoints:
                e.close()


def test_an_unroll_ahead_of_the_learner_is_dropped_and_the_actor_goes_on():
    cfg = make_cfg()
    with serving(cfg) as server:
        endpoint = GrpcActorEndpoint(server.address)
        try:
            endpoint.register()
            ahead = fake_unroll(cfg)
            ahead[0].version = 7  # e.g. weights from before the learner restarted from a checkpoint
            endpoint.push(ahead)  # FAILED_PRECONDITION: dropped, not raised
            assert endpoint.dropped_unrolls == 1
            status = endpoint.status()
            assert status.rejected == 1 and status.trajectories_received == 0
            endpoint.push(fake_unroll(cfg))
            wait_until(lambda: endpoint.status().trajectories_received == 1)
            assert endpoint.dropped_unrolls == 1
        finally:
            endpoint.close()


def test_pushes_carry_the_id_of_the_latest_registration():
    cfg = make_cfg()
    with serving(cfg) as server:
        endpoint = GrpcActorEndpoint(server.address)
        try:
            assert endpoint.register()[0] == 0
            assert endpoint.register()[0] == 1  # registering again (a restarted learner) gives a new id
            endpoint.push(fake_unroll(cfg))  # the fake trajectories say actor 0
            wait_until(lambda: server.stats.unrolls == 1)
            assert list(server.stats.per_actor) == [1]
        finally:
            endpoint.close()


def test_close_ends_the_weight_stream_thread():
    cfg = make_cfg()
    with serving(cfg, loop=False) as server:
        endpoint = GrpcActorEndpoint(server.address)
        actor_id, _ = endpoint.register()
        _next_broadcast(endpoint)
        name = f"weights-{actor_id}"
        assert any(t.name == name for t in threading.enumerate())
        endpoint.close()
        assert not any(t.name == name and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("address", ["10.1.2.3:50051", "learner.example.org:50051", "[2001:db8::1]:50051"])
def test_an_actor_sends_its_token_off_loopback_only_to_a_learner_it_can_authenticate(address):
    """Issue 13, defect 1: plaintext was the default, so the actor sent its token to whatever
    answered at the learner's address. Off loopback it needs --tls-ca, or an explicit --insecure."""
    with pytest.raises(LearnerError, match="not on loopback and no --tls-ca"):
        GrpcActorEndpoint(address, token="t" * 24)
    GrpcActorEndpoint(address, token="t" * 24, insecure=True).close()
    GrpcActorEndpoint("127.0.0.1:50051", token="t" * 24).close()


def test_a_missing_tls_ca_file_is_a_clear_error(tmp_path):
    with pytest.raises(LearnerError, match="--tls-ca: cannot read"):
        GrpcActorEndpoint("10.1.2.3:50051", tls_ca=str(tmp_path / "nope.pem"))


def test_a_push_refused_for_the_learners_budget_is_retried_until_a_slot_frees():
    """Issue 16: at hundreds of actors the push budget (server.max_pushes) is spent for a moment; the
    learner answers RESOURCE_EXHAUSTED at once, and the actor backs off and retries instead of dying."""
    import grpc
    from service_harness import raw_stub

    cfg = make_cfg(max_pushes=1)
    release = threading.Event()

    def held():
        release.wait()
        yield from ()

    with serving(cfg) as server:
        channel, stub = raw_stub(server.port)
        blocker = stub.PushTrajectories.future(held(), timeout=30)
        endpoint = GrpcActorEndpoint(server.address, connect_deadline_s=20)
        try:
            endpoint.register()
            wait_until(lambda: server.servicer.guard.open_counts()["push"] == 1)
            pusher = threading.Thread(target=endpoint.push, args=(fake_unroll(cfg),))
            pusher.start()
            wait_until(lambda: server.servicer.guard.refused >= 2)  # refused, and refused again
            assert endpoint.status().trajectories_received == 0
            release.set()
            pusher.join(20)
            assert not pusher.is_alive()
            wait_until(lambda: endpoint.status().trajectories_received == 1)
        finally:
            release.set()
            with contextlib.suppress(grpc.RpcError):
                blocker.result(timeout=5)
            endpoint.close()
            channel.close()
