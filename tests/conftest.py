"""Fixtures shared across test folders."""

from __future__ import annotations

import pytest
from stackrl.actors.actor import Actor
from stackrl.learner.learner import Learner
from stackrl.protos.transport import InProcessTransport


@pytest.fixture(scope="session")
def in_process_actor():
    """Factory: `(learner) -> (actor, transport)`, an actor on the learner's config that already
    holds the learner's first broadcast (the serial path's wiring, without its loop)."""

    def start(
        learner: Learner, actor_id: int = 0, timeout_s: float = 5.0
    ) -> tuple[Actor, InProcessTransport]:
        transport = InProcessTransport()
        actor = Actor(learner.cfg, actor_id, transport.actor())
        transport.publish(learner.broadcast())
        actor.wait_for_broadcast(timeout_s)
        return actor, transport

    return start
