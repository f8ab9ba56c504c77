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


def test_regret_on_a_given_schedule_and_a_price_off_the_menu_is_refused(tiny_run):
    from stackrl.deploy.cli import main
    from stackrl.experiments.atari_eval import run_eval

    prices = list(tiny_run.env.prices)
    dear = [prices[-1]] * len(tiny_run.env.phase_edges)
    report = run_eval(
        tiny_run.run_dir, episodes=1, regret_steps=40, max_episode_steps=20, regret_schedule=dear
    )
    assert report["regret_schedule"] == dear and math.isfinite(report["follower_regret_mean"])
    bad = ",".join(["0.3"] * len(dear))
    res = CliRunner().invoke(
        main, ["eval", str(tiny_run.run_dir), "--episodes", "1", "--regret-schedule", bad]
    )
    assert res.exit_code == 2 and "not on the menu" in res.output


def test_search_reports_the_best_schedule_with_standard_errors(tiny_run):
    from stackrl.experiments.atari_search import format_search, run_search

    r = run_search(tiny_run.run_dir, episodes=2, max_episode_steps=10, random_restarts=0)
    prices = tiny_run.env.prices
    assert len(r["best_schedule"]) == len(tiny_run.env.phase_edges) and set(r["best_schedule"]) <= set(prices)
    # the search started from every constant schedule and the learned one, so it is at least as good
    assert (
        r["best_revenue"] >= r["best_constant_revenue"] and r["best_revenue"] >= r["learned_schedule_revenue"]
    )
    assert len(r["restarts"]) == len(prices) + 1
    assert math.isfinite(r["best_revenue_se"]) and r["best_revenue_se"] >= 0
    if r["best_revenue"] > 0:
        assert r["leader_fraction_of_best"] == pytest.approx(r["leader_revenue"] / r["best_revenue"])
    assert "of the best schedule" in format_search(r)


def test_video_writes_a_gif_and_a_tensorboard_video(tiny_run, tmp_path):
    from PIL import Image
    from stackrl.experiments.atari_video import frame_ms, run_video

    out = run_video(tiny_run.run_dir, steps=6, gif=tmp_path / "clip.gif")
    assert set(out["clips"]) == {"price 0", "price 1", "learned schedule"}
    for clip in out["clips"].values():
        assert clip["frames"] == 6 and 0.0 <= clip["fire_rate"] <= 1.0
    gif = Image.open(out["gif"])
    assert gif.width == 3 * 84 * 2  # three clips side by side, each frame enlarged twice
    # Pillow merges identical consecutive frames into one longer one: the playing time is what counts
    total = 0
    for i in range(gif.n_frames):
        gif.seek(i)
        total += gif.info["duration"]
    assert total == 6 * frame_ms(15)
    events = list((tiny_run.run_dir / "tb").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for e in events:
        acc = EventAccumulator(str(e))
        acc.Reload()
        tags |= set(acc.Tags()["images"])
    assert {"video/price_0", "video/price_1", "video/learned_schedule"} <= tags


def test_scratch_training_stops_when_its_return_stops_improving():
    """The plateau rule on a small game (the loop is the same for every domain): a return that never
    improves after the first check stops training after `patience` more checks, far below the cap."""
    import numpy as np
    from stackrl.experiments.atari_eval import Plateau, train_scratch_followers

    cfg = build_config("prisoners_dilemma", overrides=["env.num_games=4", "actor.unroll_length=10"])
    checks = []

    def flat(nets):
        checks.append(len(nets))
        return 1.0

    _, info = train_scratch_followers(
        cfg, np.ones(5, np.int64), 100_000, None, plateau=Plateau(every=200, patience=2), evaluate=flat
    )
    assert info["plateaued"] and len(checks) == 3 and len(info["curve"]) == 3
    assert 600 <= info["env_steps"] < 1_000 and info["cap"] == 100_000
    steps = [s for s, _ in info["curve"]]
    assert steps == sorted(steps)
