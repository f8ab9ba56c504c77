"""Experiment presets: YAML files in deploy/configs/, looked up by name, by game, or by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from stackrl.config import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping")
    return data


def load_experiment(experiment: str, method: str | None = None) -> dict[str, Any]:
    """Resolve EXPERIMENT to a config dict (not yet validated).

    Order: an existing YAML file path; a preset name (`deploy/configs/<name>.yaml`); a game name,
    which takes the domain's preset for `method` (meta by default) with `env.name` set to the game.
    """
    from stackrl.envs.factory import ATARI_GAMES
    from stackrl.envs.matrix_games import GAMES

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
    for section in ("env", "model", "actor", "learner", "schedule", "server"):
        data.setdefault(section, {})
    data["method_tag"] = method or "meta"
    return data
