"""stackrl beside the peers users would pick instead, at equal SGD passes: `stackrl bench peers`.

`benchmarks/vs_peers.sh` installs the peers in their own virtual environments and runs them one
after another with our own `stackrl bench atari`; this module only reads what those runs left in
one folder and builds the table, so that the parsing is tested on recorded logs
(tests/experiments/test_vs_peers.py) and the product never installs or launches a peer itself.

Per run NAME the folder holds:

  NAME.cmd    the command line, one argument a line (written by the script before the run)
  NAME.log    its stdout + stderr
  NAME.json   ours only: `stackrl bench atari --json` (AtariBench)
  NAME.load   optional: the 1-minute load average before and after the run

A name may end in `@K` (K-th repeat of the same configuration); repeats are grouped into one row
that shows the median and every run, because the machine drifts between runs.

What each column means, the same for every system:

  agent steps/s            play steps of one game consumed by the learner per wall second (one
                           step = 4 emulator frames). Ours: bench atari's end-to-end window. Sample
                           Factory: the growth of "Total num frames" (samples its learner trained
                           on) between its timestamped FPS reports inside the window: from `warmup`
                           s after its first update, `seconds` long; divided by the frame skip when
                           `summaries_use_frameskip` is on (the Atari default: SF counts frames).
                           The count grows in steps (seen in the script's smoke runs: 2,048
                           samples in serial mode, 1,024 in async), so the window must hold many:
                           at ~800 agent steps/s a 120 s window holds 47+ (error under ~2%); a
                           25 s smoke window under load holds one or two, and its rate says only
                           that the run trained.
  SGD passes per sample    ours `learner.epochs`; SF `num_epochs`.
  samples per opt. step    ours T x B x batch_trajectories (one update is one Adam step per epoch,
                           no minibatches); SF `batch_size` (its minibatch).
  precision                ours: `learner.precision` and `actor.precision` as resolved on the machine
                           (one word when they agree); SF 2.1.1 has no mixed precision: fp32.
  end-to-end / limit       ours: the run's rate over the compute-bound limit bench atari built from
                           its component rates (median and every repeat).
  ours / peer              for a peer row: each of our one-player rows at the same passes, divided
                           by it (the peer plays one-player Space Invaders; our two-player game's
                           rows stand beside it without a ratio).
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from stackrl.runners.presets import build_config

SF_SYSTEM = "Sample Factory"

# "[2026-11-30 01:02:03,456][01234] Fps is (10 sec: 1234.5, ...). Total num frames: 98304. ..."
_SF_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
_SF_FPS = re.compile(r"Fps is \(.*?\)\. Total num frames: (\d+)\.")
# SF logs its whole configuration at startup, one `key=value` line each (runner's cfg summary).
_SF_CFG = re.compile(r"^(?:\[[^\]]*\]\[[^\]]*\] )?(\w+)=(.*)$")
_SF_VERSION = re.compile(r"sample[-_]factory==(\S+)", re.IGNORECASE)  # benchmarks/sf_envpool_atari.py
_SF_REPORT_S = 6.0  # SF's FPS reports are ~5 s apart
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Run:
    """One benchmark run, reduced to the table's columns."""

    name: str
    system: str
    steps_per_s: float | None
    """None: the log held no complete measurement window (see `note`)."""
    passes: int
    samples_per_step: int
    precision: str
    window_s: float = 0.0
    load: tuple[float, float] | None = None
    note: str = ""
    players: int = 1
    """Agents the env trains at once (ours: its followers; the two-player game has 2)."""
    limit_ratio: float | None = None
    """Ours: end-to-end / the compute-bound limit bench atari computed for the same run."""


@dataclass
class Row:
    """Runs of the same configuration (a name and its `@K` repeats) and their median."""

    config: str
    system: str
    passes: int
    samples_per_step: int
    precision: str
    runs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)
    """"before->after" 1-minute load average of each run: a busy neighbour shows up here first."""
    ours: bool = False
    players: int = 1
    limit_ratios: list[float] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    """Peer rows: our config -> our median / this median, for our one-player rows at the same passes
    (the peer plays one-player Space Invaders; the two-player game is reported beside it, unratioed)."""

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None


