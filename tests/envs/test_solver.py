"""The exact strong-Stackelberg solver, checked against hand-worked values and a slow brute force.

The brute force below shares no code with `stackrl.envs.solver`: it plays each episode step by step
in plain Python and finds the follower's possible outcomes by a depth-first search that fixes the
follower's action in a memory-1 state the first time the play reaches it (a stationary policy must
repeat that action on every later visit). Every full follower policy follows exactly one branch of
the search, so the leaves are the outcomes of all follower policies.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from stackrl.config import EnvConfig
from stackrl.envs.matrix_games import BENCHMARK_GAMES, GAMES
from stackrl.envs.solver import (
    commitment_value,
    episode_values,
    leader_value_of,
    max_tie_break_weight,
    solve,
)

TOL = 1e-9


def play(payoffs, leader_policy, follower_policy, length):
    """(leader return, follower return) of one episode, simulated step by step."""
    n_leader = len(payoffs)
    state, v_l, v_f = 0, 0.0, 0.0
    for _ in range(length):
        a_l, a_f = leader_policy[state], follower_policy[state]
        r_l, r_f = payoffs[a_l][a_f]
        v_l += r_l
        v_f += r_f
        state = 1 + a_l + n_leader * a_f
    return v_l, v_f


def follower_outcomes(payoffs, leader_policy, length):
    """Every (v_L, v_F) that some stationary memory-1 follower policy produces against the leader."""
    n_leader, n_follower = len(payoffs), len(payoffs[0])
    out = []

    def search(state, t, fixed, v_l, v_f):
        if t == length:
            out.append((v_l, v_f))
            return
        a_l = leader_policy[state]
        choices = [fixed[state]] if state in fixed else range(n_follower)
        for a_f in choices:
            r_l, r_f = payoffs[a_l][a_f]
            search(1 + a_l + n_leader * a_f, t + 1, {**fixed, state: a_f}, v_l + r_l, v_f + r_f)

    search(0, 0, {}, 0.0, 0.0)
    return out


def brute_force(payoffs, length):
    """leader policy -> (strong value, weak value, follower best value, outcomes)."""
    n_leader, n_follower = len(payoffs), len(payoffs[0])
    n_states = 1 + n_leader * n_follower
    table = {}
    for policy in itertools.product(range(n_leader), repeat=n_states):
        outcomes = follower_outcomes(payoffs, policy, length)
        best_f = max(v_f for _, v_f in outcomes)
        responses = [v_l for v_l, v_f in outcomes if abs(v_f - best_f) <= TOL]
        table[policy] = (max(responses), min(responses), best_f, outcomes)
    return table


def assert_solution_matches(payoffs, length):
    """solve() agrees with the brute force: value, the full set of optimal leaders, the response."""
    table = brute_force(payoffs, length)
    best = max(strong for strong, *_ in table.values())
    sol = solve(payoffs, length)
    assert sol.value == pytest.approx(best, abs=1e-9)
    expected = sorted(list(p) for p, (strong, *_) in table.items() if abs(strong - best) <= TOL)
    assert sorted(sol.leader_policies) == expected
    for policy in sol.leader_policies:
        strong, _, best_f, _ = table[tuple(policy)]
        assert strong == pytest.approx(sol.value, abs=1e-9)
        # The full follower enumeration reaches the same strong value for this leader policy.
        all_follower = [
            play(payoffs, policy, f, length)
            for f in itertools.product(range(len(payoffs[0])), repeat=len(policy))
        ]
        top_f = max(v_f for _, v_f in all_follower)
        assert top_f == pytest.approx(best_f, abs=1e-9)
        assert max(v_l for v_l, v_f in all_follower if abs(v_f - top_f) <= TOL) == pytest.approx(
            sol.value, abs=1e-9
        )
    # The reported response is a follower best response that gives the leader its value.
    v_l, v_f = play(payoffs, sol.leader_policies[0], sol.follower_response, length)
    assert v_f == pytest.approx(table[tuple(sol.leader_policies[0])][2], abs=1e-9)
    assert v_l == pytest.approx(sol.value, abs=1e-9)
    assert sol.follower_value == pytest.approx(v_f, abs=1e-9)
    return table


# -- hand-worked values --------------------------------------------------------------------------


def test_battle_of_the_sexes_one_shot_value_is_2():
    # Leader plays 0; the follower then gets 1 from 0 and 0 from 1, so it plays 0 and the leader
    # earns 2, the largest entry of its payoffs. Leading with 1 would give only 1.
    sol = solve(GAMES["battle_of_the_sexes"], 1)
    assert sol.value == 2.0
    assert sol.follower_value == 1.0
    assert all(p[0] == 0 for p in sol.leader_policies)
    assert sol.follower_response[0] == 0


def test_stag_hunt_value_is_40():
    # (0,0) = (4,4) is both players' best cell: a leader that always plays 0 is answered by 0
    # forever (the follower cannot beat 4 per step), giving 10 * 4 = 40, the leader's maximum.
    sol = solve(GAMES["stag_hunt"], 10)
    assert sol.value == 40.0
    assert sol.follower_value == 40.0
    assert [0, 0, 0, 0, 0] in sol.leader_policies
    assert leader_value_of(GAMES["stag_hunt"], 10, [0, 0, 0, 0, 0]) == (40.0, 40.0)


def test_chicken_value_is_40():
    # Leader always "dares" (1): the follower gets 2 by yielding (1,0) and 1 by daring (1,1), so
    # it yields every step; the leader collects 4 per step = 40 and the follower 20.
    sol = solve(GAMES["chicken"], 10)
    assert sol.value == 40.0
    assert leader_value_of(GAMES["chicken"], 10, [1, 1, 1, 1, 1]) == (40.0, 20.0)


def test_prisoners_dilemma_value_is_31():
    # States: 0 start, 1 = (C,C), 2 = (D,C), 3 = (C,D), 4 = (D,D) (1 + a_L + 2 a_F; C = 0, D = 1).
    # The optimal leader opens with D and then plays tit-for-tat: policy [D, C, C, D, D].
    # - Follower always C: (D,C) = (4,1) once, then (C,C) = (3,3) nine times:
    #   leader 4 + 9*3 = 31, follower 1 + 9*3 = 28.
    # - Follower always D: (D,D) = (2,2) every step: follower 20.
    # - Follower exploiting the leader's forgiveness (C at start, D after (D,C), C after (C,D)):
    #   the cycle (D,C), (C,D), (D,C), ... pays it 1 + 4 + 1 + ... + 4 = 5 * 1 + 5 * 4 = 25.
    # So cooperating throughout (28) is its best response and the leader gets 31. The leader can
    # earn 4 only in (D,C), which leaves the follower 1; that it cannot do so more than once
    # without losing the follower's cooperation is what the brute force below confirms.
    pd = GAMES["prisoners_dilemma"]
    sol = solve(pd, 10)
    assert sol.value == 31.0
    assert sol.follower_value == 28.0
    assert sol.leader_policies == [[1, 0, 0, 1, 1]]
    assert leader_value_of(pd, 10, [1, 0, 0, 1, 1]) == (31.0, 28.0)
    # Tit-for-tat opening with C: mutual cooperation, 30 each. Always defect: the follower defects
    # too (2 > 1 per step), 20 each.
    assert leader_value_of(pd, 10, [0, 0, 0, 1, 1]) == (30.0, 30.0)
    assert leader_value_of(pd, 10, [1, 1, 1, 1, 1]) == (20.0, 20.0)


# -- brute-force cross-checks ----------------------------------------------------------------------


@pytest.mark.parametrize("name", BENCHMARK_GAMES)
def test_benchmark_game_matches_brute_force(name):
    assert len(BENCHMARK_GAMES) == 12
    assert_solution_matches(GAMES[name], 10)


def test_episode_values_match_step_by_step_play():
    pd = GAMES["prisoners_dilemma"]
    lp, fp, v_l, v_f = episode_values(np.array(pd, float), 10)
    assert lp.shape == (32, 5) and fp.shape == (32, 5)
    rng = np.random.default_rng(0)
    for i, j in rng.integers(0, 32, size=(40, 2)):
        assert (v_l[i, j], v_f[i, j]) == play(pd, lp[i].tolist(), fp[j].tolist(), 10)


def test_leader_value_of_matches_brute_force_for_every_leader_policy():
    game = GAMES["hero"]
    table = brute_force(game, 10)
    for policy, (strong, _, best_f, _) in table.items():
        v_l, v_f = leader_value_of(game, 10, list(policy))
        assert v_l == pytest.approx(strong) and v_f == pytest.approx(best_f)


def test_strong_not_weak_tie_breaking():
    # Leader row 0: the follower is indifferent (1 either way); the leader gets 3 or 0.
    # Leader row 1: the follower strictly prefers column 0 (2 > 0); the leader gets 1.
    # Strong SSE (ties go the leader's way): row 0, value 3. Weak SSE (ties against it): row 1, value 1.
    game = [[(3, 1), (0, 1)], [(1, 2), (2, 0)]]
    table = assert_solution_matches(game, 1)
    assert max(weak for _, weak, _, _ in table.values()) == 1.0
    assert solve(game, 1).value == 3.0
    # Iterated, the leader can hold row 0 forever and the indifferent follower favours it: 3 * 3.
    table = assert_solution_matches(game, 3)
    assert solve(game, 3).value == 9.0
    assert max(weak for _, weak, _, _ in table.values()) < 9.0


def test_user_bimatrix_with_non_integer_payoffs():
    game = [[(0.7, 1.1), (2.3, 0.4)], [(-0.2, 0.9), (1.6, 1.2)]]
    sol = solve(game, 10)
    assert abs(sol.value - round(sol.value)) > 0.1  # the value really is fractional
    assert_solution_matches(game, 10)


def test_user_bimatrix_with_three_leader_actions():
    game = [[(2, 1), (0, 3)], [(3, 0), (1, 2)], [(1, 2), (4, 1)]]
    length = 6
    table = assert_solution_matches(game, length)
    assert len(table) == 3**7  # 1 + 3 * 2 memory-1 states
    sol = solve(game, length)
    assert all(len(p) == 7 for p in sol.leader_policies)
    assert len(sol.follower_response) == 7


# -- tie-break weight -------------------------------------------------------------------------------


def shaped_choice(outcomes, eps):
    """Outcomes a follower maximising v_F + eps * v_L picks."""
    top = max(v_f + eps * v_l for v_l, v_f in outcomes)
    return {(v_l, v_f) for v_l, v_f in outcomes if abs(v_f + eps * v_l - top) <= 1e-7}


@pytest.mark.parametrize("name", [*BENCHMARK_GAMES, "battle_of_the_sexes"])
def test_tie_break_below_bound_picks_leader_favoured_best_responses(name):
    game = GAMES[name]
    length = 1 if name == "battle_of_the_sexes" else 10
    bound = max_tie_break_weight(game, length)
    assert bound > 0
    table = brute_force(game, length)
    eps_values = [0.5 * bound, 0.99 * bound] if math.isfinite(bound) else [0.1, 10.0]
    for eps in eps_values:
        for strong, _, best_f, outcomes in table.values():
            favoured = {
                (v_l, v_f) for v_l, v_f in outcomes if abs(v_f - best_f) <= TOL and abs(v_l - strong) <= TOL
            }
            assert shaped_choice(outcomes, eps) == favoured
    if math.isfinite(bound):
        # The bound is tight: just above it some strict follower preference flips.
        eps = 1.01 * bound
        flipped = any(
            f1 > f2 + TOL and f1 + eps * l1 < f2 + eps * l2
            for *_, outcomes in table.values()
            for (l1, f1), (l2, f2) in itertools.product(outcomes, repeat=2)
        )
        assert flipped


def test_tie_break_bound_by_hand():
    # One-shot: leader row 0 gives the follower (1 vs 0) and the leader (0 vs 2): the follower's
    # strict preference for column 0 survives shaping iff 1 + 0*eps > 0 + 2*eps, i.e. eps < 1/2.
    game = [[(0, 1), (2, 0)], [(1, 1), (1, 1)]]
    assert max_tie_break_weight(game, 1) == pytest.approx(0.5)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payoffs, match",
    [
        ([[(1, 2), (3, 4)], [(1, 2)]], "payoffs"),  # ragged
        ([[(1, 2, 3), (3, 4, 5)]], r"shape \[n_L\]\[n_F\]\[2\]"),  # triples instead of pairs
        ([1, 2, 3, 4], r"shape \[n_L\]\[n_F\]\[2\]"),  # flat
        ([[(1, float("nan"))]], "finite"),
        ([[(1, float("inf"))]], "finite"),
        ([[("a", 1)]], "numeric"),
        ([], r"shape"),
    ],
)
def test_bad_payoffs_raise_value_error(payoffs, match):
    with pytest.raises(ValueError, match=match):
        solve(payoffs, 10)


def test_too_large_game_is_refused():
    game = [[(0, 0)] * 3] * 3  # 3x3: 3**10 x 3**10 policy pairs
    with pytest.raises(ValueError, match="too large"):
        solve(game, 2)


# -- commitment_value: a committed answer table against the exact strong best response --------------
def test_commitment_value_of_an_optimal_table_is_the_exact_value():
    env = EnvConfig(name="prisoners_dilemma")
    sol = solve(GAMES["prisoners_dilemma"], 10)
    assert sol.value == 31
    for table in sol.leader_policies:
        assert commitment_value(env, table) == sol.value


@pytest.mark.parametrize(
    ("env", "table", "value"),
    [
        # Always cooperate: the follower defects every step (4 > 3), the leader earns 1 x 10.
        (EnvConfig(name="prisoners_dilemma"), [0, 0, 0, 0, 0], 10.0),
        # Always defect: the follower defects too (2 > 1), the leader earns 2 x 10.
        (EnvConfig(name="prisoners_dilemma"), [1, 1, 1, 1, 1], 20.0),
        (EnvConfig(name="prisoners_dilemma", episode_length=3), [1, 1, 1, 1, 1], 6.0),
        (EnvConfig(name="prisoners_dilemma", memory="small"), [1, 1, 1], 20.0),  # start + 2 follower moves
        (EnvConfig(name="prisoners_dilemma", memory="none"), [0], 10.0),
        # Stag hunt, always stag: the follower hunts stag too (4 > 3): 4 x 10.
        (EnvConfig(name="stag_hunt"), [0, 0, 0, 0, 0], 40.0),
        # A follower indifferent between its moves breaks the tie the leader's way (5, not 1).
        (
            EnvConfig(name="matrix", payoffs=[[[1, 0], [5, 0]], [[0, 0], [0, 0]]], episode_length=1),
            [0] * 5,
            5.0,
        ),
    ],
)
def test_commitment_value_of_a_constant_table_by_hand(env, table, value):
    assert commitment_value(env, table) == value


@pytest.mark.parametrize(
    ("env", "table"),
    [
        (EnvConfig(name="prisoners_dilemma"), [0, 0, 0]),  # 3 answers, the full memory has 5 states
        (EnvConfig(name="prisoners_dilemma", memory="small"), [0, 0, 0, 0, 0]),
        (EnvConfig(name="space_invaders_pricing"), [0, 0, 0, 0, 0]),  # no exact solver for Atari
    ],
)
def test_commitment_value_is_none_where_it_is_not_defined(env, table):
    assert commitment_value(env, table) is None
