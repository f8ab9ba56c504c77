"""learner/preemption.py: SIGTERM and SIGUSR1 are recorded instead of ending the process while a loop
runs inside `stop_on_signals`, the previous handlers come back afterwards, and `Preempted` carries
the exit code a shell reports for a process the signal ended."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from stackrl.learner.preemption import PREEMPT_SIGNALS, Preempted, stop_on_signals


def test_signals_are_recorded_inside_and_handlers_restored_after():
    before = {s: signal.getsignal(s) for s in PREEMPT_SIGNALS}
    got: list[int] = []
    with stop_on_signals(got.append):
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
    assert got == [signal.SIGUSR1, signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in PREEMPT_SIGNALS} == before


def test_outside_the_main_thread_signals_are_left_alone():
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with stop_on_signals(lambda s: None):
                pass
        except BaseException as e:  # signal.signal would raise ValueError here
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert errors == []


def test_preempted_names_the_signal_the_checkpoint_and_the_exit_code():
    e = Preempted(signal.SIGTERM, Path("runs/x/checkpoint.pt"))
    assert e.exit_code == 143 and "SIGTERM" in str(e) and "runs/x/checkpoint.pt" in str(e)
    assert Preempted(signal.SIGUSR1, None).exit_code == 128 + signal.SIGUSR1
