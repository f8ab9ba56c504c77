"""The embedded launcher: one learner service in this process, N actor processes on 127.0.0.1.

Like TorchBeast's polybeast launcher: start the service, start the children, run the learner loop,
join. Whatever ends the run (the schedule, Ctrl-C, SIGTERM, a crashed actor) the children are
stopped before this returns, so no actor outlives the launcher.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import secrets
import signal
import sys
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path

from stackrl.config import ExperimentConfig
from stackrl.learner.service import LearnerServer

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """An actor process failed; the message names it and its exit code."""


def actor_child(address: str, token: str | None, connect_deadline_s: float, verbose: bool = False) -> None:
    """Entry point of a spawned actor process; exits with the actor's exit code."""
    from stackrl.actors.main import run_actor_process

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    _die_with_parent()
    try:
        code = run_actor_process(address, token, connect_deadline_s=connect_deadline_s)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the launcher cleans up
        code = 130
    sys.exit(code)


def _die_with_parent() -> None:
    """On Linux, have the kernel send SIGTERM to this process if the launcher dies (no orphans)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def start_actors(address: str, token: str | None, n: int, connect_deadline_s: float) -> list[BaseProcess]:
    """Spawn `n` actor processes pointed at `address` (spawn: no forked torch or gRPC state)."""
    ctx = mp.get_context("spawn")
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    procs = [
        ctx.Process(
            target=actor_child,
            args=(address, token, connect_deadline_s, verbose),
            name=f"actor-{i}",
            daemon=False,
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    return procs


def check_actors(procs: list[BaseProcess]) -> None:
    """Raise `LaunchError` if an actor crashed, or if all exited while the learner still wants data."""
    for p in procs:
        if p.exitcode not in (None, 0):
            raise LaunchError(f"{p.name} (pid {p.pid}) exited with code {p.exitcode}; stopping the run")
    if procs and all(p.exitcode == 0 for p in procs):
        raise LaunchError("all actor processes exited before the learner finished")


def stop_actors(procs: list[BaseProcess], timeout_s: float = 10.0) -> None:
    """Give children `timeout_s` to finish on their own, then terminate, then kill."""
    for p in procs:
        p.join(timeout_s)
    for p in procs:
        if p.is_alive():
            log.warning("terminating %s (pid %d)", p.name, p.pid)
            p.terminate()
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (Slurm, Kubernetes, kill) like Ctrl-C so the same cleanup runs."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local(cfg: ExperimentConfig, run_dir: Path | None, progress: bool = True) -> dict:
    """Train with a learner service and `cfg.actor.num_actors` actor processes on this machine.

    Returns:
        result.json's dict (the same keys as `run_serial`), plus a `transport` section.

    Raises:
        LaunchError: an actor process crashed (the run is stopped, no process is left behind).
        KeyboardInterrupt: Ctrl-C or SIGTERM (likewise cleaned up).
    """
    # Without a configured token, a fresh one keeps other local users out; it is never written down.
    token = cfg.server.token or secrets.token_urlsafe(24)
    server = LearnerServer(cfg, run_dir, token=token)
    procs: list[BaseProcess] = []
    with sigterm_as_interrupt():
        try:
            port = server.start()
            host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            procs = start_actors(address, token, cfg.actor.num_actors, cfg.actor.connect_deadline_s)
            result = server.run(progress, on_tick=lambda: check_actors(procs))
            if result is None:
                raise LaunchError("the learner stopped before the schedule ended")
            stop_actors(procs)
            for p in procs:
                if p.exitcode != 0:
                    log.warning(
                        "%s (pid %d) exited with code %s after the run ended", p.name, p.pid, p.exitcode
                    )
            result["transport"]["actor_exit_codes"] = [p.exitcode for p in procs]
            return result
        finally:
            server.close()
            stop_actors(procs)
