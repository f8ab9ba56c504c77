"""The short CI version of `stackrl bench matrix` (the full one is documented in the README)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from stackrl.deploy.bench_matrix import summarise
from stackrl.deploy.cli import main


def test_bench_matrix_short(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "matrix",
            "--games",
            "assurance",
            "--seeds",
            "0",
            "--methods",
            "meta,inner_outer",
            "--inner-outer-factor",
            "0.3",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["meta"]["exact_value"] == 40.0
    assert rows["meta"]["gap"] == 0.0
    assert rows["meta"]["env_steps_total"] <= 200_000
    # inner-outer ran on its own budget (0.3 x the meta budget) and reports its value honestly.
    assert rows["inner_outer"]["env_steps_total"] >= 0.3 * 195_000
    assert "assurance" in result.output and "io/meta" in result.output


def test_summary_ratio_marks_misses():
    rows = [
        {
            "game": "g",
            "method": "meta",
            "exact_value": 1.0,
            "leader_value": 1.0,
            "gap": 0.0,
            "steps_to_exact": 1000,
            "env_steps_total": 2000,
            "wall_seconds": 1.0,
        },
        {
            "game": "g",
            "method": "inner_outer",
            "exact_value": 1.0,
            "leader_value": 0.0,
            "gap": 1.0,
            "steps_to_exact": None,
            "env_steps_total": 20000,
            "wall_seconds": 1.0,
        },
    ]
    (line,) = summarise(rows, 10.0)
    assert line["ratio"] == ">20.0"  # 10 x meta's 2000-step budget / meta's 1000 steps to exact
    rows[1].update(leader_value=1.0, gap=0.0, steps_to_exact=15000)
    (line,) = summarise(rows, 10.0)
    assert line["ratio"] == 15.0
