"""experiments/vs_peers.py: the table of benchmarks/vs_peers.sh, built from what the runs left.

The Sample Factory log in data/vs_peers/ is a real one (SF 2.1.1 serial mode, envpool
SpaceInvaders-v5, recorded by a smoke run of the script on the shared 2-core machine, gymnasium
deprecation warnings cut); the bench atari JSON beside it is a real `stackrl bench atari --json`
output of the same smoke run. The figures are a busy machine's, not results: the test checks the
parsing and the arithmetic, which must not change with the machine.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from stackrl.deploy.cli import main
from stackrl.experiments.vs_peers import (
    build_rows,
    format_table,
    parse_sample_factory,
    read_cmd,
    read_folder,
    sf_config,
    sf_window_rate,
    strip_colors,
)

DATA = Path(__file__).parent / "data" / "vs_peers"
SF = "sf_serial_1pass"
OURS = "stackrl_1pass"


def _reports(log: str) -> list[tuple[float, int]]:
    """(time, frames) of every FPS report, read here independently of the parser."""
    out = []
    for line in strip_colors(log).splitlines():
        m = re.match(r"\[(.{23})\]\[\d+\] Fps is .*Total num frames: (\d+)\.", line)
        if m:
            out.append((datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(), int(m.group(2))))
    return out


def test_recorded_sample_factory_log_gives_agent_steps_per_second():
    """Frames trained between the first report at least `warmup` s after the first update and the
    last report, over the time between them, divided by the frame skip (SF counts frames)."""
    log = (DATA / f"{SF}.log").read_text()
    cfg = sf_config(log)
    assert cfg["serial_mode"] == "True" and cfg["num_epochs"] == "1" and cfg["batch_size"] == "256"
    assert cfg["env_frameskip"] == "4" and cfg["summaries_use_frameskip"] == "True"

    reports = _reports(log)
    first_update = next(t for t, f in reports if f > 0)
    window = [(t, f) for t, f in reports if t >= first_update]
    expected = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
    rate, seconds, used = sf_window_rate(log, warmup=0.0)
    assert rate == pytest.approx(expected) and rate > 0
    assert seconds == pytest.approx(window[-1][0] - window[0][0]) and used == len(window)

    run = parse_sample_factory(SF, read_cmd(DATA / f"{SF}.cmd"), log, warmup=0.0)
    assert run.steps_per_s == pytest.approx(expected / 4)
    assert (run.passes, run.samples_per_step, run.precision) == (1, 256, "fp32")
    assert run.system == "Sample Factory 2.1.1 serial"


def test_a_window_without_two_reports_is_no_measurement_and_says_why():
    log = (DATA / f"{SF}.log").read_text()
    assert sf_window_rate(log, warmup=1e6) is None
    run = parse_sample_factory(SF, read_cmd(DATA / f"{SF}.cmd"), log, warmup=1e6)
    assert run.steps_per_s is None and "fewer than two FPS reports" in run.note
    # a log that never trained (killed during start-up) has no first update at all
    untrained = "\n".join(line for line in log.splitlines() if "Total num frames: 0." in line or "=" in line)
    assert sf_window_rate(untrained, warmup=0.0) is None


def test_table_divides_ours_by_the_peer_at_equal_passes_only(tmp_path):
    """Ours at 1 pass over SF at 1 pass; a 4-pass peer row is not set beside a 1-pass run of ours."""
    for name in (SF, OURS):
        for ext in ("cmd", "log", "json", "load"):
            if (DATA / f"{name}.{ext}").exists():
                shutil.copy(DATA / f"{name}.{ext}", tmp_path)
    # the same SF log as a 4-pass run: only its settings differ (a second configuration)
    log4 = (DATA / f"{SF}.log").read_text().replace("num_epochs=1", "num_epochs=4")
    (tmp_path / "sf_serial_4pass.log").write_text(log4)
    (tmp_path / "sf_serial_4pass.cmd").write_text((DATA / f"{SF}.cmd").read_text())

    runs, problems = read_folder(tmp_path, warmup=0.0)
    assert problems == []
    rows = {r.config: r for r in build_rows(runs)}
    ours, peer1, peer4 = rows[OURS], rows[SF], rows["sf_serial_4pass"]
    bench = json.loads((DATA / f"{OURS}.json").read_text())
    assert ours.ours and ours.median == pytest.approx(bench["end_to_end_steps_per_s"])
    assert (ours.passes, ours.samples_per_step, ours.precision) == (1, 320, "fp32")
    assert peer1.ratios == {OURS: pytest.approx(ours.median / peer1.median)}
    assert peer4.passes == 4 and peer4.ratios == {}

    table = format_table(list(rows.values()))
    assert table.splitlines()[0].startswith("| system | run | agent steps/s | SGD passes per sample")
    assert f"{OURS}: {ours.median / peer1.median:.2f}" in table


def test_repeats_are_one_row_with_their_median(tmp_path):
    for k, rate in enumerate((100.0, 300.0, 200.0), start=1):
        (tmp_path / f"{OURS}@{k}.cmd").write_text((DATA / f"{OURS}.cmd").read_text())
        bench = json.loads((DATA / f"{OURS}.json").read_text())
        bench["end_to_end_steps_per_s"] = rate
        (tmp_path / f"{OURS}@{k}.json").write_text(json.dumps(bench))
    rows = build_rows(read_folder(tmp_path, warmup=0.0)[0])
    assert len(rows) == 1 and rows[0].runs == [100.0, 300.0, 200.0] and rows[0].median == 200.0
    assert "200 (100 300 200)" in format_table(rows)


def test_ours_passes_and_precision_come_from_the_overrides_of_the_command_line(tmp_path):
    bench = json.loads((DATA / f"{OURS}.json").read_text())
    cmd = read_cmd(DATA / f"{OURS}.cmd")
    cmd += ["--set", "learner.epochs=4", "--set", "learner.ppo_clip=0.1", "--set", "learner.precision=bf16"]
    cmd += ["--set", "actor.precision=fp32"]
    (tmp_path / "mine.cmd").write_text("\n".join(cmd))
    # A JSON from before bench atari recorded what precision resolved to: the configured words.
    old = {k: v for k, v in bench.items() if k not in ("learner_precision", "actor_precision")}
    (tmp_path / "mine.json").write_text(json.dumps(old))
    (run,) = read_folder(tmp_path, warmup=0.0)[0]
    assert (run.passes, run.precision) == (4, "learner bf16, actors fp32")
    # A JSON that says what `auto` resolved to wins over the configured words.
    cmd += ["--set", "actor.precision=auto"]
    (tmp_path / "mine.cmd").write_text("\n".join(cmd))
    resolved = bench | {"learner_precision": "bf16", "actor_precision": "bf16"}
    (tmp_path / "mine.json").write_text(json.dumps(resolved))
    (run,) = read_folder(tmp_path, warmup=0.0)[0]
    assert (run.passes, run.precision) == (4, "bf16")


def test_bench_peers_prints_and_writes_the_table(tmp_path):
    for name in (SF, OURS):
        for f in DATA.glob(f"{name}.*"):
            shutil.copy(f, tmp_path)
    r = CliRunner().invoke(main, ["bench", "peers", "--from-logs", str(tmp_path), "--warmup", "0"])
    assert r.exit_code == 0, r.output
    assert "Sample Factory 2.1.1 serial" in r.output and "stackrl bench atari" in r.output
    assert (tmp_path / "table.md").read_text().strip() == r.output.strip()
    data = json.loads((tmp_path / "table.json").read_text())
    assert {row["config"] for row in data["rows"]} == {SF, OURS}
    # an empty folder is an error, not an empty table
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["bench", "peers", "--from-logs", str(empty)])
    assert r.exit_code == 2 and "no run found" in r.output
