"""Experiment presets: YAML files in deploy/configs/, looked up by name, by game, or by path.

`build_config` is the one way a preset becomes a validated `ExperimentConfig`: every command and
benchmark goes through it, so a preset, a game name and a user YAML resolve the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from stackrl.config import ConfigError, ExperimentConfig, apply_overrides, load_yaml
from stackrl.envs.factory import ATARI_GAMES, check_env_name
from stackrl.envs.matrix_games import GAMES

# The presets are data that ships with the deploy files; reading them imports nothing from deploy/.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "deploy" / "configs"
SECTIONS = ("env", "model", "actor", "learner", "schedule", "server")


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text(), str(path)) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    return data


def load_experiment(experiment: str, method: str | None = None) -> dict[str, Any]:
    """Resolve EXPERIMENT to a config dict (not yet validated).

    Order: an existing YAML file path; a preset name (`deploy/configs/<name>.yaml`); a game name,
    which takes the domain's preset for `method` (meta by default) with `env.name` set to the game.
    """
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml") and path.exists():
        data = _read(path)
    elif (CONFIG_DIR / f"{experiment}.yaml").exists() and method is None:
        data = _read(CONFIG_DIR / f"{experiment}.yaml")
    elif experiment in GAMES or experiment == "matrix":
        data = _read(CONFIG_DIR / f"matrix_{method or 'meta'}.yaml")
        data.setdefault("env", {})["name"] = experiment
        data["name"] = experiment
    elif experiment in ATARI_GAMES:
        data = _read(CONFIG_DIR / f"{experiment}.yaml")
    else:
        raise ConfigError(
            f"unknown experiment {experiment!r}: not a YAML file, a preset ({', '.join(preset_names())}) "
            f"or a game ({', '.join(GAMES)})"
        )
    for section in SECTIONS:
        data.setdefault(section, {})
    return data


def merge(base: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """`base` with `fields` laid over it: nested mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_config(
    experiment: str,
    method: str | None = None,
    fields: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> ExperimentConfig:
    """Preset -> programmatic `fields` (nested, e.g. {"seed": 1, "actor": {"num_actors": 2}}) ->
    the user's `--set key=value` overrides -> a validated config (the env name checked too)."""
    data = merge(load_experiment(experiment, method), fields or {})
    cfg = ExperimentConfig.from_dict(apply_overrides(data, list(overrides)))
    check_env_name(cfg.env)
    return cfg
