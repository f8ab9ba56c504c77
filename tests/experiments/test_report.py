"""`stackrl report` on a tiny synthetic runs directory: the numbers land in results.md, PNGs are valid."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from stackrl.deploy.cli import main
from stackrl.experiments.report import ReportError, generate, steps_to_value, summarise_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(root, game, method, seed, value, exact, history, wall, initial=(0, 0, 0, 0, 0), pretrain=0):
    d = root / "bench_matrix" / f"{game}_{method}_s{seed}"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"name: {d.name}\nseed: {seed}\nenv:\n  name: {game}\n")
    total = history[-1][0]
    res = {
        "name": d.name,
        "game": game,
        "method": method,
        "seed": seed,
        "leader_value": value,
        "follower_value": 20.0,
        "leader_answers": [1, 0, 0, 1, 1],
        "env_steps": (
            {"0_pretrain": pretrain, "1_leader": total - pretrain, "total": total}
            if pretrain
            else {"0_phase": total, "total": total}
        ),
        "steps_to_final": history[-1][0],
        "wall_seconds": wall,
        "exact_value": exact,
        "gap": exact - value,
        "eval_history": [
            {
                "env_steps": s,
                "leader_value": v,
                "gap": exact - v,
                "wall_seconds": 0.1 * i,
                "leader_answers": list(initial) if i == 0 else [1, 0, 0, 1, 1],
            }
            for i, (s, v) in enumerate(history)
        ],
    }
    (d / "result.json").write_text(json.dumps(res))


def _fake_runs(root):
    _run(
        root,
        "prisoners_dilemma",
        "meta",
        0,
        31.0,
        31.0,
        [(1000, 10.0), (2000, 31.0), (3000, 31.0)],
        12.5,
        pretrain=1500,
    )
    optimal = (1, 0, 0, 1, 1)  # seed 1 starts from an optimal commitment: nothing to learn
    _run(
        root,
        "prisoners_dilemma",
        "meta",
        1,
        29.0,
        31.0,
        [(1000, 10.0), (2000, 29.0), (3000, 29.0)],
        13.5,
        initial=optimal,
    )
    _run(
        root,
        "prisoners_dilemma",
        "inner_outer",
        0,
        31.0,
        31.0,
        [(10000, 10.0), (20000, 10.0), (27000, 31.0)],
        77.25,
    )
    _run(
        root,
        "prisoners_dilemma",
        "inner_outer",
        1,
        23.0,
        31.0,
        [(10000, 10.0), (20000, 23.0), (30000, 23.0)],
        80.75,
        initial=optimal,
    )
    ab = root / "ablations" / "queries"
    ab.mkdir(parents=True)
    (ab / "ablation.json").write_text(
        json.dumps(
            {
                "ablation": "queries",
                "command": "stackrl ablation queries --games chicken --seeds 0",
                "description": "hidden vs observed",
                "variants": ["hidden", "observed"],
                "rows": [
                    {
                        "game": "chicken",
                        "variant": "hidden",
                        "seed": 0,
                        "exact_value": 33.0,
                        "leader_value": 33.0,
                        "gap": 0.0,
                        "env_steps_total": 1000,
                        "wall_seconds": 1.0,
                    },
                    {
                        "game": "chicken",
                        "variant": "observed",
                        "seed": 0,
                        "exact_value": 33.0,
                        "leader_value": 27.5,
                        "gap": 5.5,
                        "env_steps_total": 1000,
                        "wall_seconds": 1.0,
                    },
                    {
                        "game": "deadlock",
                        "variant": "observed",
                        "seed": 0,
                        "exact_value": 30.0,
                        "leader_value": 35.0,
                        "gap": -5.0,
                        "env_steps_total": 1000,
                        "wall_seconds": 1.0,
                    },
                ],
            }
        )
    )
    dv = root / "divergence" / "chicken_s0"
    dv.mkdir(parents=True)
    (dv / "divergence.json").write_text(
        json.dumps(
            {
                "game": "chicken",
                "exact_value": 33.0,
                "command": "stackrl divergence --game chicken --budget 100",
                "labels": {"query": "query oracle", "naive": "naive BR"},
                "curves": {
                    "query": [{"env_steps": [0, 50, 100], "leader_value": [20.0, 30.0, 33.0]}],
                    "naive": [{"env_steps": [0, 50, 100], "leader_value": [20.0, 21.0, 19.0]}],
                },
                "summary": {
                    "query": [{"seed": 0, "final_value": 33.0, "final_policy": "10011", "env_steps": 100}],
                    "naive": [
                        {
                            "seed": 0,
                            "final_value": 19.0,
                            "final_policy": "11111",
                            "env_steps": 100,
                            "distinct_last_half": 3,
                        }
                    ],
                },
            }
        )
    )


def test_steps_to_value():
    h = [
        {"env_steps": 1, "leader_value": 3.0},
        {"env_steps": 2, "leader_value": 5.0},
        {"env_steps": 3, "leader_value": 3.0},
        {"env_steps": 4, "leader_value": 5.0},
    ]
    assert steps_to_value(h, 5.0) == 4
    assert steps_to_value(h[:3], 5.0) is None


def test_summary_numbers(tmp_path):
    _fake_runs(tmp_path)
    from stackrl.experiments.report import discover

    collections, ablations, divergences = discover([tmp_path])
    assert set(collections) == {"bench_matrix"} and len(ablations) == 1 and len(divergences) == 1
    s = {x["method"]: x for x in summarise_runs(collections["bench_matrix"])}
    assert s["meta"]["median_value"] == 30.0 and s["meta"]["values"] == [31.0, 29.0]
    assert s["meta"]["steps_to_exact"] == float("inf")  # median of {2000, never}
    assert s["inner_outer"]["reached"] == 1
    assert s["inner_outer"]["wall_seconds"] == 79.0


def test_report_writes_numbers_and_pngs(tmp_path):
    runs = tmp_path / "runs"
    _fake_runs(runs)
    out = tmp_path / "docs" / "results.md"
    r = CliRunner().invoke(main, ["report", "--runs", str(runs), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    for needle in [
        "prisoners_dilemma",
        "31 / 29",
        "31 / 23",
        "| 79 |",
        "28500",
        "2000",
        "stackrl bench matrix --games prisoners_dilemma --seeds 0,1 --methods meta,inner_outer",
        "stackrl ablation queries --games chicken --seeds 0",
        "27.5",
        "5.5",
        "stackrl divergence --game chicken --budget 100",
        "11111",
        "Negative gap (value above the strong Stackelberg value): deadlock (observed, seed 0)",
        "seeds where the leader must learn",
        "| 0 | 13.5 | 54 |",  # seed 0 only: inner-outer 27000 / meta 2000 (500 after pretraining)
        f"stackrl report --runs {runs}",
    ]:
        assert needle in text, needle
    pngs = sorted((tmp_path / "docs" / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"curves_bench_matrix.png", "efficiency_bench_matrix.png", "divergence_chicken.png"} <= names
    for p in pngs:
        data = p.read_bytes()
        assert len(data) > 100 and data[:8] == PNG_MAGIC
        assert f"figures/{p.name}" in text


def test_report_empty(tmp_path):
    out = tmp_path / "r.md"
    (tmp_path / "runs").mkdir()
    r = CliRunner().invoke(main, ["report", "--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert r.exit_code == 0 and "No runs found" in out.read_text()


def _break_result(root, text):
    (root / "bench_matrix" / "prisoners_dilemma_meta_s0" / "result.json").write_text(text)


def _break_config(root, text):
    (root / "bench_matrix" / "prisoners_dilemma_meta_s0" / "config.yaml").write_text(text)


def _result_is_a_folder(root):
    d = root / "bench_matrix" / "prisoners_dilemma_meta_s0"
    (d / "result.json").unlink()
    (d / "result.json").mkdir()


@pytest.mark.parametrize(
    ("damage", "bad_file", "reason"),
    [
        (lambda root: shutil.rmtree(root), ".", "no such directory"),
        (lambda root: _break_result(root, '{"leader_value": 31.0, '), "result.json", "not valid JSON"),
        (lambda root: _break_result(root, "[1, 2]"), "result.json", "expected a JSON object, got list"),
        (_result_is_a_folder, "result.json", "cannot read it"),
        (lambda root: _break_config(root, "env: [unclosed"), "config.yaml", "not a valid run config"),
        (lambda root: _break_config(root, "nmae: x\n"), "config.yaml", "nmae: unknown key"),
        (
            lambda root: (root / "ablations" / "queries" / "ablation.json").write_text("{"),
            "ablation.json",
            "not valid JSON",
        ),
    ],
)
def test_an_unreadable_run_stops_the_report_naming_the_file(tmp_path, damage, bad_file, reason):
    runs = tmp_path / "runs"
    _fake_runs(runs)
    damage(runs)
    out = tmp_path / "results.md"
    with pytest.raises(ReportError) as err:
        generate([runs], out)
    assert isinstance(err.value, ValueError)  # what a command line catches as a usage error
    message = str(err.value)
    assert "\n" not in message and reason in message, message
    if bad_file == ".":
        assert err.value.path == runs and str(runs) in message
    else:
        assert err.value.path.name == bad_file and str(err.value.path) in message
    assert not out.exists()  # the old results page is left alone


def test_report_command_prints_one_error_line_for_an_unreadable_run(tmp_path):
    r = CliRunner().invoke(
        main, ["report", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "r.md")]
    )
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        f"error: cannot report on {tmp_path / 'missing'}: no such directory"
    ], r.output


def test_oracle_ablation_then_report(tmp_path, monkeypatch):
    """The oracle ablation's learning-dynamics variants (fast ones only) end up as a report section."""
    from stackrl.experiments import ablations

    spec = dict(ablations.ABLATIONS["oracle"])
    spec["variants"] = {k: v for k, v in spec["variants"].items() if k in ("q_learning", "exact")}
    monkeypatch.setitem(ablations.ABLATIONS, "oracle", spec)
    res = ablations.run_ablation(
        "oracle", ["chicken"], [0], str(tmp_path / "abl"), q_budget=60_000, q_block_episodes=20
    )
    assert [r["variant"] for r in res["rows"]] == ["q_learning", "exact"]
    assert all(r["exact_value"] == 40.0 and r["env_steps_total"] <= 60_000 for r in res["rows"])
    assert (tmp_path / "abl" / "oracle" / "q_learning" / "chicken_s0" / "oracle_result.json").exists()
    out = tmp_path / "results.md"
    r = CliRunner().invoke(main, ["report", "--runs", str(tmp_path / "abl"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert "## Ablation: oracle" in text and "stackrl ablation oracle --games chicken --seeds 0" in text
    assert "q_learning: value (median)" in text
    png = tmp_path / "figures" / "ablation_oracle.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and "figures/ablation_oracle.png" in text


def test_user_bimatrices_are_told_apart_by_run_name(tmp_path):
    from stackrl.experiments.report import discover

    for user, exact in (("user0", 35.0), ("user1", 22.0)):
        d = tmp_path / "bench_matrix" / f"{user}_meta_s0"
        d.mkdir(parents=True)
        res = {
            "name": d.name,
            "game": "matrix",
            "method": "meta",
            "seed": 0,
            "leader_value": exact,
            "exact_value": exact,
            "gap": 0.0,
            "env_steps": {"total": 10},
            "steps_to_final": 10,
            "wall_seconds": 1.0,
            "eval_history": [{"env_steps": 10, "leader_value": exact}],
        }
        (d / "result.json").write_text(json.dumps(res))
    collections, _, _ = discover([tmp_path])
    rows = {s["game"]: s["exact_value"] for s in summarise_runs(collections["bench_matrix"])}
    assert rows == {"matrix (user0)": 35.0, "matrix (user1)": 22.0}


def test_ablation_table_shows_value_against_best_response_and_regret_when_rows_have_them(tmp_path):
    from stackrl.experiments.report import ablation_section

    rows = [
        {"game": "g", "variant": v, "seed": 0, "exact_value": 31.0, "leader_value": val, "gap": 31.0 - val}
        for v, val in (("hidden", 31.0), ("observed", 40.0))
    ]
    rows[1]["leader_value_vs_best_response"] = 20.0
    rows[0]["follower_regret"] = 0.0
    ab = {
        "ablation": "x",
        "command": "c",
        "_dir": str(tmp_path),
        "variants": ["hidden", "observed"],
        "rows": rows,
    }
    text = ablation_section(ab)
    assert "observed: value vs BR (median)" in text and "hidden: follower regret (max)" in text
    assert "| g | 31 | 31 | 31 | 0 | – | 0 | 40 | 40 | -9 | 20 | – |" in text


def test_equilibrium_cell_counts_agreement_and_the_worst_regret():
    from stackrl.experiments.report import equilibrium_cell

    checks = [
        {"agrees_with_best_response": True, "follower_regret": 0.0},
        {"agrees_with_best_response": False, "follower_regret": 3.0},
    ]
    assert equilibrium_cell(checks, 2) == "1/2 (regret max 3)"
    assert equilibrium_cell([], 3) == "–"  # runs from before the check


def test_an_atari_eval_report_becomes_a_section_with_the_searched_fraction_and_the_gif(tmp_path):
    from PIL import Image
    from stackrl.experiments.atari_eval import record_eval

    run = tmp_path / "runs" / "si"
    run.mkdir(parents=True)
    gif = run / "follower_prices.gif"
    Image.new("RGB", (4, 4)).save(gif)
    per_price = [
        {"price": p, "fire_rate": [f], "fire_prob": [f], "follower_return": [r], "revenue": v, "steps": 9}
        for p, f, r, v in [(0.0, 0.9, 200.0, 0.0), (0.5, 0.1, 50.0, 12.5)]
    ]
    record_eval(
        run,
        {
            "run_dir": str(run),
            "game": "space_invaders_pricing",
            "followers": ["follower_0"],
            "episodes": 16,
            "followers_act": "sampled",
            "max_episode_steps": 2500,
            "env_steps_trained": 1000,
            "followers_from": "runs/pre",
            "per_price": per_price,
            "leader_schedule": [0.0, 0.5],
            "leader_revenue": 30.0,
            "best_constant_price": 0.5,
            "best_constant_revenue": 12.5,
        },
    )
    # a later `stackrl eval --search --video --skip-report` adds its parts to the same file
    search = {
        "schedules_evaluated": 7,
        "episodes_per_schedule": 16,
        "best_schedule": [0.0, 0.5],
        "best_revenue": 31.0,
        "best_revenue_se": 2.0,
        "leader_revenue": 30.0,
        "leader_revenue_se": 1.5,
        "leader_fraction_of_best": 0.968,
        "leader_fraction_of_best_se": 0.08,
    }
    video = {"gif": str(gif), "clips": {"price 0": {"frames": 3, "fire_rate": 0.9}}, "tensorboard": "tb"}
    record_eval(run, {"search": search, "video": video})
    out = tmp_path / "docs" / "results.md"
    generate([tmp_path / "runs"], out)
    text = out.read_text()
    assert "## Atari pricing: `si` (space_invaders_pricing)" in text
    assert "**0.968 ± 0.080** of it" in text and "best constant price 0.5: 12.50" in text
    assert "pretrained in `runs/pre`" in text
    assert (out.parent / "figures" / "atari_si.gif").exists() and "figures/atari_si.gif" in text
