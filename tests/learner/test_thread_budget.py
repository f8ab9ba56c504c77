"""The learner's thread rule (learner/thread_budget.py): the cores the actors leave idle."""

from __future__ import annotations

import os

import pytest
from stackrl.learner.thread_budget import ThreadBudget, learner_threads, process_cpu_seconds


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


def test_budget_measures_the_load_over_a_window_and_resizes():
    now = [0.0]
    cpu = {11: 0.0, 12: 0.0}
    applied = []
    budget = ThreadBudget(
        lambda: list(cpu),
        cores=2,
        window_s=5.0,
        clock=lambda: now[0],
        cpu_seconds=cpu.get,
        set_threads=applied.append,
    )
    assert applied == [2]  # nothing measured yet: every core
    now[0] = 4.0
    assert budget.tick() is None  # inside the window
    now[0], cpu[11], cpu[12] = 5.0, 5.0, 5.0  # both actors busy for the whole window
    assert budget.tick() == 1 and budget.load == pytest.approx(2.0)
    now[0], cpu[11], cpu[12] = 10.0, 5.5, 5.5  # then 0.1 core each
    assert budget.tick() == 2 and budget.load == pytest.approx(0.2)
    assert applied == [2, 1, 2]
    cpu[13] = 100.0  # a restarted actor counts from when it is first seen, not its past
    now[0] = 15.0
    assert budget.tick() is None and budget.load == pytest.approx(0.0)


def test_process_cpu_seconds_reads_this_process():
    t0 = process_cpu_seconds(os.getpid())
    assert t0 is not None
    sum(i * i for i in range(2_000_000))  # burn some CPU
    assert process_cpu_seconds(os.getpid()) > t0
    assert process_cpu_seconds(2**22 + 12345) is None  # no such process
