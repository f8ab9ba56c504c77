"""Fixtures shared across test folders."""

from __future__ import annotations

import pytest
import torch
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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: extra intra-op threads only add contention (actors run with one thread too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
