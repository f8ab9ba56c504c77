"""Learning reaches the exact Stackelberg value (the correctness target).

Each run takes about 20 s on an idle 2-core machine; its wall time is reported by
`stackrl bench matrix`, not asserted here (timed unit tests flake under load).
"""

from __future__ import annotations

import pytest
from stackrl.config import ExperimentConfig
from stackrl.runners.presets import build_config
from stackrl.runners.serial import run_serial


def _config(game: str, seed: int, payoffs: list | None = None) -> ExperimentConfig:
    fields = {"seed": seed, "env": {"payoffs": payoffs}}
    return build_config(game if payoffs is None else "matrix", method="meta", fields=fields)


@pytest.mark.parametrize("game", ["prisoners_dilemma", "chicken", "battle"])
def test_meta_reaches_exact_value(game):
    result = run_serial(_config(game, seed=0), None, progress=False)
    assert result["leader_value"] == result["exact_value"], result["eval_history"][-3:]
    assert result["env_steps"]["total"] <= 300_000


def test_user_bimatrix_reaches_exact_value():
    # A game that is not one of the named twelve: fractional payoffs, leader prefers (1, 1).
    payoffs = [[[2.5, 1.0], [0.0, 3.0]], [[1.0, 0.5], [3.5, 2.0]]]
    result = run_serial(_config("matrix", seed=0, payoffs=payoffs), None, progress=False)
    assert result["leader_value"] == pytest.approx(result["exact_value"])
