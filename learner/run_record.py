"""Run bookkeeping: what came in (trajectories, bytes, rejections, stale drops), the wall clock
across resumes, and the throughput rates logged to TensorBoard. Checkpointed with the run."""

from __future__ import annotations

import time
from typing import Any

from stackrl.learner.metrics import Metrics


class RunRecord:
    def __init__(self) -> None:
        self.env_steps = 0
        self.trajectories_received = 0
        self.dropped_stale = 0
        self.rejected = 0
        self.bytes_received = 0
        self.start_time = time.time()
        self.wall_offset = 0.0  # wall seconds of the run before its last resume
        self._last_rate = (time.time(), 0, 0, 0)

    @property
    def wall_seconds(self) -> float:
        return self.wall_offset + time.time() - self.start_time

    def log_rates(self, metrics: Metrics, total_updates: int, every_s: float = 2.0) -> None:
        """Env steps, bytes and updates per second since the last call at least `every_s` ago."""
        now = time.time()
        t0, steps0, bytes0, upd0 = self._last_rate
        if now - t0 < every_s:
            return
        dt = now - t0
        metrics.scalar("throughput/env_steps_per_s", (self.env_steps - steps0) / dt, self.env_steps)
        metrics.scalar("throughput/bytes_received_per_s", (self.bytes_received - bytes0) / dt, self.env_steps)
        metrics.scalar("throughput/updates_per_s", (total_updates - upd0) / dt, self.env_steps)
        self._last_rate = (now, self.env_steps, self.bytes_received, total_updates)

    def state_dict(self) -> dict[str, Any]:
        return {
            "trajectories_received": self.trajectories_received,
            "dropped_stale": self.dropped_stale,
            "rejected": self.rejected,
            "bytes_received": self.bytes_received,
        }

    def load_state_dict(
        self, counters: dict[str, Any], env_steps: int, wall_seconds: float, updates: int
    ) -> None:
        self.env_steps = int(env_steps)
        self.trajectories_received = int(counters.get("trajectories_received", 0))
        self.dropped_stale = int(counters.get("dropped_stale", 0))
        self.rejected = int(counters.get("rejected", 0))
        self.bytes_received = int(counters.get("bytes_received", 0))
        self.wall_offset = float(wall_seconds)
        self.start_time = time.time()
        self._last_rate = (time.time(), self.env_steps, self.bytes_received, updates)
