"""The enumerated small matrix game of experiments/tabular_game.py: its exact value is the exact
solver's, its table index is lexicographic, its softmax is a distribution."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.envs.matrix_games import GAMES, resolve_game
from stackrl.envs.solver import enumerate_policies, solve
from stackrl.experiments.tabular_game import TabularGame, softmax


@pytest.mark.parametrize("name", ["prisoners_dilemma", "chicken", "battle_of_the_sexes"])
def test_exact_value_is_the_solvers(name):
    g = TabularGame(name)
    payoffs, length = resolve_game(name, None, None)
    sol = solve(payoffs, length)
    assert g.exact == sol.value
    assert g.length == length and (g.n_l, g.n_f) == (2, 2) and g.s == 5
    # The leader's best table is one of the solver's optimal commitments, and it is worth g.exact.
    best = int(g.value.argmax())
    assert g.lp[best].tolist() in sol.leader_policies
    assert g.value[best] == g.exact


def test_episode_length_overrides_the_default():
    assert TabularGame("prisoners_dilemma", 3).length == 3
    assert TabularGame("prisoners_dilemma", 3).exact == solve(GAMES["prisoners_dilemma"], 3).value


def test_index_is_the_lexicographic_position_of_a_table():
    g = TabularGame("stag_hunt")
    tables = enumerate_policies(g.n_l, g.s)
    assert np.array_equal(g.index(tables), np.arange(len(tables)))
    assert np.array_equal(g.lp, tables)  # the value table is in that order too


def test_softmax_rows_are_distributions_and_shift_invariant():
    logits = np.array([[0.0, 0.0], [1000.0, 0.0], [1.0, 3.0]])
    p = softmax(logits)
    assert np.allclose(p.sum(axis=-1), 1) and np.isfinite(p).all()
    assert np.allclose(p[0], [0.5, 0.5]) and p[1, 0] == pytest.approx(1.0)
    assert np.allclose(softmax(logits + 7.0), p)


def test_the_reference_games_carry_their_memory_and_length():
    g = TabularGame("hidden_queries_2x2")
    assert (g.memory, g.length, g.s, g.s_f) == ("small", 5, 3, 3)
    assert g.exact == solve([[[4, 3], [2, 4]], [[3, 1], [1, 2]]], 5, "small").value == 20.0
    assert np.array_equal(g.f_index(g.fp), np.arange(len(g.fp)))
    assert TabularGame("battle_of_the_sexes_out_of_eq").exact == 2.0
