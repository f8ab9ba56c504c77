"""Bounded resources for the learner's RPC handlers: stream limits, push deadlines, idle-stream reaping.

Every open call holds server resources (a handler task, its connection's buffers, a decoded unroll),
so a peer that opens streams and then does nothing could starve the real actors (issue 13, defect 5:
fifteen held weight streams and no env steps). The guard gives each kind of call its own budget,
answered with RESOURCE_EXHAUSTED when spent, so pushes, registrations and Status are always served;
cancels a push whose client has not finished sending within the deadline; and cancels a weight
stream whose actor has been silent (no push, no registration) for the idle limit, or that a newer
stream of the same actor replaced. The numbers come from `ServerConfig`, never from the actor count:
actors may join and leave at any time.

The guard knows a call only by a `cancel(reason)` callback (thread-safe: the reaper runs on its own
thread); the handlers (learner/servicer.py) decide what cancelling means for their call and end it
with the reason, which says which rule ended it (the idle limit, a newer stream, the push deadline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class Refused(Exception):
    """The call's budget is spent: the handler answers RESOURCE_EXHAUSTED with this message."""


@dataclass(frozen=True)
class Limits:
    """How many calls of each kind may be open at once, and how long they may take."""

    weight_streams: int
    pushes: int
    push_deadline_s: float
    idle_stream_s: float


@dataclass
class _Watched:
    cancel: Callable[[str], None]
    deadline: float
    actor_id: int | None = None


class StreamGuard:
    """Admission and reaping of the handlers' calls (thread-safe; one reaper thread)."""

    def __init__(self, limits: Limits, tick_s: float = 0.25):
        self.limits = limits
        self._lock = threading.Lock()
        self._open = {"weights": 0, "push": 0}
        self._watched: dict[int, _Watched] = {}
        self._stream_of: dict[int, int] = {}  # actor id -> key of its newest weight stream
        self._last_seen: dict[int, float] = {}  # actor id -> monotonic time of its last call
        self._keys = iter(range(1 << 62))
        self.reaped = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reap, args=(tick_s,), name="stream-guard", daemon=True)
        self._thread.start()

    def seen(self, actor_id: int) -> None:
        """An actor showed it is alive (registered or pushed): its weight stream is not idle."""
        with self._lock:
            self._last_seen[actor_id] = time.monotonic()

    @contextmanager
    def push(self, cancel: Callable[[str], None]) -> Iterator[int]:
        """Admit a push (yields its key); `cancel` is called if its client stream is still open after
        the deadline."""
        key = self._admit("push", self.limits.pushes, cancel, self.limits.push_deadline_s)
        try:
            yield key
        finally:
            self._release("push", key)

    def received(self, key: int) -> None:
        """The push's client stream completed: its deadline no longer applies (back-pressure waits)."""
        with self._lock:
            w = self._watched.get(key)
            if w is not None:
                w.deadline = float("inf")

    @contextmanager
    def weight_stream(self, cancel: Callable[[str], None], actor_id: int) -> Iterator[None]:
        """Admit a weight stream for `actor_id`; an older stream of the same actor is cancelled."""
        key = self._admit("weights", self.limits.weight_streams, cancel, float("inf"), actor_id)
        with self._lock:
            older = self._stream_of.get(actor_id)
            self._stream_of[actor_id] = key
            self._last_seen.setdefault(actor_id, time.monotonic())
            stale = self._watched.get(older) if older is not None else None
        if stale is not None:
            stale.cancel(f"weight stream replaced by a newer one of actor {actor_id}")
        try:
            yield
        finally:
            self._release("weights", key)
            with self._lock:
                if self._stream_of.get(actor_id) == key:
                    del self._stream_of[actor_id]

    def open_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._open)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _admit(
        self,
        kind: str,
        limit: int,
        cancel: Callable[[str], None],
        after_s: float,
        actor_id: int | None = None,
    ) -> int:
        with self._lock:
            if self._open[kind] >= limit:
                self.refused += 1
                raise Refused(f"too many open {kind} calls ({limit}); try again later")
            self._open[kind] += 1
            key = next(self._keys)
            self._watched[key] = _Watched(cancel, time.monotonic() + after_s, actor_id)
            return key

    def _release(self, kind: str, key: int) -> None:
        with self._lock:
            self._open[kind] -= 1
            self._watched.pop(key, None)

    def _reap(self, tick_s: float) -> None:
        while not self._stop.wait(tick_s):
            now = time.monotonic()
            idle = self.limits.idle_stream_s
            doomed: list[tuple[_Watched, str]] = []
            with self._lock:
                for w in self._watched.values():
                    if now > w.deadline:
                        doomed.append((w, f"push not finished within {self.limits.push_deadline_s:g} s"))
                    elif w.actor_id is not None:
                        silent = now - self._last_seen.get(w.actor_id, now)
                        if silent > idle:
                            doomed.append(
                                (w, f"weight stream idle: actor {w.actor_id} silent for {silent:.0f} s "
                                 f"(limit {idle:g} s)")
                            )  # fmt: skip
                for w, _ in doomed:
                    w.deadline = float("inf")
                    if w.actor_id is not None:  # a stream it opens again gets a fresh idle limit
                        self._last_seen.pop(w.actor_id, None)
                self.reaped += len(doomed)
            for w, why in doomed:
                w.cancel(why)
