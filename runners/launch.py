"""The embedded launcher: one learner service in this process, N actor processes on 127.0.0.1.

Like TorchBeast's polybeast launcher: start the service, start the children, run the learner loop,
join. Whatever ends the run (the schedule, Ctrl-C, SIGTERM, a crashed actor) the children are
stopped before this returns, so no actor outlives the launcher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing as mp
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from stackrl.config import ExperimentConfig
from stackrl.learner.service import LearnerServer
from stackrl.runners.child_logs import forwarded_logs, log_to_queue

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """An actor process failed; the message names it and its exit code."""


CRASH_EXIT_CODE = 3
REFUSED_EXIT_CODE = 1  # run_actor_process: the learner refused the actor or was unreachable


def actor_child(
    address: str, token: str | None, connect_deadline_s: float, verbose: bool = False, log_queue: Any = None
) -> None:
    """Entry point of a spawned actor process; exits with the actor's exit code. With `log_queue`
    (runners/child_logs.py) its log records go to the launcher, which prints them."""
    _die_with_parent()  # before the actor's imports: a launcher killed meanwhile must not orphan us
    from stackrl.actors.main import run_actor_process

    level = logging.DEBUG if verbose else logging.INFO
    if log_queue is not None:
        log_to_queue(log_queue, level)
    else:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
        )
    try:
        code = run_actor_process(address, token, connect_deadline_s=connect_deadline_s)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the launcher cleans up
        code = 130
    except Exception:  # a crash (not a refusal): exit code 3, which the launcher restarts
        logging.getLogger(__name__).exception("actor crashed")
        code = CRASH_EXIT_CODE
    sys.exit(code)


def _die_with_parent() -> None:
    """On Linux, have the kernel send SIGTERM to this process if the launcher dies (no orphans).

    The signal only covers a launcher that dies after the request; one killed while this process was
    still starting (a spawned child imports the package first) has already left it reparented, so
    that is checked too: such an actor exits at once instead of retrying an absent learner for
    `connect_deadline_s` (issue 13: early launcher kills orphaned actors for 60 s)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    parent = mp.parent_process()
    if parent is not None and parent.pid != os.getppid():
        os._exit(130)  # the launcher is gone; nothing to report to


def _actor_process(
    address: str, token: str | None, connect_deadline_s: float, name: str, log_queue: Any = None
) -> BaseProcess:
    ctx = mp.get_context("spawn")
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    args = (address, token, connect_deadline_s, verbose, log_queue)
    return ctx.Process(target=actor_child, args=args, name=name, daemon=False)


def start_actors(
    address: str, token: str | None, n: int, connect_deadline_s: float, log_queue: Any = None
) -> list[BaseProcess]:
    """Spawn `n` actor processes pointed at `address` (spawn: no forked torch or gRPC state)."""
    procs = [_actor_process(address, token, connect_deadline_s, f"actor-{i}", log_queue) for i in range(n)]
    for p in procs:
        p.start()
    return procs


class ActorSupervisor:
    """Keeps `n` actor processes alive: one that dies (killed by a signal, or crashed) is restarted after
    an exponential back-off (`base_delay_s` doubling up to `max_delay_s`), at most `max_restarts` times
    per slot. An actor the learner refused (exit code 1: bad token, unreachable) is not restarted: that
    stops the run with `LaunchError`, as does running out of restarts."""

    def __init__(
        self,
        address: str,
        token: str | None,
        n: int,
        connect_deadline_s: float,
        *,
        max_restarts: int = 5,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        log_queue: Any = None,
    ):
        self.address, self.token, self.connect_deadline_s = address, token, connect_deadline_s
        self.log_queue = log_queue
        self.max_restarts, self.base_delay_s, self.max_delay_s = max_restarts, base_delay_s, max_delay_s
        self.procs: list[BaseProcess] = start_actors(address, token, n, connect_deadline_s, log_queue)
        self.restarts = [0] * n
        self.restart_log: list[dict] = []
        self._due: dict[int, float] = {}  # slot -> monotonic time of its scheduled restart

    def check(self) -> None:
        """Called from the learner loop: schedule and perform restarts, raise on fatal exits."""
        now = time.monotonic()
        for i, p in enumerate(self.procs):
            code = p.exitcode
            if code is None or code == 0:
                continue
            if code == REFUSED_EXIT_CODE:
                raise LaunchError(f"{p.name} (pid {p.pid}) exited with code {code}; stopping the run")
            if i not in self._due:
                if self.restarts[i] >= self.max_restarts:
                    raise LaunchError(
                        f"{p.name} (pid {p.pid}) exited with code {code} after {self.restarts[i]} "
                        "restarts; stopping the run"
                    )
                delay = min(self.base_delay_s * 2 ** self.restarts[i], self.max_delay_s)
                self._due[i] = now + delay
                log.warning(
                    "%s (pid %d) died with exit code %s; restart %d/%d in %.1fs",
                    p.name, p.pid, code, self.restarts[i] + 1, self.max_restarts, delay,
                )  # fmt: skip
            elif now >= self._due[i]:
                del self._due[i]
                p.join(0)
                new = _actor_process(
                    self.address, self.token, self.connect_deadline_s, f"actor-{i}", self.log_queue
                )
                new.start()
                self.restarts[i] += 1
                self.restart_log.append(
                    {"actor": i, "old_pid": p.pid, "exit_code": code, "new_pid": new.pid, "time": time.time()}
                )
                log.warning("restarted %s: pid %d (exit code %s) -> pid %d", new.name, p.pid, code, new.pid)
                self.procs[i] = new
        if self.procs and not self._due and all(p.exitcode == 0 for p in self.procs):
            raise LaunchError("all actor processes exited before the learner finished")


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


