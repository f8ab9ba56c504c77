"""The in-process transport of protos/transport.py: unrolls queue up to a bound (back-pressure), and
each actor endpoint polls only the newest broadcast it has not seen yet."""

from __future__ import annotations

import threading

import numpy as np
from stackrl.protos.transport import Broadcast, InProcessTransport
from stackrl.trajectory import Trajectory


def bcast(phase_id: int, version: int = 0, done: bool = False) -> Broadcast:
    return Broadcast(
        phase_id=phase_id,
        phase_kind="pretrain",
        leader_source="policy",
        send_roles=("follower_0",),
        versions={"leader": version},
        weights={"leader": {"w": np.full(2, version, np.float32)}},
        done=done,
    )


def unroll(version: int) -> list[Trajectory]:
    return [Trajectory("follower_0", actor_id=0, version=version, phase_id=0, arrays={})]


def test_poll_returns_nothing_before_the_first_broadcast():
    t = InProcessTransport()
    assert t.actor().poll() is None


def test_poll_returns_the_newest_broadcast_once():
    t = InProcessTransport()
    a = t.actor()
    t.publish(bcast(0, version=1))
    t.publish(bcast(0, version=2))
    got = a.poll()
    assert got is not None and got.versions == {"leader": 2}  # intermediate broadcasts are skipped
    assert a.poll() is None  # nothing newer since
    t.publish(bcast(1, version=3, done=True))
    got = a.poll()
    assert got is not None and got.phase_id == 1 and got.done
    assert a.poll() is None


def test_each_actor_endpoint_tracks_what_it_has_seen():
    t = InProcessTransport()
    first, second = t.actor(), t.actor()
    t.publish(bcast(0, version=1))
    assert first.poll().versions == {"leader": 1}
    t.publish(bcast(0, version=2))
    assert second.poll().versions == {"leader": 2}  # a late endpoint gets the newest directly
    assert first.poll().versions == {"leader": 2}
    assert first.poll() is None and second.poll() is None


def test_unrolls_arrive_in_order_and_get_does_not_block_when_empty():
    t = InProcessTransport()
    a = t.actor()
    assert t.get() is None and t.get(timeout=0.01) is None
    for v in range(3):
        a.push(unroll(v))
    assert t.qsize() == 3
    assert [t.get()[0].version for _ in range(3)] == [0, 1, 2]
    assert t.get() is None


def test_a_full_queue_blocks_the_pushing_actor_until_the_learner_takes_one():
    t = InProcessTransport(queue_size=2)
    a = t.actor()
    a.push(unroll(0))
    a.push(unroll(1))
    pushed = threading.Event()
    pusher = threading.Thread(target=lambda: (a.push(unroll(2)), pushed.set()), daemon=True)
    pusher.start()
    assert not pushed.wait(0.2), "a push into a full queue returned: no back-pressure"
    assert t.qsize() == 2  # the bound holds
    assert t.get()[0].version == 0
    assert pushed.wait(5), "the blocked push did not resume after the learner took an unroll"
    pusher.join(5)
    assert [t.get()[0].version for _ in range(2)] == [1, 2]
