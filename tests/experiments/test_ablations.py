"""The query ablations of experiments/ablations.py without training: each variant's overrides reach
the config, the table has one row per (game, variant, seed), finished runs with the same config are
reused (also across ablations), and the oracle variants run the tabular leader."""

from __future__ import annotations

import json

import pytest
from stackrl.experiments import ablations
from stackrl.learner.learner import Learner


def fake_result(cfg) -> dict:
    """What a finished serial run of `cfg` returns (result.json), with the seed in the value."""
    return {
        "exact_value": 40.0,
        "leader_value": 30.0 + cfg.seed,
        "gap": 10.0 - cfg.seed,
        "leader_answers": [0, 1, 0, 1, 0],
        "eval_history": [{"env_steps": 100, "leader_value": 40.0}, {"env_steps": 200, "leader_value": 40.0}],
        "env_steps": {"total": 1000 + cfg.seed},
        "wall_seconds": 2.5,
    }


@pytest.fixture
def trained(monkeypatch):
    """Replace serial training with a fake that writes what a finished run leaves (config.yaml as the
    learner writes it, result.json); returns the list of configs it was asked to train."""
    import stackrl.runners.serial as serial

    calls = []

    def run_serial(cfg, run_dir, progress=True):
        assert run_dir == cfg.run_dir and progress is False
        calls.append(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml(redact_secrets=True))
        res = fake_result(cfg)
        (run_dir / "result.json").write_text(json.dumps(res))
        return res

    monkeypatch.setattr(serial, "run_serial", run_serial)
    return calls


def test_every_ablation_has_a_description_and_two_or_more_variants():
    assert set(ablations.ABLATIONS) == {
        "queries",
        "invariance",
        "oracle",
        "es-leader",
        "q-reset",
        "leader-reward-during-adaptation",
    }
    for spec in ablations.ABLATIONS.values():
        assert spec["description"] and len(spec["variants"]) >= 2
    # not serial runs: the tabular leaders
    assert ablations.ABLATIONS["oracle"]["variants"]["q_learning"]["runner"] == "oracle"
    assert ablations.ABLATIONS["es-leader"]["variants"]["observed,contextual"]["runner"] == "es"


def test_unknown_ablation_names_the_known_ones(tmp_path):
    with pytest.raises(
        ValueError, match="unknown ablation 'nope'; known: queries, invariance, oracle, es-leader"
    ):
        ablations.run_ablation("nope", ["chicken"], [0], run_root=str(tmp_path))


def test_variant_overrides_reach_the_config(tmp_path):
    cfg = ablations._cfg(
        "chicken", 3, ["env.queries=observed", "env.commit=false"], tmp_path, ("env.num_games=8",)
    )
    assert (cfg.env.name, cfg.seed, cfg.name) == ("chicken", 3, "chicken_s3")
    assert cfg.env.queries == "observed" and cfg.env.commit is False
    assert cfg.env.num_games == 8  # the caller's extra overrides come last
    assert cfg.actor.num_actors == 1
    assert cfg.run_dir == tmp_path / "chicken_s3"


def test_the_table_has_a_row_per_game_variant_and_seed(tmp_path, trained):
    out = ablations.run_ablation("invariance", ["chicken", "stag_hunt"], [0, 1], run_root=str(tmp_path))
    assert out["variants"] == ["commit=false,hidden", "commit=false,observed"]
    assert out["command"] == "stackrl ablation invariance --games chicken,stag_hunt --seeds 0,1"
    rows = out["rows"]
    assert [(r["game"], r["variant"], r["seed"]) for r in rows] == [
        (g, v, s) for g in ("chicken", "stag_hunt") for v in out["variants"] for s in (0, 1)
    ]
    assert [(c.env.name, c.env.queries, c.env.commit, c.seed) for c in trained] == [
        (g, q, False, s) for g in ("chicken", "stag_hunt") for q in ("hidden", "observed") for s in (0, 1)
    ]
    row = rows[1]
    assert row == {
        "game": "chicken",
        "variant": "commit=false,hidden",
        "seed": 1,
        "exact_value": 40.0,
        "leader_value": 31.0,
        "gap": 9.0,
        "leader_answers": [0, 1, 0, 1, 0],
        "steps_to_exact": 100,
        "env_steps_total": 1001,
        "wall_seconds": 2.5,
    }
    # Variant folders have file-system-friendly names; the table is written next to them.
    assert (tmp_path / "invariance" / "commit-false_hidden" / "chicken_s1" / "result.json").exists()
    assert json.loads((tmp_path / "invariance" / "ablation.json").read_text()) == out


def test_finished_runs_are_reused_and_only_new_seeds_train(tmp_path, trained):
    ablations.run_ablation("queries", ["chicken"], [0], run_root=str(tmp_path))
    assert len(trained) == 2
    out = ablations.run_ablation("queries", ["chicken"], [0, 1], run_root=str(tmp_path))
    assert [(c.env.queries, c.seed) for c in trained[2:]] == [("hidden", 1), ("observed", 1)]
    assert len(out["rows"]) == 4 and not any("reused_from" in r for r in out["rows"])


