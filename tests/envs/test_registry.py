"""envs/registry.py: a config names a factory, but only the operator's machine decides what may be
imported (issue 13, defect 1: `env.pettingzoo: os:system` from a learner made an actor run it)."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest
from stackrl.config import EnvConfig
from stackrl.envs import registry
from stackrl.envs.factory import make_env

EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
def parallel_env(**kwargs):
    pathlib.Path({marker!r}).write_text("called")
"""


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """A module that leaves a marker file when imported or called; (factory path, marker)."""
    marker = tmp_path / "ran"
    name = f"evil_factory_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_allowed", set())
    yield f"{name}:parallel_env", marker
    sys.modules.pop(name, None)


def test_a_factory_named_only_by_a_config_is_never_imported(evil_module):
    path, marker = evil_module
    cfg = EnvConfig(name="pettingzoo", pettingzoo=path, leader_agent="a", num_games=1)
    with pytest.raises(registry.FactoryNotAllowed, match=r"not an allowed factory.*--allow-factory"):
        make_env(cfg)
    assert not marker.exists()
    with pytest.raises(registry.FactoryNotAllowed):
        registry.check_env_factories(EnvConfig(name="pettingzoo", pettingzoo="os:system", leader_agent="a"))


def test_the_operator_allows_by_flag_environment_or_entry_point(evil_module, monkeypatch):
    path, _ = evil_module
    registry.check_factory("pettingzoo.classic.rps_v2:parallel_env")  # a shipped preset's
    registry.allow_factory(path)
    registry.check_factory(path)
    monkeypatch.setattr(registry, "_allowed", set())
    monkeypatch.setenv(registry.ENV_VAR, f"a.b:c, {path}")
    registry.allow_from_environment()
    registry.check_factory(path)
    monkeypatch.setattr(registry, "_allowed", set())
    monkeypatch.setattr(
        registry,
        "entry_points",
        lambda group: (
            [EntryPoint("mine", "my_pkg.envs:parallel_env", group)] if group == "stackrl.envs" else []
        ),
    )
    registry._entry_point_factories.cache_clear()
    try:
        registry.check_factory("my_pkg.envs:parallel_env")
        with pytest.raises(registry.FactoryNotAllowed):
            registry.check_factory(path)
    finally:
        registry._entry_point_factories.cache_clear()
    with pytest.raises(registry.ConfigError, match="--allow-factory"):
        registry.allow_factory("no_colon")
