"""Is the synchronous gRPC server the ingest ceiling? The same push handler under `grpc.server` (a
thread pool, as the learner runs) and under `grpc.aio` (one event loop), fed by the same clients.

  python -m stackrl.experiments.server_ceiling [--actors 32] [--seconds 10] [--processes 2]

Both servers take recorded Atari pricing unrolls (experiments/scale_sim.py) from `actors` channels
pushing back to back, parse, decode, validate and value-check every message exactly as the learner's
servicer does, and hand whole unrolls to a consumer that drops them. Reported per server kind:
agent steps/s and MB/s consumed and the server process's CPU. Each server runs in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio
from stackrl.config import ExperimentConfig
from stackrl.experiments.scale_sim import Recording, record_in_child, stamp
from stackrl.protos import codec, rpc

_METHOD = "PushTrajectories"
_LIMIT = 64 << 20
_OPTIONS = [("grpc.max_receive_message_length", _LIMIT), ("grpc.max_send_message_length", _LIMIT)]


class _Ingest:
    """The learner servicer's per-message work (decode, validate, value checks), then a drop."""

    def __init__(self, cfg_yaml: str):
        from stackrl.envs.factory import env_spec, make_stackelberg_env
        from stackrl.learner.servicer import check_values, expected_specs

        cfg = ExperimentConfig.from_yaml(cfg_yaml)
        env = make_stackelberg_env(cfg.env)
        self.env = env_spec(env)
        env.close()
        self.specs = expected_specs(self.env, cfg)
        self.check_values = check_values
        self.steps = 0
        self.bytes = 0

    def unroll(self, msgs: list[Any]) -> None:
        n = 0
        for msg in msgs:
            spec = self.specs[msg.role]
            traj = codec.decode_trajectory(msg, spec)
            traj.validate(spec)
            self.check_values(traj, self.env)
            n += traj.arrays["actions"].size
        self.steps += n
        self.bytes += sum(m.ByteSize() for m in msgs)


def _serve_sync(ingest: _Ingest, port_out: Any, seconds: float, out: Any) -> None:
    q: queue.Queue[list[Any]] = queue.Queue(maxsize=8)

    def push(it: Iterator[Any], context: grpc.ServicerContext) -> Any:
        msgs = list(it)
        ingest.unroll(msgs)
        q.put(msgs)
        return codec.push_reply(len(msgs), done=False)

    handler = grpc.stream_unary_rpc_method_handler(
        push, request_deserializer=codec.TrajectoryMsg.FromString, response_serializer=_serialize
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=48), options=_OPTIONS, maximum_concurrent_rpcs=48)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(rpc.SERVICE, {_METHOD: handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    drain = threading.Thread(target=_drain_sync, args=(q, stop), daemon=True)
    drain.start()
    port_out.put(port)
    out.put(_window(ingest, seconds))
    stop.set()
    server.stop(0)


def _drain_sync(q: queue.Queue[list[Any]], stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(queue.Empty):
            q.get(timeout=0.1)


def _serialize(reply: Any) -> bytes:
    data: bytes = reply.SerializeToString()
    return data


def _serve_aio(ingest: _Ingest, port_out: Any, seconds: float, out: Any) -> None:
    async def main() -> None:
        q: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=8)

        async def push(it: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            msgs = [m async for m in it]
            ingest.unroll(msgs)
            await q.put(msgs)
            return codec.push_reply(len(msgs), done=False)

        async def drain() -> None:
            while True:
                await q.get()

        handler = grpc.stream_unary_rpc_method_handler(
            push, request_deserializer=codec.TrajectoryMsg.FromString, response_serializer=_serialize
        )
        server = grpc.aio.server(options=_OPTIONS)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(rpc.SERVICE, {_METHOD: handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        task = asyncio.ensure_future(drain())
        port_out.put(port)
        loop = asyncio.get_running_loop()
        out.put(await loop.run_in_executor(None, _window, ingest, seconds))
        task.cancel()
        await server.stop(0)

    asyncio.run(main())


def _window(ingest: _Ingest, seconds: float) -> dict[str, float]:
    """Counters over `seconds` after a 2 s warm-up; the handler threads update them meanwhile."""
    time.sleep(2.0)
    s0, b0, c0, t0 = ingest.steps, ingest.bytes, _cpu(), time.perf_counter()
    time.sleep(seconds)
    dt = time.perf_counter() - t0
    return {
        "agent_steps_per_s": (ingest.steps - s0) / dt,
        "mb_per_s": (ingest.bytes - b0) / dt / 1e6,
        "server_cpu": (_cpu() - c0) / dt,
    }


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _server_process(kind: str, cfg_yaml: str, port_out: Any, seconds: float, out: Any) -> None:
    ingest = _Ingest(cfg_yaml)
    (_serve_sync if kind == "sync" else _serve_aio)(ingest, port_out, seconds, out)


def _client_process(port: int, count: int, unrolls: list[list[tuple[str, bytes]]], stop_at: float) -> None:
    async def one(i: int) -> None:
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[*_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        )
        call = channel.stream_unary(
            f"/{rpc.SERVICE}/{_METHOD}", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        k = i
        while time.time() < stop_at:
            k += 1
            msgs = [stamp(m, i, 0) for _, m in unrolls[k % len(unrolls)]]
            try:
                await call(iter(msgs), timeout=30)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
        await channel.close()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(main())


def measure(
    kind: str, cfg: ExperimentConfig, rec: Recording, actors: int, processes: int, seconds: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    port_out, out = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_server_process, args=(kind, cfg.to_yaml(), port_out, seconds, out))
    server.start()
    port = port_out.get(timeout=120)
    stop_at = time.time() + seconds + 6.0
    clients = [
        ctx.Process(
            target=_client_process, args=(port, actors // processes, rec.unrolls, stop_at), daemon=True
        )
        for _ in range(processes)
    ]
    for c in clients:
        c.start()
    try:
        row: dict[str, Any] = out.get(timeout=seconds + 120)
    finally:
        for proc in (*clients, server):
            proc.join(15)
            if proc.is_alive():
                proc.kill()
    row.update(server=kind, actors=actors, load_average=os.getloadavg()[0])
    return row


def main(argv: list[str] | None = None) -> int:
    from stackrl.experiments.bench_scale import scale_config

    parser = argparse.ArgumentParser(prog="python -m stackrl.experiments.server_ceiling")
    parser.add_argument("--env", default="space_invaders_pricing")
    parser.add_argument("--actors", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1, help="sync, aio, sync, aio, ... (drift shows)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cfg = scale_config(args.env, 1)
    rec = record_in_child(cfg, 4)
    rows = []
    for _ in range(args.rounds):
        for kind in ("sync", "aio"):
            rows.append(measure(kind, cfg, rec, args.actors, args.processes, args.seconds))
            r = rows[-1]
            print(
                f"{kind:5s} {r['agent_steps_per_s']:>9,.0f} agent steps/s {r['mb_per_s']:7.1f} MB/s "
                f"server CPU {r['server_cpu']:.2f}  load {r['load_average']:.1f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