def test_the_same_config_in_another_ablation_is_reused_from_there(tmp_path, trained):
    ablations.run_ablation("queries", ["chicken"], [0], run_root=str(tmp_path))
    out = ablations.run_ablation(
        "oracle", ["chicken"], [0], run_root=str(tmp_path), q_budget=2_000, q_block_episodes=5
    )
    assert len(trained) == 2  # the contextual variant is the queries ablation's hidden run
    contextual, q_learning, exact = out["rows"]
    assert contextual["variant"] == "contextual"
    assert contextual["reused_from"] == str(tmp_path / "queries" / "hidden" / "chicken_s0")
    assert contextual["leader_value"] == 30.0
    # The oracle variants run the tabular leader and keep its result next to the table.
    for row in (q_learning, exact):
        assert row["exact_value"] == 40.0 and row["env_steps_total"] <= 2_000
        saved = tmp_path / "oracle" / row["variant"] / "chicken_s0" / "oracle_result.json"
        assert json.loads(saved.read_text())["method"] == f"oracle_{row['variant']}"


def test_a_run_the_learner_started_is_recognised_by_its_config(tmp_path):
    cfg = ablations._cfg("chicken", 0, ["env.queries=hidden"], tmp_path / "queries" / "hidden", ())
    Learner(cfg, cfg.run_dir, evaluate=False).close()  # writes config.yaml as a real run does
    assert ablations._same_run(cfg, tmp_path) is None  # not finished: no result.json
    (cfg.run_dir / "result.json").write_text("{}")
    assert ablations._same_run(cfg, tmp_path) == cfg.run_dir
    other = ablations._cfg("chicken", 0, ["env.queries=observed"], tmp_path / "queries" / "hidden", ())
    assert ablations._same_run(other, tmp_path) is None  # a different config is never reused


def test_the_reference_games_resolve_to_their_payoffs_memory_and_length(tmp_path):
    cfg = ablations._cfg("hidden_queries_2x2", 0, ["env.queries=hidden"], tmp_path, ())
    assert cfg.env.name == "matrix" and cfg.env.memory == "small" and cfg.env.episode_length == 5
    assert cfg.env.payoffs == [[[4, 3], [2, 4]], [[3, 1], [1, 2]]]


def test_q_reset_and_leader_reward_arms_differ_only_in_their_switch(tmp_path):
    out = ablations.run_ablation(
        "q-reset", ["battle_of_the_sexes"], [1], run_root=str(tmp_path), q_budget=50_000
    )
    reset, carried = out["rows"]
    assert (reset["variant"], carried["variant"]) == ("reset", "carried")
    assert reset["leader_value"] == 2.0 and carried["leader_value"] == 1.0  # the reference's direction
    saved = json.loads(
        (tmp_path / "q-reset" / "carried" / "battle_of_the_sexes_s1" / "oracle_result.json").read_text()
    )
    assert saved["reset"] is False and saved["block_episodes"] == 10
    assert out["notes"].startswith("Outcome: carried ended below reset on 1 of 1 (game, seed) runs")
    on = ablations.ABLATIONS["leader-reward-during-adaptation"]["variants"]["on"]
    off = ablations.ABLATIONS["leader-reward-during-adaptation"]["variants"]["off"]
    assert {k for k in on if on[k] != off[k]} == {"leader_reward_during_adaptation"}


def test_es_leader_variants_run_the_es_leader(tmp_path, monkeypatch):
    import stackrl.experiments.es_leader as es_leader
    import torch

    class CopiesTheAnswer(torch.nn.Module):
        """Stands in for the pretrained follower (pretraining takes a minute): plays the answer to
        the start state, a best response in battle of the sexes."""

        def forward(self, obs, context):
            return torch.nn.functional.one_hot(context[:, 0], 2).float(), torch.zeros(obs.shape[0])

    asked = []
    monkeypatch.setattr(
        es_leader, "pretrained_follower", lambda g, s, d: asked.append(d) or CopiesTheAnswer()
    )
    out = ablations.run_ablation(
        "es-leader", ["battle_of_the_sexes"], [0], run_root=str(tmp_path), es_budget=3_000
    )
    # one follower per game and seed, shared by the hidden and observed contextual variants
    assert asked == [tmp_path / "es-leader" / "follower" / "battle_of_the_sexes_s0"] * 2
    rows = {r["variant"]: r for r in out["rows"]}
    assert rows["hidden,contextual"]["leader_value"] == 2.0
    assert rows["hidden,exact"]["leader_value"] == 2.0 and rows["hidden,exact"]["env_steps_total"] <= 3_000
    assert "leader_value_vs_best_response" in rows["observed,exact"]


def test_finding_counts_outcomes_from_the_rows():
    rows = [
        {"game": "g", "seed": 0, "variant": "reset", "leader_value": 2.0, "gap": 0.0},
        {"game": "g", "seed": 0, "variant": "carried", "leader_value": 1.0, "gap": 1.0},
        {"game": "g", "seed": 1, "variant": "reset", "leader_value": 2.0, "gap": 0.0},
        {"game": "g", "seed": 1, "variant": "carried", "leader_value": 3.0, "gap": -1.0},
    ]
    text = ablations.finding("q-reset", rows)
    assert "carried ended below reset on 1 of 2 (game, seed) runs, equal on 0, above on 1" in text
    assert "carried: 0/2 at the exact value, 1 below, 1 above" in text
