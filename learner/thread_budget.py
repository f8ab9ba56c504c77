"""How many torch threads the learner takes: the cores the rest of the machine leaves idle.

On one machine the learner shares the cores with its actors (and whatever else runs there). A
constant thread count either leaves a core idle (Atari at several SGD passes: the learner busy on
one core, each actor at a sixth of one) or oversubscribes (matrix games, where the actors are busy
all the time: a second intra-op thread on a tiny network then spins against them and made a
learner 50x slower). The rule:

    learner threads = max(1, round(usable cores - CPU load of everything else on those cores))

where the load is measured, in cores, over a window of a few seconds from the kernel's per-CPU
busy time (`/proc/stat`, only the CPUs in this process's affinity mask: a Slurm or container
allocation) minus the learner's own CPU time, and re-measured through the run, because it changes
with the phase (a frozen follower costs an actor less than a learning one). Rounding half up gives
the learner a core that the others leave more than half idle. A run starts at one thread, until
the first window has been measured.

`learner.threads: 0` (auto) applies it. Serial runs use one thread: the actors step in the
learner's own thread, and a fixed count keeps a seed's run the same on every machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import torch

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


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


def busy_cpu_seconds(cpus: Iterable[int], stat_path: str = "/proc/stat") -> float | None:
    """Busy time (everything but idle and iowait) of `cpus`, summed, since boot (None without /proc)."""
    wanted = {f"cpu{c}" for c in cpus}
    try:
        with open(stat_path) as f:
            lines = f.readlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *values = line.split()
        if name in wanted:
            ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy / CLOCK_TICKS


def others_cpu_seconds(cpus: set[int]) -> float | None:
    """CPU seconds spent on `cpus` by everything but this process (cumulative)."""
    busy, own = busy_cpu_seconds(cpus), process_cpu_seconds(os.getpid())
    return None if busy is None or own is None else busy - own


class ThreadBudget:
    """Re-applies the rule every `window_s` seconds from the measured load of everything else.

    Call `tick()` from the learner's own thread between updates (torch's intra-op pool is per
    process, and resizing it is cheap); it returns the thread count when it changed it.
    """

    def __init__(
        self,
        cpus: set[int] | None = None,
        window_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        others_seconds: Callable[[set[int]], float | None] = others_cpu_seconds,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ):
        self.cpus = cpus or usable_cpus()
        self.cores = len(self.cpus)
        self.window_s = window_s
        self.clock = clock
        self.others_seconds = others_seconds
        self.set_threads = set_threads
        self.threads = 1  # until measured: a spare thread costs far more than a missing one
        self.load = float("nan")
        self._t0 = clock()
        self._cpu0 = others_seconds(self.cpus)
        self.set_threads(self.threads)

    def tick(self) -> int | None:
        now = self.clock()
        if now - self._t0 < self.window_s:
            return None
        cpu = self.others_seconds(self.cpus)
        if cpu is None or self._cpu0 is None:  # nothing to measure here: stay at one thread
            return None
        self.load = max(0.0, (cpu - self._cpu0) / (now - self._t0))
        self._t0, self._cpu0 = now, cpu
        threads = learner_threads(self.cores, self.load)
        if threads == self.threads:
            return None
        self.threads = threads
        self.set_threads(threads)
        return threads
