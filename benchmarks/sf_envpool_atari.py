"""Sample Factory 2.1.1's own envpool Atari trainer, with one compatibility shim and a stop watch: run
by benchmarks/vs_peers.sh inside the Sample Factory virtual environment, never by the product.

    $CACHE/sample-factory-2.1.1/bin/python benchmarks/sf_envpool_atari.py --stop_after_update_s=150 \
        --env=atari_spaceinvaders --train_dir=DIR --experiment=NAME ...

Every other argument goes to `sf_examples.envpool.atari.train_envpool_atari.main` unchanged; no
Sample Factory code is copied here.

The shim, and why: envpool's gym-style env classes (envpool 1.2.5) subclass
`gymnasium.vector.VectorEnv` but never call `VectorEnv.__init__`, so the instance attributes
`closed` and `viewer` that gymnasium 0.29.1 sets there do not exist. Sample Factory closes a probe
env right after reading its spaces, and `VectorEnv.close()` reads `self.closed` first: the run dies
with AttributeError before training starts. Class-level defaults `closed = False` and
`viewer = None` give those envs the values `__init__` would have set; envs that did run
`__init__` keep their own instance attributes. The shim runs at import, so worker processes that
re-import this module (spawn start method) get it as well.

The stop watch, and why: SF 2.1.1's `--train_for_seconds` never fires (the runner never advances
`total_train_seconds`), and its start (env creation, the first rollout) takes from seconds on an
idle machine to minutes on a busy one. `--stop_after_update_s=S` watches SF's own log file
(TRAIN_DIR/EXPERIMENT/sf_log.txt) for the first report of trained frames, then interrupts the run S
seconds (plus one report) later, as Ctrl-C would: every run gets the same window after its first
update whatever its start cost. vs_peers.sh keeps a `timeout` around it as a last resort.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import gymnasium.vector
import torch

gymnasium.vector.VectorEnv.closed = False
gymnasium.vector.VectorEnv.viewer = None  # type: ignore[attr-defined]  # (gymnasium 1.x has none)

_TRAINED = re.compile(r"Total num frames: [1-9]")
_REPORT_S = 6.0  # SF reports every ~5 s (--experiment_summaries_interval=3 still reports at 5 s)


def versions() -> str:
    """The pins actually installed, printed first so that the log says what ran."""
    names = ("sample-factory", "envpool", "gymnasium", "numpy", "torch")
    return " ".join(f"{n}=={metadata.version(n)}" for n in names)


def take_option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of `--name=value` (ours, not SF's) and argv without it."""
    prefix = f"--{name}="
    values = [a[len(prefix) :] for a in argv if a.startswith(prefix)]
    return (values[-1] if values else None), [a for a in argv if not a.startswith(prefix)]


def sf_option(argv: list[str], name: str, default: str) -> str:
    value, _ = take_option(argv, name)
    return value if value is not None else default


def stop_after_first_update(log_file: Path, seconds: float, stopped: threading.Event) -> None:
    """Interrupt this process `seconds` after `log_file` first reports trained frames."""
    while not (log_file.exists() and _TRAINED.search(log_file.read_text(errors="replace"))):
        time.sleep(1.0)
    time.sleep(seconds + _REPORT_S)
    print(f"sf_envpool_atari: {seconds:.0f} s after the first update, stopping", flush=True)
    stopped.set()
    os.kill(os.getpid(), signal.SIGINT)


if __name__ == "__main__":
    from sample_factory.algo.utils.misc import ExperimentStatus
    from sf_examples.envpool.atari.train_envpool_atari import main

    stop_s, argv = take_option(sys.argv[1:], "stop_after_update_s")
    sys.argv[1:] = argv
    print(f"sf_envpool_atari: {versions()} torch threads {torch.get_num_threads()}", flush=True)
    stopped = threading.Event()
    if stop_s is not None:
        log_file = Path(
            sf_option(argv, "train_dir", "train_dir"), sf_option(argv, "experiment", "default_experiment")
        )
        log_file = log_file / "sf_log.txt"
        log_file.unlink(missing_ok=True)  # a previous run's log must not start the clock
        watch = threading.Thread(
            target=stop_after_first_update, args=(log_file, float(stop_s), stopped), daemon=True
        )
        watch.start()
    status = main()
    # Our own stop is the planned end of the window: SF reports it as INTERRUPTED (2).
    sys.exit(0 if stopped.is_set() and status == ExperimentStatus.INTERRUPTED else status)
