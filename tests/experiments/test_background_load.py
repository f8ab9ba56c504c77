"""The background-load helper stops its processes however the benchmark ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from stackrl.experiments.background_load import background_load


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purpose
        return f.read().split()[2] != "Z"


def test_load_runs_at_low_priority_and_stops_on_exit():
    with background_load(processes=2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        assert all(os.getpriority(os.PRIO_PROCESS, p.pid) == 19 for p in procs)
    assert all(p.poll() is not None for p in procs)


def test_load_stops_when_the_benchmark_is_interrupted():
    with pytest.raises(KeyboardInterrupt), background_load(processes=2) as procs:
        raise KeyboardInterrupt
    assert all(p.poll() is not None for p in procs)


def test_load_exits_when_its_parent_is_killed():
    code = (
        "from stackrl.experiments.background_load import start_load\n"
        "import time\n"
        "procs = start_load(2)\n"
        "print(' '.join(str(p.pid) for p in procs), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_disabled_starts_nothing():
    with background_load(enabled=False) as procs:
        assert procs == []
