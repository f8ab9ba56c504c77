"""Issue 14: `stackrl sweep GRID.yaml` expands a grid into named runs under one run root, runs them as
a bounded local pool, lists the cells that failed with the command that reruns them, skips finished
cells on a rerun, and `stackrl report` aggregates the root. (The Slurm job-array backend is tested on
a real cluster in tests/deploy/test_slurm_cluster.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stackrl.config import ConfigError
from stackrl.experiments.sweep import Grid, slurm_array_command

CLI = [sys.executable, "-m", "stackrl.deploy.cli"]
# A short schedule: the sweep machinery is under test here, not learning (tests/test_learning.py).
SHORT = [
    "schedule.phases=[{kind: pretrain, env_steps: 6000}, {kind: leader, env_steps: 3000}]",
    "env.num_games=8",
]


def _grid(tmp_path: Path, **extra) -> Path:
    data = {
        "run_root": str(tmp_path / "runs" / "sweep_test"),
        "games": ["stag_hunt", "chicken"],
        "seeds": [0, 1],
        "set": SHORT,
        "concurrency": 2,
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_grid_expands_games_methods_variants_and_seeds(tmp_path: Path):
    grid = Grid.load(
        _grid(
            tmp_path,
            methods=["meta", "inner_outer"],
            variants={"base": [], "fast": ["learner.lr_leader=0.05"]},
        ),
        extra=("seed=99",),
    )
    runs = grid.runs()
    assert len(runs) == 2 * 2 * 2 * 2 and [r.index for r in runs] == list(range(16))
    assert runs[0].name == "stag_hunt_meta_base_s0" and runs[-1].name == "chicken_inner_outer_fast_s1"
    assert len({r.name for r in runs}) == 16
    fast = next(r for r in runs if r.variant == "fast" and r.method == "meta")
    cfg = grid.config(fast)
    assert cfg.learner.lr_leader == 0.05 and cfg.env.name == fast.game and cfg.name == fast.name
    assert cfg.seed == fast.seed  # the grid's seed wins over a --set of it
    assert cfg.run_dir == grid.run_root / fast.name
    assert (runs[4].game, runs[4].method, runs[4].variant, runs[4].seed) == (
        "stag_hunt",
        "inner_outer",
        "base",
        0,
    )
    with pytest.raises(ConfigError, match="unknown grid keys"):
        Grid.load(_grid(tmp_path, gmaes=["x"]))
    with pytest.raises(ConfigError, match="seeds"):
        Grid.load(_grid(tmp_path, seeds=[]))


def test_slurm_backend_submits_one_job_array_with_a_concurrency_limit(tmp_path: Path):
    grid = Grid.load(_grid(tmp_path))
    cmd = slurm_array_command(grid, None, ("learner.threads=1",), ("--time=10",), wait=True)
    assert "--array=0-3%2" in cmd and "--wait" in cmd and "--time=10" in cmd
    assert cmd[-3:] == [str(grid.path.resolve()), "--set", "learner.threads=1"]
    assert "--array=1,3%2" in slurm_array_command(grid, [3, 1], (), (), wait=False)


def test_local_sweep_lists_failures_reruns_them_and_report_aggregates(tmp_path: Path):
    grid = _grid(tmp_path)
    root = tmp_path / "runs" / "sweep_test"
    root.mkdir(parents=True)
    (root / "chicken_meta_s0").write_text("a file where the run directory should go: this cell fails")
    first = subprocess.run(
        [*CLI, "sweep", str(grid)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 1, first.stderr[-3000:]
    assert "3/4 runs done" in first.stdout
    assert "failed: 2 (chicken_meta_s0)" in first.stderr and "--only 2" in first.stderr, first.stderr
    done = {p.parent.name for p in root.glob("*/result.json")}
    assert done == {"stag_hunt_meta_s0", "stag_hunt_meta_s1", "chicken_meta_s1"}
    before = {p: p.stat().st_mtime_ns for p in root.glob("*/result.json")}

    (root / "chicken_meta_s0").unlink()
    rerun = subprocess.run(
        [*CLI, "sweep", str(grid), "--only", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0 and "4/4 runs done" in rerun.stdout, rerun.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished runs were not run again
    listing = subprocess.run([*CLI, "sweep", str(grid), "--list"], capture_output=True, text=True).stdout
    assert listing.count(" done ") == 4, listing
    manifest = json.loads((root / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]][2] == "chicken_meta_s0"

    out = tmp_path / "results.md"
    report = subprocess.run(
        [*CLI, "report", "--runs", str(root), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stderr[-3000:]
    text = out.read_text()
    assert "sweep_test" in text and f"stackrl sweep {grid}" in text
    for game in ("stag_hunt", "chicken"):
        assert game in text
