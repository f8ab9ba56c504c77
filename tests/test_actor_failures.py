"""Issue 6: failures of actors and of the learner, with real processes on localhost.

- A SIGKILLed actor is restarted by the local launcher (with back-off, logged) and the run still ends
  with the exact Stackelberg value.
- An actor that cannot reach the learner retries with back-off, says why, and exits non-zero after
  `actor.connect_deadline_s`.
- When the learner dies and comes back on the same address (resumed from its checkpoint), actors
  reconnect, register again and act on the restored learner's weights.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from stackrl.actors.main import run_actor_process
from stackrl.config import ExperimentConfig
from stackrl.learner.checkpoint import load_checkpoint
from stackrl.learner.service import LearnerServer


def _children(pid: int) -> list[int]:
    out = []
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(p) for p in f.read_text().split()]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A real ~1 minute training run with a killed actor: part of CI (issue 6).
def test_killed_actor_is_restarted_and_the_run_finishes_exactly(tmp_path):
    log = tmp_path / "train.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stackrl.deploy.cli", "train", "stag_hunt", "--name", "af", "--actors", "2",
             "--no-progress"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            text = log.read_text()
            if text.count("games of stag_hunt") >= 2:
                break
            assert proc.poll() is None, text
            time.sleep(0.2)
        time.sleep(2.0)  # mid-run
        actors = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
        assert len(actors) == 2, [(p, _cmdline(p)) for p in _children(proc.pid)]
        victim = actors[0]
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert f"(pid {victim}) died with exit code -9; restart 1/" in text
    assert "restarted actor-" in text and f"pid {victim} (exit code -9) -> pid" in text
    run = tmp_path / "runs" / "af"
    transport = json.loads((run / "transport.json").read_text())
    restarts = transport["actor_restarts"]
    assert [(r["old_pid"], r["exit_code"]) for r in restarts] == [(victim, -9)]
    assert transport["actor_exit_codes"] == [0, 0]
    # The replacement registered (a third actor id) and contributed.
    assert "actor 2 registered" in text
    assert "2" in transport["actors"] and transport["actors"]["2"]["unrolls"] > 0
    result = json.loads((run / "result.json").read_text())
    assert result["leader_value"] == result["exact_value"]
    assert json.loads(out.strip().splitlines()[-1])["gap"] == 0


def test_unreachable_learner_retries_with_backoff_then_exits_nonzero(caplog):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.WARNING)
    start = time.monotonic()
    code = run_actor_process(address, connect_deadline_s=2.0)
    took = time.monotonic() - start
    assert code == 1
    assert 1.5 < took < 15
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 3 and all(address in m and "unavailable" in m for m in retries)
    delays = [float(m.rsplit(" in ", 1)[1].rstrip("s")) for m in retries]
    assert delays[:3] == [0.1, 0.2, 0.4]  # exponential back-off (the last wait is cut to the deadline)
    assert any("unreachable for 2s" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_unreachable_learner_actor_cli_exits_nonzero():
    proc = subprocess.run(
        [sys.executable, "-m", "stackrl.deploy.cli", "actor", "--learner", f"127.0.0.1:{free_port()}",
         "--connect-deadline", "1.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "unreachable" in proc.stderr and "retry" in proc.stderr


def _cfg(port: int, run_root: Path) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "name": "restart",
            "run_root": str(run_root),
            "env": {"name": "stag_hunt", "num_games": 8},
            "actor": {"unroll_length": 10, "connect_deadline_s": 30},
            "schedule": {
                "phases": [{"kind": "pretrain", "env_steps": 10**9}],
                "checkpoint_interval_updates": 4,
            },
            "server": {"port": port},
        }
    )


def _crash(server: LearnerServer, thread: threading.Thread) -> None:
    """End a learner as a crash would: the service vanishes without telling actors the run is over."""
    server._stop_server(grace_s=0)  # the gRPC server and its event loop, at once
    server.closing = True  # close() must not publish a final 'done' (nobody is listening anyway)
    server.stop()
    thread.join(30)
    server.learner.close()


def test_actor_reconnects_to_a_restarted_learner_and_acts_on_its_weights(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    port = free_port()
    cfg = _cfg(port, tmp_path)
    first = LearnerServer(cfg, cfg.run_dir)
    first.start()
    loop = threading.Thread(target=first.run, kwargs={"progress": False}, daemon=True)
    loop.start()
    result: dict = {}
    actor = threading.Thread(
        target=lambda: result.update(code=run_actor_process(f"127.0.0.1:{port}", connect_deadline_s=30)),
        daemon=True,
    )
    actor.start()
    deadline = time.monotonic() + 60
    while first.learner.updates["follower_0"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    _crash(first, loop)
    saved = load_checkpoint(cfg.run_dir / "checkpoint.pt")["versions"]["follower_0"]
    lost = first.learner.versions["follower_0"]
    assert lost >= saved

    second = LearnerServer(cfg, cfg.run_dir, resume=True)
    assert second.learner.versions["follower_0"] == saved
    second.start()
    assert second.port == port
    loop2 = threading.Thread(target=second.run, kwargs={"progress": False}, daemon=True)
    loop2.start()
    try:
        # Pushes retry on their own back-off and may reach the new learner before the weight stream
        # reconnects; the actor must still notice the restart, register again and keep feeding it.
        deadline = time.monotonic() + 60
        while not ("re-established" in caplog.text and "registering again" in caplog.text):
            assert time.monotonic() < deadline, f"the actor did not notice the restart\n{caplog.text}"
            time.sleep(0.05)
        after = second.learner.updates["follower_0"]
        while second.learner.updates["follower_0"] < after + 5:
            assert time.monotonic() < deadline, "the actor did not come back"
            time.sleep(0.05)
        # It acted on the restored learner's weights: every version it reported is one this learner
        # published, none from the lost tail of the crashed learner.
        per_actor = second.stats.per_actor
        assert per_actor and all(
            a["max_version"]["follower_0"] <= second.learner.versions["follower_0"]
            for a in per_actor.values()
        )
        assert second.learner.env_steps > 0
    finally:
        second.stop()
        loop2.join(30)
        second.close(grace_s=5)
        actor.join(30)
    assert result.get("code") == 0


class _FakeProc:
    pids = iter(range(1000, 2000))

    def __init__(self, name: str):
        self.name, self.pid, self.exitcode = name, next(self.pids), None

    def start(self) -> None:
        pass

    def join(self, timeout=None) -> None:
        pass


def test_supervisor_restarts_with_backoff_up_to_a_cap_and_never_restarts_a_refused_actor(monkeypatch, caplog):
    import stackrl.runners.launch as launch

    monkeypatch.setattr(
        launch, "_actor_process", lambda address, token, deadline, name, *rest: _FakeProc(name)
    )
    caplog.set_level(logging.WARNING)
    sup = launch.ActorSupervisor(
        "127.0.0.1:1", "t", 2, 5.0, max_restarts=2, base_delay_s=0.1, max_delay_s=1.0
    )
    sup.check()  # all running: nothing happens
    first = sup.procs[0]
    first.exitcode = -9
    sup.check()  # schedules a restart after the back-off
    assert sup.procs[0] is first and "restart 1/2 in 0.1s" in caplog.text
    time.sleep(0.12)
    sup.check()
    assert sup.procs[0] is not first and sup.restarts == [1, 0]
    assert sup.restart_log[0]["old_pid"] == first.pid and sup.restart_log[0]["exit_code"] == -9
    sup.procs[0].exitcode = 3  # crashed again: the back-off doubles
    sup.check()
    assert "restart 2/2 in 0.2s" in caplog.text
    time.sleep(0.22)
    sup.check()
    assert sup.restarts == [2, 0]
    sup.procs[0].exitcode = -9  # out of restarts: the run stops
    with pytest.raises(launch.LaunchError, match=r"actor-0 \(pid \d+\) exited with code -9 after 2 restarts"):
        sup.check()

    sup2 = launch.ActorSupervisor("127.0.0.1:1", "t", 1, 5.0)
    sup2.procs[0].exitcode = 1  # refused (bad token / unreachable): restarting cannot help
    with pytest.raises(launch.LaunchError, match="exited with code 1; stopping the run"):
        sup2.check()
