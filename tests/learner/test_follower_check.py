"""The follower check against a hand-computed value."""

from __future__ import annotations

import torch
from stackrl.config import EnvConfig
from stackrl.envs.base import LEADER, follower_role
from stackrl.learner.follower_check import FollowerCheck

# Battle of the sexes, one shot: the follower's best response copies the leader (1 vs 0, 2 vs 0).
BOS = [[[2, 1], [0, 0]], [[0, 0], [1, 2]]]


class Constant(torch.nn.Module):
    """A policy that always prefers `action` (greedy), whatever it observes."""

    def __init__(self, action: int, n: int = 2):
        super().__init__()
        self.logits = torch.full((n,), -1.0)
        self.logits[action] = 1.0

    def forward(self, obs, context=None):
        b = obs.shape[0]
        return self.logits.expand(b, -1), torch.zeros(b)


def check(follower_action: int, memory: str = "none") -> FollowerCheck:
    return FollowerCheck(EnvConfig(name="matrix", payoffs=BOS, episode_length=1, memory=memory))


def test_a_follower_that_always_plays_0_is_right_on_one_table_of_two():
    fc = check(0)
    nets = {LEADER: Constant(0), follower_role(0): Constant(0)}
    # Tables [0] and [1]: against [0] playing 0 is the best response, against [1] it is not.
    assert fc.tables.tolist() == [[0], [1]]
    assert fc.correct(nets).tolist() == [True, False]
    assert fc(nets) == 0.5


def test_full_memory_counts_all_32_tables():
    fc = check(1, memory="full")
    nets = {LEADER: Constant(0), follower_role(0): Constant(1)}
    # One shot: only the start state's answer matters; half the 32 tables open with 1.
    assert len(fc.tables) == 32 and fc(nets) == 0.5


def test_applies_only_to_small_matrix_games():
    assert FollowerCheck.applies(EnvConfig(name="prisoners_dilemma"))
    assert not FollowerCheck.applies(EnvConfig(name="space_invaders_pricing"))
