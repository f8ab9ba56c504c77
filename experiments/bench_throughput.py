"""Throughput of the distributed path, and which resource bounds it: `stackrl bench throughput`.

For each actor count, a learner service runs in this process and the actors in child processes,
exactly as `stackrl train` runs them, on a schedule too long to finish. After a warm-up, counters
and per-process CPU time are read at the start and end of a fixed wall-clock window:

  env steps/s     play-phase env steps (summed over games) consumed by the learner: the unit of the
                  schedule's budgets
  transitions/s   T*B per trajectory message received, summed over roles (agent steps, each role
                  counted separately; query steps included)
  policy lag      learner version minus the trajectory's version, mean over trajectories
  bytes/env step  gRPC payload bytes received per env step
  cpu/wait        per process, in cores: CPU seconds per wall second (1.0 = one core busy), and
                  seconds spent runnable but queued for a core per wall second (Linux schedstat).
                  The learner's includes its gRPC threads (decoding), each actor's its own threads

A process whose cpu + wait reaches ~1 would use a whole core: it is the bottleneck. Large waits with
idle-looking CPU mean the cores are oversubscribed (by this run or, on a shared machine, by others).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, cast

from stackrl.config import ExperimentConfig
from stackrl.learner.service import LearnerServer
from stackrl.runners.launch import LaunchError, check_actors, start_actors, stop_actors
from stackrl.runners.presets import build_config

_TICKS = os.sysconf("SC_CLK_TCK")
_BUDGET = 10**12  # env steps: a schedule that outlasts any measurement


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, all threads, from /proc/<pid>/stat (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def process_wait_seconds(pid: int) -> float:
    """Seconds the process's live threads spent runnable but waiting for a core (run-queue delay,
    /proc/<pid>/task/*/schedstat): how much more CPU it would have used on an idle machine."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread may exit while we read
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


@dataclass
class ThroughputRow:
    actors: int
    seconds: float
    env_steps_per_s: float
    transitions_per_s: float
    updates_per_s: float
    mean_policy_lag: float
    bytes_per_env_step: float
    learner_cpu: float
    learner_wait: float
    actor_cpu: list[float] = field(default_factory=list)
    actor_wait: list[float] = field(default_factory=list)
    load_average: float = 0.0
    """1-minute load average at the end of the window (the machine may be shared)."""

    @property
    def bound(self) -> str:
        """Which resource limits throughput: a process that would use a whole core (CPU + run-queue
        wait >= 0.85) is the bottleneck; busy or contended cores are reported too."""
        cores = os.cpu_count() or 1
        parts = []
        if self.learner_cpu + self.learner_wait >= 0.85:
            parts.append("learner")
        if self.actor_cpu and min(c + w for c, w in zip(self.actor_cpu, self.actor_wait)) >= 0.85:
            parts.append("actors")
        cpu = self.learner_cpu + sum(self.actor_cpu)
        wait = self.learner_wait + sum(self.actor_wait)
        if cpu >= 0.85 * cores:
            parts.append(f"all {cores} cores busy")
        elif wait >= 0.2 * (cpu + wait):
            parts.append(f"cores shared: {wait / (cpu + wait):.0%} of runnable time queued")
        return ", ".join(parts) or "neither saturated"


@dataclass
class _Mark:
    time: float
    env_steps: int
    transitions: int
    updates: int
    bytes: int
    lag_sum: int
    lag_count: int
    cpu: list[float]  # learner first, then each actor
    wait: list[float]


def _pids(procs: list[BaseProcess]) -> list[int]:
    """The pids of started processes (a started process has one)."""
    return [cast(int, p.pid) for p in procs]


def _mark(server: LearnerServer, pids: list[int]) -> _Mark:
    pids = [os.getpid(), *pids]
    st, learner = server.stats, server.learner
    return _Mark(
        time.monotonic(),
        learner.env_steps,
        st.transitions,
        sum(learner.updates.values()),
        st.bytes,
        st.lag_sum,
        st.lag_count,
        [process_cpu_seconds(pid) for pid in pids],
        [process_wait_seconds(pid) for pid in pids],
    )


def bench_config(env: str, actors: int, phase: str, overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    """The env's preset with one endless `phase` and `actors` actor processes."""
    fields = {
        "name": f"bench_throughput_{env}_{actors}",
        "actor": {"num_actors": actors},
        "schedule": {"phases": [{"kind": phase, "env_steps": _BUDGET}]},
    }
    return build_config(env, fields=fields, overrides=overrides)


def measure(
    cfg: ExperimentConfig, seconds: float, warmup_s: float, startup_timeout_s: float = 120.0
) -> ThroughputRow:
    """Run the distributed path and measure a `seconds` window after `warmup_s` of consumed data."""
    token = secrets.token_urlsafe(24)
    server = LearnerServer(cfg, None, token=token)
    procs: list[BaseProcess] = []
    marks: dict[str, Any] = {"start": time.monotonic()}  # times (float) and _Mark snapshots

    def tick() -> None:
        check_actors(procs)
        now = time.monotonic()
        if "begin" in marks:
            if now - marks["begin"].time >= seconds:
                marks["end"] = _mark(server, _pids(procs))
                server.stop()
        elif server.learner.env_steps > 0:
            marks.setdefault("first_data", now)
            if now - marks["first_data"] >= warmup_s:
                marks["begin"] = _mark(server, _pids(procs))
        elif now - marks["start"] > startup_timeout_s:
            raise LaunchError(f"no trajectories reached the learner within {startup_timeout_s:g}s")

    try:
        port = server.start()
        procs = start_actors(f"127.0.0.1:{port}", token, cfg.actor.num_actors, cfg.actor.connect_deadline_s)
        server.run(progress=False, on_tick=tick)
    finally:
        server.close()
        stop_actors(procs)
    a, b = marks["begin"], marks["end"]
    dt = b.time - a.time
    steps = b.env_steps - a.env_steps
    cpu = [(y - x) / dt for x, y in zip(a.cpu, b.cpu)]
    wait = [(y - x) / dt for x, y in zip(a.wait, b.wait)]
    return ThroughputRow(
        actors=cfg.actor.num_actors,
        seconds=dt,
        env_steps_per_s=steps / dt,
        transitions_per_s=(b.transitions - a.transitions) / dt,
        updates_per_s=(b.updates - a.updates) / dt,
        mean_policy_lag=(b.lag_sum - a.lag_sum) / max(b.lag_count - a.lag_count, 1),
        bytes_per_env_step=(b.bytes - a.bytes) / max(steps, 1),
        learner_cpu=cpu[0],
        learner_wait=wait[0],
        actor_cpu=cpu[1:],
        actor_wait=wait[1:],
        load_average=os.getloadavg()[0],
    )


def format_table(rows: list[ThroughputRow]) -> str:
    """One line per actor count; CPU columns read `cpu/wait` in cores (see the module docstring)."""
    head = (
        f"{'actors':>6} {'env steps/s':>11} {'transitions/s':>13} {'updates/s':>9} {'lag':>5} "
        f"{'bytes/step':>10} {'learner cpu/wait':>16} {'actor cpu/wait (each)':>23} {'load':>5}  bound"
    )
    lines = [head, "-" * (len(head) + 24)]
    for r in rows:
        actors = " ".join(f"{c:.2f}/{w:.2f}" for c, w in zip(r.actor_cpu, r.actor_wait))
        lines.append(
            f"{r.actors:>6} {r.env_steps_per_s:>11,.0f} {r.transitions_per_s:>13,.0f} {r.updates_per_s:>9.1f} "
            f"{r.mean_policy_lag:>5.2f} {r.bytes_per_env_step:>10.1f} "
            f"{f'{r.learner_cpu:.2f}/{r.learner_wait:.2f}':>16} {actors:>23} {r.load_average:>5.1f}  {r.bound}"
        )
    return "\n".join(lines)


def run_throughput_benchmark(
    env: str,
    actor_counts: list[int],
    seconds: float,
    warmup_s: float = 3.0,
    phase: str = "pretrain",
    json_path: str | None = None,
    overrides: tuple[str, ...] = (),
) -> list[ThroughputRow]:
    """Measure each actor count in turn; print the table (and write JSON rows to `json_path`)."""
    rows = []
    for n in actor_counts:
        cfg = bench_config(env, n, phase, overrides)
        rows.append(measure(cfg, seconds, warmup_s))
    print(f"stackrl bench throughput: env={env} phase={phase} window={seconds:g}s cores={os.cpu_count()}")
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump([{**asdict(r), "bound": r.bound} for r in rows], f, indent=2)
    return rows