# -- command lines ------------------------------------------------------------------------------------
def read_cmd(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def option(args: list[str], name: str) -> str | None:
    """The last value of `--name=value` or `--name value` in an argument list (None: absent)."""
    value = None
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
        elif a == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def overrides(args: list[str]) -> tuple[str, ...]:
    """Every `--set key=value` of a `stackrl` command line, in order."""
    return tuple(args[i + 1] for i, a in enumerate(args[:-1]) if a == "--set")


def read_load(path: Path) -> tuple[float, float] | None:
    if not path.exists():
        return None
    values = [float(x) for x in path.read_text().split()]
    return (values[0], values[-1]) if values else None


# -- ours ---------------------------------------------------------------------------------------------
def parse_ours(name: str, args: list[str], bench: dict) -> Run:
    """Our row from bench atari's JSON; passes from the config the run was given (the preset plus its
    `--set` overrides), which the JSON does not repeat; precision as the JSON says it resolved
    (`auto` becomes what the machine ran), else as configured."""
    env = option(args, "env") or bench.get("env") or "space_invaders_pricing"
    cfg = build_config(env, overrides=overrides(args))
    return Run(
        name=name,
        system=f"stackrl bench atari ({env})",
        steps_per_s=float(bench["end_to_end_steps_per_s"]),
        passes=cfg.learner.epochs,
        samples_per_step=int(bench["learner_batch"]),
        precision=_precision(
            bench.get("learner_precision", cfg.learner.precision),
            bench.get("actor_precision", cfg.actor.precision),
        ),
        window_s=float(bench.get("end_to_end_seconds", 0.0)),
        players=int(bench.get("followers", 1)),
        limit_ratio=float(bench["ratio"]) if "ratio" in bench else None,
        load=(bench["load_average_start"], bench["load_average_end"])
        if "load_average_start" in bench
        else None,
    )


def _precision(learner: str, actor: str) -> str:
    """One word when learner and actors agree ("bf16"), else both ("learner bf16, actors fp32")."""
    return learner if learner == actor else f"learner {learner}, actors {actor}"


# -- Sample Factory -----------------------------------------------------------------------------------
def _sf_time(line: str) -> float | None:
    m = _SF_TIME.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def sf_config(log: str) -> dict[str, str]:
    """The `key=value` lines of SF's startup configuration dump (first occurrence of each key)."""
    cfg: dict[str, str] = {}
    for line in strip_colors(log).splitlines():
        m = _SF_CFG.match(line.strip())
        if m and m.group(1) not in cfg:
            cfg[m.group(1)] = m.group(2).strip()
    return cfg


def strip_colors(log: str) -> str:
    """SF colours its log lines (ANSI escapes) even when they go to a file."""
    return _ANSI.sub("", log)


def sf_window_rate(log: str, warmup: float, seconds: float | None = None) -> tuple[float, float, int] | None:
    """(frames per second, window seconds, reports used) over SF's FPS reports from `warmup` s after
    its first update (the first report with frames > 0: env creation and the first rollout are
    startup, not throughput) to `seconds` later (None: to the last report); None if the window
    holds fewer than two reports."""
    reports: list[tuple[float, int]] = []
    for line in strip_colors(log).splitlines():
        m, t = _SF_FPS.search(line), _sf_time(line)
        if m and t is not None:
            reports.append((t, int(m.group(1))))
    first = next((t for t, frames in reports if frames > 0), None)
    if first is None:
        return None
    start = first + warmup
    end = start + seconds if seconds is not None else float("inf")
    points = [(t, f) for t, f in reports if start <= t <= end]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    (t0, f0), (t1, f1) = points[0], points[-1]
    return (f1 - f0) / (t1 - t0), t1 - t0, len(points)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def parse_sample_factory(
    name: str, args: list[str], log: str, warmup: float, seconds: float | None = None
) -> Run:
    """A Sample Factory row: its settings from the logged configuration (the command line where the
    log lacks one), agent steps/s from the FPS reports inside the window."""
    cfg = sf_config(log)

    def setting(key: str, default: str) -> str:
        return cfg.get(key) or option(args, key) or default

    serial = _truthy(setting("serial_mode", "False"))
    workers = setting("num_workers", "?")
    frameskip = int(setting("env_frameskip", "4"))
    per_frame = frameskip if _truthy(setting("summaries_use_frameskip", "True")) else 1
    version = _SF_VERSION.search(log)
    mode = "serial" if serial else f"async, {workers} workers"
    system = f"{SF_SYSTEM} {version.group(1) if version else ''} {mode}".replace("  ", " ")
    rate = sf_window_rate(log, warmup, seconds)
    note = f"fewer than two FPS reports {warmup:.0f} s after its first update"
    if rate:
        # Reports come every ~5 s, so a whole window loses up to two intervals at its ends; more
        # means the run stopped early (a crash, or `timeout` before the stop watch fired).
        short = seconds is not None and rate[1] < seconds - 2 * _SF_REPORT_S
        note = (
            f"window {rate[1]:.0f} s of {seconds:.0f} s: the run stopped early (see its log)" if short else ""
        )
    return Run(
        name=name,
        system=system,
        steps_per_s=rate[0] / per_frame if rate else None,
        passes=int(setting("num_epochs", "1")),
        samples_per_step=int(setting("batch_size", "256")),  # sf_examples' Atari default
        precision="fp32",
        window_s=rate[1] if rate else 0.0,
        note=note,
    )


# -- the folder ---------------------------------------------------------------------------------------
def is_sample_factory(args: list[str]) -> bool:
    return any("sf_envpool_atari" in a or "sample_factory" in a or "sf_examples" in a for a in args)


def parse_run(folder: Path, name: str, warmup: float, seconds: float | None = None) -> Run:
    args = read_cmd(folder / f"{name}.cmd")
    load = read_load(folder / f"{name}.load")
    log_path = folder / f"{name}.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if is_sample_factory(args):
        run = parse_sample_factory(name, args, log, warmup, seconds)
    else:
        json_path = folder / f"{name}.json"
        if not json_path.exists():
            raise ValueError(f"no {json_path.name} (did `stackrl bench atari` fail? see {name}.log)")
        run = parse_ours(name, args, json.loads(json_path.read_text()))
    if load is not None:
        run.load = load
    return run


def read_folder(folder: Path, warmup: float, seconds: float | None = None) -> tuple[list[Run], list[str]]:
    """Every run in the folder, and a line for each one that could not be read."""
    runs, problems = [], []
    for cmd in sorted(folder.glob("*.cmd")):
        try:
            runs.append(parse_run(folder, cmd.stem, warmup, seconds))
        except (ValueError, KeyError, OSError) as e:
            problems.append(f"{cmd.stem}: {e}")
    return runs, problems


def config_of(name: str) -> str:
    return name.split("@", 1)[0]


def build_rows(runs: list[Run]) -> list[Row]:
    """Group repeats, then set each peer row's ratios: our medians at equal passes over its median."""
    rows: dict[str, Row] = {}
    for r in runs:
        key = config_of(r.name)
        row = rows.setdefault(
            key,
            Row(
                config=key,
                system=r.system,
                passes=r.passes,
                samples_per_step=r.samples_per_step,
                precision=r.precision,
                ours=not r.system.startswith(SF_SYSTEM),
                players=r.players,
            ),
        )
        if r.steps_per_s is not None:
            row.runs.append(r.steps_per_s)
        if r.limit_ratio is not None:
            row.limit_ratios.append(r.limit_ratio)
        if r.note:
            row.notes.append(f"{r.name}: {r.note}")
        if r.load is not None:
            row.loads.append(f"{r.name} {r.load[0]:.1f}->{r.load[1]:.1f}")
    ordered = sorted(rows.values(), key=lambda w: (w.passes, not w.ours, w.config))
    for peer in ordered:
        if peer.ours or not peer.median:
            continue
        for mine in ordered:
            if mine.ours and mine.players == 1 and mine.passes == peer.passes and mine.median:
                peer.ratios[mine.config] = mine.median / peer.median
    return ordered


def format_table(rows: list[Row]) -> str:
    """A Markdown table: one row per configuration, ratios on the peer rows."""
    lines = [
        "| system | run | agent steps/s | SGD passes per sample | samples per optimizer step "
        "| precision | end-to-end ÷ limit | ours ÷ peer at equal passes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.median is None:
            rate = "no measurement"
        elif len(r.runs) > 1:
            rate = f"{r.median:,.0f} (" + " ".join(f"{x:,.0f}" for x in r.runs) + ")"
        else:
            rate = f"{r.median:,.0f}"
        ratio = ", ".join(f"{c}: {v:.2f}" for c, v in r.ratios.items()) if r.ratios else ""
        limit = ""
        if r.limit_ratios:
            limit = f"{statistics.median(r.limit_ratios):.2f}"
            if len(r.limit_ratios) > 1:
                limit += " (" + " ".join(f"{x:.2f}" for x in r.limit_ratios) + ")"
        lines.append(
            f"| {r.system} | {r.config} | {rate} | {r.passes} | {r.samples_per_step} | {r.precision} "
            f"| {limit} | {ratio} |"
        )
    notes = [n for r in rows for n in r.notes]
    loads = [x for r in rows for x in r.loads]
    if loads:
        notes.append("load average (1 min) before->after each run: " + ", ".join(loads))
    return "\n".join(lines + [f"- {n}" for n in notes])


def run_peer_table(folder: str | Path, warmup: float = 30.0, seconds: float | None = None) -> list[Row]:
    """Read a vs_peers.sh folder, print the table, and write it beside the logs (table.md,
    table.json) so that a report can quote it."""
    path = Path(folder)
    runs, problems = read_folder(path, warmup, seconds)
    if not runs:
        raise ValueError(f"{path}: no run found (expected NAME.cmd files written by benchmarks/vs_peers.sh)")
    rows = build_rows(runs)
    text = format_table(rows) + "".join(f"\n- unreadable: {p}" for p in problems)
    print(text)
    (path / "table.md").write_text(text + "\n")
    (path / "table.json").write_text(
        json.dumps(
            {
                "warmup_s": warmup,
                "seconds": seconds,
                "runs": [asdict(r) for r in runs],
                "rows": [asdict(r) for r in rows],
            },
            indent=2,
        )
    )
    return rows
