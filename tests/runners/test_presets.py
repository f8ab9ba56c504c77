"""runners/presets.py: `build_config` resolves a preset name, a game name (with a method) or a YAML
path, lays programmatic fields over it and the user's overrides over those, and names the key of
whatever is wrong."""

from __future__ import annotations

import pytest
import yaml
from stackrl.config import ConfigError, ExperimentConfig
from stackrl.runners.presets import CONFIG_DIR, build_config, merge, preset_names


def _preset(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())


def _kinds(cfg: ExperimentConfig) -> list[str]:
    return [p.kind for p in cfg.schedule.phases]


def test_a_preset_by_name_is_its_yaml_file():
    assert {"matrix_meta", "matrix_inner_outer", "rps"} <= set(preset_names())
    cfg = build_config("rps")
    data = _preset("rps")
    assert cfg.name == "rps"
    assert cfg == ExperimentConfig.from_dict(data)  # nothing added or lost on the way
    assert cfg.env.pettingzoo == data["env"]["pettingzoo"]


@pytest.mark.parametrize("method", [None, "meta", "inner_outer"])
def test_a_game_name_takes_the_methods_matrix_preset(method):
    cfg = build_config("chicken", method=method)
    preset = _preset(f"matrix_{method or 'meta'}")
    assert cfg.name == "chicken" and cfg.env.name == "chicken"
    assert _kinds(cfg) == [p["kind"] for p in preset["schedule"]["phases"]]
    assert cfg.learner.lr_leader == preset["learner"]["lr_leader"]
    assert cfg.env.num_games == preset["env"]["num_games"]


def test_a_yaml_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nseed: 4\nenv: {name: deadlock, num_games: 3}\n")
    cfg = build_config(str(path))
    assert (cfg.name, cfg.seed, cfg.env.name, cfg.env.num_games) == ("mine", 4, "deadlock", 3)
    assert cfg.learner == ExperimentConfig().learner  # unset sections keep their defaults


def test_fields_merge_into_the_preset_and_overrides_win_over_both():
    preset = _preset("matrix_meta")
    fields = {"seed": 3, "env": {"num_games": 5}, "actor": {"num_actors": 2}}
    cfg = build_config("stag_hunt", fields=fields)
    assert (cfg.seed, cfg.env.num_games, cfg.actor.num_actors) == (3, 5, 2)
    # A nested field replaces one key, not its section.
    assert cfg.env.name == "stag_hunt" and cfg.env.queries == preset["env"]["queries"]
    assert cfg.actor.unroll_length == preset["actor"]["unroll_length"]
    cfg = build_config("stag_hunt", fields=fields, overrides=["env.num_games=7", "seed=9"])
    assert (cfg.seed, cfg.env.num_games, cfg.actor.num_actors) == (9, 7, 2)
    assert fields == {"seed": 3, "env": {"num_games": 5}, "actor": {"num_actors": 2}}  # not mutated


def test_merge_leaves_its_inputs_alone():
    base = {"env": {"name": "a", "num_games": 1}, "seed": 0}
    out = merge(base, {"env": {"num_games": 2}})
    assert out == {"env": {"name": "a", "num_games": 2}, "seed": 0}
    assert base == {"env": {"name": "a", "num_games": 1}, "seed": 0}


def test_unknown_experiment_names_it():
    with pytest.raises(ConfigError, match="unknown experiment 'no_such_game': not a YAML file, a preset"):
        build_config("no_such_game")


@pytest.mark.parametrize(
    "source",
    [
        lambda tmp: build_config("chicken", fields={"env": {"name": "no_such_game"}}),
        lambda tmp: build_config("chicken", overrides=["env.name=no_such_game"]),
        lambda tmp: build_config(_write(tmp, "env: {name: no_such_game}\n")),
    ],
)
def test_unknown_env_name_names_the_key(tmp_path, source):
    with pytest.raises(ConfigError, match=r"^env\.name: unknown game 'no_such_game'; known: .*chicken"):
        source(tmp_path)


def test_bad_values_and_bad_yaml_name_the_key_or_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"env\.num_games: must be >= 1"):
        build_config("chicken", overrides=["env.num_games=0"])
    with pytest.raises(ConfigError, match="env.nmu_games: unknown key"):
        build_config("chicken", fields={"env": {"nmu_games": 3}})
    path = _write(tmp_path, "env: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid YAML"):
        build_config(path)


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return str(path)
