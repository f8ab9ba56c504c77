"""One log line every N seconds: what a cluster user reads in a job log where no progress bar is drawn.

Cluster launchers run with `--no-progress` (a progress bar in a log file is one endless line), which
left nothing between "actor registered" and the final JSON. `StatusLine` says, at a fixed interval,
how far the run is (env steps of the budget), how fast it goes, which phase it is in, the leader's
last evaluated value, the policy lag and the trajectory queue's depth.
"""

from __future__ import annotations

import logging
import math
import time

log = logging.getLogger("stackrl.status")


class StatusLine:
    """Logs `status(...)` at most once per `every_s` seconds (never, when `every_s` <= 0)."""

    def __init__(self, every_s: float, total_steps: int, start_steps: int = 0):
        self.every_s = every_s
        self.total_steps = total_steps
        self._t0 = time.monotonic()
        self._steps0 = start_steps

    def maybe_log(
        self, steps: int, phase: str, leader_value: float, policy_lag: float, queue: int | None = None
    ) -> str | None:
        """Log the line if `every_s` passed since the last one; returns it (None if not yet due)."""
        now = time.monotonic()
        if self.every_s <= 0 or now - self._t0 < self.every_s:
            return None
        rate = (steps - self._steps0) / (now - self._t0)
        self._t0, self._steps0 = now, steps
        value = "n/a" if math.isnan(leader_value) else f"{leader_value:g}"
        lag = "n/a" if math.isnan(policy_lag) else f"{policy_lag:.2f}"
        line = (
            f"steps {steps}/{self.total_steps} ({100 * steps / max(self.total_steps, 1):.0f}%) "
            f"{rate:.0f} steps/s phase {phase} leader_value {value} policy_lag {lag}"
        )
        if queue is not None:
            line += f" queue {queue}"
        log.info("%s", line)
        return line
