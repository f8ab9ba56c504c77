"""Issue 6: a run killed mid-way (SIGKILL of the whole process group) continues with `--resume`:
counters, eval history and TensorBoard curves go on from the checkpoint, nothing restarts from zero,
and the final result.json covers the whole run. A corrupt checkpoint is a one-line error, exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stackrl.learner.checkpoint import load_checkpoint

CLI = [sys.executable, "-m", "stackrl.deploy.cli"]


def _train(cwd: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "train", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=open(cwd / f"train{len(list(cwd.glob('train*.log')))}.log", "w"),
        start_new_session=True,  # its own process group: SIGKILL reaches the learner and its actors
        text=True,
        **kw,
    )


def _scalar_steps(tb_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


# A real ~1 minute training run, killed and resumed: part of CI (issue 6).
def test_killed_run_resumes_and_finishes_with_the_exact_value(tmp_path):
    run = tmp_path / "runs" / "res"
    proc = _train(
        tmp_path,
        "stag_hunt",
        "--name", "res", "--actors", "2", "--no-progress",
        "--set", "schedule.checkpoint_interval_updates=10",
        "--set", "schedule.checkpoint_interval_s=2",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        ckpt = None
        while time.monotonic() < deadline:  # wait for a checkpoint well into the run (with evals)
            assert proc.poll() is None, "the run ended before it could be killed"
            if (run / "checkpoint.pt").exists():
                state = load_checkpoint(run / "checkpoint.pt")
                if state["env_steps"] >= 40_000 and json.loads(state["eval_history_json"]):
                    ckpt = state
                    break
            time.sleep(0.5)
        assert ckpt is not None, "no checkpoint with evaluations was written in time"
        time.sleep(1.0)  # let it run past the checkpoint: that tail is lost and must be purged
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "result.json").exists()
    state = load_checkpoint(run / "checkpoint.pt")  # the newest one, whole (atomic writes)
    ckpt_steps = int(state["env_steps"])
    ckpt_history = json.loads(state["eval_history_json"])
    ckpt_updates = dict(state["updates"])
    assert ckpt_steps > 0 and ckpt_history

    resumed = _train(tmp_path, "--resume", str(run), "--no-progress")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, (tmp_path / "train1.log").read_text()[-3000:]
    log = (tmp_path / "train1.log").read_text()
    assert "resumed from" in log and f"at {ckpt_steps} env steps" in log

    result = json.loads((run / "result.json").read_text())
    assert result["leader_value"] == result["exact_value"]
    assert json.loads(out.strip().splitlines()[-1])["leader_value"] == result["exact_value"]
    # The whole run: the env-step budget counts from zero once, and updates continue.
    assert result["env_steps"]["total"] >= 120_000 + 60_000 > ckpt_steps
    for role, n in ckpt_updates.items():
        assert result["updates"][role] >= n
    assert result["wall_seconds"] > state["wall_seconds"]
    # The eval history is the checkpoint's, then newer points: monotonic, never back to zero.
    history = result["eval_history"]
    assert history[: len(ckpt_history)] == ckpt_history
    steps = [p["env_steps"] for p in history]
    assert steps == sorted(steps) and len(history) > len(ckpt_history)
    assert all(s > ckpt_steps for s in steps[len(ckpt_history) :])

    # TensorBoard: one log dir; with the killed run's tail purged, the curves' steps rise throughout
    # and continue past the checkpoint instead of starting over.
    tb = run / "tb"
    for tag in ("eval/leader_value", "eval/optimality_gap"):
        tb_steps = _scalar_steps(tb, tag)
        assert tb_steps == sorted(tb_steps), tag
        assert tb_steps[0] < ckpt_steps < tb_steps[-1], tag
        assert tb_steps[-1] >= 120_000 + 60_000
    assert [p["env_steps"] for p in ckpt_history] == [
        s for s in _scalar_steps(tb, "eval/leader_value") if s <= ckpt_steps
    ]


def test_resume_of_a_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    run = tmp_path / "runs" / "bad"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: bad\nenv: {name: stag_hunt}\n")
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    proc = subprocess.run(
        [*CLI, "train", "--resume", str(run)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "corrupt" in proc.stderr and "Traceback" not in proc.stderr

    missing = subprocess.run(
        [*CLI, "train", "--resume", str(tmp_path / "runs" / "nope")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "nope" in missing.stderr
