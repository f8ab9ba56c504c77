"""The learner's thread rule (learner/thread_budget.py): the cores the rest of the machine leaves idle."""

from __future__ import annotations

import os

import pytest
from stackrl.learner.thread_budget import (
    ThreadBudget,
    busy_cpu_seconds,
    learner_threads,
    others_cpu_seconds,
    process_cpu_seconds,
)


@pytest.mark.parametrize(
    ("cores", "load", "threads"),
    [
        (1, 0.0, 1),  # a 1-core view: always one thread
        (1, 0.9, 1),
        (2, 0.34, 2),  # 2 Atari actors at 0.17 core each: the idle core goes to the learner
        (2, 0.6, 1),  # more than half a core busy: no second thread
        (2, 2.0, 1),  # matrix actors busy on both cores: at least one thread
        (2, 0.5, 2),  # half up
        (16, 3.2, 13),
    ],
)
def test_rule_on_a_1_and_2_core_view(cores, load, threads):
    assert learner_threads(cores, load) == threads


def test_budget_starts_at_one_thread_and_follows_the_measured_load():
    now = [0.0]
    others = [0.0]
    applied = []
    budget = ThreadBudget(
        {0, 1},
        window_s=5.0,
        clock=lambda: now[0],
        others_seconds=lambda cpus: others[0],
        set_threads=applied.append,
    )
    assert applied == [1]  # nothing measured yet: one thread
    now[0] = 4.0
    assert budget.tick() is None  # inside the window
    now[0], others[0] = 5.0, 1.0  # others used 0.2 core: the idle core goes to the learner
    assert budget.tick() == 2 and budget.load == pytest.approx(0.2)
    now[0], others[0] = 10.0, 11.0  # both cores busy elsewhere (actors of a matrix game)
    assert budget.tick() == 1 and budget.load == pytest.approx(2.0)
    now[0], others[0] = 15.0, 20.0
    assert budget.tick() is None  # unchanged count: nothing applied
    assert applied == [1, 2, 1]


def test_budget_without_proc_stays_at_one_thread():
    applied = []
    now = [0.0]
    budget = ThreadBudget(
        {0, 1}, clock=lambda: now[0], others_seconds=lambda cpus: None, set_threads=applied.append
    )
    now[0] = 60.0
    assert budget.tick() is None and applied == [1]


def test_cpu_time_readers_see_this_process_and_the_machine(tmp_path):
    me = os.getpid()
    cpus = set(os.sched_getaffinity(0))
    t0, b0 = process_cpu_seconds(me), busy_cpu_seconds(cpus)
    assert t0 is not None and b0 is not None and others_cpu_seconds(cpus) is not None
    sum(i * i for i in range(2_000_000))  # burn some CPU
    assert process_cpu_seconds(me) > t0 and busy_cpu_seconds(cpus) > b0
    assert process_cpu_seconds(2**22 + 12345) is None  # no such process
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9\ncpu0 100 0 50 1000 10 0 0 0\ncpu1 7 0 0 0 0 0 0 0\n")
    # cpu0 only: user + system (idle and iowait are not busy), in clock ticks
    assert busy_cpu_seconds({0}, str(stat)) == pytest.approx(150 / os.sysconf("SC_CLK_TCK"))
