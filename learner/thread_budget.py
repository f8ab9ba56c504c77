"""How many torch threads the learner takes: the cores its actors leave idle.

On one machine the learner and the actor processes share the cores. A constant thread count either
leaves a core idle (Atari at several SGD passes: the learner busy on one core, each actor at a
sixth of one) or oversubscribes (matrix games, where the actors are busy all the time). The rule:

    learner threads = max(1, round(usable cores - CPU load of the other processes of the run))

where the load is measured, in cores, over a window of a few seconds from the processes' own CPU
time (`/proc/<pid>/stat`), and re-measured through the run, because it changes with the phase (a
frozen follower costs an actor less than a learning one). Rounding half up gives the learner a core
that the others leave more than half idle: one oversubscribed thread costs less than an idle core.

`learner.threads: 0` (auto) applies it. Serial runs use one thread: the actors step in the learner's
own thread, and a fixed count keeps a seed's run the same on every machine. A learner without local
actors (a cluster task) takes every core of its allocation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import torch

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: a Slurm or container allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def learner_threads(cores: int, others_load: float) -> int:
    """The rule: the cores the other processes leave idle, rounded half up, at least 1."""
    return max(1, min(cores, int(cores - others_load + 0.5)))


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` (None if it is gone or /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    except (IndexError, ValueError):
        return None


class ThreadBudget:
    """Re-applies the rule every `window_s` seconds from the measured load of `pids()`.

    Call `tick()` from the learner's own thread (torch's intra-op pool is per process, and resizing
    it between updates is cheap); it returns the thread count when it changed it.
    """

    def __init__(
        self,
        pids: Callable[[], Sequence[int]],
        cores: int | None = None,
        window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        cpu_seconds: Callable[[int], float | None] = process_cpu_seconds,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ):
        self.pids = pids
        self.cores = cores or usable_cores()
        self.window_s = window_s
        self.clock = clock
        self.cpu_seconds = cpu_seconds
        self.set_threads = set_threads
        self.threads = learner_threads(self.cores, 0.0)
        self.load = 0.0
        self._t0 = clock()
        self._cpu0 = self._sample()
        self.set_threads(self.threads)

    def _sample(self) -> dict[int, float]:
        out = {}
        for pid in self.pids():
            s = self.cpu_seconds(pid)
            if s is not None:
                out[pid] = s
        return out

    def tick(self) -> int | None:
        now = self.clock()
        if now - self._t0 < self.window_s:
            return None
        cpu = self._sample()
        # Processes that started or ended inside the window count from what was seen of them.
        used = sum(s - self._cpu0.get(pid, s) for pid, s in cpu.items())
        self.load = max(0.0, used / (now - self._t0))
        self._t0, self._cpu0 = now, cpu
        threads = learner_threads(self.cores, self.load)
        if threads == self.threads:
            return None
        self.threads = threads
        self.set_threads(threads)
        return threads
