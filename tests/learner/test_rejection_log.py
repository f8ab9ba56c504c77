"""learner/rejection_log.py: one bounded line per rejection, at a bounded rate (issue 13: five pushes
with an 8 MB role name added 42 MB of log)."""

from __future__ import annotations

import logging

from stackrl.learner import rejection_log
from stackrl.learner.rejection_log import RejectionLog, bounded


def test_a_line_is_bounded_and_escapes_what_the_peer_sent():
    assert bounded("x" * 8_000_000, 300) == "x" * 300 + "... (7999700 more characters)"
    assert bounded("ok", 300) == "ok"
    assert "\n" not in bounded("a\nb\x00c") and "\\n" in bounded("a\nb\x00c")


def test_at_most_burst_lines_per_window_then_one_summary(caplog, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(rejection_log.time, "monotonic", lambda: now[0])
    log = RejectionLog(logging.getLogger("test.rejections"), burst=3, window_s=10.0, max_chars=50)
    with caplog.at_level(logging.WARNING, logger="test.rejections"):
        for _ in range(100):
            log.warn("rejected an unroll", "r" * 8_000_000)
        assert len(caplog.records) == 3
        assert sum(len(r.getMessage()) for r in caplog.records) < 500
        now[0] = 11.0
        log.warn("rejected an unroll", "again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[3] == "97 more rejections were not logged (rate limit)"
    assert messages[4] == "rejected an unroll: again"
