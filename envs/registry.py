"""Which environment factories this process may import: a registry the operator populates.

A config names a PettingZoo factory as `package.module:callable`, and configs arrive from places the
operator does not control: an actor takes its whole config from the learner's registration reply,
and `stackrl train --resume` reads a run directory someone may have handed over. Importing and
calling whatever such a config names let a process answering at the learner's address make an actor
run `os:system` (issue 13, defect 1). So a name resolves only if this machine allows it, through:
- the factories of the presets this package ships (`BUILTIN_FACTORIES`);
- Python entry points in the group `stackrl.envs` of installed distributions (a package that ships
  a game declares `[project.entry-points."stackrl.envs"] my_game = "my_pkg.envs:parallel_env"`);
- `allow_factory()`, which the command line calls for each `--allow-factory module:callable` (or the
  `STACKRL_ALLOW_FACTORY` environment variable) given to `stackrl train`, `learner` and `actor`.
Nothing a config says can add to it.
"""

from __future__ import annotations

import functools
import os
from importlib.metadata import entry_points

from stackrl.config import ConfigError, EnvConfig

ENTRY_POINT_GROUP = "stackrl.envs"

BUILTIN_FACTORIES = frozenset(
    {
        "pettingzoo.classic.rps_v2:parallel_env",  # deploy/configs/rps.yaml
        "pettingzoo.atari.pong_v3:parallel_env",  # deploy/configs/pong.yaml
    }
)
"""Factories of the presets in deploy/configs: PettingZoo's own environments."""

_allowed: set[str] = set()


class FactoryNotAllowed(ConfigError):
    """A config names a factory this machine has not allowed; the message says how to allow it."""


def allow_factory(path: str) -> None:
    """Allow `package.module:callable` in this process (the operator's own command line)."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"--allow-factory: expected 'package.module:callable', got {path!r}")
    _allowed.add(path)


ENV_VAR = "STACKRL_ALLOW_FACTORY"
"""Factories allowed by the environment (whitespace- or comma-separated): set on the operator's machine,
and how `--allow-factory` reaches the actor processes the local launcher spawns."""


def allow_from_environment() -> None:
    """Allow the factories listed in `STACKRL_ALLOW_FACTORY` (the operator's environment)."""
    for path in os.environ.get(ENV_VAR, "").replace(",", " ").split():
        allow_factory(path)


def export_allowed() -> None:
    """Put this process's `allow_factory` list into `STACKRL_ALLOW_FACTORY` for child processes."""
    if _allowed:
        os.environ[ENV_VAR] = " ".join(sorted(_allowed))


@functools.lru_cache(maxsize=1)
def _entry_point_factories() -> frozenset[str]:
    return frozenset(ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP))


def allowed_factories() -> frozenset[str]:
    """Every factory this process may import."""
    return BUILTIN_FACTORIES | _entry_point_factories() | frozenset(_allowed)


def check_factory(path: str) -> None:
    """Raise `FactoryNotAllowed` unless `path` is allowed on this machine (nothing is imported)."""
    if path not in allowed_factories():
        raise FactoryNotAllowed(
            f"env.pettingzoo: {path!r} is not an allowed factory on this machine. A config cannot "
            f"make a process import code: allow it with --allow-factory {path} (or the "
            f"STACKRL_ALLOW_FACTORY environment variable), or install it as a '{ENTRY_POINT_GROUP}' "
            "entry point (docs/byog.md)"
        )


def check_env_factories(cfg: EnvConfig) -> None:
    """Every factory `cfg` would import is allowed (call it before building anything from `cfg`)."""
    if cfg.pettingzoo is not None:
        check_factory(cfg.pettingzoo)
