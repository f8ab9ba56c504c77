"""`stackrl bench atari` end to end on a short window: every figure the issue names, in one run."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from stackrl.config import ActorConfig, ConfigError
from stackrl.deploy.cli import main

KEYS = (
    "raw_env_steps_per_s",
    "actor_inference_per_s",
    "learner_samples_per_s",
    "limit_steps_per_s",
    "end_to_end_steps_per_s",
    "ratio",
)


def test_bench_atari_short_run_reports_every_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "atari.json"
    r = CliRunner().invoke(
        main,
        ["bench", "atari", "--seconds", "4", "--warmup", "3", "--json", str(out)],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    for key in KEYS:
        assert data[key] > 0, key
    assert data["ratio"] == pytest.approx(data["end_to_end_steps_per_s"] / data["limit_steps_per_s"])
    # the limit is the formula over the per-CPU-second component rates
    cost = 1 / data["raw_env_steps_per_cpu_s"] + 1 / data["actor_inference_per_cpu_s"]
    cost += 1 / data["learner_samples_per_cpu_s"]
    assert data["limit_steps_per_s"] == pytest.approx(data["cores"] / cost)
    assert "ratio end-to-end / limit" in r.output


def test_actor_nice_is_validated():
    with pytest.raises(ConfigError, match="actor.nice"):
        ActorConfig(nice=20).validate()
    with pytest.raises(ConfigError, match="actor.nice"):
        ActorConfig(nice=-1).validate()