def resume_config(run_dir: str | Path) -> tuple[ExperimentConfig, Path]:
    """The config of the run in `run_dir` (its config.yaml, else the checkpoint's copy), checked
    before anything starts.

    Raises:
        CheckpointError: no run there, or its checkpoint is missing or corrupt.
        ConfigError: its config no longer validates.
    """
    from stackrl.learner.checkpoint import CheckpointError, load_checkpoint

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume: {run_dir} is not a run directory")
    state = load_checkpoint(ckpt)  # fail now, clearly, rather than after the service started
    cfg_file = run_dir / "config.yaml"
    text = cfg_file.read_text() if cfg_file.exists() else state.get("config_yaml")
    if not isinstance(text, str):
        raise CheckpointError(f"cannot resume: {run_dir} has no config.yaml and {ckpt} holds no config")
    cfg = ExperimentConfig.from_yaml(text)
    if cfg.server.token == "<redacted>":  # the saved copy never holds the secret
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, token=None))
    return cfg, run_dir


def run_local(
    cfg: ExperimentConfig,
    run_dir: Path | None,
    progress: bool = True,
    resume: bool = False,
    log_every_s: float = 30.0,
) -> dict:
    """Train with a learner service and `cfg.actor.num_actors` actor processes on this machine.

    Actors that die are restarted with back-off (`ActorSupervisor`). With `resume`, the learner
    continues from `run_dir/checkpoint.pt` (`CheckpointError` if it is missing or corrupt). Without
    `progress`, a status line is logged every `log_every_s` seconds.

    Returns:
        result.json's dict (the same keys as `run_serial`), plus a `transport` section.

    Raises:
        LaunchError: an actor process crashed (the run is stopped, no process is left behind).
        KeyboardInterrupt: Ctrl-C, or SIGTERM before training started (likewise cleaned up).
        Preempted: SIGTERM or SIGUSR1 during training; a checkpoint was written first.
    """
    # Without a configured token, a fresh one keeps other local users out; it is never written down.
    token = cfg.server.token or secrets.token_urlsafe(24)
    server = LearnerServer(cfg, run_dir, token=token, resume=resume, own_actors=True)
    sup: ActorSupervisor | None = None
    with sigterm_as_interrupt(), forwarded_logs(mp.get_context("spawn")) as log_queue:
        try:
            port = server.start()
            host = "127.0.0.1" if cfg.server.host in ("0.0.0.0", "::", "") else cfg.server.host
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            sup = ActorSupervisor(
                address, token, cfg.actor.num_actors, cfg.actor.connect_deadline_s, log_queue=log_queue
            )
            result = server.run(progress, on_tick=sup.check, log_every_s=log_every_s)
            if result is None:
                raise LaunchError("the learner stopped before the schedule ended")
            procs = sup.procs
            stop_actors(procs)
            for p in procs:
                if p.exitcode != 0:
                    log.warning(
                        "%s (pid %d) exited with code %s after the run ended", p.name, p.pid, p.exitcode
                    )
            result["transport"]["actor_exit_codes"] = [p.exitcode for p in procs]
            result["transport"]["actor_restarts"] = sup.restart_log
            if run_dir is not None:
                (Path(run_dir) / "transport.json").write_text(json.dumps(result["transport"], indent=2))
            return result
        finally:
            server.close()
            if sup is not None:
                stop_actors(sup.procs)
