"""experiments/bench_throughput.py: /proc accounting, the bound verdict, and one short real measurement."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from stackrl.experiments.bench_throughput import (
    ThroughputRow,
    bench_config,
    format_table,
    measure,
    process_cpu_seconds,
    process_wait_seconds,
)


def test_proc_accounting_sees_a_busy_child():
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        cpu0, t0 = process_cpu_seconds(child.pid), time.monotonic()
        time.sleep(1.0)
        used = (process_cpu_seconds(child.pid) - cpu0) / (time.monotonic() - t0)
        assert 0.2 < used <= 1.1  # one spinning thread: at most one core (less on a shared machine)
        assert process_wait_seconds(child.pid) >= 0
    finally:
        child.kill()
        child.wait()


def row(learner=(0.2, 0.0), actors=((0.3, 0.0),)) -> ThroughputRow:
    return ThroughputRow(
        actors=len(actors), seconds=10, env_steps_per_s=1e4, transitions_per_s=1e4, updates_per_s=5,
        mean_policy_lag=1.0, bytes_per_env_step=70, learner_cpu=learner[0], learner_wait=learner[1],
        actor_cpu=[a[0] for a in actors], actor_wait=[a[1] for a in actors],
    )  # fmt: skip


def test_bound_names_the_saturated_process():
    cores = os.cpu_count()
    assert row(learner=(0.95, 0.0)).bound.startswith("learner")
    assert row(actors=((0.6, 0.3), (0.7, 0.2))).bound.startswith("actors")
    assert row(learner=(0.3, 0.6), actors=((0.3, 0.3),)).bound.startswith("learner")  # would use a core
    assert row().bound == "neither saturated"
    busy = row(learner=(cores / 2, 0), actors=((cores / 2, 0),)).bound
    assert f"all {cores} cores busy" in busy
    assert "of runnable time queued" in row(learner=(0.1, 0.2), actors=((0.1, 0.2),)).bound
    table = format_table([row(), row(actors=((0.3, 0.1), (0.4, 0.0)))])
    assert "0.30/0.10 0.40/0.00" in table and table.count("\n") == 3


@pytest.mark.parametrize("phase", ["pretrain", "leader"])
def test_bench_config_runs_one_endless_phase(phase):
    cfg = bench_config("prisoners_dilemma", 2, phase, ("env.num_games=16",))
    assert cfg.actor.num_actors == 2 and cfg.env.num_games == 16
    assert [p.kind for p in cfg.schedule.phases] == [phase] and cfg.schedule.total_env_steps >= 10**12


def test_short_measurement_over_real_grpc():
    r = measure(
        bench_config("prisoners_dilemma", 1, "pretrain", ("env.num_games=16",)), seconds=1.5, warmup_s=0.5
    )
    assert r.actors == 1 and 1.4 < r.seconds < 5
    assert r.env_steps_per_s > 0 and r.transitions_per_s >= r.env_steps_per_s  # followers see every play step
    assert r.bytes_per_env_step > 0 and r.mean_policy_lag >= 0
    assert len(r.actor_cpu) == len(r.actor_wait) == 1 and r.actor_cpu[0] > 0 and r.learner_cpu > 0
