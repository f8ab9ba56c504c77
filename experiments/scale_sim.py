"""Simulated actors for `stackrl bench scale`: real encoded unrolls replayed over many gRPC channels.

A real actor's cost is its games and its networks; what a learner sees of it is the protocol:
register, hold a weight stream, push one unroll at a time, take weights only between unrolls. So the
unrolls are recorded once from a real `Actor` on the Atari pricing game (`record_unrolls`), encoded
as the actor encodes them, and `run_sim_process` replays them from one process for many simulated
actors, each on its own channel (its own TCP connection) in one asyncio loop. A simulated actor
stamps its actor id and the weights version it holds by appending those two fields to the recorded
bytes (protobuf keeps the last value of a repeated scalar field), so a push costs a byte copy, not
an encode, and a few processes can stand in for hundreds of actors.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from stackrl.config import ExperimentConfig
from stackrl.protos import codec, rpc
from stackrl.protos.security import auth_metadata

_MAX_MB = 64


@dataclass
class Recording:
    """Unrolls as the actor sent them: per unroll, its TrajectoryMsg bytes."""

    unrolls: list[list[tuple[str, bytes]]]  # per unroll: (role, TrajectoryMsg bytes) per trajectory
    agent_steps: int  # T * B per trajectory, summed over one unroll's trajectories
    actor_seconds_per_unroll: float  # what the recording actor spent per unroll (load included)


def record_unrolls(cfg_yaml: str, n: int) -> Recording:
    """Run a real `Actor` against the learner's first broadcast for `n` unrolls and encode them.

    Runs in a child process (`record_in_child`) so the envpool games and networks do not count
    against the learner's RSS.
    """
    from stackrl.actors.actor import Actor
    from stackrl.learner.learner import Learner
    from stackrl.protos.transport import InProcessTransport

    cfg = ExperimentConfig.from_yaml(cfg_yaml)
    learner = Learner(cfg, None)
    try:
        broadcast = learner.broadcast()
    finally:
        learner.close()
    transport = InProcessTransport()
    actor = Actor(cfg, 0, transport.actor())
    actor.apply(broadcast)
    actor.unroll()  # warm-up: the first unroll starts from reset frames
    unrolls, steps, t0 = [], 0, time.perf_counter()
    for _ in range(n):
        trajs = actor.unroll()
        unrolls.append([(t.role, codec.encode_trajectory(t).SerializeToString()) for t in trajs])
        steps = sum(int(t.arrays["actions"].size) for t in trajs)
    return Recording(unrolls, steps, (time.perf_counter() - t0) / n)


def _record_worker(cfg_yaml: str, n: int, out: Any) -> None:
    out.put(record_unrolls(cfg_yaml, n))


def record_in_child(cfg: ExperimentConfig, n: int, timeout_s: float = 300.0) -> Recording:
    """`record_unrolls` in a spawned process; returns its recording."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_record_worker, args=(cfg.to_yaml(), n, out), daemon=True)
    proc.start()
    try:
        rec: Recording = out.get(timeout=timeout_s)
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    return rec


def stamp(msg: bytes, actor_id: int, version: int) -> bytes:
    """`msg` with TrajectoryMsg.actor_id (field 2) and .version (field 3) replaced: appended varint
    fields override the recorded ones when parsed."""
    return msg + b"\x10" + codec.varint(actor_id) + b"\x18" + codec.varint(version)


@dataclass
class SimStats:
    """What one process's simulated actors saw; times are `time.time()` (comparable across processes)."""

    registered: int = 0
    served: int = 0  # simulated actors with at least one accepted push in the window
    pushes: list[tuple[float, float]] = field(default_factory=list)  # (end time, latency s)
    busy: int = 0  # RESOURCE_EXHAUSTED for the learner's call budget: backed off and retried
    failed: dict[str, int] = field(default_factory=dict)  # status code -> count
    cpu_seconds: float = 0.0  # inside the measurement window


@dataclass(frozen=True)
class SimPlan:
    """What a process of simulated actors does (picklable: sent to the spawned process)."""

    address: str
    token: str | None
    first_id: int  # a label only; the learner hands out the real ids at Register
    count: int
    unroll_s: float  # seconds between a push's reply and the next push (a real actor's unroll); 0: none


def _identity(b: bytes) -> bytes:
    return b


