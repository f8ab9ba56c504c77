"""How many actors one learner can feed: `stackrl bench scale`.

For each actor count M, a real learner service (`LearnerServer`, real gRPC on 127.0.0.1, a token)
runs in a fresh process, and M simulated actors (experiments/scale_sim.py) run in a few child
processes, replaying unrolls recorded once from a real actor of the Atari pricing game. Each
simulated actor registers, holds a weight stream, pushes one unroll at a time and pulls weights only
between unrolls when its copy is stale. After a warm-up, learner-side counters, its CPU time and its
RSS are read at the edges of a fixed window, which opens once every simulated actor has registered and
pulled its first weights:

  ingest            agent steps (T x B per trajectory) and wire MB the learner consumed per second
  demand            what the simulated actors would push at `unroll_s` per unroll, unbounded learner
  push p50/p99      client-side latency of a whole PushTrajectories call (includes back-pressure)
  weights           PullWeights bytes the learner sent per second, and per unroll it consumed (the
                    bound is one copy of every role's weights: the copy column)
  learner RSS/CPU   of the learner's process (its gRPC threads included; the actors are its children)
  busy / failed     RESOURCE_EXHAUSTED answers for the call budget (backed off and retried) / every
                    other failed call; rejected: unrolls the learner refused as invalid

With `update` the learner trains (SGD on the endless pretraining phase); without, the learner loop
takes each decoded, validated unroll off the queue, batches it as the update would and drops it:
the transport's ceiling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import queue
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.experiments.bench_throughput import bench_config, process_cpu_seconds
from stackrl.experiments.scale_sim import Recording, SimPlan, SimStats, record_in_child, run_sim_process
from stackrl.learner.service import LearnerServer
from stackrl.trajectory import concat_trajectories


@dataclass
class ScaleRow:
    actors: int
    update: bool
    seconds: float
    registered: int
    served: int
    agent_steps_per_s: float
    mb_per_s: float
    demand_steps_per_s: float
    push_p50_ms: float
    push_p99_ms: float
    pushes: int
    weight_mb_per_s: float
    weight_mb_per_actor_unroll: float
    weight_copy_mb: float  # one copy of the roles an actor pulls
    updates_per_s: float
    mean_policy_lag: float
    learner_rss_mb: float
    learner_cpu: float  # cores
    sims_cpu: float  # cores, all simulated-actor processes
    busy: int
    failed: int
    rejected: int
    load_average: float


def scale_config(env: str, actors: int, overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    """The preset with an endless pretraining phase, no evaluation or checkpoints in the window, and
    room for `actors` weight streams."""
    extra = (
        "schedule.eval_interval_updates=1000000000",
        "schedule.checkpoint_interval_s=1000000",
        f"server.max_weight_streams={max(actors + 8, 256)}",
        *overrides,
    )
    return bench_config(env, actors, "pretrain", extra)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class _Mark:
    time: float
    transitions: int
    bytes: int
    unrolls: int
    weight_bytes: int
    updates: int
    cpu: float


def _mark(server: LearnerServer) -> _Mark:
    st, sv = server.stats, server.servicer
    return _Mark(
        time.time(),
        st.transitions,
        st.bytes,
        st.unrolls,
        sv.weight_bytes,
        sum(server.learner.updates.values()),
        process_cpu_seconds(os.getpid()),
    )


def _drop(server: LearnerServer, until: float, on_tick: Any) -> None:
    """The `--no-update` learner loop: take each validated unroll, batch it as an update would, drop it."""
    st = server.stats
    pending: list[Any] = []
    batch = server.cfg.learner.batch_trajectories
    while time.time() < until:
        on_tick()
        try:
            unroll = server.queue.get(timeout=0.1)
        except queue.Empty:
            continue
        for t in unroll.trajs:
            st.transitions += t.arrays["actions"].size
        st.unrolls += 1
        st.bytes += unroll.nbytes
        pending.extend(unroll.trajs)
        if len(pending) >= batch:
            concat_trajectories(pending[:batch])
            del pending[:batch]


def measure(
    cfg: ExperimentConfig,
    rec: Recording,
    actors: int,
    seconds: float,
    warmup: float,
    update: bool,
    processes: int,
    unroll_s: float,
) -> ScaleRow:
    """One row: M = `actors` simulated actors against a fresh learner for `warmup` + `seconds`."""
    token = secrets.token_urlsafe(24)
    logging.getLogger("stackrl.learner.servicer").setLevel(logging.WARNING)  # not a line per actor
    server = LearnerServer(cfg, None, token=token)
    server.start()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    n_proc = max(1, min(processes, actors))
    window = ctx.Array("d", [float("inf"), float("inf")])  # set once every actor holds weights
    procs = []
    for p in range(n_proc):
        count = actors // n_proc + (1 if p < actors % n_proc else 0)
        plan = SimPlan(server.address, token, p, count, unroll_s)
        proc = ctx.Process(target=run_sim_process, args=(plan, rec.unrolls, window, out), daemon=True)
        proc.start()
        procs.append(proc)
    # Every simulated actor registered and pulled its first copy of every role's weights: the 7 MB
    # first pulls and the spawn of the processes stay out of the window.
    first_copies = actors * len(server.learner.nets)
    deadline = time.time() + 120
    while server.servicer.weight_copies < first_copies:
        if time.time() > deadline or not any(p.is_alive() for p in procs):
            raise RuntimeError(
                f"only {server.servicer.registered} of {actors} simulated actors registered and pulled "
                f"weights within 120 s"
            )
        time.sleep(0.05)
    now = time.time()
    window[0], window[1] = now + warmup, now + warmup + seconds
    marks: dict[str, _Mark] = {}

    def tick() -> None:
        now = time.time()
        if "begin" not in marks and now >= window[0]:
            marks["begin"] = _mark(server)
        if "end" not in marks and now >= window[1]:
            marks["end"] = _mark(server)
            server.stop()

    rss = float("nan")
    try:
        if update:
            server.run(progress=False, on_tick=tick)
        else:
            _drop(server, window[1], tick)
            tick()
        rss = _rss_mb()
        stats = [out.get(timeout=60) for _ in procs]
    finally:
        server.close(grace_s=2.0)
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
    return _row(server, rec, actors, update, unroll_s, marks, stats, rss)


def _measure_worker(args: tuple[Any, ...], out: Any) -> None:
    try:
        out.put(measure(*args))
    except BaseException as e:  # the parent raises it with the child's message
        out.put(RuntimeError(f"bench scale row failed: {type(e).__name__}: {e}"))
        raise


def measure_in_child(*args: Any, timeout_s: float = 600.0) -> ScaleRow:
    """`measure` in a fresh spawned process: each row's learner RSS is its own, not what the rows
    before it left in this process's allocator."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_measure_worker, args=(args, out))  # not daemonic: it starts the actors
    proc.start()
    try:
        got = out.get(timeout=timeout_s)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    if isinstance(got, BaseException):
        raise got
    row: ScaleRow = got
    return row


