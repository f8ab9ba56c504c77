"""benchmarks/device_check.sh runs here with its CUDA parts skipped (--cpu-only) and tiny windows,
and leaves in $OUT what the GPU run leaves: each part's JSON, device_check.json and the table."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "device_check.sh"


def test_device_check_runs_on_cpu_with_cuda_parts_skipped(tmp_path):
    out = tmp_path / "out"
    # a 3 s window: one actor's first unroll can take over a second on a loaded 2-core machine
    args = ["--cpu-only", "--seconds", "3", "--atari-actors", "1"]
    args += ["--scale-actors", "2", "--scale-seconds", "1", "--scale-warmup", "0.5", "--scale-record", "1"]
    done = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "CUDA learner rates skipped" in done.stdout
    result = json.loads((out / "device_check.json").read_text())
    assert result["machine"]["cpu_only"] is True and result["learner_rates"] == []
    assert result["bench_atari"]["actors"] == 1 and result["bench_atari"]["end_to_end_steps_per_s"] > 0
    (row,) = result["bench_scale"]["rows"]
    assert row["update"] is False and row["served"] == 2 and row["failed"] == 0
    table = (out / "device_check.md").read_text()
    assert "| bench atari |" in table and "| no update | 2 | 2 |" in table


def test_device_check_refuses_to_run_without_out(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-only"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0 and "set OUT" in done.stderr
