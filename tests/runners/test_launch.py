"""runners/launch.py: a crashed or refused actor stops the run with a clear error and leaves no process."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from stackrl.config import ExperimentConfig
from stackrl.learner.service import LearnerServer
from stackrl.runners.launch import LaunchError, check_actors, start_actors, stop_actors


def fake_proc(name: str, exitcode: int | None):
    return types.SimpleNamespace(name=name, pid=1234, exitcode=exitcode)


def test_check_actors():
    check_actors([fake_proc("actor-0", None), fake_proc("actor-1", 0)])  # still running: fine
    with pytest.raises(LaunchError, match=r"actor-1 \(pid 1234\) exited with code 3; stopping the run"):
        check_actors([fake_proc("actor-0", None), fake_proc("actor-1", 3)])
    with pytest.raises(LaunchError, match="all actor processes exited before the learner finished"):
        check_actors([fake_proc("actor-0", 0), fake_proc("actor-1", 0)])


def test_an_actor_that_fails_stops_the_run_and_no_child_is_left():
    cfg = ExperimentConfig.from_dict(
        {
            "name": "launch",
            "env": {"name": "stag_hunt", "num_games": 8},
            "actor": {"num_actors": 2, "connect_deadline_s": 30},
            "schedule": {"phases": [{"kind": "pretrain", "env_steps": 10**9}]},
        }
    )
    server = LearnerServer(cfg, None, token="right")
    port = server.start()
    procs = start_actors(f"127.0.0.1:{port}", "wrong", 2, cfg.actor.connect_deadline_s)  # refused: exit 1
    try:
        with pytest.raises(LaunchError, match=r"actor-\d \(pid \d+\) exited with code 1"):
            server.run(progress=False, on_tick=lambda: check_actors(procs))
    finally:
        server.close()
        stop_actors(procs, timeout_s=10)
    assert all(not p.is_alive() for p in procs)
    assert mp.active_children() == []
    assert server.learner.env_steps == 0


LAUNCHER = """
import faulthandler
import logging
import signal
from stackrl.config import ExperimentConfig
from stackrl.runners.launch import run_local

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    faulthandler.register(signal.SIGUSR1)  # the test asks for every thread's stack if it hangs
    # A foreground command in a terminal gets Ctrl-C; a background job of a non-interactive shell
    # (how CI or a script may start pytest) inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler. Start from the terminal's disposition whatever ran the tests.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = ExperimentConfig.from_dict({"name": "sig", "env": {"name": "stag_hunt", "num_games": 8},
                                      "actor": {"num_actors": 2},
                                      "schedule": {"phases": [{"kind": "pretrain", "env_steps": 10**9}]}})
    run_local(cfg, None, progress=False)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_launcher_and_its_actor_processes(tmp_path, sig):
    script, log = tmp_path / "launch.py", tmp_path / "launch.log"
    script.write_text(LAUNCHER)
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, str(script)], stderr=err, stdout=err)
    try:
        deadline = time.monotonic() + 60
        while "actor 1 registered" not in log.read_text() or "actor 0 registered" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        children = [
            int(p) for f in Path(f"/proc/{proc.pid}/task").glob("*/children") for p in f.read_text().split()
        ]
        assert len(children) >= 2
        proc.send_signal(sig)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            pytest.fail(
                f"the launcher did not exit within 60 s of {sig!r}; its log and stacks:\n{log.read_text()}"
            )
        assert code != 0
        # The launcher told the actors the run is over (they did not just die with their parent).
        assert log.read_text().count("the learner ended the run") == 2, log.read_text()
        for pid in children:
            end = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < end:
                time.sleep(0.1)
            assert not _alive(pid), f"child {pid} outlived the launcher"
    finally:
        if proc.poll() is None:
            proc.kill()


def _start_an_actor_then_die(pid_file: str) -> None:
    """A launcher that is killed right after spawning its actor (while the actor is still importing)."""
    import os as _os
    from pathlib import Path as _Path

    from stackrl.runners.launch import _actor_process

    proc = _actor_process("127.0.0.1:9", None, 60.0, "orphan-candidate")
    proc.start()
    _Path(pid_file).write_text(str(proc.pid))
    _os._exit(9)


def _gone(pid: int) -> bool:
    """Exited (a zombie whose new parent has not reaped it counts)."""
    from pathlib import Path as _Path

    try:
        return _Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc are Linux")
def test_an_actor_whose_launcher_died_while_it_started_exits_at_once(tmp_path):
    """Issue 13: a launcher killed early (before its actor asked for the parent-death signal) left the
    actor retrying an absent learner for its whole connect deadline (60 s). It now notices that its
    parent is gone as soon as it starts, and exits."""
    import multiprocessing as _mp
    import time as _time

    pid_file = tmp_path / "actor.pid"
    launcher = _mp.get_context("spawn").Process(target=_start_an_actor_then_die, args=(str(pid_file),))
    launcher.start()
    launcher.join(60)
    pid = int(pid_file.read_text())
    deadline = _time.monotonic() + 30
    while not _gone(pid) and _time.monotonic() < deadline:
        _time.sleep(0.2)
    alive = not _gone(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the orphaned actor was still running 30 s after its launcher died"
