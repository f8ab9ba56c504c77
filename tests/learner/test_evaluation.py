"""Evaluation: deterministic (greedy) by default, sampled followers on request."""

from __future__ import annotations

import pytest
from stackrl.config import ConfigError, EnvConfig, ModelConfig, ScheduleConfig
from stackrl.envs.factory import env_spec, make_stackelberg_env
from stackrl.learner.evaluation import evaluate
from stackrl.learner.models import build_networks


def setup(b: int = 64):
    env = make_stackelberg_env(EnvConfig(name="prisoners_dilemma", num_games=b), seed=0)
    nets = build_networks(env_spec(env), ModelConfig())  # untrained: near-uniform policies
    return env, nets


def test_greedy_evaluation_does_not_depend_on_the_seed():
    env, nets = setup()
    a, b = evaluate(env, nets, seed=1), evaluate(env, nets, seed=2)
    assert a == b


def test_sampled_followers_vary_with_the_seed_and_keep_the_leader_greedy():
    env, nets = setup()
    greedy = evaluate(env, nets)
    s1 = evaluate(env, nets, seed=1, sample_followers=True)
    s1_again = evaluate(env, nets, seed=1, sample_followers=True)
    s2 = evaluate(env, nets, seed=2, sample_followers=True)
    assert s1 == s1_again  # seeded
    assert s1.follower_values != s2.follower_values  # 64 games of near-uniform play differ
    assert s1.leader_answers == s2.leader_answers == greedy.leader_answers


def test_eval_followers_is_validated():
    with pytest.raises(ConfigError, match="schedule.eval_followers"):
        ScheduleConfig(eval_followers="random").validate()
    with pytest.raises(ConfigError, match="schedule.eval_games"):
        ScheduleConfig(eval_games=0).validate()
