"""The one interface between actors and the learner, and its in-process implementation.

Actors push one unroll's trajectories and poll for the newest `Broadcast` (versioned weights plus
the schedule's instructions); the learner takes trajectories and publishes broadcasts. The gRPC
transport implements the same two sides across processes; unit tests and `--serial` runs use the
in-memory queue below (Sample Factory's serial mode).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from stackrl.trajectory import Trajectory


@dataclass
class Broadcast:
    """Everything an actor needs between two unrolls: weights per role and the schedule's phase.

    `phase_id` increases whenever the leader source or the roles to send change; an actor that sees
    a new phase_id restarts its games so that each trajectory lies wholly inside one phase.
    """

    phase_id: int
    phase_kind: str  # pretrain | leader | alternate | inner_outer
    leader_source: str  # policy | random | table
    send_roles: tuple[str, ...]  # roles whose trajectories the learner wants
    follower_context: bool = True  # False: followers see a constant context (inner-outer baseline)
    leader_table: np.ndarray | None = None  # [K] answers when leader_source == "table"
    versions: dict[str, int] = field(default_factory=dict)
    weights: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # role -> state dict
    done: bool = False  # the run is over: actors stop


class ActorEndpoint(Protocol):
    """The actor's side of the transport."""

    def push(self, trajectories: list[Trajectory]) -> None:
        """Send one unroll's trajectories; blocks while the learner's queue is full (back-pressure)."""
        ...

    def poll(self) -> Broadcast | None:
        """The newest broadcast if it is newer than the last one returned, else None."""
        ...

    def close(self) -> None: ...


class InProcessTransport:
    """Both sides in one process: a bounded queue of unrolls and the latest broadcast."""

    def __init__(self, queue_size: int = 16):
        self._queue: queue.Queue[list[Trajectory]] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._broadcast: Broadcast | None = None
        self._serial = 0

    # learner side
    def publish(self, broadcast: Broadcast) -> None:
        with self._lock:
            self._broadcast = broadcast
            self._serial += 1

    def get(self, timeout: float | None = None) -> list[Trajectory] | None:
        try:
            return self._queue.get(timeout=timeout) if timeout else self._queue.get_nowait()
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._queue.qsize()

    def actor(self) -> _InProcessActorEndpoint:
        return _InProcessActorEndpoint(self)


class _InProcessActorEndpoint:
    def __init__(self, transport: InProcessTransport):
        self._t = transport
        self._seen = 0

    def push(self, trajectories: list[Trajectory]) -> None:
        self._t._queue.put(trajectories)

    def poll(self) -> Broadcast | None:
        with self._t._lock:
            if self._t._serial == self._seen:
                return None
            self._seen = self._t._serial
            return self._t._broadcast

    def close(self) -> None:
        pass