def _row(
    server: LearnerServer,
    rec: Recording,
    actors: int,
    update: bool,
    unroll_s: float,
    marks: dict[str, _Mark],
    stats: list[SimStats],
    rss: float,
) -> ScaleRow:
    a, b = marks["begin"], marks["end"]
    dt = b.time - a.time
    lat = np.array([lt for s in stats for (end, lt) in s.pushes if a.time <= end <= b.time])
    unrolls = max(b.unrolls - a.unrolls, 1)
    weight = b.weight_bytes - a.weight_bytes
    copy_bytes = sum(  # one copy of every role's weights: what an actor with nothing pulls
        v.numel() * v.element_size()
        for net in server.learner.nets.values()
        for v in net.state_dict().values()
    )
    per_unroll_s = unroll_s if unroll_s > 0 else float("nan")
    return ScaleRow(
        actors=actors,
        update=update,
        seconds=dt,
        registered=sum(s.registered for s in stats),
        served=sum(s.served for s in stats),
        agent_steps_per_s=(b.transitions - a.transitions) / dt,
        mb_per_s=(b.bytes - a.bytes) / dt / 1e6,
        demand_steps_per_s=actors * rec.agent_steps / per_unroll_s,
        push_p50_ms=float(np.percentile(lat, 50) * 1e3) if lat.size else float("nan"),
        push_p99_ms=float(np.percentile(lat, 99) * 1e3) if lat.size else float("nan"),
        pushes=int(lat.size),
        weight_mb_per_s=weight / dt / 1e6,
        weight_mb_per_actor_unroll=weight / unrolls / 1e6,
        weight_copy_mb=copy_bytes / 1e6,
        updates_per_s=(b.updates - a.updates) / dt,
        mean_policy_lag=server.stats.mean_lag,
        learner_rss_mb=rss,
        learner_cpu=(b.cpu - a.cpu) / dt,
        sims_cpu=sum(s.cpu_seconds for s in stats) / dt,
        busy=sum(s.busy for s in stats),
        failed=sum(sum(s.failed.values()) for s in stats),
        rejected=server.servicer.rejected,
        load_average=os.getloadavg()[0],
    )


