"""Preemption: SIGTERM and SIGUSR1 ask a training loop to stop, write a checkpoint, and exit.

Slurm sends SIGTERM when it preempts or requeues a job (and SIGUSR1 when asked to with `--signal`),
Kubernetes sends SIGTERM when it stops a pod; both then wait a grace period before SIGKILL. The
handler only records the signal: the loop that owns the learner notices it between unrolls, writes a
checkpoint (an atomic write, learner/checkpoint.py) and returns, so a restarted learner resumes
where this one stopped instead of at its last periodic checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RuntimeError):
    """The run stopped on a signal after writing `checkpoint` (None: it has no run directory)."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.signum = signum
        self.checkpoint = checkpoint
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no run directory, no checkpoint"
        super().__init__(f"stopped by {signal.Signals(signum).name}: {where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, what a shell reports for a process the signal ended."""
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[int], None]) -> Iterator[None]:
    """While inside, SIGTERM and SIGUSR1 call `stop(signum)` instead of ending the process.

    `stop` runs in the signal handler, so it must only record the request (set a flag or an event).
    Outside the main thread Python cannot install handlers: signals are then left as they were.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stop(signum)

    previous = {s: signal.signal(s, handler) for s in PREEMPT_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
