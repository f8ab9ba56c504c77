"""Issue 14: actor log lines do not break the progress bar. The actors' records travel to the launcher
(runners/child_logs.py), whose logging goes through tqdm: in the terminal stream every actor line
starts on a line of its own (never glued to the end of a bar), and none is lost."""

from __future__ import annotations

import logging
import multiprocessing as mp
import re
import subprocess
import sys
from pathlib import Path

from stackrl.runners.child_logs import forwarded_logs, log_to_queue

CLI = [sys.executable, "-m", "stackrl.deploy.cli"]
SHORT = "schedule.phases=[{kind: pretrain, env_steps: 8000}, {kind: leader, env_steps: 4000}]"


def _child(queue) -> None:  # module level: spawned processes import it
    log_to_queue(queue, logging.INFO)
    logging.getLogger("stackrl.actors.test").info("hello from pid %s", "child")
    logging.getLogger("stackrl.actors.test").debug("below the level")


def test_a_childs_records_reach_the_launchers_handlers(caplog):
    ctx = mp.get_context("spawn")
    with caplog.at_level(logging.INFO), forwarded_logs(ctx) as queue:
        p = ctx.Process(target=_child, args=(queue,))
        p.start()
        p.join(60)
    assert p.exitcode == 0
    assert [r.getMessage() for r in caplog.records if r.name == "stackrl.actors.test"] == [
        "hello from pid child"
    ]


def test_actor_lines_never_land_inside_the_progress_bar(tmp_path: Path):
    proc = subprocess.run(
        [
            *CLI,
            "train",
            "stag_hunt",
            "--actors",
            "2",
            "--name",
            "bar",
            "--set",
            SHORT,
            "--set",
            "env.num_games=8",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    segments = re.split(r"[\r\n]", proc.stderr)
    actor_lines = [s for s in segments if "stackrl.actors" in s]
    assert len(actor_lines) >= 4, proc.stderr[-3000:]  # each actor: registered, and ended with the run
    bar = [s for s in segments if "step/s" in s or "%|" in s]
    assert bar, proc.stderr[-2000:]  # the bar was drawn
    for line in actor_lines:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line), f"an actor line inside the bar: {line!r}"
