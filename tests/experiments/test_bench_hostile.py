"""experiments/bench_hostile.py: issue 13's hostile-world round against real learner and actor processes.

The CI round makes 1,000 hostile calls (every RPC and field kind, compressed bombs, in-range poison,
oversize metadata, junk bytes) with idle peers holding streams open; then a real actor trains the
run. The figures must be 0 crashes, 0 hangs, 0 NaN weights, peak RSS growth <= 256 MB, nothing wrongly
accepted, the exact value reached and the learner's exit within 10 s. The 5,000-call round is `slow`.
"""

from __future__ import annotations

import pytest
from stackrl.config import ExperimentConfig
from stackrl.envs.factory import env_spec, make_stackelberg_env
from stackrl.experiments.bench_hostile import RSS_BOUND_MB, format_table, hostile_config, run_hostile_round
from stackrl.experiments.hostile_fuzz import POISON_CASES, HostileCases
from stackrl.learner.learner import Learner
from stackrl.learner.servicer import _check_unroll, check_values, expected_specs
from stackrl.protos import codec


def _check(res) -> None:
    table = format_table(res)
    assert res.crashes == 0, table
    assert res.hangs == 0, table
    assert res.nan_weights == 0 and res.broadcasts_checked > 0, table
    assert res.wrongly_accepted == 0, (table, res.per_kind)
    assert res.rss_growth_mb <= RSS_BOUND_MB, table
    assert res.exact_value == 40.0 and res.leader_value == res.exact_value, table
    assert res.exit_s is not None and res.exit_s <= 10.0 and res.learner_exit_code == 0, table
    assert res.actor_exit_code == 0, table
    assert res.per_kind["push_poison"] == {"OK": POISON_CASES}, res.per_kind  # in range: accepted
    assert res.per_kind["push_bomb"].get("OK", 0) == 0, res.per_kind
    assert res.passed


def test_every_push_mutation_is_invalid_for_the_learner():
    """The generator's own check: every mutation turns a valid unroll into one the learner's checks
    refuse, so an accepted mutated push is a real defect, not noise."""
    cfg: ExperimentConfig = hostile_config()
    spec = env_spec(make_stackelberg_env(cfg.env))
    cases = HostileCases(cfg, spec, "t" * 24, seed=1)
    latest = Learner(cfg, evaluate=False).broadcast()
    specs = expected_specs(spec, cfg)
    for mutate in cases._tensor_mutations():
        for _ in range(4):
            msg = cases.valid()
            mutate(msg)
            with pytest.raises((ValueError, KeyError)):
                layout = specs[msg.role]
                t = codec.decode_trajectory(msg, layout)
                t.validate(layout)
                check_values(t, spec)
                _check_unroll([t], spec, latest)


def test_a_thousand_hostile_calls_then_a_real_actor_reaches_the_exact_value():
    res = run_hostile_round(1000, seed=0)
    print(format_table(res))
    assert res.tried == 1000
    _check(res)


@pytest.mark.slow
def test_five_thousand_hostile_calls():
    res = run_hostile_round(5000, seed=1)
    print(format_table(res))
    assert res.tried == 5000
    _check(res)
