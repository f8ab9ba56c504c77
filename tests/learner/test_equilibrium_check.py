"""The post-training equilibrium check: a fresh tabular follower trained by the cross-entropy method
against a frozen leader table finds the exact best response, stops on a plateau, and reports regret."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.envs.matrix_games import GAMES, resolve_game
from stackrl.envs.solver import episode_values
from stackrl.learner.equilibrium_check import (
    FreshFollowerBudget,
    best_response_follower_value,
    equilibrium_check,
    train_fresh_follower,
)
from stackrl.learner.tabular_q import MatrixGameSpec, QLearning, greedy_tables, play, q_learn, zero_q

REFERENCE_HIDDEN_QUERIES = [[[4, 3], [2, 4]], [[3, 1], [1, 2]]]


def games() -> list[MatrixGameSpec]:
    named = [MatrixGameSpec.of(*resolve_game(n, None, None)) for n in GAMES]
    return [*named, MatrixGameSpec.of(REFERENCE_HIDDEN_QUERIES, 5, "small")]


@pytest.mark.parametrize("game", games(), ids=[*GAMES, "reference_small_memory"])
def test_fresh_follower_agrees_with_the_exact_best_response_on_every_leader_table(game):
    lp, _, _, v_f = episode_values(game.payoffs, game.length, game.memory)
    for i, table in enumerate(lp):
        fresh = train_fresh_follower(game, table, seed=i)
        assert fresh.follower_value == pytest.approx(v_f[i].max()), (table, fresh)
        assert fresh.plateaued and fresh.iterations < FreshFollowerBudget().max_iterations


def test_q_learning_misses_a_best_response_the_fresh_follower_finds():
    """Why the check does not use Q-learning: against this prisoners' dilemma leader the best
    stationary response over 10 steps is worth 31, the discounted Q-learner settles for 30."""
    game = MatrixGameSpec.of(*resolve_game("prisoners_dilemma", None, None))
    leader = np.array([[0, 0, 0, 1, 0]])
    q = zero_q(game, 1)
    q_learn(game, leader, q, 2000, np.random.default_rng(0), QLearning())
    assert play(game, leader, greedy_tables(q))[0, 1] == 30.0
    assert best_response_follower_value(game, leader[0]) == 31.0
    assert train_fresh_follower(game, leader[0]).follower_value == 31.0


def test_the_cap_stops_training_without_a_plateau():
    game = MatrixGameSpec.of(*resolve_game("chicken", None, None))
    budget = FreshFollowerBudget(patience=50, max_iterations=3)
    fresh = train_fresh_follower(game, np.zeros(5, np.int64), budget=budget)
    assert not fresh.plateaued and fresh.iterations == 3
    assert fresh.env_steps == 3 * budget.population * game.length


def test_regret_is_the_fresh_follower_minus_the_contextual_one():
    game = MatrixGameSpec.of(*resolve_game("prisoners_dilemma", None, None))
    always_defect = np.ones(5, np.int64)
    check = equilibrium_check(game, always_defect, contextual_follower_value=12.0)
    assert check["fresh_follower_value"] == check["best_response_follower_value"] == 20.0
    assert check["follower_regret"] == 8.0 and check["agrees_with_best_response"]
    assert check["fresh_follower_leader_value"] == 20.0
