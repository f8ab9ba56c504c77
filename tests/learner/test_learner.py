"""The learner of learner/learner.py on a tiny stag hunt, fed by an in-process actor: stale unrolls are
dropped without effect, an unroll of the current phase updates the learning role, the schedule ends
the run, state_dict round-trips, and result() has result.json's fields for a matrix game."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER
from stackrl.envs.solver import solve_env
from stackrl.learner.learner import Learner

F0 = "follower_0"
GAMES, UNROLL = 4, 15
STEPS_PER_UNROLL = GAMES * UNROLL  # every step of a pretraining unroll is a play step


def make_cfg() -> ExperimentConfig:
    """Two unrolls of pretraining, then two of leader training (an unroll that ends a phase is counted
    but not learned from)."""
    return ExperimentConfig.from_dict(
        {
            "env": {"name": "stag_hunt", "num_games": GAMES},
            "actor": {"unroll_length": UNROLL},
            "learner": {"device": "cpu"},
            "schedule": {
                "phases": [
                    {"kind": "pretrain", "env_steps": 2 * STEPS_PER_UNROLL},
                    {"kind": "leader", "env_steps": 2 * STEPS_PER_UNROLL},
                ],
                "eval_interval_updates": 1,
            },
        }
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def learner():
    lrn = Learner(make_cfg())
    yield lrn
    lrn.close()


def weights(lrn: Learner) -> dict[str, dict[str, torch.Tensor]]:
    return {role: {k: v.clone() for k, v in net.state_dict().items()} for role, net in lrn.nets.items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[r].keys() == b[r].keys() and all(torch.equal(a[r][k], b[r][k]) for k in a[r]) for r in a
    )


def test_a_stale_unroll_is_counted_and_changes_nothing(learner, in_process_actor):
    actor, _ = in_process_actor(learner)
    trajs = actor.unroll()
    assert [t.role for t in trajs] == [F0] and trajs[0].env_steps == STEPS_PER_UNROLL
    broadcast, versions, nets = learner.broadcast(), dict(learner.versions), weights(learner)
    stale = [dataclasses.replace(t, phase_id=t.phase_id + 1) for t in trajs]
    assert learner.process(stale) is False
    assert learner.record.dropped_stale == 1
    assert learner.trajectories_received == len(trajs)  # received, then dropped
    assert learner.env_steps == 0 and dict(learner.updates) == {} and learner.versions == versions
    assert learner.schedule.index == 0 and learner.schedule.phase_env_steps == 0
    assert not learner.pending and learner.broadcast() is broadcast
    assert same_weights(weights(learner), nets)
    assert learner.process([]) is False and learner.trajectories_received == len(trajs)


def test_unrolls_of_the_current_phase_update_until_the_schedule_ends_the_run(learner, in_process_actor):
    actor, transport = in_process_actor(learner)
    first = learner.broadcast()

    def step() -> bool:
        changed = learner.process(actor.unroll())
        if changed:  # the serial runner's wiring: publish, the actor picks it up before its next unroll
            transport.publish(learner.broadcast())
            actor.apply(actor.endpoint.poll())
        return changed

    assert step() is True  # the follower's update: new weights to broadcast
    assert learner.env_steps == STEPS_PER_UNROLL and dict(learner.updates) == {F0: 1}
    assert learner.versions == {**first.versions, F0: first.versions[F0] + 1}
    assert learner.broadcast() is not first and learner.broadcast().versions == learner.versions
    assert step() is True  # pretraining's budget is spent: the phase ends (nothing learned from it)
    assert dict(learner.updates) == {F0: 1} and learner.env_steps == 2 * STEPS_PER_UNROLL
    assert learner.schedule.kind == "leader" and learner.broadcast().phase_id == first.phase_id + 1
    assert learner.broadcast().send_roles == (LEADER,)
    # Leader unrolls: 5 query steps per game are not env steps, 10 play steps are.
    leader_steps = GAMES * (UNROLL - 5)
    assert [step() for _ in range(3)] == [True, True, True]
    assert dict(learner.updates) == {F0: 1, LEADER: 2}
    assert learner.env_steps == 2 * STEPS_PER_UNROLL + 3 * leader_steps
    assert learner.done and learner.broadcast().done
    # A finished run takes nothing more.
    received = learner.trajectories_received
    assert learner.process(actor.unroll()) is False
    assert learner.trajectories_received == received
    assert learner.env_steps == 2 * STEPS_PER_UNROLL + 3 * leader_steps and learner.record.dropped_stale == 0


def test_state_dict_round_trip_keeps_versions_counters_and_weights(learner, in_process_actor):
    actor, _ = in_process_actor(learner)
    learner.process(actor.unroll())
    state = learner.state_dict()
    assert state["format"] == "stackrl-checkpoint-v1"
    fresh = Learner(make_cfg())
    try:
        assert fresh.versions != learner.versions and fresh.env_steps == 0
        fresh.load_state_dict(state)
        assert fresh.versions == learner.versions
        assert fresh.env_steps == learner.env_steps == STEPS_PER_UNROLL
        assert dict(fresh.updates) == dict(learner.updates)
        assert fresh.schedule.index == learner.schedule.index == 0
        assert fresh.schedule.phase_env_steps == learner.schedule.phase_env_steps == STEPS_PER_UNROLL
        assert fresh.eval_history == learner.eval_history
        assert same_weights(weights(fresh), weights(learner))
        assert fresh.broadcast().versions == learner.broadcast().versions
        assert fresh.broadcast().phase_id == learner.broadcast().phase_id
    finally:
        fresh.close()


def test_result_fields_for_a_matrix_game(learner, in_process_actor):
    actor, _ = in_process_actor(learner)
    learner.process(actor.unroll())
    res = learner.result()
    assert set(res) == {
        "name", "game", "method", "seed", "leader_value", "follower_value", "leader_answers",
        "env_steps", "steps_to_final", "wall_seconds", "updates", "trajectories_received",
        "dropped_stale", "eval_history",
        # the exact yardsticks of a matrix game
        "exact_value", "gap", "leader_value_vs_best_response", "follower_check",
        # the post-training check: a fresh follower against the frozen final leader
        "equilibrium_check",
    }  # fmt: skip
    exact = solve_env(learner.cfg.env).value
    assert res["game"] == "stag_hunt" and res["method"] == "meta"
    assert res["exact_value"] == exact and res["gap"] == pytest.approx(exact - res["leader_value"])
    assert res["env_steps"] == {"0_pretrain": STEPS_PER_UNROLL, "total": STEPS_PER_UNROLL}
    assert res["updates"] == {F0: 1} and res["trajectories_received"] == 1 and res["dropped_stale"] == 0
    assert len(res["leader_answers"]) == 5 and isinstance(res["follower_value"], float)
    assert res["eval_history"] and res["eval_history"][-1]["env_steps"] == STEPS_PER_UNROLL
