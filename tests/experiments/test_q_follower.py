"""The tabular Q-learning query oracle of experiments/q_follower.py: the follower's learned best
response, and the leader trained against the Q-learning and the exact oracles."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.experiments.q_follower import q_learning_responses, run_oracle_leader
from stackrl.experiments.tabular_game import TabularGame


def test_q_learning_follower_oracle():
    g = TabularGame("chicken")
    rng = np.random.default_rng(0)
    # leader always plays 1 (dare): the follower's best response is to swerve (0) everywhere it matters
    f = q_learning_responses(g, np.ones((4, g.s), np.int64), 200, rng)
    assert (f[:, 0] == 0).all() and (f[:, 2] == 0).all()
    exact = run_oracle_leader("chicken", "exact", budget=20_000, seed=0)
    assert exact["leader_value"] == exact["exact_value"] == 40.0
    q = run_oracle_leader("chicken", "q_learning", budget=200_000, seed=0, block_episodes=30)
    assert q["env_steps"]["total"] <= 200_000 and q["leader_value"] == 40.0


def test_result_counts_every_follower_step_and_its_history_is_consistent():
    block, batch, budget = 5, 4, 2_000
    res = run_oracle_leader("chicken", "q_learning", budget=budget, seed=1, batch=batch, block_episodes=block)
    g = TabularGame("chicken")
    per_iteration = batch * g.length * (block + 1)  # block learning episodes + one greedy episode
    assert res["env_steps"]["total"] == (budget // per_iteration) * per_iteration
    history = res["eval_history"]
    assert history[0]["env_steps"] == 0 and history[-1]["env_steps"] == res["env_steps"]["total"]
    assert all(h["gap"] == pytest.approx(g.exact - h["leader_value"]) for h in history)
    assert res["gap"] == pytest.approx(res["exact_value"] - res["leader_value"])
    assert len(res["leader_answers"]) == g.s


def test_unknown_oracle_is_rejected():
    with pytest.raises(ValueError, match="oracle must be"):
        run_oracle_leader("chicken", "random", budget=100)


def test_carrying_the_q_table_can_trap_the_leader_in_the_followers_equilibrium():
    """The reference's finding on battle of the sexes: a follower whose Q-table is carried over from
    earlier leaders still plays its favourite when the leader tries to switch, so the leader stays at
    the follower's equilibrium (1); resetting the follower lets it find its own (2). Seed 1 starts
    from logits that lean to the follower's equilibrium."""
    kw = {"block_episodes": 10, "alpha": 0.1, "explore": (1.0, 1.0), "init_scale": 1.0}
    reset = run_oracle_leader("battle_of_the_sexes", "q_learning", 50_000, 1, reset=True, **kw)
    carried = run_oracle_leader("battle_of_the_sexes", "q_learning", 50_000, 1, reset=False, **kw)
    assert reset["leader_value"] == reset["exact_value"] == 2.0
    assert carried["leader_value"] == 1.0
    assert (reset["reset"], carried["reset"]) == (True, False)


def test_paying_the_leader_while_the_follower_adapts_moves_it_off_the_equilibrium():
    """Prisoners' dilemma: paid during the follower's learning episodes, the leader is rewarded for
    what a still-exploring follower gives, and ends at mutual defection (20) instead of near 31."""
    kw = {"block_episodes": 10, "alpha": 0.1, "explore": (1.0, 1.0), "init_scale": 1.0}
    off = run_oracle_leader("prisoners_dilemma", "q_learning", 200_000, 0, **kw)
    on = run_oracle_leader(
        "prisoners_dilemma", "q_learning", 200_000, 0, leader_reward_during_adaptation=True, **kw
    )
    assert on["leader_value"] <= 20.0 < off["leader_value"]
