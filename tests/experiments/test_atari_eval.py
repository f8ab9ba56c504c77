"""`stackrl eval` on a tiny trained Atari pricing checkpoint: per-price table and a regret number."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("envpool")

from click.testing import CliRunner  # noqa: E402
from stackrl.runners.presets import build_config  # noqa: E402
from stackrl.runners.serial import run_serial  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    phases = [{"kind": "pretrain", "env_steps": 80}, {"kind": "leader", "env_steps": 40}]
    overrides = [
        "name=tiny_eval",
        f"run_root={root}",
        "env.num_games=2",
        "env.num_threads=1",
        "env.max_episode_steps=40",
        "actor.num_actors=1",
        "actor.unroll_length=20",
        "learner.batch_trajectories=1",
        "schedule.eval_interval_updates=1000000",
    ]
    cfg = build_config("space_invaders_pricing", fields={"schedule": {"phases": phases}}, overrides=overrides)
    run_serial(cfg, cfg.run_dir, progress=False)
    return cfg


def test_eval_report(tiny_run):
    from stackrl.experiments.atari_eval import format_report, run_eval

    report = run_eval(tiny_run.run_dir, episodes=2, regret_steps=80, max_episode_steps=30)
    prices = tiny_run.env.prices
    assert [row["price"] for row in report["per_price"]] == prices
    for row in report["per_price"]:
        assert 0.0 <= row["fire_rate"][0] <= 1.0 and 0.0 <= row["fire_prob"][0] <= 1.0
        assert row["revenue"] >= 0.0
        # revenue of a constant schedule = price_scale * price * FIRE actions (greedy play)
        if row["price"] == 0.0:
            assert row["revenue"] == 0.0
    assert len(report["leader_schedule"]) == len(tiny_run.env.phase_edges)
    assert set(report["leader_schedule"]) <= set(prices)
    assert report["best_constant_revenue"] == max(r["revenue"] for r in report["per_price"])
    assert math.isfinite(report["follower_regret_mean"])
    assert report["scratch_training"]["env_steps"] >= 80
    assert report["scratch_training"]["updates"]["follower_0"] > 0
    assert "follower regret" in format_report(report)


def test_eval_cli(tiny_run, tmp_path):
    from stackrl.deploy.cli import main

    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        main,
        [
            "eval",
            str(tiny_run.run_dir),
            "--episodes",
            "1",
            "--regret-steps",
            "0",
            "--max-steps",
            "20",
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "leader revenue" in res.output
    report = json.loads(out.read_text())
    assert len(report["per_price"]) == len(tiny_run.env.prices) and "follower_regret" not in report
