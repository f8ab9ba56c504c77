"""experiments/sample_efficiency.py: which seeds the leader must learn on (decided by the exact
solver), and the step counts and ratios built on it."""

from __future__ import annotations

import pytest
from stackrl.config import EnvConfig
from stackrl.envs.matrix_games import GAMES
from stackrl.envs.solver import solve
from stackrl.experiments.sample_efficiency import (
    MISS,
    initial_answers,
    leader_phase_steps,
    must_learn,
    pretrain_steps,
    ratio,
)

PD = EnvConfig(name="prisoners_dilemma")
OPTIMAL = solve(GAMES["prisoners_dilemma"], 10)  # value 31


def result(first_answers: list[int] | None, exact: float | None = OPTIMAL.value) -> dict:
    """A result.json whose first evaluation (before any leader update) saw `first_answers`."""
    first = {"env_steps": 1000, "leader_value": 10.0}
    if first_answers is not None:
        first["leader_answers"] = first_answers
    later = {"env_steps": 2000, "leader_value": 31.0, "leader_answers": OPTIMAL.leader_policies[0]}
    return {"exact_value": exact, "eval_history": [first, later]}


@pytest.mark.parametrize("table", OPTIMAL.leader_policies)
def test_nothing_to_learn_when_the_first_commitment_is_optimal(table):
    assert must_learn(PD, result(table)) is False


@pytest.mark.parametrize(
    "table",
    [
        [0, 0, 0, 0, 0],  # always cooperate: worth 10 against the exact best response
        [1, 1, 1, 1, 1],  # always defect: 20
    ],
)
def test_the_leader_must_learn_from_a_suboptimal_first_commitment(table):
    assert must_learn(PD, result(table)) is True
    # Only the first evaluation counts: the run ended optimal, but it had to get there.
    assert initial_answers(result(table)) == table


@pytest.mark.parametrize(
    ("env", "res"),
    [
        (PD, result(None)),  # the evaluation recorded no answers
        (PD, result([0, 0, 0, 0, 0], exact=None)),  # no exact value (not a matrix game)
        (PD, {"exact_value": 31.0, "eval_history": []}),
        (PD, result([0, 0, 0])),  # answers that are no table of this game
        (EnvConfig(name="space_invaders_pricing"), result([0, 0, 0, 0, 0])),
    ],
)
def test_unknown_when_the_solver_cannot_say(env, res):
    assert must_learn(env, res) is None


def test_steps_counted_after_pretraining_and_ratios():
    env_steps = {"0_pretrain": 160_000, "1_leader": 35_000, "total": 195_000}
    assert pretrain_steps(env_steps) == 160_000
    assert leader_phase_steps(162_240, env_steps) == 2_240
    assert leader_phase_steps(9_600, env_steps) == 0  # held the value before pretraining ended
    assert leader_phase_steps(None, env_steps) is None
    assert ratio([1000, 2000, 3000], [20_000, 40_000, 50_000], 60_000) == 20.0
    assert ratio([1000, 2000, 3000], [20_000, None, None], 60_000) == ">30.0"  # median baseline missed
    assert ratio([None, None, 2000], [20_000], 60_000) is None  # meta's median missed
    assert ratio([0, 0, 5], [100], 1000) == "inf"
    assert ratio([], [1], 1) is None and float("inf") == MISS