class _Sim:
    """One simulated actor on its own channel."""

    def __init__(
        self,
        plan: SimPlan,
        unrolls: list[list[tuple[str, bytes]]],
        stats: SimStats,
        stop: asyncio.Event,
        window: Any,
    ):
        self.plan, self.unrolls, self.stats, self.stop, self.window = plan, unrolls, stats, stop, window
        self.md = auth_metadata(plan.token)
        limit = _MAX_MB << 20
        self.channel = grpc.aio.insecure_channel(
            plan.address,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                ("grpc.use_local_subchannel_pool", 1),  # a connection of its own, as a real actor's
            ],
        )
        svc = f"/{rpc.SERVICE}/"
        self.register = self.channel.unary_unary(
            svc + "Register",
            request_serializer=_identity,
            response_deserializer=codec.RegisterReply.FromString,
        )
        self.stream = self.channel.unary_stream(
            svc + "StreamWeights",
            request_serializer=_identity,
            response_deserializer=codec.BroadcastMsg.FromString,
        )
        self.pull = self.channel.unary_unary(
            svc + "PullWeights", request_serializer=_identity, response_deserializer=_identity
        )
        self.push = self.channel.stream_unary(
            svc + "PushTrajectories",
            request_serializer=_identity,
            response_deserializer=codec.PushReply.FromString,
        )
        self.announced: dict[str, int] = {}
        self.held: dict[str, int] = {}
        self.announced_event = asyncio.Event()

    async def _call(self, make: Any) -> Any:
        """One RPC; RESOURCE_EXHAUSTED for the learner's budget backs off and retries, as an actor does."""
        delay = 0.05
        while not self.stop.is_set():
            try:
                return await make()
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many open" in (e.details() or ""):
                    self.stats.busy += 1
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(2 * delay, 1.0)
                    continue
                if not self.stop.is_set():
                    name = e.code().name
                    self.stats.failed[name] = self.stats.failed.get(name, 0) + 1
                raise
        return None

    async def _follow_stream(self, actor_id: int) -> None:
        call = self.stream(codec.weights_request(actor_id).SerializeToString(), metadata=self.md)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for msg in call:
                self.announced = dict(msg.versions)
                self.announced_event.set()
                if msg.done:
                    break

    async def run(self) -> None:
        stats, plan = self.stats, self.plan
        served = False
        stream_task = None
        try:
            reply = await self._call(lambda: self.register(b"", metadata=self.md, timeout=60))
            if reply is None:
                return
            stats.registered += 1
            actor_id = reply.actor_id
            stream_task = asyncio.ensure_future(self._follow_stream(actor_id))
            await asyncio.wait_for(self.announced_event.wait(), 60)
            i = random.randrange(len(self.unrolls))
            while not self.stop.is_set():
                if codec.stale_roles(self.held, self.announced):  # the unroll boundary
                    request = codec.weights_request(actor_id, self.held).SerializeToString()
                    raw = await self._call(lambda r=request: self.pull(r, metadata=self.md, timeout=60))
                    if raw is None:
                        break
                    self.held = dict(codec.BroadcastMsg.FromString(raw).versions)
                i = (i + 1) % len(self.unrolls)
                msgs = [stamp(m, actor_id, self.held.get(role, 0)) for role, m in self.unrolls[i]]
                t0 = time.perf_counter()
                got = await self._call(lambda ms=msgs: self.push(iter(ms), metadata=self.md, timeout=120))
                if got is None or got.done:
                    break
                end = time.time()
                stats.pushes.append((end, time.perf_counter() - t0))
                if not served and self.window[0] <= end <= self.window[1]:
                    served = True
                    stats.served += 1
                if plan.unroll_s > 0:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), plan.unroll_s)
        except (grpc.aio.AioRpcError, asyncio.TimeoutError):
            pass  # counted by _call (or a stream that never announced): this simulated actor stops
        finally:
            if stream_task is not None:
                stream_task.cancel()
            await self.channel.close()


async def _run_sims(
    plan: SimPlan, unrolls: list[list[tuple[str, bytes]]], window: Any, stats: SimStats
) -> None:
    stop = asyncio.Event()
    sims = [_Sim(plan, unrolls, stats, stop, window) for _ in range(plan.count)]
    tasks = [asyncio.ensure_future(s.run()) for s in sims]
    begin = None
    while time.time() < window[1] and not all(t.done() for t in tasks):
        if begin is None and time.time() >= window[0]:
            begin = _cpu()
        await asyncio.sleep(0.05)
    stats.cpu_seconds = _cpu() - begin if begin is not None else 0.0
    stop.set()
    await asyncio.wait(tasks, timeout=10)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_sim_process(plan: SimPlan, unrolls: list[list[tuple[str, bytes]]], window: Any, out: Any) -> None:
    """A process of `plan.count` simulated actors; puts its `SimStats` at the end.

    `window` is a shared [begin, end] of `time.time()` values (multiprocessing.Array) that the
    benchmark sets once every simulated actor holds its first weights; the actors stop at its end
    and count CPU and served actors inside it.
    """
    stats = SimStats()
    try:
        asyncio.run(_run_sims(plan, unrolls, window, stats))
    finally:
        out.put(stats)
