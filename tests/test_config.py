"""The typed experiment config: defaults, strict loading, validation errors that name the key, YAML round trip."""

from __future__ import annotations

import copy
import re

import pytest
from stackrl.config import (
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    PhaseConfig,
    ScheduleConfig,
    apply_overrides,
)


def load(patch: dict) -> ExperimentConfig:
    """The default config's dict with `patch` merged in (nested dicts merge, other values replace)."""
    data = ExperimentConfig().to_dict()

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(data, copy.deepcopy(patch))
    return ExperimentConfig.from_dict(data)


def test_defaults_are_valid():
    cfg = ExperimentConfig()
    cfg.validate()
    assert cfg.env.name == "prisoners_dilemma"
    assert [p.kind for p in cfg.schedule.phases] == ["pretrain", "leader"]
    assert cfg.schedule.total_env_steps == sum(p.env_steps for p in cfg.schedule.phases)
    assert ExperimentConfig.from_dict({}) == cfg
    assert ExperimentConfig.from_yaml("") == cfg


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"bogus": 1}, "bogus"),
        ({"env": {"bogus": 1}}, "env.bogus"),
        ({"learner": {"lr": 0.1}}, "learner.lr"),
        ({"schedule": {"phases": [{"kind": "leader", "steps": 5}]}}, "schedule.phases[0].steps"),
    ],
)
def test_unknown_keys_are_rejected_by_full_path(patch, key):
    with pytest.raises(ConfigError, match="^" + re.escape(key)):
        load(patch)


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"seed": "zero"}, "seed"),
        ({"actor": {"num_actors": "two"}}, "actor.num_actors"),
        ({"actor": {"unroll_length": 2.5}}, "actor.unroll_length"),
        ({"env": {"commit": "yes"}}, "env.commit"),
        ({"env": {"num_games": None}}, "env.num_games"),
        ({"learner": {"lr_leader": "fast"}}, "learner.lr_leader"),
        ({"env": 3}, "env"),
        ({"schedule": {"phases": "pretrain"}}, "schedule.phases"),
        ({"actor": {"num_actors": True}}, "actor.num_actors"),  # YAML `true` is not a count
        ({"learner": {"discount": False}}, "learner.discount"),
    ],
)
def test_wrong_types_are_rejected_naming_the_key(patch, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        load(patch)


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"actor": {"num_actors": 0}}, "actor.num_actors"),
        ({"actor": {"unroll_length": 0}}, "actor.unroll_length"),
        ({"learner": {"lr_leader": -0.01}}, "learner.lr_leader"),
        ({"learner": {"lr_follower": 0.0}}, "learner.lr_follower"),
        ({"learner": {"discount": 1.5}}, "learner.discount"),
        ({"learner": {"discount": 0.0}}, "learner.discount"),
        ({"learner": {"clip_rho": 0.0}}, "learner.clip_rho"),
        ({"learner": {"device": "tpu"}}, "learner.device"),
        ({"env": {"queries": "sometimes"}}, "env.queries"),
        ({"env": {"num_games": 0}}, "env.num_games"),
        ({"env": {"episode_length": 0}}, "env.episode_length"),
        ({"env": {"tie_break": -0.1}}, "env.tie_break"),
        ({"env": {"phase_edges": [0, 500, 250]}}, "env.phase_edges"),
        ({"model": {"context_join": "add"}}, "model.context_join"),
        ({"schedule": {"phases": []}}, "schedule.phases"),
        ({"schedule": {"phases": [{"kind": "warmup"}]}}, r"schedule.phases\[0\].kind"),
        (
            {"schedule": {"phases": [{"kind": "leader"}, {"kind": "leader", "env_steps": 0}]}},
            r"schedule.phases\[1\].env_steps",
        ),
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"tls_cert": "cert.pem"}}, "server.tls_cert"),
        ({"name": "a/b"}, "name"),
        ({"seed": -1}, "seed"),
    ],
)
def test_impossible_values_are_rejected_naming_the_key(patch, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        load(patch)


@pytest.mark.parametrize(
    "payoffs",
    [
        [[[1, 2], [3, 4]], [[1, 2]]],  # ragged rows
        [[[1, 2, 3], [3, 4, 5]]],  # triples
        [[[1, 2], [3]]],  # a short pair
        [],  # no rows
        [[]],  # no columns
    ],
)
def test_payoffs_must_be_rectangular(payoffs):
    with pytest.raises(ConfigError, match="^env.payoffs"):
        load({"env": {"name": "matrix", "payoffs": payoffs}})


def test_valid_user_payoffs_load():
    cfg = load(
        {"env": {"name": "matrix", "payoffs": [[[1, 0.5], [0, 2]], [[2, 1], [3, 0]], [[0, 0], [1, 1]]]}}
    )
    assert len(cfg.env.payoffs) == 3


def test_errors_raised_at_construction_too():
    with pytest.raises(ConfigError, match="^schedule.phases"):
        ExperimentConfig(schedule=ScheduleConfig(phases=[]))
    with pytest.raises(ConfigError, match="^env.queries"):
        ExperimentConfig(env=EnvConfig(queries="both"))
    assert issubclass(ConfigError, ValueError)


def test_apply_overrides():
    data = ExperimentConfig().to_dict()
    out = apply_overrides(
        data,
        [
            "learner.lr_leader=0.05",
            "env.name=stag_hunt",
            "env.commit=false",
            "actor.num_actors=3",
            "env.payoffs=[[[1, 2]]]",
        ],
    )
    assert data["learner"]["lr_leader"] == ExperimentConfig().learner.lr_leader  # the input is not modified
    cfg = ExperimentConfig.from_dict(out)
    assert cfg.learner.lr_leader == 0.05
    assert cfg.env.name == "stag_hunt"
    assert cfg.env.commit is False
    assert cfg.actor.num_actors == 3
    assert cfg.env.payoffs == [[[1, 2]]]
    # A value that parses but is impossible is caught when the config is built.
    with pytest.raises(ConfigError, match="^actor.num_actors"):
        ExperimentConfig.from_dict(apply_overrides(data, ["actor.num_actors=0"]))


@pytest.mark.parametrize(
    "override, match",
    [
        ("learner.lr=0.1", "learner.lr"),
        ("nope.x=1", "nope.x"),
        ("bogus=1", "bogus"),
        ("env.name.inner=1", "env.name.inner"),
        ("learner.lr_leader", "expected key=value"),
    ],
)
def test_apply_overrides_rejects_unknown_paths(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(ExperimentConfig().to_dict(), [override])


def test_yaml_round_trip():
    cfg = ExperimentConfig(
        name="round_trip",
        seed=7,
        env=EnvConfig(
            name="matrix", payoffs=[[[1.5, 0.0], [2.0, -1.0]], [[0.0, 1.0], [3.0, 2.5]]], tie_break=0.01
        ),
        schedule=ScheduleConfig(
            phases=[
                PhaseConfig("pretrain", 500),
                PhaseConfig("alternate", 900, follower_updates=3, leader_updates=2),
            ]
        ),
    )
    text = cfg.to_yaml()
    back = ExperimentConfig.from_yaml(text)
    assert back == cfg
    assert back.to_yaml() == text
    assert ExperimentConfig.from_yaml(ExperimentConfig().to_yaml()) == ExperimentConfig()


def test_yaml_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        ExperimentConfig.from_yaml("- just\n- a list\n")


def test_leader_episode_trajectories_need_a_committed_leader():
    with pytest.raises(ConfigError, match="actor.leader_trajectories.*env.commit"):
        ExperimentConfig.from_dict(
            {"env": {"name": "chicken", "commit": False}, "actor": {"leader_trajectories": "episodes"}}
        )
    with pytest.raises(ConfigError, match="actor.leader_trajectories"):
        ExperimentConfig.from_dict({"env": {"name": "chicken"}, "actor": {"leader_trajectories": "unroll"}})
