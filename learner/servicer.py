"""The gRPC handlers of the learner service, and the broadcast publisher its weight streams wait on.

Handlers are coroutines on the server's event loop (`grpc.aio`, learner/service.py): a call waiting
for data holds no thread, and a message costs no thread hand-off (issue 16: the synchronous server's
per-message Python bounded ingest). They decode and validate messages (codec checks plus the role's
`TrajectorySpec`), put whole unrolls on the server's bounded queue (waiting while it is full: the
back-pressure that slows actors down), and stream broadcasts. They never touch the `Learner`, which
belongs to the server's learner thread (learner/service.py): the servicer is built from the pieces it
serves (queue, publisher, layouts, the actors' config, a status snapshot) and knows nothing of the
server that owns them. It owns the `rejected` and `registered` counters; the server reads them.

Weights go out by pull (issue 16): a weight stream carries only the newest phase, versions and done
flag, and an actor that sees a version it lacks calls `PullWeights` at its next unroll boundary. So an
actor receives at most one weight copy per unroll, the newest, and the learner's weight egress grows
with unrolls, not with versions x actors; each role is encoded once per version (`Publisher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import NoReturn

import grpc
import grpc.aio
import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.envs.base import EnvSpec
from stackrl.learner.admission import Limits, Refused, StreamGuard
from stackrl.learner.rejection_log import RejectionLog, bounded
from stackrl.protos import codec, rpc
from stackrl.protos.transport import Broadcast
from stackrl.trajectory import Trajectory, TrajectorySpec

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
    """The newest broadcast with each role's weights serialized once per version (as a BroadcastMsg
    weights entry, `codec.weights_field`), which weight streams wait for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serial = 0
        self._latest: tuple[Broadcast, dict[str, tuple[int, bytes]]] | None = None
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.closed = False

    def publish(self, b: Broadcast) -> None:
        old = self._latest[1] if self._latest else {}
        encoded = {
            role: old[role]
            if role in old and old[role][0] == b.versions[role]
            else (
                b.versions[role],
                codec.weights_field(codec.encode_role_weights(role, b.versions[role], state)),
            )
            for role, state in b.weights.items()
        }
        with self._lock:
            self._latest = (b, encoded)
            self._serial += 1
            self._wake()

    async def wait(
        self, seen: int, timeout: float
    ) -> tuple[int, Broadcast, dict[str, tuple[int, bytes]]] | None:
        """The newest (serial, broadcast, encoded weights) if newer than `seen`, else None after
        `timeout` (or once closed). For handlers on an event loop: the wait holds no thread, and a
        publish from any thread wakes it."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            ready = self._serial > seen or self.closed
            if not ready:
                self._waiters.add(waiter)
        if not ready:
            try:
                await asyncio.wait_for(waiter[1].wait(), timeout)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    self._waiters.discard(waiter)
        with self._lock:
            if self._serial <= seen or self._latest is None:
                return None
            return self._serial, *self._latest

    def _wake(self) -> None:
        """Wake the event-loop waiters (called with the lock held, from any thread)."""
        for loop, event in self._waiters:
            with contextlib.suppress(RuntimeError):  # a loop that closed has no waiter left
                loop.call_soon_threadsafe(event.set)

    def latest(self) -> Broadcast | None:
        """The newest published broadcast (None before the first)."""
        with self._lock:
            return self._latest[0] if self._latest else None

    def newest(self) -> tuple[Broadcast, dict[str, tuple[int, bytes]]] | None:
        """The newest broadcast and its serialized role weights, role -> (version, bytes) (None before
        the first)."""
        with self._lock:
            return self._latest

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._wake()


class LearnerServicer(rpc.LearnerServicerBase):
    """RPC handlers (CamelCase: the generated interface); they touch only the queue, the publisher and
    their own counters, never the Learner."""

    def __init__(
        self,
        env: EnvSpec,
        specs: dict[str, TrajectorySpec],
        actor_config: ExperimentConfig,
        unrolls: queue.Queue[Unroll],
        publisher: Publisher,
        status: Callable[[], codec.LearnerStatus],
        closing: Callable[[], bool],
        rejected: int = 0,
        limits: Limits | None = None,
    ):
        """Args:
        env: the extended game's spec (immutable: safe to read from handler threads).
        specs: each role's trajectory layout, as the actors build it (`expected_specs`).
        actor_config: the run's config as actors receive it (no server secrets).
        unrolls: the bounded queue validated unrolls go to (full: pushes wait).
        publisher: the broadcasts weight streams send.
        status: a snapshot for the Status RPC.
        closing: True once the service shuts down (waiting pushes give up and say the run is over).
        rejected: the count of rejected unrolls to continue from (a resumed run's).
        limits: open calls per kind, push deadline and idle limit (None: from `ServerConfig`'s defaults).
        """
        self._env = env
        self._specs = specs
        self._actor_config = actor_config
        self._unrolls = unrolls
        self._publisher = publisher
        self._status = status
        self._closing = closing
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.registered = 0
        self.rejected = rejected
        self.open_streams = 0
        self.weight_copies = 0  # role weights sent by PullWeights
        self.weight_bytes = 0  # their encoded size
        server = actor_config.server
        self.guard = StreamGuard(
            limits
            or Limits(
                server.max_weight_streams, server.max_pushes, server.push_deadline_s, server.idle_stream_s
            )
        )
        self._rejections = RejectionLog(log)

    async def Register(
        self, request: codec.RegisterRequest | rpc.MalformedRequest, context: grpc.aio.ServicerContext
    ) -> codec.RegisterReply:
        if isinstance(request, rpc.MalformedRequest):
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, request.describe(), count=False)
        with self._lock:
            actor_id = next(self._ids)
            self.registered += 1
        self.guard.seen(actor_id)
        log.info(
            "actor %d registered (host %s, pid %d)",
            actor_id,
            bounded(request.hostname or "?", 80),
            request.pid,
        )
        return codec.register_reply(actor_id, self._actor_config)

    async def PushTrajectories(
        self,
        request_iterator: AsyncIterator[codec.TrajectoryMsg | rpc.MalformedRequest],
        context: grpc.aio.ServicerContext,
    ) -> codec.PushReply:
        """Receive one unroll; queue it only once the client stream completed and every message passed
        validation, so a killed actor's half-sent unroll never reaches a batch."""
        call = _Reapable()
        try:
            with self.guard.push(call.cancel) as key:
                return await self._push(request_iterator, context, key, call)
        except Refused as e:
            await self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(e), count=False)

    async def _push(
        self,
        request_iterator: AsyncIterator[codec.TrajectoryMsg | rpc.MalformedRequest],
        context: grpc.aio.ServicerContext,
        key: int,
        call: _Reapable,
    ) -> codec.PushReply:
        trajs: list[Trajectory] = []
        nbytes, received = 0, 0
        try:
            async for msg in request_iterator:
                received += 1
                if isinstance(msg, rpc.MalformedRequest):
                    raise codec.CodecError(msg.describe())
                nbytes += msg.ByteSize()
                if len(trajs) >= len(self._specs):
                    raise codec.CodecError(
                        f"an unroll holds at most {len(self._specs)} trajectories (one per role)"
                    )
                spec = self._specs.get(msg.role)
                if spec is None:
                    raise codec.CodecError(
                        f"trajectory field 'role': unknown role {bounded(repr(msg.role), 60)}"
                    )
                traj = codec.decode_trajectory(msg, spec)
                traj.validate(spec)
                check_values(traj, self._env)
                trajs.append(traj)
            self.guard.received(key)
            _check_unroll(trajs, self._env, self._publisher.latest())
        except _Ahead as e:
            await self._reject(context, grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except ValueError as e:  # CodecError is a ValueError, as are Trajectory.validate's errors
            if not received and await _call_dies(context):
                # gRPC failed the call (e.g. a message over a size limit) and ended the request
                # stream early: nothing was received, nothing to judge.
                return codec.push_reply(0, done=False)
            await self._reject(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except asyncio.CancelledError:
            if not call.reaped:  # the client went away or the server stops: gRPC ends the call
                raise
            log.info("an actor's push was not finished within the push deadline; discarded")
            await context.abort(grpc.StatusCode.CANCELLED, f"{call.reason} (server.push_deadline_s)")
        if context.done():  # cancelled after its last message: discard as well
            return codec.push_reply(0, done=False)
        self.guard.seen(trajs[0].actor_id)
        unroll = Unroll(trajs, nbytes)
        while not self._closing():  # back-pressure: the queue is full while the learner is behind
            try:
                self._unrolls.put_nowait(unroll)
                return codec.push_reply(len(trajs), done=False)
            except queue.Full:
                if context.done():
                    return codec.push_reply(0, done=False)
                await asyncio.sleep(BACKPRESSURE_POLL_S)
        return codec.push_reply(0, done=True)

    async def _reject(self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str) -> None:
        await self._refuse(context, code, reason, count=True)

    async def _refuse(
        self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, reason: str, count: bool
    ) -> NoReturn:
        """Abort the call with `code`; one bounded, rate-limited log line (the reason may quote the
        peer). `count`: an unroll was refused (the `rejected` metric); else a call was turned away."""
        if count:
            with self._lock:
                self.rejected += 1
        reason = bounded(reason, 300)
        self._rejections.warn(f"rejected {'an unroll' if count else 'a call'} ({code.name})", reason)
        await context.abort(code, reason)
        raise RuntimeError("context.abort returned")  # gRPC's abort always raises

    async def StreamWeights(
        self, request: codec.WeightsRequest | rpc.MalformedRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[codec.BroadcastMsg]:
        if isinstance(request, rpc.MalformedRequest):
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, request.describe(), count=False)
        if request.actor_id < 0:
            await self._refuse(
                context, grpc.StatusCode.INVALID_ARGUMENT, "actor_id: must be >= 0", count=False
            )
        call = _Reapable()
        try:
            with self.guard.weight_stream(call.cancel, request.actor_id):
                async for msg in self._stream(context):
                    yield msg
        except Refused as e:
            await self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(e), count=False)
        except asyncio.CancelledError:
            if not call.reaped:
                raise
            await context.abort(grpc.StatusCode.CANCELLED, call.reason)

    async def _stream(self, context: grpc.aio.ServicerContext) -> AsyncIterator[codec.BroadcastMsg]:
        with self._lock:
            self.open_streams += 1
        seen = 0
        try:
            while not context.done():
                got = await self._publisher.wait(seen, timeout=0.5)
                if got is None:
                    if self._publisher.closed:
                        return
                    continue
                seen, b, _ = got
                yield codec.encode_broadcast(b, [])  # no weights: the actor pulls what it lacks
                if b.done:
                    return
        finally:
            with self._lock:
                self.open_streams -= 1

    async def PullWeights(
        self, request: codec.WeightsRequest | rpc.MalformedRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """The newest broadcast with the weights of every role whose version the caller does not hold,
        as a serialized BroadcastMsg (rpc.py sends bytes as they are).

        A short unary call (nothing held between unrolls); a role's weights were serialized once
        when its version was published, so a pull costs one concatenation, not an encode."""
        if isinstance(request, rpc.MalformedRequest):
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, request.describe(), count=False)
        if request.actor_id < 0:
            await self._refuse(
                context, grpc.StatusCode.INVALID_ARGUMENT, "actor_id: must be >= 0", count=False
            )
        newest = self._publisher.newest()
        if newest is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no weights published yet")
        assert newest is not None  # abort raised otherwise
        b, encoded = newest
        self.guard.seen(request.actor_id)
        stale = [encoded[r][1] for r in codec.stale_roles(request.versions, b.versions) if r in encoded]
        with self._lock:
            self.weight_copies += len(stale)
            self.weight_bytes += sum(len(w) for w in stale)
        return codec.broadcast_bytes(b, stale)

    async def Status(
        self, request: codec.StatusRequest | rpc.MalformedRequest, context: grpc.aio.ServicerContext
    ) -> codec.StatusReply:
        if isinstance(request, rpc.MalformedRequest):
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT, request.describe(), count=False)
        return codec.status_reply(self._status())


BACKPRESSURE_POLL_S = 0.01
"""How often a validated push retries a full queue (it holds no thread while it waits)."""


class _Reapable:
    """The handler task of one call, which the guard's reaper thread may cancel: `cancel` is safe from
    any thread, and `reaped` tells the handler the cancellation was the guard's (it then ends the call
    with CANCELLED and the guard's `reason`), not gRPC's own (a client gone, the server stopping: the
    task just ends)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self.reaped = False
        self.reason = ""

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self.reaped = True
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to cancel
                self._loop.call_soon_threadsafe(self._task.cancel)


async def _call_dies(context: grpc.aio.ServicerContext, wait_s: float = 0.2) -> bool:
    """Whether the call is (or within `wait_s` becomes) done: a client whose message failed its own
    or our size limit ends the stream with no message and cancels the call."""
    deadline = time.monotonic() + wait_s
    while not context.done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# Bounds on received values: far beyond anything an environment produces, small enough that
# losses, V-trace and gradients stay finite in float32.
MAX_ABS_VALUE = 1e6
MIN_LOGP = -1e4


class _Ahead(ValueError):
    """A trajectory claims a weights version or phase the learner has not reached (e.g. a learner that
    restarted from an older checkpoint): FAILED_PRECONDITION, the actor drops the unroll and goes on."""


def check_values(t: Trajectory, env: EnvSpec) -> None:
    """Value checks beyond shapes and dtypes: action indices in range, observations inside their
    space, context answers valid, clocks within the episode horizon, log-probs and rewards sane.

    Raises:
        codec.CodecError: naming the field and what is wrong.
    """
    a = t.arrays
    n = env.action_spaces[t.role].n
    if a["actions"].size and (a["actions"].min() < 0 or a["actions"].max() >= n):
        raise codec.CodecError(f"trajectory field 'actions': values outside [0, {n})")
    space = env.observation_spaces[t.role]
    obs = a["obs"]
    if obs.size:
        if hasattr(space, "n"):
            if obs.min() < 0 or obs.max() >= space.n:
                raise codec.CodecError(f"trajectory field 'obs': values outside [0, {space.n})")
        else:
            low = max(float(space.low), -MAX_ABS_VALUE)
            high = min(float(space.high), MAX_ABS_VALUE)
            if obs.dtype.kind in "iuf" and (obs.min() < low or obs.max() > high):
                raise codec.CodecError(f"trajectory field 'obs': values outside [{low:g}, {high:g}]")
    ctx = a["context"]
    if ctx.size and (ctx.min() < -1 or ctx.max() >= env.leader_actions):
        raise codec.CodecError(f"trajectory field 'context': values outside [-1, {env.leader_actions})")
    el = a["elapsed"]
    if el.size and (el.min() < 0 or el.max() > env.horizon):
        raise codec.CodecError(f"trajectory field 'elapsed': values outside [0, {env.horizon}]")
    lp = a["logp"]
    if lp.size and (lp.min() < MIN_LOGP or lp.max() > 1e-3):
        raise codec.CodecError(f"trajectory field 'logp': log-probabilities outside [{MIN_LOGP:g}, 0]")
    step_bound = MAX_ABS_VALUE
    if env.max_abs_reward is not None:  # what this game can pay, with float32 slack
        step_bound = min(step_bound, env.max_abs_reward * (1 + 1e-5) + 1e-6)
    bounds = (step_bound, min(MAX_ABS_VALUE, step_bound * env.horizon))
    for (name, arr), bound in zip(
        (("rewards", a["rewards"]), ("episode_returns", t.episode_returns)), bounds
    ):
        if arr.size and np.abs(arr).max() > bound:
            raise codec.CodecError(f"trajectory field {name!r}: |value| above {bound:g}")
    spec_t, spec_b = lp.shape
    r = t.episode_returns
    if r.shape[1] != len(env.roles) and r.shape[0]:
        raise codec.CodecError(
            f"trajectory field 'episode_returns': {r.shape[1]} columns, expected {len(env.roles)} (roles)"
        )
    if r.shape[0] > spec_t * spec_b:
        raise codec.CodecError(
            f"trajectory field 'episode_returns': {r.shape[0]} episodes, at most {spec_t * spec_b} can end"
        )
    if t.env_steps > spec_t * spec_b:
        raise codec.CodecError(f"trajectory field 'env_steps': {t.env_steps} > T*B = {spec_t * spec_b}")


def _check_unroll(
    trajs: list[Trajectory], env: EnvSpec | None = None, latest: Broadcast | None = None
) -> None:
    if not trajs:
        raise codec.CodecError("an unroll needs at least one trajectory")
    roles = [t.role for t in trajs]
    if len(set(roles)) != len(roles):
        raise codec.CodecError(f"trajectory field 'role': repeated in one unroll: {roles}")
    if len({(t.actor_id, t.phase_id) for t in trajs}) != 1:
        raise codec.CodecError("trajectory fields 'actor_id' / 'phase_id' differ within one unroll")
    t_b = trajs[0].arrays["actions"].size
    if sum(t.env_steps for t in trajs) > t_b:
        raise codec.CodecError(f"trajectory field 'env_steps': the unroll claims more than T*B = {t_b}")
    if latest is None:
        return
    phase = trajs[0].phase_id
    if phase > latest.phase_id:
        raise _Ahead(
            f"trajectory field 'phase_id': {phase} is ahead of the learner's phase {latest.phase_id}"
        )
    for t in trajs:
        current = latest.versions.get(t.role, 0)
        if t.version > current:
            raise _Ahead(
                f"trajectory field 'version': {t.role} version {t.version} is ahead of the learner's {current}"
            )
    if phase == latest.phase_id and set(roles) != set(latest.send_roles):
        raise codec.CodecError(
            f"trajectory field 'role': unroll holds {sorted(roles)}, the phase expects {sorted(latest.send_roles)}"
        )
