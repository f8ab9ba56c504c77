"""The learner as a gRPC service: actors on any host push unrolls and stream versioned weights.

Handlers (learner/servicer.py: coroutines on the `grpc.aio` server's own event-loop thread) decode
and validate every message and put whole unrolls on a bounded queue; when it is full,
`PushTrajectories` waits, so actors slow down instead of the learner falling behind (back-pressure).
One loop thread owns the `Learner`: it takes unrolls, calls `process`, and publishes each new
broadcast: `StreamWeights` streams announce its versions and phase, and actors pull the weights they
lack between unrolls (`PullWeights`). It logs transport metrics, checkpoints, and at the end writes
result.json and shuts the service down. Security (token, TLS, loopback rule) lives in
protos/security.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import torch
from stackrl.config import ExperimentConfig, ServerConfig
from stackrl.learner.admission import Limits
from stackrl.learner.learner import Learner
from stackrl.learner.preemption import Preempted, stop_on_signals
from stackrl.learner.servicer import LearnerServicer, Publisher, Unroll, expected_specs
from stackrl.learner.status_line import StatusLine
from stackrl.learner.thread_budget import ThreadBudget
from stackrl.protos import codec, rpc
from stackrl.protos.security import TokenInterceptor, check_bind, server_credentials
from tqdm import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class TransportStats:
    """What crossed the wire, as the learner loop consumed it."""

    unrolls: int = 0
    transitions: int = 0  # T * B per trajectory: one role's decisions-or-not at one step of one game
    bytes: int = 0
    lag_sum: int = 0  # learner version minus trajectory version, summed over trajectories
    lag_count: int = 0
    per_actor: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def mean_lag(self) -> float:
        return self.lag_sum / self.lag_count if self.lag_count else float("nan")


class LearnerServer:
    """A `Learner` behind the gRPC service: `start()` binds, `run()` trains, `stop()` ends early."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: Path | None = None,
        token: str | None = None,
        resume: bool = False,
        own_actors: bool = False,
    ):
        """Args:
        cfg: the run; `cfg.server` says where to listen (port 0 picks a free one).
        run_dir: where result.json, checkpoints and TensorBoard logs go (None: nowhere).
        token: shared secret required on every call; defaults to `cfg.server.token`.
        resume: continue the run from `run_dir/checkpoint.pt` (raises `CheckpointError` if it is
            missing, corrupt or does not match `cfg`).
        own_actors: the actors are this process's children and end with it (the local launcher):
            preempted, it still tells them the run is over, so they exit 0 instead of retrying.
        """
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.token = token if token is not None else cfg.server.token
        check_bind(cfg.server, self.token)  # before building the learner: fail fast and cheaply
        # Read the TLS files now too: a bad path must fail before the learner writes into the run.
        server_credentials(cfg.server)
        self.learner = Learner(cfg, self.run_dir, fresh=not resume)
        self.cfg = cfg = self.learner.cfg  # with the probe set's path and hash pinned, if any
        if resume:
            if self.run_dir is None:
                raise ValueError("resume needs a run directory")
            try:
                self.learner.resume(self.run_dir / "checkpoint.pt")
            except BaseException:
                self.learner.close()
                raise
        self.specs = expected_specs(self.learner.spec, cfg)
        # Actors get the run's config without the server's secrets and file paths.
        self.actor_config = dataclasses.replace(
            cfg,
            server=ServerConfig(
                host=cfg.server.host, port=cfg.server.port, max_message_mb=cfg.server.max_message_mb
            ),
        )
        self.queue: queue.Queue[Unroll] = queue.Queue(maxsize=cfg.learner.queue_size)
        self.publisher = Publisher()
        self.publisher.publish(self.learner.broadcast())
        self.closing = False
        # The servicer owns the rejected count; a resumed run continues from its checkpoint's.
        self.servicer = LearnerServicer(
            self.learner.spec,
            self.specs,
            self.actor_config,
            self.queue,
            self.publisher,
            status=self.status,
            # A preempted learner closes without ending the run (unless its actors are its own
            # children): waiting pushes must not say it ended.
            closing=lambda: self.closing and (self.stopped_by is None or self.own_actors),
            rejected=self.learner.rejected,
            limits=Limits(
                weight_streams=cfg.server.max_weight_streams,
                pushes=cfg.server.max_pushes,
                push_deadline_s=cfg.server.push_deadline_s,
                idle_stream_s=cfg.server.idle_stream_s,
            ),
        )
        self.stats = TransportStats()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.stopped_by: int | None = None  # the signal that preempted the run, if one did
        self.own_actors = own_actors
        self._lag = float("nan")  # mean policy lag over the last logging window
        self._status = codec.LearnerStatus()
        self._update_status()

    @property
    def address(self) -> str:
        host = self.cfg.server.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def start(self) -> int:
        """Bind `cfg.server.host:port` and start serving; returns the bound port.

        The server is `grpc.aio` on an event loop of its own thread: every handler is a coroutine, so
        an open call (a held weight stream, a push waiting on back-pressure) costs no thread, and a
        received message is handled where it arrives, with no hand-off between threads."""
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="stackrl-rpc", daemon=True)
        self._loop_thread.start()
        creds = server_credentials(self.cfg.server)
        port = self._on_loop(self._start_server(creds), timeout=30.0)
        self.port = port
        tls = "TLS" if creds else "plaintext"
        auth = "token required" if self.token else "no token: loopback only"
        log.info("learner listening on %s (%s, %s)", self.address, tls, auth)
        return port

    async def _start_server(self, creds: grpc.ServerCredentials | None) -> int:
        limit = self.cfg.server.max_message_mb * (1 << 20)
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a silently shared socket
        ]
        # Open calls are bounded whatever the actor count: each kind of call has its own budget
        # (StreamGuard), plus as many for the short PullWeights calls as for pushes (an actor pulls
        # between two pushes) and some for Register and Status; calls beyond are refused with
        # RESOURCE_EXHAUSTED (actors back off and retry), never queued.
        server = self.cfg.server
        calls = server.max_weight_streams + 2 * server.max_pushes + 8
        self._server = grpc.aio.server(
            interceptors=[TokenInterceptor(self.token)] if self.token else [],
            options=options,
            maximum_concurrent_rpcs=calls,
        )
        rpc.add_learner_servicer(self.servicer, self._server)
        host = self.cfg.server.host
        target = f"[{host}]:{self.cfg.server.port}" if ":" in host else f"{host}:{self.cfg.server.port}"
        port: int
        try:
            port = (
                self._server.add_secure_port(target, creds)
                if creds
                else self._server.add_insecure_port(target)
            )
        except RuntimeError as e:
            port, why = 0, str(e)
        else:
            why = "address in use or not available"
        if not port:
            raise OSError(f"learner cannot listen on {target}: {why}")
        await self._server.start()
        return port

    def _on_loop(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the server's event loop and wait for its result (from any other thread)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- the learner loop ------------------------------------------------------------------------
    def run(
        self, progress: bool = True, on_tick: Callable[[], None] | None = None, log_every_s: float = 30.0
    ) -> dict[str, Any] | None:
        """Train until the schedule ends (or `stop()`); then shut the service down.

        Args:
            progress: show a tqdm bar (steps, steps/s, leader value, phase).
            on_tick: called about every 0.1 s from this loop (the launcher checks its children);
                an exception it raises ends the run.
            log_every_s: without the bar, log a status line (learner/status_line.py) this often.

        Returns:
            result.json's dict plus a `transport` section, or None if stopped before the end.

        Raises:
            Preempted: SIGTERM or SIGUSR1 arrived; a checkpoint was written first (with a run
                directory), and actors were not told the run ended, so they reconnect to its successor.
        """
        with stop_on_signals(self.preempt):
            return self._run(progress, on_tick, log_every_s)

    def _run(
        self, progress: bool, on_tick: Callable[[], None] | None, log_every_s: float
    ) -> dict[str, Any] | None:
        # auto (0): the cores the rest of the machine leaves idle, re-measured (thread_budget.py)
        budget = ThreadBudget() if self.cfg.learner.threads == 0 else None
        if budget is None:
            torch.set_num_threads(self.cfg.learner.threads)
        learner = self.learner
        total = self.cfg.schedule.total_env_steps
        status = StatusLine(0.0 if progress else log_every_s, total, learner.env_steps)
        bar = tqdm(
            total=self.cfg.schedule.total_env_steps, unit="step", disable=not progress, dynamic_ncols=True
        )
        window = _Window(time.monotonic(), learner.env_steps, sum(learner.updates.values()), 0, 0)
        try:
            while not learner.done and not self._stop.is_set():
                if on_tick is not None:
                    on_tick()
                if budget is not None and budget.tick() is not None:
                    log.info(
                        "learner threads: %d (others use %.2f of %d cores)",
                        budget.threads,
                        budget.load,
                        budget.cores,
                    )
                try:
                    unroll = self.queue.get(timeout=0.1)
                except queue.Empty:
                    unroll = None
                if unroll is not None:
                    self._consume(unroll)
                window = self._log(window, bar)
                value = learner.last_eval.leader_value if learner.last_eval else float("nan")
                status.maybe_log(
                    learner.env_steps, learner.schedule.kind, value, self._lag, self.queue.qsize()
                )
                learner.maybe_checkpoint()
            if not learner.done and self.stopped_by is not None:
                path = learner.save() if self.run_dir else None
                log.warning("stopped by signal %d at %d env steps", self.stopped_by, learner.env_steps)
                raise Preempted(self.stopped_by, path)
            if not learner.done:
                return None
            result = learner.write_result()
            result["transport"] = self.transport_summary()
            if self.run_dir:
                learner.save()
                (self.run_dir / "transport.json").write_text(json.dumps(result["transport"], indent=2))
            return result
        finally:
            bar.close()
            self.close(end_run=self.stopped_by is None or self.own_actors)

    def _consume(self, unroll: Unroll) -> None:
        learner, st = self.learner, self.stats
        for t in unroll.trajs:
            lag = learner.versions[t.role] - t.version
            st.lag_sum += lag
            st.lag_count += 1
            st.transitions += t.arrays["actions"].size
            a = st.per_actor.setdefault(t.actor_id, {"unrolls": 0, "env_steps": 0, "max_version": {}})
            a["max_version"][t.role] = max(a["max_version"].get(t.role, 0), t.version)
            a["env_steps"] += t.env_steps
        st.per_actor[unroll.trajs[0].actor_id]["unrolls"] += 1
        st.unrolls += 1
        st.bytes += unroll.nbytes
        learner.rejected = self.servicer.rejected  # the checkpoint's copy of the servicer's count
        if learner.process(unroll.trajs, unroll.nbytes):
            self.publisher.publish(learner.broadcast())
        self._update_status()

    def _log(self, w: _Window, bar: tqdm) -> _Window:
        now = time.monotonic()
        if now - w.time < 2.0:
            return w
        learner, st, dt = self.learner, self.stats, now - w.time
        updates = sum(learner.updates.values())
        lag = (st.lag_sum - w.lag_sum) / max(st.lag_count - w.lag_count, 1)
        self._lag = lag
        step = learner.env_steps
        m = learner.metrics
        m.scalar("transport/queue_depth", self.queue.qsize(), step)
        m.scalar("transport/bytes_received", st.bytes, step)
        m.scalar("transport/policy_lag_mean", lag, step)
        m.scalar("transport/env_steps_per_s", (step - w.env_steps) / dt, step)
        m.scalar("transport/updates_per_s", (updates - w.updates) / dt, step)
        m.scalar("transport/rejected", self.servicer.rejected, step)
        value = learner.last_eval.leader_value if learner.last_eval else float("nan")
        bar.n = min(step, bar.total)
        bar.set_postfix(
            phase=learner.schedule.kind, leader_value=f"{value:g}", queue=self.queue.qsize(), refresh=False
        )
        bar.update(0)
        return _Window(now, step, updates, st.lag_sum, st.lag_count)

    def _update_status(self) -> None:
        learner = self.learner
        self._status = codec.LearnerStatus(
            env_steps=learner.env_steps,
            versions=dict(learner.versions),
            phase_id=learner.schedule.phase_id,
            phase_kind=learner.schedule.kind,
            done=learner.done,
            trajectories_received=learner.trajectories_received,
            bytes_received=self.stats.bytes,
        )

    def status(self) -> codec.LearnerStatus:
        """A snapshot for the Status RPC (safe from any thread)."""
        return dataclasses.replace(
            self._status,
            queue_depth=self.queue.qsize(),
            rejected=self.servicer.rejected,
            actors_registered=self.servicer.registered,
        )

    def transport_summary(self) -> dict[str, Any]:
        st = self.stats
        return {
            "unrolls": st.unrolls,
            "transitions": st.transitions,
            "bytes_received": st.bytes,
            "mean_policy_lag": st.mean_lag,
            "rejected": self.servicer.rejected,
            "actors": {str(k): v for k, v in sorted(st.per_actor.items())},
        }

    # -- shutdown ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask `run()` to end after the current unroll (thread- and signal-safe)."""
        self._stop.set()

    def preempt(self, signum: int) -> None:
        """Ask `run()` to checkpoint and raise `Preempted` after the current unroll (signal-safe)."""
        if self.stopped_by is None:
            self.stopped_by = signum
        self._stop.set()

    def close(self, grace_s: float = 5.0, end_run: bool = True) -> None:
        """Tell actors the run is over, give their streams `grace_s` to drain, stop serving.

        `end_run=False` (a preempted learner) stops serving without telling actors the run is over:
        their calls fail, and they keep retrying until the restarted learner answers."""
        if self.closing:
            return
        self.closing = True
        try:
            if end_run:
                self.publisher.publish(dataclasses.replace(self.learner.broadcast(), done=True))
            deadline = time.monotonic() + (grace_s if end_run else 0.0)
            while self._server is not None and self.servicer.open_streams and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            # Even if a signal interrupts the drain: a second close() returns at once, so this one
            # must stop the server, or its worker threads keep the interpreter from exiting.
            self.publisher.close()
            self.servicer.guard.close()
            self._stop_server()
            self.learner.close()

    def _stop_server(self, grace_s: float = 1.0) -> None:
        """Stop serving (calls still open get `grace_s`), then end the event loop and its thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            if self._server is not None:
                self._on_loop(self._server.stop(grace=grace_s), timeout=grace_s + 5.0)
        except (TimeoutError, concurrent.futures.TimeoutError):
            log.warning("the gRPC server did not stop within 5 s; exiting anyway")
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5.0)
            if not loop.is_running():
                loop.close()
            self._loop = None


@dataclass
class _Window:
    time: float
    env_steps: int
    updates: int
    lag_sum: int
    lag_count: int


def serve_learner(
    cfg: ExperimentConfig,
    run_dir: Path | None,
    progress: bool = True,
    token: str | None = None,
    on_bound: Callable[[str], None] | None = None,
    resume: bool = False,
    log_every_s: float = 30.0,
) -> dict[str, Any] | None:
    """Run a learner service until the schedule ends; returns result.json's dict (None if stopped).

    Args:
        cfg: the run; `cfg.server` says where to listen.
        run_dir: where result.json, checkpoints and TensorBoard logs go.
        progress: show a progress bar.
        token: shared secret (overrides `cfg.server.token`; kept out of the saved config).
        on_bound: called with the bound `host:port` once the service listens (port 0 picks one).
        resume: continue the run from `run_dir/checkpoint.pt`.
        log_every_s: without a progress bar, log a status line this often.

    Raises:
        Preempted: stopped by SIGTERM or SIGUSR1 after writing a checkpoint.
    """
    server = LearnerServer(cfg, run_dir, token=token, resume=resume)
    # From here on a SIGTERM is a preemption, even one that arrives before `run()` starts its loop.
    with stop_on_signals(server.preempt):
        try:
            server.start()
        except BaseException:
            server.close(grace_s=0)
            raise
        if on_bound is not None:
            on_bound(server.address)
        return server.run(progress, log_every_s=log_every_s)
