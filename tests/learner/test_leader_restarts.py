"""Leader restarts: the learner reports the best of its restarted leaders."""

from __future__ import annotations

import torch
from stackrl.learner.leader_restarts import BestLeader


def test_keeps_the_best_and_the_earlier_of_equals():
    best = BestLeader()
    a, b, c = (torch.nn.Linear(2, 2) for _ in range(3))
    assert best.offer(5.0, a)
    assert not best.offer(5.0, b)  # a tie keeps the earlier leader
    assert not best.offer(4.0, c)
    net = torch.nn.Linear(2, 2)
    assert best.restore(net)
    assert torch.equal(net.weight, a.weight)
    assert best.offers == 3


def test_restore_without_offers_is_a_no_op_and_state_round_trips():
    assert not BestLeader().restore(torch.nn.Linear(2, 2))
    best = BestLeader()
    best.offer(1.0, torch.nn.Linear(2, 2))
    again = BestLeader()
    again.load_state_dict(best.state_dict())
    assert again.value == 1.0 and again.offers == 1 and again.kept_index == 0


def test_a_run_with_restarts_reports_its_best_restart():
    from stackrl.runners.presets import build_config
    from stackrl.runners.serial import run_serial

    phases = [
        {"kind": "pretrain", "env_steps": 20_000},
        {"kind": "leader", "env_steps": 6_000, "restarts": 3},
    ]
    cfg = build_config("chicken", "meta", fields={"schedule": {"phases": phases, "eval_interval_updates": 5}})
    res = run_serial(cfg, None, progress=False)
    assert res["env_steps"]["total"] >= 26_000
    assert {"1_leader", "2_leader", "3_leader"} <= set(res["env_steps"])
    # The reported leader is the best restart: its value is at least every restart's end value.
    assert res["leader_value"] >= max(res["restart_values"]) - 1e-9
