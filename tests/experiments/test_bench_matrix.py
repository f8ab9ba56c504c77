"""The short CI version of `stackrl bench matrix` (the full one is documented in the README)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from stackrl.deploy.cli import main
from stackrl.experiments.bench_matrix import summarise


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
    assert rows["meta"]["env_steps_total"] <= 300_000
    # inner-outer ran on its own budget (0.3 x the meta budget) and reports its value honestly.
    assert rows["inner_outer"]["env_steps_total"] >= 0.3 * 250_000
    assert "assurance" in result.output and "io/meta" in result.output
    assert (tmp_path / "runs" / "bench_matrix" / "command.txt").read_text() == (
        "stackrl bench matrix --games assurance --seeds 0 --methods meta,inner_outer "
        "--inner-outer-factor 0.3 --run-root runs/bench_matrix\n"
    )
    assert data["rows"][0]["must_learn"] in (True, False)


def _row(method, seed, steps, must_learn, total, pretrain=0):
    phases = {"0_pretrain": pretrain, "1_leader": total - pretrain} if pretrain else {"0_inner_outer": total}
    return {
        "game": "g",
        "method": method,
        "seed": seed,
        "exact_value": 1.0,
        "leader_value": 1.0 if steps is not None else 0.0,
        "gap": 0.0 if steps is not None else 1.0,
        "steps_to_exact": steps,
        "env_steps_total": total,
        "env_steps": {**phases, "total": total},
        "wall_seconds": 1.0,
        "must_learn": must_learn,
    }


def test_summary_ratio_marks_misses():
    rows = [_row("meta", 0, 1000, True, 2000), _row("inner_outer", 0, None, True, 20000)]
    (line,) = summarise(rows, 10.0)
    assert line["ratio"] == ">20.0"  # 10 x meta's 2000-step budget / meta's 1000 steps to exact
    assert line["ratio_must_learn"] == ">20.0" and line["must_learn_seeds"] == [0]
    rows[1] = _row("inner_outer", 0, 15000, True, 20000)
    (line,) = summarise(rows, 10.0)
    assert line["ratio"] == 15.0


def test_summary_ratio_over_seeds_where_the_leader_must_learn():
    """Seed 0's initial commitment is already optimal (the baseline reaches it after one follower
    training); seeds 1 and 2 must learn. The second ratio uses seeds 1 and 2 only."""
    rows = [
        _row("meta", 0, 1000, False, 2000, pretrain=1100),
        _row("meta", 1, 1200, True, 2000, pretrain=1100),
        _row("meta", 2, 1400, True, 2000, pretrain=1100),
        _row("inner_outer", 0, 100, False, 20000),
        _row("inner_outer", 1, 15000, True, 20000),
        _row("inner_outer", 2, None, True, 20000),
    ]
    (line,) = summarise(rows, 10.0)
    assert line["ratio"] == round(15000 / 1200, 2)  # medians over all seeds: 15000 / 1200
    assert line["must_learn_seeds"] == [1, 2]
    # medians over seeds 1, 2: meta 1300; inner-outer (15000, miss) -> miss -> 20000 / 1300
    assert line["ratio_must_learn"] == f">{20000 / 1300:.1f}"
    # Amortised: meta counted after its 1100 pretraining steps, seeds 1, 2 -> median(100, 300) = 200.
    assert line["ratio_amortized"] == f">{20000 / 200:.1f}"
    rows[5] = _row("inner_outer", 2, 17000, True, 20000)
    (line,) = summarise(rows, 10.0)
    assert line["ratio_amortized"] == round(16000 / 200, 2)
    for r in rows:
        r["must_learn"] = False
    (line,) = summarise(rows, 10.0)
    assert line["must_learn_seeds"] == [] and line["ratio_must_learn"] is None
    assert line["ratio_amortized"] is None


def test_reuse_reads_configs_saved_before_a_key_existed(tmp_path):
    """--reuse compares configs through the dataclasses: a key added since (at its default) does not
    void a finished run, a changed value does."""
    from stackrl.experiments.bench_matrix import _same_config, matrix_config

    cfg = matrix_config("chicken", None, "meta", 0, 10.0, 0, (), str(tmp_path))
    text = cfg.to_yaml(redact_secrets=True)
    older = "\n".join(line for line in text.splitlines() if "current_answer" not in line)
    assert older != text and _same_config(older, cfg)
    assert not _same_config(text.replace("lr_leader: 0.02", "lr_leader: 0.03"), cfg)
    assert not _same_config("env: {name: [", cfg)
    moved = text.replace(f"run_root: {tmp_path}", "run_root: runs/bench_matrix")
    assert moved != text and _same_config(moved, cfg)  # found under another spelling of its root


def test_random_suite_is_reproducible_and_has_something_to_learn():
    from stackrl.envs.solver import episode_values, strong_best_response
    from stackrl.experiments.bench_matrix import random_games

    games = random_games(8, seed=3)
    assert games == random_games(8, seed=3) and games != random_games(8, seed=4)
    for memory in ("full", "small", "none"):
        for p in random_games(5, seed=1, memory=memory):
            assert all(0 <= x <= 9 and isinstance(x, int) for row in p for cell in row for x in cell)
            _, _, v_l, v_f = episode_values(p, 10, memory)
            values = strong_best_response(v_l, v_f)[1]
            assert values.min() < values.max()  # not every commitment reaches the exact value


def test_outcome_tells_follower_errors_from_leader_errors():
    from stackrl.experiments.bench_matrix import outcome

    row = {"exact_value": 60.0}
    assert outcome({**row, "gap": 0.0, "leader_value_vs_best_response": 60.0}) == "exact"
    # An optimal commitment the learned follower misplays.
    assert outcome({**row, "gap": 10.0, "leader_value_vs_best_response": 60.0}) == "follower_error"
    # The follower responds exactly to a commitment that is not optimal.
    assert outcome({**row, "gap": 3.0, "leader_value_vs_best_response": 57.0}) == "leader_error"
    # A follower error that scores the exact value (or more) is no exact run: the leader exploited it.
    assert outcome({**row, "gap": 0.0, "leader_value_vs_best_response": 50.0}) == "follower_error"
    assert outcome({**row, "gap": -24.0, "leader_value_vs_best_response": 55.0}) == "follower_error"


def test_bench_command_reproduces_its_options():
    from stackrl.experiments.bench_matrix import MatrixBench

    b = MatrixBench(random=30, random_seed=5, memory="small", methods="meta", actors=2, background_load=True)
    assert b.game_names() == []
    assert b.command() == (
        "stackrl bench matrix --seeds 0,1,2 --methods meta --random 30 --random-seed 5 --memory small "
        "--actors 2 --background-load --run-root runs/bench_matrix"
    )
    assert len(MatrixBench().game_names()) == 12


def test_steps_to_kept_leader_counts_to_the_end_of_the_kept_restart():
    from stackrl.experiments.bench_matrix import steps_to_kept_leader

    res = {
        "restart_values": [50.0, 51.0, 47.0, 51.0],
        "env_steps": {
            "0_pretrain": 100,
            "1_leader": 10,
            "2_leader": 10,
            "3_leader": 10,
            "4_leader": 10,
            "total": 140,
        },
    }
    assert steps_to_kept_leader(res) == 120  # pretraining + two restarts; the later tie is not kept
    assert steps_to_kept_leader({"env_steps": {"total": 5}}) is None


def test_steps_to_kept_leader_follows_the_screen_and_the_recorded_kept_candidate():
    from stackrl.experiments.bench_matrix import env_steps_total, steps_to_kept_leader

    phases = {"0_pretrain": 100, "1_leader": 10, "2_leader": 10, "3_leader": 10, "total": 130}
    # The screen's candidate comes first: kept, it was found when the first restart began.
    screened = {"restart_values": [51.0, 50.0, 51.0, 47.0], "screened_commitments": 32, "env_steps": phases}
    assert steps_to_kept_leader(screened) == 100
    # A later candidate of equal value kept by the consistency tie-break: the recorded index counts.
    assert steps_to_kept_leader({**screened, "kept_candidate": 2}) == 120
    assert env_steps_total({**screened, "selection_env_steps": 320}) == 450
    assert env_steps_total({"env_steps": {"total": 7}}) == 7


def test_steps_to_exact_with_restarts_counts_to_the_kept_leader_and_the_selections_steps():
    from stackrl.experiments.bench_matrix import steps_to_exact

    phases = {"0_pretrain": 100, "1_leader": 10, "2_leader": 10, "total": 120}
    # The history dips while a later restart trains; the reported leader (kept first) never did.
    history = [{"env_steps": 105, "leader_value": 40.0}, {"env_steps": 115, "leader_value": 30.0}]
    res = {
        "restart_values": [40.0, 40.0],
        "kept_candidate": 0,
        "env_steps": phases,
        "eval_history": history,
        "leader_value": 40.0,
        "exact_value": 40.0,
        "selection_env_steps": 7,
    }
    assert steps_to_exact(res) == 110 + 7
    assert steps_to_exact({**res, "leader_value": 30.0}) is None
    plain = {"env_steps": phases, "eval_history": history[:1], "exact_value": 40.0, "leader_value": 40.0}
    assert steps_to_exact(plain) == 105
