"""learner/status_line.py: one line per interval (never more often, never when disabled), with steps of
the budget, the rate since the previous line, phase, leader value, policy lag and queue depth."""

from __future__ import annotations

import logging

from stackrl.learner import status_line
from stackrl.learner.status_line import StatusLine


def test_a_line_per_interval_with_every_field(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr(status_line.time, "monotonic", lambda: now[0])
    s = StatusLine(every_s=10.0, total_steps=1000, start_steps=100)
    now[0] = 105.0
    assert s.maybe_log(150, "pretrain", float("nan"), 0.5, queue=3) is None  # not yet due
    now[0] = 110.0
    with caplog.at_level(logging.INFO, logger="stackrl.status"):
        line = s.maybe_log(300, "leader", 40.0, 1.25, queue=2)
    assert line == "steps 300/1000 (30%) 20 steps/s phase leader leader_value 40 policy_lag 1.25 queue 2"
    assert [r.getMessage() for r in caplog.records] == [line]
    now[0] = 115.0
    assert s.maybe_log(400, "leader", 40.0, 1.0) is None
    now[0] = 120.0
    assert "n/a" in (s.maybe_log(500, "leader", float("nan"), float("nan")) or "")  # no eval yet


def test_disabled_with_a_zero_interval(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(status_line.time, "monotonic", lambda: now[0])
    s = StatusLine(every_s=0.0, total_steps=10)
    now[0] = 1e6
    assert s.maybe_log(5, "pretrain", 1.0, 0.0) is None
