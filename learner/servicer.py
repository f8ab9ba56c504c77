"""The gRPC handlers of the learner service, and the broadcast publisher its weight streams wait on.

Handlers run on gRPC's thread pool. They decode and validate messages (codec checks plus the role's
`TrajectorySpec`), put whole unrolls on the server's bounded queue (waiting while it is full: the
back-pressure that slows actors down), and stream broadcasts. They never touch the `Learner`, which
belongs to the server's loop thread (learner/service.py).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from stackrl.config import ExperimentConfig
from stackrl.envs.base import EnvSpec
from stackrl.learner.transport import Broadcast
from stackrl.protos import codec
from stackrl.protos import stackrl_pb2_grpc as rpc
from stackrl.trajectory import Trajectory, TrajectorySpec

if TYPE_CHECKING:
    from stackrl.learner.service import LearnerServer

log = logging.getLogger(__name__)


def expected_specs(spec: EnvSpec, cfg: ExperimentConfig) -> dict[str, TrajectorySpec]:
    """Each role's trajectory layout, built exactly as `Actor.storage_specs` is."""
    return {
        role: TrajectorySpec(
            unroll_length=cfg.actor.unroll_length,
            num_games=cfg.env.num_games,
            obs_shape=tuple(spec.observation_spaces[role].shape),
            obs_dtype=spec.observation_spaces[role].dtype,
            context_size=spec.context_size(role),
        )
        for role in spec.roles
    }


@dataclass
class Unroll:
    """One actor's unroll as queued for the learner: its trajectories and their wire size."""

    trajs: list[Trajectory]
    nbytes: int


class Publisher:
    """The newest broadcast with its role weights encoded once, and a condition streams wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._serial = 0
        self._latest: tuple[Broadcast, dict] | None = None
        self.closed = False

    def publish(self, b: Broadcast) -> None:
        old = self._latest[1] if self._latest else {}
        encoded = {
            role: old[role]
            if role in old and old[role].version == b.versions[role]
            else codec.encode_role_weights(role, b.versions[role], state)
            for role, state in b.weights.items()
        }
        with self._cond:
            self._latest = (b, encoded)
            self._serial += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> tuple[int, Broadcast, dict] | None:
        """The newest (serial, broadcast, encoded weights) if newer than `seen`, else None after `timeout`."""
        with self._cond:
            self._cond.wait_for(lambda: self._serial > seen or self.closed, timeout)
            if self._serial <= seen or self._latest is None:
                return None
            return self._serial, *self._latest

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class LearnerServicer(rpc.LearnerServicer):
    """RPC handlers (CamelCase: the generated interface); they touch only the queue, the publisher and
    counters, never the Learner."""

    def __init__(self, server: LearnerServer):
        self._s = server
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.registered = 0
        self.rejected = 0
        self.open_streams = 0

    def Register(self, request, context: grpc.ServicerContext):
        with self._lock:
            actor_id = next(self._ids)
            self.registered += 1
        log.info("actor %d registered (host %s, pid %d)", actor_id, request.hostname or "?", request.pid)
        return codec.register_reply(actor_id, self._s.actor_config)

    def PushTrajectories(self, request_iterator, context: grpc.ServicerContext):
        trajs, nbytes = [], 0
        try:
            for msg in request_iterator:
                nbytes += msg.ByteSize()
                spec = self._s.specs.get(msg.role)
                if spec is None:
                    raise codec.CodecError(f"trajectory field 'role': unknown role {msg.role!r}")
                traj = codec.decode_trajectory(msg, spec)
                traj.validate(spec)
                trajs.append(traj)
            _check_unroll(trajs)
        except ValueError as e:  # CodecError is a ValueError, as are Trajectory.validate's errors
            with self._lock:
                self.rejected += 1
            log.warning("rejected an unroll: %s", e)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        while not self._s.closing:
            try:
                self._s.queue.put(Unroll(trajs, nbytes), timeout=0.1)
                return codec.push_reply(len(trajs), done=False)
            except queue.Full:
                if not context.is_active():
                    return codec.push_reply(0, done=False)
        return codec.push_reply(0, done=True)

    def StreamWeights(self, request, context: grpc.ServicerContext) -> Iterator:
        with self._lock:
            self.open_streams += 1
        sent: dict[str, int] = {}
        seen = 0
        try:
            while context.is_active():
                got = self._s.publisher.wait(seen, timeout=0.5)
                if got is None:
                    if self._s.publisher.closed:
                        return
                    continue
                seen, b, encoded = got
                changed = [encoded[r] for r, v in b.versions.items() if sent.get(r) != v]
                yield codec.encode_broadcast(b, changed)
                sent.update(b.versions)
                if b.done:
                    return
        finally:
            with self._lock:
                self.open_streams -= 1

    def Status(self, request, context: grpc.ServicerContext):
        return codec.status_reply(self._s.status())


def _check_unroll(trajs: list[Trajectory]) -> None:
    if not trajs:
        raise codec.CodecError("an unroll needs at least one trajectory")
    roles = [t.role for t in trajs]
    if len(set(roles)) != len(roles):
        raise codec.CodecError(f"trajectory field 'role': repeated in one unroll: {roles}")
    if len({(t.actor_id, t.phase_id) for t in trajs}) != 1:
        raise codec.CodecError("trajectory fields 'actor_id' / 'phase_id' differ within one unroll")
