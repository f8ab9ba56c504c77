"""A bounded background CPU load for benchmarks: one busy process per core at the lowest priority.

Distributed runs must not depend on how loaded the machine is. `background_load()` starts the load
for the duration of a `with` block and stops it on the way out, whatever ends the block (an
exception, Ctrl-C). A busy process is also killed by the kernel when its parent dies
(PR_SET_PDEATHSIG), so even a benchmark killed with SIGKILL leaves nothing spinning.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1
# Spin until the parent that started us is gone (re-parented processes see another ppid).
_BUSY = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(100000))\n"


def start_load(processes: int, nice: int = 19) -> list[subprocess.Popen]:
    """Start `processes` busy processes at niceness `nice`."""

    def lower_priority() -> None:
        os.nice(nice)
        # Linux: the kernel kills the busy process when the process that started it dies.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return [
        subprocess.Popen(
            [sys.executable, "-c", _BUSY],
            preexec_fn=lower_priority,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]


def stop_load(procs: list[subprocess.Popen], timeout: float = 5.0) -> None:
    """Kill the busy processes and reap them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout)


@contextlib.contextmanager
def background_load(enabled: bool = True, processes: int | None = None) -> Iterator[list[subprocess.Popen]]:
    """One busy process per core (or `processes`) while the block runs; none when not `enabled`."""
    procs = start_load(processes or os.cpu_count() or 1) if enabled else []
    try:
        yield procs
    finally:
        stop_load(procs)
