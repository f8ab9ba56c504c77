"""The actor's side of the gRPC transport: register, push unrolls, keep the newest weights.

`GrpcActorEndpoint` implements `ActorEndpoint` (protos/transport.py), so `Actor` runs unchanged
over the network. A background thread consumes the `StreamWeights` stream, which announces the newest
phase, versions and done flag without weights; `poll()`, called by the actor between unrolls, pulls
the weights of the roles whose announced version it lacks (`PullWeights`) and returns a broadcast
holding every role's latest weights. So an actor receives at most one weight copy per unroll, the
newest, however many versions the learner made meanwhile (issue 16).
When the learner cannot be reached, calls are retried with exponential back-off and one log line
per retry; after `connect_deadline_s` without success they raise `LearnerUnavailable`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar, overload

import grpc
import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.protos import codec, rpc
from stackrl.protos.security import auth_metadata, is_loopback
from stackrl.protos.transport import Broadcast
from stackrl.trajectory import Trajectory

log = logging.getLogger(__name__)
T = TypeVar("T")

# UNAVAILABLE: not reachable (yet, or any more); CANCELLED: the learner's server went down while the
# call was in flight (a crash or a restart), which the client never does to its own calls.
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
# RESOURCE_EXHAUSTED with these details: the learner is at its call budget (learner/admission.py, or
# gRPC's own concurrent-RPC cap), a load that passes, so back off and retry. Other RESOURCE_EXHAUSTED
# answers (a message over a size limit) would fail the same way again.
_BUSY = ("too many open", "Concurrent RPC limit")


def _retryable(e: grpc.RpcError) -> bool:
    code = e.code()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return any(b in (e.details() or "") for b in _BUSY)
    return code in _RETRYABLE


_MAX_BACKOFF_S = 5.0


class LearnerError(RuntimeError):
    """The learner answered with an error that retrying cannot fix (bad token, invalid data, ...)."""


class LearnerUnavailable(LearnerError):
    """The learner could not be reached within the connect deadline."""


class LearnerRestarted(RuntimeError):
    """The weight stream came back after a loss: the learner may have restarted from a checkpoint, so
    the actor should re-register and start over from the weights the learner now holds."""


class GrpcActorEndpoint:
    """An `ActorEndpoint` talking to a learner service at `address` (`host:port`)."""

    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls_ca: str | None = None,
        *,
        connect_deadline_s: float = 60.0,
        max_message_mb: int = 64,
        compress: bool = False,
        insecure: bool = False,
    ):
        """Args:
        address: the learner's `host:port`.
        token: the shared secret, sent as `authorization: Bearer <token>` on every call.
        tls_ca: PEM file of the CA that signed the learner's certificate; None for plaintext.
        connect_deadline_s: give up after this long without reaching the learner (replaced by the
            run's `actor.connect_deadline_s` once registered).
        max_message_mb: largest message sent or accepted.
        compress: zlib-compress trajectory tensors (pays off for image observations).
        insecure: allow plaintext to a learner off loopback. Without TLS nothing proves who answers
            at `address`, and the token would go to whoever does; so off loopback an actor needs
            `tls_ca` (the token then goes only over a channel whose certificate that CA signed) or
            this explicit opt-out.

        Raises:
            LearnerError: plaintext off loopback without `insecure`, or `tls_ca` cannot be read.
        """
        host = address.rsplit(":", 1)[0] if not address.startswith("[") else address[1:].split("]")[0]
        if tls_ca is None and not insecure and not is_loopback(host):
            raise LearnerError(
                f"learner at {address} is not on loopback and no --tls-ca is given: an actor sends its "
                "token only to a learner it can authenticate. Give --tls-ca CA.pem, or --insecure on a "
                "network you trust (the token then travels in clear)"
            )
        self.address = address
        self.connect_deadline_s = connect_deadline_s
        self.compress = compress
        self._metadata = auth_metadata(token)
        limit = max_message_mb * (1 << 20)
        options = [
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            # gRPC's own reconnect back-off grows to minutes; ours decides, so keep the channel's short.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(_MAX_BACKOFF_S * 1000)),
        ]
        if tls_ca is not None:
            try:
                ca = Path(tls_ca).read_bytes()
            except OSError as e:
                raise LearnerError(f"--tls-ca: cannot read {tls_ca}: {e.strerror}") from None
            creds = grpc.ssl_channel_credentials(root_certificates=ca)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = rpc.LearnerStub(self._channel)
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, dict[str, np.ndarray]]] = {}
        self._latest: Broadcast | None = None
        self._serial = 0
        self._seen = 0
        self._error: Exception | None = None
        self._restarted = False
        self.reconnects = 0
        self.dropped_unrolls = 0
        self.weight_bytes = 0  # PullWeights replies received
        self._closed = threading.Event()
        self._stream: grpc.Future | None = None
        self._thread: threading.Thread | None = None
        self.actor_id: int | None = None

    # -- calls with retry -------------------------------------------------------------------------
    @overload
    def _call(self, what: str, fn: Callable[[], T], unless_done: Literal[False] = False) -> T: ...

    @overload
    def _call(self, what: str, fn: Callable[[], T], unless_done: bool) -> T | None: ...

    def _call(self, what: str, fn: Callable[[], T], unless_done: bool = False) -> T | None:
        """Run `fn` (one RPC); retry UNAVAILABLE with exponential back-off until the deadline.

        With `unless_done`, give up quietly (return None) once the learner has said the run is over:
        a learner that finished and shut down is not an error.
        """
        deadline = time.monotonic() + self.connect_deadline_s
        delay, attempt = 0.1, 0
        while True:
            try:
                return fn()
            except grpc.RpcError as e:
                code, details = e.code(), e.details()
                if unless_done and self._run_over():
                    return None
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    raise _Ahead(details) from None
                if not _retryable(e) or self._closed.is_set():
                    raise LearnerError(
                        f"{what} to learner at {self.address} failed: {code.name}: {details}"
                    ) from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LearnerUnavailable(
                        f"learner at {self.address} unreachable for {self.connect_deadline_s:g}s "
                        f"({what}: {code.name}: {details})"
                    ) from None
                attempt += 1
                wait = min(delay, left)
                log.warning(
                    "learner at %s unavailable (%s: %s); retry %d in %.1fs",
                    self.address,
                    what,
                    details,
                    attempt,
                    wait,
                )
                time.sleep(wait)
                delay = min(2 * delay, _MAX_BACKOFF_S)

    def register(self) -> tuple[int, ExperimentConfig]:
        """Register with the learner and start receiving weights; returns (actor id, run config)."""
        request = codec.register_request(socket.gethostname(), os.getpid())
        reply = self._call(
            "Register", lambda: self._stub.Register(request, metadata=self._metadata, timeout=10)
        )
        actor_id, cfg = codec.decode_register_reply(reply)
        self.actor_id = actor_id
        self.connect_deadline_s = cfg.actor.connect_deadline_s
        if self._thread is None:  # registering again (a new id) keeps the one weight stream
            self._thread = threading.Thread(target=self._receive, name=f"weights-{actor_id}", daemon=True)
            self._thread.start()
        return actor_id, cfg

    def status(self, timeout_s: float = 10.0) -> codec.LearnerStatus:
        """The learner's progress (env steps, versions, phase, queue depth, done)."""
        reply = self._call(
            "Status",
            lambda: self._stub.Status(codec.status_request(), metadata=self._metadata, timeout=timeout_s),
        )
        return codec.decode_status(reply)

    # -- ActorEndpoint ----------------------------------------------------------------------------
    def push(self, trajectories: list[Trajectory]) -> None:
        """Send one unroll in one client-streaming call; blocks while the learner's queue is full."""
        msgs = [codec.encode_trajectory(t, compress=self.compress) for t in trajectories]
        if self.actor_id is not None:  # after re-registering, stamp the current id
            for m in msgs:
                m.actor_id = self.actor_id
        try:
            reply = self._call(
                "PushTrajectories",
                lambda: self._stub.PushTrajectories(iter(msgs), metadata=self._metadata),
                unless_done=True,
            )
        except _Ahead as e:
            # The learner is behind this unroll's weights or phase (it restarted from a checkpoint):
            # drop the unroll; the weight stream brings the learner's current weights.
            self.dropped_unrolls += 1
            log.warning("learner at %s dropped an unroll: %s", self.address, e)
            return
        if reply is not None and reply.done:
            self._mark_done()

    def poll(self) -> Broadcast | None:
        """The newest broadcast if newer than the last one returned, else None.

        Raises:
            LearnerError: the weight stream failed for good (its reason is the message).
        """
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._restarted:
                self._restarted = False
                self._seen = self._serial - 1  # the next poll returns the newest broadcast
                raise LearnerRestarted(f"the weight stream from {self.address} was re-established")
            if self._serial == self._seen or self._latest is None:
                return None
            self._seen = self._serial
            announced = self._latest
        return self._with_weights(announced)

    def _with_weights(self, b: Broadcast) -> Broadcast:
        """`b` (announced on the stream, without weights) holding every role's newest weights: pulled
        in one call if any role's version differs from the one held, else the held ones."""
        held = {role: version for role, (version, _) in self._held.items()}
        if b.done or not codec.stale_roles(held, b.versions):
            return dataclasses.replace(
                b,
                weights={r: self._held[r][1] for r in b.versions if r in self._held},
                versions={r: self._held[r][0] for r in b.versions if r in self._held},
            )
        assert self.actor_id is not None  # the stream starts only after register()
        request = codec.weights_request(self.actor_id, held)
        reply = self._call(
            "PullWeights",
            lambda: self._stub.PullWeights(request, metadata=self._metadata, timeout=60),
            unless_done=True,
        )
        if reply is None:  # the run ended while pulling
            return dataclasses.replace(b, done=True, weights={}, versions={})
        self.weight_bytes += reply.ByteSize()
        try:
            return codec.merge_weights(self._held, codec.decode_broadcast(reply))
        except codec.CodecError as e:
            raise LearnerError(f"PullWeights from {self.address}: {e}") from None

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if self._stream is not None:
                self._stream.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._channel.close()

    # -- the weight stream ------------------------------------------------------------------------
    def _receive(self) -> None:
        """Consume StreamWeights, reconnecting with back-off; record a final error for `poll()`."""
        delay, attempt, down_since = 0.1, 0, None
        received, lost = False, False
        while not self._closed.is_set():
            try:
                with self._lock:  # close() cancels whatever stream is open once it holds the lock
                    if self._closed.is_set():
                        return
                    assert self.actor_id is not None  # register() set it before starting this thread
                    request = codec.weights_request(self.actor_id)
                    stream = self._stream = self._stub.StreamWeights(request, metadata=self._metadata)
                for msg in stream:
                    done = self._on_message(msg, restarted=lost)
                    if lost:
                        log.info("weight stream from %s re-established", self.address)
                        self.reconnects += 1
                    received, lost = True, False
                    delay, attempt, down_since = 0.1, 0, None
                    if done:
                        return
                why = "the stream ended before the run did"
            except grpc.RpcError as e:
                if self._closed.is_set():
                    return
                if not _retryable(e):
                    self._fail(
                        LearnerError(f"weight stream from {self.address}: {e.code().name}: {e.details()}")
                    )
                    return
                why = e.details()
            except codec.CodecError as e:
                self._fail(LearnerError(f"weight stream from {self.address}: {e}"))
                return
            lost = lost or received
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > self.connect_deadline_s:
                self._fail(
                    LearnerUnavailable(
                        f"learner at {self.address} unreachable for {self.connect_deadline_s:g}s ({why})"
                    )
                )
                return
            attempt += 1
            log.warning(
                "weight stream from %s lost (%s); reconnect %d in %.1fs", self.address, why, attempt, delay
            )
            self._closed.wait(delay)
            delay = min(2 * delay, _MAX_BACKOFF_S)

    def _on_message(self, msg: codec.BroadcastMsg, restarted: bool = False) -> bool:
        b = codec.decode_broadcast(msg)  # phase, versions, done: weights are pulled by poll()
        with self._lock:
            self._latest = b
            self._serial += 1
            if restarted and not b.done:
                self._restarted = True
        return b.done

    def _run_over(self) -> bool:
        with self._lock:
            return self._latest is not None and self._latest.done

    def _mark_done(self) -> None:
        """The push reply said the run is over: make the next poll() say so even before the stream does."""
        with self._lock:
            if self._latest is not None and not self._latest.done:
                self._latest = dataclasses.replace(self._latest, done=True)
                self._serial += 1

    def _fail(self, error: LearnerError) -> None:
        log.error("%s", error)
        with self._lock:
            self._error = error


class _Ahead(Exception):
    """FAILED_PRECONDITION from PushTrajectories: the unroll is ahead of the learner (internal)."""
