"""Run bookkeeping: counters and the wall clock survive a checkpoint; rates are logged per interval."""

from __future__ import annotations

import time

from stackrl.learner.metrics import Metrics
from stackrl.learner.run_record import RunRecord


def test_wall_clock_continues_across_a_resume():
    rec = RunRecord()
    rec.env_steps, rec.rejected, rec.bytes_received = 100, 2, 50
    state = rec.state_dict()
    again = RunRecord()
    again.load_state_dict(state, env_steps=100, wall_seconds=30.0, updates=5)
    assert again.env_steps == 100 and again.rejected == 2 and again.bytes_received == 50
    assert 30.0 <= again.wall_seconds < 31.0


def test_rates_are_logged_once_per_interval():
    rec, metrics = RunRecord(), Metrics(None)
    rec._last_rate = (time.time() - 2.0, 0, 0, 0)
    rec.env_steps, rec.bytes_received = 1000, 4000
    rec.log_rates(metrics, total_updates=10, every_s=1.0)
    assert 400 < metrics.latest["throughput/env_steps_per_s"] <= 500
    rec.env_steps = 5000
    rec.log_rates(metrics, total_updates=20, every_s=1.0)  # too soon: nothing new
    assert metrics.latest["throughput/env_steps_per_s"] <= 500
