"""The evolution-strategies leader of experiments/es_leader.py: it reaches the exact value on a
one-shot game, hidden queries tie its answers to its play, observed queries let it deceive an oracle
that conditions on the answers, and a contextual follower's responses are read off its network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stackrl.experiments.es_leader import (
    ESConfig,
    contextual_responses,
    exact_responses,
    run_es_leader,
    split_tables,
)
from stackrl.experiments.tabular_game import TabularGame


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_es_leader_reaches_the_exact_value_on_a_one_shot_game(seed):
    g = TabularGame("battle_of_the_sexes")
    res = run_es_leader("battle_of_the_sexes", "hidden", exact_responses(g), "exact", budget=5_000, seed=seed)
    assert res["exact_value"] == 2.0
    assert res["leader_value"] == 2.0 and res["gap"] == 0.0
    assert res["leader_answers"][0] == 0  # commit to the leader's favourite: the follower follows
    assert res["env_steps"]["total"] <= 5_000


def test_hidden_queries_answer_as_they_play_and_observed_queries_can_deceive():
    g = TabularGame("prisoners_dilemma")
    hidden = run_es_leader("prisoners_dilemma", "hidden", exact_responses(g), "exact", budget=50_000, seed=0)
    assert hidden["leader_answers"] == hidden["leader_play"] and hidden["leader_value"] == 31.0
    observed = run_es_leader(
        "prisoners_dilemma", "observed", exact_responses(g), "exact", budget=50_000, seed=0
    )
    # Above the Stackelberg value: it answers one table (the follower best-responds to it) and plays
    # another, which is worth less against a follower that best-responds to what it plays.
    assert observed["leader_value"] > g.exact
    assert observed["leader_answers"] != observed["leader_play"]
    assert observed["leader_value_vs_best_response"] < g.exact


def test_split_tables_reads_answers_on_flagged_observations():
    theta = np.zeros((6, 2))
    theta[:3, 1] = 1.0  # play: action 1 everywhere
    theta[3:, 0] = 1.0  # answers: action 0 everywhere
    answers, play = split_tables(theta, 3)
    assert answers.tolist() == [0, 0, 0] and play.tolist() == [1, 1, 1]
    a, p = split_tables(theta[:3], 3)
    assert a is p


class ReadsContext(torch.nn.Module):
    """A follower that plays the leader's answer on its own state (a stand-in contextual network)."""

    def forward(self, obs, context):
        own = context.gather(1, obs.long().clamp(max=context.shape[1] - 1)[:, None])[:, 0]
        return torch.nn.functional.one_hot(own, 2).float(), torch.zeros(obs.shape[0])


def test_contextual_responses_are_the_networks_greedy_tables():
    g = TabularGame("prisoners_dilemma")
    resp = contextual_responses(g, ReadsContext())
    for i, table in enumerate(g.lp):
        assert g.fp[resp[i]].tolist() == table.tolist()


def test_budget_counts_every_perturbation_episode_and_bad_queries_are_rejected():
    g = TabularGame("battle_of_the_sexes")
    es = ESConfig(population=8)
    res = run_es_leader("battle_of_the_sexes", "hidden", exact_responses(g), "exact", 100, 0, es)
    assert res["env_steps"]["total"] == (100 // 8) * 8
    with pytest.raises(ValueError, match="queries must be"):
        run_es_leader("battle_of_the_sexes", "both", exact_responses(g), "exact", 100)
