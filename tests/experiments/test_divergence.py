"""Theorem 2 demo: the naive leader (follower best-responds to its current parameters) misses the SSE
on the iterated prisoner's dilemma; the query-based construction reaches it with the same budget."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from stackrl.deploy.cli import main
from stackrl.experiments.divergence import exact_value, run_divergence


def test_naive_leader_misses_sse_query_leader_reaches_it():
    exact = exact_value("prisoners_dilemma")
    assert exact == 31.0
    naive = run_divergence("prisoners_dilemma", "naive", budget=60_000, seed=0)
    query = run_divergence("prisoners_dilemma", "query", budget=60_000, seed=0)
    assert naive.env_steps[-1] == query.env_steps[-1] <= 60_000
    assert naive.leader_value[-1] < exact - 5  # settles on (near) mutual defection, value 19-20
    assert query.leader_value[-1] == exact


def test_bad_method():
    with pytest.raises(ValueError):
        run_divergence("chicken", "other", budget=100)


def test_divergence_cli(tmp_path):
    r = CliRunner().invoke(
        main,
        [
            "divergence",
            "--game",
            "prisoners_dilemma",
            "--budget",
            "20000",
            "--seeds",
            "0",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "prisoners_dilemma" / "divergence.json").read_text())
    assert data["exact_value"] == 31.0 and "stackrl divergence" in data["command"]
    assert len(data["curves"]["naive"]) == 1 and data["summary"]["naive"][0]["env_steps"] <= 20000
