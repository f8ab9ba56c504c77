"""Log records of spawned child processes, handled by the launcher's own logging.

Actor processes that write to the terminal themselves break the launcher's progress bar: a line
lands in the middle of the bar. Instead each child sends its records over a queue, and a listener
thread in the launcher hands them to the launcher's loggers, whose handlers the CLI routes through
tqdm (`tqdm.contrib.logging.logging_redirect_tqdm`), which clears the bar, prints the line, and
redraws the bar.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from multiprocessing.queues import Queue
from typing import Any


class _Dispatch(logging.Handler):
    """Hands a child's record to the launcher's logger of the same name (its level and handlers)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


@contextlib.contextmanager
def forwarded_logs(ctx: BaseContext) -> Iterator[Queue[Any]]:
    """A queue for children (pass it to `log_to_queue` in each) whose records the launcher handles."""
    queue: Queue[Any] = ctx.Queue()
    listener = logging.handlers.QueueListener(queue, _Dispatch())
    listener.start()
    try:
        yield queue
    finally:
        listener.stop()
        queue.close()


def log_to_queue(queue: Queue[Any], level: int) -> None:
    """In a child: send every record to the launcher instead of writing it here."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(level)
