"""Issue 14: run directories are never clobbered. The decision itself (fresh, resume, replace, refuse),
the config check of a resume, and the CLI: a taken name refuses to start, and a command that fails
before training (a TLS certificate that does not exist) leaves the existing run byte for byte as it was."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from stackrl.runners.presets import build_config
from stackrl.runners.run_dir import RunDirError, Start, check_same_run, clear, decide

CLI = [sys.executable, "-m", "stackrl.deploy.cli"]


def _finished_run(d: Path) -> Path:
    (d / "tb").mkdir(parents=True)
    (d / "tb" / "events.out.tfevents.1").write_bytes(b"old events")
    (d / "config.yaml").write_text(build_config("stag_hunt").to_yaml(redact_secrets=True))
    (d / "checkpoint.pt").write_bytes(b"old checkpoint")
    (d / "result.json").write_text("{}")
    return d


def test_decisions(tmp_path: Path):
    assert decide(tmp_path / "new") is Start.FRESH
    (tmp_path / "empty").mkdir()
    assert decide(tmp_path / "empty") is Start.FRESH
    run = _finished_run(tmp_path / "run")
    with pytest.raises(RunDirError, match="--resume .* --overwrite"):
        decide(run)
    assert decide(run, resume=True) is Start.RESUME
    assert decide(run, overwrite=True) is Start.REPLACE
    with pytest.raises(RunDirError, match="exclude"):
        decide(run, resume=True, overwrite=True)
    (run / "checkpoint.pt").unlink()  # stopped before its first checkpoint: nothing to resume
    assert decide(run, resume=True) is Start.REPLACE
    clear(run)
    assert run.is_dir() and not list(run.iterdir())


def test_resume_refuses_another_config_but_not_another_address(tmp_path: Path):
    run = _finished_run(tmp_path / "run")
    cfg = build_config("stag_hunt")
    check_same_run(dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, port=5000)), run)
    other = build_config("stag_hunt", overrides=["learner.lr_leader=0.5", "seed=3"])
    with pytest.raises(RunDirError, match=r"learner\.lr_leader, seed differ"):
        check_same_run(other, run)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", ["train", "learner"])
def test_a_taken_name_refuses_to_start(tmp_path: Path, command: str):
    run = _finished_run(tmp_path / "runs" / "stag_hunt")
    before = _snapshot(run)
    proc = subprocess.run([*CLI, command, "stag_hunt"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _snapshot(run) == before


def test_a_learner_that_fails_before_training_writes_nothing_into_the_run(tmp_path: Path):
    run = _finished_run(tmp_path / "runs" / "stag_hunt")
    before = _snapshot(run)
    for flag in ("--overwrite", "--resume"):
        proc = subprocess.run(
            [*CLI, "learner", "stag_hunt", flag, "--tls-cert", "/nonexistent.pem", "--tls-key", "/nope.pem"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and "nonexistent.pem" in proc.stderr, proc.stderr
        assert _snapshot(run) == before, flag
