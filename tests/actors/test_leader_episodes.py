"""The leader's whole-episode trajectories (actors/leader_episodes.py) and their use by an actor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stackrl.actors.actor import Actor
from stackrl.actors.leader_episodes import LeaderEpisodes
from stackrl.envs.base import LEADER
from stackrl.learner.learner import Learner
from stackrl.learner.update import actor_critic_loss
from stackrl.runners.presets import build_config
from stackrl.trajectory import Trajectory, TrajectorySpec

B, T = 3, 6


def _spec() -> TrajectorySpec:
    return TrajectorySpec(unroll_length=T, num_games=B, obs_shape=(), obs_dtype="int64", context_size=0)


def _step(eps: LeaderEpisodes, valid, rewards, dones, actions=(0, 0, 0), version: int = 1) -> None:
    obs = np.array([7, 8, 9])
    eps.record(
        obs,
        np.zeros(B, np.int32),
        np.asarray(actions, np.int64),
        np.full(B, -0.5, np.float32),
        np.asarray(valid, bool),
        np.asarray(rewards, np.float32),
        np.asarray(dones, bool),
        version,
    )


def test_rewards_after_a_decision_are_summed_onto_it_and_the_episode_closes_on_its_last_decision():
    eps = LeaderEpisodes(_spec())
    _step(eps, [1, 1, 0], [0, 0, 0], [0, 0, 0], actions=(2, 4, 0), version=3)  # game 0, 1 decide
    _step(eps, [1, 0, 0], [0, 5, 0], [0, 0, 0], actions=(1, 0, 0), version=4)  # game 0 decides again
    _step(eps, [0, 0, 0], [2, 1, 9], [0, 0, 0])  # play: rewards (game 2 has no decision: dropped)
    _step(eps, [0, 0, 0], [3, 0, 0], [1, 0, 0])  # game 0's episode ends
    assert eps.finished == 1
    arrays, version = eps.take(np.array([0, 0, 0]))
    assert version == 3  # the episode began under version 3
    col = {k: v[:, 0] for k, v in arrays.items()}
    assert col["valid"].tolist() == [True, True] + [False] * (T - 2)
    assert col["actions"][:2].tolist() == [2, 1]
    assert col["rewards"][:2].tolist() == [0.0, 5.0]  # 2 + 3 after the second decision
    assert col["dones"][:2].tolist() == [False, True]
    assert col["dones"][2:].all() and not arrays["valid"][:, 1:].any()  # other columns: padding
    assert eps.finished == 0
    _step(eps, [0, 0, 0], [0, 0, 0], [0, 1, 0])
    arrays, _ = eps.take(np.array([0, 0, 0]))
    assert arrays["rewards"][0, 0] == 6.0  # game 1: 5 + 1 summed onto its only decision
    Trajectory("leader", 0, 1, 0, arrays).validate(_spec())


def test_more_decisions_than_an_unroll_are_refused_by_name():
    eps = LeaderEpisodes(_spec())
    for _ in range(T):
        _step(eps, [1, 0, 0], [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="actor.unroll_length"):
        _step(eps, [1, 0, 0], [0, 0, 0], [0, 0, 0])


def test_whole_episode_return_reaches_the_first_answer_without_bootstrap():
    """V-trace on an episode column: the first decision's advantage holds the whole episode's
    reward, whatever the value at the bootstrap row says (steps mode would bootstrap there)."""
    eps = LeaderEpisodes(_spec())
    _step(eps, [1, 0, 0], [0, 0, 0], [0, 0, 0])
    _step(eps, [0, 0, 0], [10, 0, 0], [0, 0, 0])
    _step(eps, [0, 0, 0], [20, 0, 0], [1, 0, 0])
    arrays, _ = eps.take(np.array([0, 0, 0]))
    cfg = build_config("chicken", fields={"learner": {"discount": 1.0, "reward_scale": 1.0}}).learner

    class Net(torch.nn.Module):
        """Uniform policy; value 0 on the episode's rows, 1000 on the bootstrap row (obs 0)."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

        def forward(self, obs, ctx, elapsed):
            return self.w.expand(obs.shape[0], 3), 1000.0 * (obs == 0).float()

    arrays["obs"][:] = 7
    arrays["obs"][T] = 0
    arrays["logp"][arrays["valid"]] = np.log(1 / 3)  # on-policy: rho = 1
    tensors = {k: torch.as_tensor(v) for k, v in arrays.items()}
    _, stats = actor_critic_loss(Net(), tensors, cfg, entropy_cost=0.0, value_on_all_steps=False)
    # one valid row, its target the whole episode's 10 + 20 (no bootstrap): 0.5 * (30 - 0)^2
    assert stats.baseline == pytest.approx(0.5 * 30.0**2)


def test_an_actor_in_episodes_mode_sends_leader_columns_of_whole_episodes():
    cfg = build_config(
        "chicken",
        fields={
            "actor": {"leader_trajectories": "episodes", "unroll_length": 10},
            "env": {"num_games": 4},
            "schedule": {
                "phases": [{"kind": "pretrain", "env_steps": 200}, {"kind": "leader", "env_steps": 10**6}]
            },
        },
    )
    actor = Actor(cfg, 0, endpoint=None)  # type: ignore[arg-type]
    learner = Learner(cfg, None, evaluate=False)
    actor.apply(learner.broadcast())
    while learner.schedule.kind != "leader":
        learner.process(actor.unroll())
        actor.apply(learner.broadcast())
    k = actor.env.num_queries
    seen = with_episodes = 0
    before = learner.updates[LEADER]
    for _ in range(20):
        trajs = actor.unroll()
        learner.process(trajs)
        actor.apply(learner.broadcast())
        (lead,) = [t for t in trajs if t.role == LEADER]
        lead.validate(actor.storage_specs[LEADER])
        valid = lead.arrays["valid"]
        for g in np.flatnonzero(valid.any(0)):
            n = int(valid[:, g].sum())
            assert n == k  # a committed leader decides on its K queries, nothing else
            assert lead.arrays["dones"][n - 1, g] and not lead.arrays["dones"][: n - 1, g].any()
            seen += 1
        with_episodes += bool(valid.any())
    assert seen > 0
    # one leader update per trajectory that holds an episode; none on empty ones
    assert learner.updates[LEADER] - before == with_episodes < 20
    learner.close()
    actor.env.close()