def format_table(rows: list[ScaleRow]) -> str:
    head = (
        "| actors | SGD | registered / served | agent steps/s (demand) | MB/s | push p50 / p99 ms | weight MB/s | "
        "weight MB / actor / unroll (copy) | updates/s | learner RSS MB | learner CPU | sims CPU | "
        "busy / failed / rejected | load |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r.actors} | {'on' if r.update else 'off'} | {r.registered} / {r.served} | "
            f"{r.agent_steps_per_s:,.0f} ({r.demand_steps_per_s:,.0f}) | {r.mb_per_s:.1f} | {r.push_p50_ms:.1f} / {r.push_p99_ms:.1f} | "
            f"{r.weight_mb_per_s:.2f} | {r.weight_mb_per_actor_unroll:.3f} ({r.weight_copy_mb:.2f}) | "
            f"{r.updates_per_s:.1f} | {r.learner_rss_mb:,.0f} | {r.learner_cpu:.2f} | {r.sims_cpu:.2f} | "
            f"{r.busy} / {r.failed} / {r.rejected} | {r.load_average:.1f} |"
        )
    return "\n".join(lines)


def run_scale_benchmark(
    env: str,
    counts: list[int],
    seconds: float,
    warmup: float,
    update_modes: tuple[bool, ...],
    processes: int,
    unroll_s: float,
    json_path: str | None = None,
    overrides: tuple[str, ...] = (),
    record: int = 4,
) -> list[ScaleRow]:
    """Record `record` unrolls once, then measure every (actor count, SGD on/off); prints the table."""
    rec = record_in_child(scale_config(env, 1, overrides), record)
    print(
        f"recorded {len(rec.unrolls)} unrolls of {env}: {rec.agent_steps} agent steps, "
        f"{sum(len(m) for _, m in rec.unrolls[0]) / 1e6:.2f} MB each on the wire; a real actor took "
        f"{rec.actor_seconds_per_unroll:.3f} s per unroll here",
        flush=True,
    )
    rows = []
    for update in update_modes:
        for m in counts:
            cfg = scale_config(env, m, overrides)
            row = measure_in_child(cfg, rec, m, seconds, warmup, update, processes, unroll_s)
            rows.append(row)
            print(format_table([row]).splitlines()[-1], flush=True)
    print(format_table(rows))
    if json_path:
        with contextlib.suppress(FileNotFoundError):
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(
            json.dumps(
                {
                    "env": env,
                    "cores": os.cpu_count(),
                    "unroll_s": unroll_s,
                    "agent_steps_per_unroll": rec.agent_steps,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )
    return rows
