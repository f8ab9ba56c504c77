"""Issue 14: a stopped run loses no work. SIGTERM to `stackrl train` or `stackrl learner` mid-run writes
a checkpoint (no periodic one is due: the interval is set far beyond the run) and exits 128 + 15; the
run then finishes with `--resume` at the exact value. The learner's actor, left running across the
restart, reconnects on its own and exits 0 when the resumed run ends."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from stackrl.learner.checkpoint import load_checkpoint

CLI = [sys.executable, "-m", "stackrl.deploy.cli"]
NO_PERIODIC = ["--set", "schedule.checkpoint_interval_s=100000", "--no-progress", "--log-interval", "0.5"]
STEPS = re.compile(r"steps (\d+)/")


def _start(cwd: Path, args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)


def _wait_for_steps(proc: subprocess.Popen, log: Path, at_least: int, timeout: float = 120) -> int:
    """Wait until the status line reports `at_least` env steps (the run is well under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        steps = [int(m) for m in STEPS.findall(log.read_text())]
        if steps and steps[-1] >= at_least:
            return steps[-1]
        time.sleep(0.2)
    raise AssertionError(f"no status line with {at_least} steps\n{log.read_text()[-3000:]}")


def _check_stopped(proc: subprocess.Popen, log: Path, run: Path, seen_steps: int) -> int:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    text = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "stopped by SIGTERM: checkpoint written to" in text and "continue with" in text, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert not (run / "result.json").exists()
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*tmp*")), list(run.iterdir())
    steps = int(load_checkpoint(run / "checkpoint.pt")["env_steps"])
    assert steps >= seen_steps > 0  # written at the signal, not at the start of the run
    return steps


def test_sigterm_to_train_checkpoints_and_resume_finishes(tmp_path: Path):
    run = tmp_path / "runs" / "pre"
    log = tmp_path / "train.log"
    proc = _start(tmp_path, ["train", "stag_hunt", "--name", "pre", "--actors", "1", *NO_PERIODIC], log)
    try:
        seen = _wait_for_steps(proc, log, 20_000)
        ckpt_steps = _check_stopped(proc, log, run, seen)
    finally:
        proc.kill()
    resumed = subprocess.run(
        [*CLI, "train", "--resume", str(run), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at {ckpt_steps} env steps" in resumed.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["leader_value"] == result["exact_value"], result
    assert result["env_steps"]["total"] >= 180_000 > ckpt_steps  # the budget, counted once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_to_learner_checkpoints_and_its_actor_rejoins_the_resumed_run(tmp_path: Path):
    port = _free_port()
    run = tmp_path / "runs" / "pl"
    learner_args = ["learner", "stag_hunt", "--name", "pl", "--port", str(port), *NO_PERIODIC]
    log1, log2, actor_log = tmp_path / "l1.log", tmp_path / "l2.log", tmp_path / "actor.log"
    learner = _start(tmp_path, learner_args, log1)
    actor = _start(
        tmp_path, ["actor", "--learner", f"127.0.0.1:{port}", "--connect-deadline", "60"], actor_log
    )
    try:
        seen = _wait_for_steps(learner, log1, 20_000)
        ckpt_steps = _check_stopped(learner, log1, run, seen)
        time.sleep(1.0)
        # The run is not over: the actor keeps trying to reach its learner instead of exiting.
        assert actor.poll() is None, actor_log.read_text()[-3000:]

        # The same command again refuses the taken name; with --resume it continues the run.
        again = subprocess.run([*CLI, *learner_args], cwd=tmp_path, capture_output=True, text=True)
        assert again.returncode == 2 and "--resume" in again.stderr, again.stderr
        learner = _start(tmp_path, [*learner_args, "--resume"], log2)
        out, _ = learner.communicate(timeout=300)
        assert learner.returncode == 0, log2.read_text()[-3000:]
        assert f"checkpoint.pt at {ckpt_steps} env steps" in log2.read_text()
        assert actor.wait(60) == 0, actor_log.read_text()[-3000:]  # the end of the run ends the actor
    finally:
        learner.kill()
        actor.kill()
    assert "registering again" in actor_log.read_text()
    result = json.loads((run / "result.json").read_text())
    assert result["leader_value"] == result["exact_value"], result
    assert json.loads(out.strip().splitlines()[-1])["leader_value"] == result["exact_value"]
