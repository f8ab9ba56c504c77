"""The update schedule: phase order, budgets, alternate turns, and what actors are told to do."""

from __future__ import annotations

from stackrl.config import ExperimentConfig, PhaseConfig, ScheduleConfig
from stackrl.learner.schedule import Schedule
from stackrl.runners.serial import run_serial

FOLLOWERS = ("follower_0",)


def test_phases_advance_by_env_steps_and_bump_phase_id():
    s = Schedule(ScheduleConfig(phases=[PhaseConfig("pretrain", 100), PhaseConfig("leader", 50)]), FOLLOWERS)
    assert (s.kind, s.leader_source(), s.send_roles(), s.phase_id) == ("pretrain", "random", FOLLOWERS, 0)
    assert not s.add_env_steps(99)
    assert s.add_env_steps(1)
    assert (s.kind, s.leader_source(), s.send_roles(), s.phase_id) == ("leader", "policy", ("leader",), 1)
    assert s.phase_remaining() == 1.0
    s.add_env_steps(25)
    assert s.phase_remaining() == 0.5
    assert s.add_env_steps(25) and s.finished
    assert dict(s.env_steps_by_phase) == {"0_pretrain": 100, "1_leader": 50}


def test_alternate_takes_k_follower_then_m_leader_updates():
    s = Schedule(
        ScheduleConfig(phases=[PhaseConfig("alternate", 10**6, follower_updates=3, leader_updates=2)]),
        FOLLOWERS,
    )
    assert s.send_roles() == ("leader", *FOLLOWERS)  # both roles' trajectories are needed
    turns = []
    for _ in range(10):
        (role,) = s.learning_roles()
        turns.append(role)
        s.on_update(role)
    f, le = "follower_0", "leader"
    assert turns == [f, f, f, le, le, f, f, f, le, le]


def test_inner_outer_hides_the_context_and_uses_a_fixed_table():
    s = Schedule(ScheduleConfig(phases=[PhaseConfig("inner_outer", 1000)]), FOLLOWERS)
    assert (s.leader_source(), s.follower_context(), s.send_roles()) == ("table", False, FOLLOWERS)
    first = s.phase_id
    assert s.new_phase_id() == first + 1


def test_alternate_run_updates_both_roles_in_ratio():
    cfg = ExperimentConfig.from_dict(
        {
            "name": "alt",
            "env": {"name": "stag_hunt", "num_games": 8},
            "schedule": {
                "phases": [
                    {"kind": "pretrain", "env_steps": 2400},
                    {"kind": "alternate", "env_steps": 9600, "follower_updates": 2, "leader_updates": 1},
                ]
            },
        }
    )
    result = run_serial(cfg, None, progress=False)
    pretrain_updates = 2400 // (8 * 30)  # one follower update per unroll of 8 games x 30 steps
    follower_alt = result["updates"]["follower_0"] - pretrain_updates
    leader = result["updates"]["leader"]
    assert leader > 0 and follower_alt > 0
    assert abs(follower_alt - 2 * leader) <= 2


def test_leader_restarts_expand_into_phases_that_start_a_fresh_leader():
    from stackrl.config import PhaseConfig, ScheduleConfig
    from stackrl.learner.schedule import Schedule

    cfg = ScheduleConfig(phases=[PhaseConfig("pretrain", 100), PhaseConfig("leader", 10, restarts=3)])
    s = Schedule(cfg, ("follower_0",))
    assert [p.env_steps for p in s.phases] == [100, 4, 3, 3]
    fresh = []
    while not s.finished:
        fresh.append(s.fresh_leader())
        s.add_env_steps(s.phase.env_steps)
    assert fresh == [False, False, True, True]
    assert s.phase_id == 4


def test_restarts_are_only_for_leader_phases():
    import pytest
    from stackrl.config import ConfigError, PhaseConfig

    with pytest.raises(ConfigError, match="restarts"):
        PhaseConfig("pretrain", 100, restarts=2).validate("schedule.phases[0]")
