"""One bounded log line per refused call, at a bounded rate.

A refused message's reason may quote what the peer sent (a role name, a config value); a peer that
sends five 8 MB role names must not add 42 MB to the learner's log (issue 13). Each line is cut to
`max_chars`, and at most `burst` lines are written per `window_s`; the rest are counted and
summarised in one line when the window ends.
"""

from __future__ import annotations

import logging
import threading
import time


def bounded(text: str, max_chars: int = 300) -> str:
    """`text` cut to `max_chars` characters, with non-printable characters escaped."""
    clean = text if text.isprintable() else text.encode("unicode_escape", "replace").decode("ascii")
    if len(clean) <= max_chars:
        return clean
    return f"{clean[:max_chars]}... ({len(clean) - max_chars} more characters)"


class RejectionLog:
    """Rate-limited warnings (thread-safe)."""

    def __init__(self, logger: logging.Logger, burst: int = 20, window_s: float = 10.0, max_chars: int = 300):
        self._log = logger
        self._burst = burst
        self._window_s = window_s
        self._max_chars = max_chars
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._written = 0
        self._suppressed = 0

    def warn(self, what: str, reason: str) -> None:
        """Log `what: reason` (reason bounded) unless this window's burst is spent."""
        with self._lock:
            now = time.monotonic()
            summary = None
            if now - self._start >= self._window_s:
                if self._suppressed:
                    summary = self._suppressed
                self._start, self._written, self._suppressed = now, 0, 0
            write = self._written < self._burst
            if write:
                self._written += 1
            else:
                self._suppressed += 1
        if summary:
            self._log.warning("%d more rejections were not logged (rate limit)", summary)
        if write:
            self._log.warning("%s: %s", what, bounded(reason, self._max_chars))
