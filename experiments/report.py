"""`stackrl report`: regenerate docs/results.md (tables and PNG figures) from run directories.

Inputs, found recursively under every `--runs` root:
- `result.json` of ordinary training runs (`stackrl train`, `stackrl bench matrix`): grouped by their
  collection (the run directory's parent, e.g. `bench_matrix`) into the main tables, learning curves
  and the meta vs inner-outer sample-efficiency bars;
- `ablation.json` written by `stackrl ablation NAME` (one table per ablation; its runs' result.json
  files are left out of the main tables);
- `divergence.json` written by `stackrl divergence` (the Theorem 2 figure and table).

Every table and figure names the command that produced its runs: a collection's `command.txt` if
present, the command stored in ablation/divergence JSON, or (for `bench_matrix`) the bench command
reconstructed from the games and seeds found.

A `--runs` root that does not exist, or a run file that cannot be read or parsed (result.json,
config.yaml, ablation.json, ...), stops the report with a `ReportError` naming the file and the
reason, before results.md is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from pathlib import Path
from typing import Any

import yaml
from stackrl.experiments.sample_efficiency import MISS, leader_phase_steps, must_learn, ratio
from stackrl.learner.evaluator import steps_to_value


class ReportError(ValueError):
    """A run directory or one of its files cannot be read; the message names the path and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot report on {path}: {reason}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise ReportError(path, f"cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ReportError(path, f"not a text file ({e.reason})") from None


def _read_json(path: Path) -> dict[str, Any]:
    """A run file's JSON object, or ReportError naming the file."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ReportError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ReportError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _fmt(x, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if x == MISS:
            return "never"
        if x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.{nd}g}"
    return str(x)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# discovery


def discover_atari(roots: list[str | Path]) -> list[dict]:
    """The `stackrl eval` reports (RUN/atari_eval.json) under the given roots."""
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob("atari_eval.json")):
            data = _read_json(path)
            data["_dir"] = str(path.parent)
            found.append(data)
    return found


def discover(roots: list[str | Path]) -> tuple[dict[str, list[dict]], list[dict], list[dict]]:
    """(collections: name -> run dicts, ablations, divergences) under the given roots."""
    collections: dict[str, list[dict]] = {}
    ablations: list[dict] = []
    divergences: list[dict] = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise ReportError(root, "no such directory")
        if not root.is_dir():
            raise ReportError(root, "not a directory")
        special: list[Path] = []
        for path in sorted(root.rglob("ablation.json")):
            data = _read_json(path)
            data["_dir"] = str(path.parent)
            ablations.append(data)
            special.append(path.parent)
        for path in sorted(root.rglob("divergence.json")):
            data = _read_json(path)
            data["_dir"] = str(path.parent)
            divergences.append(data)
            special.append(path.parent)
        for path in sorted(root.rglob("result.json")):
            run_dir = path.parent
            if any(s == run_dir or s in run_dir.parents for s in special):
                continue
            run = _read_json(path)
            if "leader_value" not in run or run.get("exact_value") is None:
                continue  # Atari runs etc.: no exact value, not part of these tables
            run["_dir"] = str(run_dir)
            if run.get("game") == "matrix":  # user bimatrices: tell them apart by the run's name
                m = re.match(r"^(.*)_(?:meta|inner_outer)_s\d+$", run.get("name", ""))
                run["game"] = f"matrix ({m.group(1) if m else run.get('name', run_dir.name)})"
            parent = run_dir.parent
            name = str(parent.relative_to(root)) if parent != root else root.name
            run["_collection_dir"] = str(parent)
            collections.setdefault(name, []).append(run)
    return collections, ablations, divergences


def collection_command(name: str, runs: list[dict]) -> str:
    """The command that produced a collection of runs."""
    cdir = Path(runs[0]["_collection_dir"])
    cmd_file = cdir / "command.txt"
    if cmd_file.exists():
        return _read_text(cmd_file).strip()
    games = ",".join(dict.fromkeys(r["game"] for r in runs))
    seeds = ",".join(str(s) for s in sorted({r["seed"] for r in runs}))
    methods = ",".join(sorted({r["method"] for r in runs}, key=lambda m: (m != "meta", m)))
    if Path(name).name == "bench_matrix":
        return f"stackrl bench matrix --games {games} --seeds {seeds} --methods {methods}"
    return f"stackrl train <game> --serial --method {{{methods}}} --seed {{{seeds}}} (games: {games})"


def _with_steps(run: dict) -> dict:
    run = dict(run)
    if "steps_to_exact" not in run:
        run["steps_to_exact"] = steps_to_value(run.get("eval_history", []), run["exact_value"])
    cfg = _config(run)
    if "must_learn" not in run:
        run["must_learn"] = None if cfg is None else must_learn(cfg.env, run)
    # The configured budget (a run may stop early, e.g. inner-outer with a frozen leader).
    run["budget"] = run["env_steps"]["total"] if cfg is None else cfg.schedule.total_env_steps
    return run


def _config(run: dict):
    """The run's ExperimentConfig from its config.yaml (None without one)."""
    from stackrl.config import ExperimentConfig

    cfg_path = Path(run.get("_dir", "")) / "config.yaml"
    if not run.get("_dir") or not cfg_path.exists():
        return None
    text = _read_text(cfg_path)
    try:
        return ExperimentConfig.from_yaml(text)
    except (yaml.YAMLError, ValueError) as e:  # ConfigError is a ValueError
        reason = " ".join(str(e).split())  # YAML errors span lines
        raise ReportError(cfg_path, f"not a valid run config ({reason})") from None


def summarise_runs(runs: list[dict]) -> list[dict]:
    """One row per (game, method): median over seeds and the per-seed values."""
    out = []
    keys = dict.fromkeys((r["game"], r["method"]) for r in runs)
    for game, method in keys:
        rs = sorted(
            (_with_steps(r) for r in runs if r["game"] == game and r["method"] == method),
            key=lambda r: r["seed"],
        )
        reached = [r["steps_to_exact"] for r in rs]
        out.append(
            {
                "game": game,
                "method": method,
                "seeds": [r["seed"] for r in rs],
                "exact_value": rs[0]["exact_value"],
                "median_value": statistics.median(r["leader_value"] for r in rs),
                "values": [r["leader_value"] for r in rs],
                "median_gap": statistics.median(r["gap"] for r in rs),
                "env_steps": statistics.median(r["env_steps"]["total"] for r in rs),
                "env_steps_budget": max(r["budget"] for r in rs),
                "steps_to_final": statistics.median(r["steps_to_final"] for r in rs),
                "steps_to_exact": statistics.median(MISS if s is None else s for s in reached),
                "reached": sum(s is not None for s in reached),
                "steps_to_exact_per_seed": reached,
                "leader_phase_steps_per_seed": [
                    leader_phase_steps(r["steps_to_exact"], r["env_steps"]) for r in rs
                ],
                "must_learn_per_seed": [r["must_learn"] for r in rs],
                "wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
                # The post-training equilibrium check (learner/equilibrium_check.py), where recorded.
                "checked": [r["equilibrium_check"] for r in rs if r.get("equilibrium_check")],
            }
        )
    return out


def equilibrium_cell(checks: list[dict], seeds: int) -> str:
    """'a/n' runs whose fresh follower found the exact best response, with the largest follower
    regret; '–' for runs written before the check existed."""
    if not checks:
        return "–"
    agree = sum(bool(c["agrees_with_best_response"]) for c in checks)
    worst = max(c["follower_regret"] for c in checks)
    return f"{agree}/{seeds} (regret max {_fmt(worst)})"


# ----------------------------------------------------------------------------------------------
# figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, n: int):
    """A figure with one 4x3-inch panel for each of `n` games, at most 4 a row: (fig, axes [rows, cols])."""
    ncol = min(4, n)
    nrow = (n + ncol - 1) // ncol
    return plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)


def _save(plt, fig, path: Path) -> Path:
    """Lay out `fig`, write it to `path` (creating its folder) and close it; returns `path`."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_learning_curves(runs: list[dict], path: Path, title: str) -> Path:
    """One panel per game: leader value vs env steps per method and seed; exact value dashed."""
    plt = _plt()
    games = list(dict.fromkeys(r["game"] for r in runs))
    fig, axes = _panels(plt, len(games))
    colors = {"meta": "tab:blue", "inner_outer": "tab:orange"}
    for ax, game in zip(axes.flat, games):
        seen = set()
        for r in (r for r in runs if r["game"] == game):
            h = r.get("eval_history", [])
            if not h:
                continue
            m = r["method"]
            ax.plot(
                [p["env_steps"] for p in h],
                [p["leader_value"] for p in h],
                color=colors.get(m),
                alpha=0.7,
                lw=1,
                label=m if m not in seen else None,
            )
            seen.add(m)
        exact = next(r["exact_value"] for r in runs if r["game"] == game)
        ax.axhline(exact, ls="--", color="k", lw=1, label="exact SSE")
        _style_curve_axis(ax, game)
    _hide_unused(axes, len(games))
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)


def plot_sample_efficiency(summary: list[dict], path: Path, title: str) -> Path:
    """Bars per game: median env steps to the exact value, meta vs inner-outer; misses hatched at budget."""
    plt = _plt()
    games = list(dict.fromkeys(s["game"] for s in summary))
    methods = [m for m in ("meta", "inner_outer") if any(s["method"] == m for s in summary)]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(games) + 2), 3.5))
    width = 0.8 / max(len(methods), 1)
    colors = {"meta": "tab:blue", "inner_outer": "tab:orange"}
    for j, m in enumerate(methods):
        for i, g in enumerate(games):
            s = next((s for s in summary if s["game"] == g and s["method"] == m), None)
            if s is None:
                continue
            miss = s["steps_to_exact"] == MISS
            h = s["env_steps"] if miss else s["steps_to_exact"]
            x = i + (j - (len(methods) - 1) / 2) * width
            ax.bar(
                x,
                h,
                width,
                color=colors[m],
                hatch="//" if miss else None,
                alpha=0.5 if miss else 1,
                label=m if i == 0 else None,
                edgecolor="k",
                lw=0.5,
            )
            if miss:
                ax.text(x, h, "miss", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_yscale("log")
    ax.set_xticks(range(len(games)))
    ax.set_xticklabels(games, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("env steps to exact value (median)", fontsize=8)
    ax.set_title(title + "  (hatched: never reached; bar = budget)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_divergence(div: dict, path: Path) -> Path:
    """Theorem 2: leader value vs env steps, query-based construction vs naive best-response follower."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, color in (("query", "tab:blue"), ("naive", "tab:red")):
        for k, curve in enumerate(div["curves"].get(key, [])):
            ax.plot(
                curve["env_steps"],
                curve["leader_value"],
                color=color,
                alpha=0.8,
                lw=1,
                label=div["labels"][key] if k == 0 else None,
            )
    ax.axhline(div["exact_value"], ls="--", color="k", lw=1, label="exact SSE")
    ax.set_xlabel("env steps")
    ax.set_ylabel("leader value (deterministic)")
    ax.set_title(f"Theorem 2 on {div['game']}", fontsize=10)
    ax.legend(fontsize=7)
    return _save(plt, fig, path)


# ----------------------------------------------------------------------------------------------
# the document


def _rel(path: Path, out: Path) -> str:
    return os.path.relpath(path, out.parent)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_")


def main_section(name: str, runs: list[dict], out: Path, fig_dir: Path) -> str:
    cmd = collection_command(name, runs)
    if not (Path(runs[0]["_collection_dir"]) / "command.txt").exists():
        cmd_note = " (reconstructed from the finished runs found in the collection)"
    else:
        cmd_note = ""
    summary = summarise_runs(runs)
    cmds = [c for c in cmd.splitlines() if c.strip()]
    produced = (
        f"Produced by: `{cmds[0]}`{cmd_note}"
        if len(cmds) == 1
        else "Produced by these commands (one collection):\n\n" + "\n".join(f"- `{c}`" for c in cmds)
    )
    lines = [f"## Runs: `{name}`", "", produced, ""]
    lines.append(
        _table(
            [
                "game",
                "method",
                "seeds",
                "exact",
                "achieved (median)",
                "per seed",
                "gap (median)",
                "spread (min–max)",
                "fresh follower = exact BR",
                "env steps",
                "steps to final",
                "steps to exact (median)",
                "per seed",
                "reached",
                "wall s",
            ],
            [
                [
                    s["game"],
                    s["method"],
                    len(s["seeds"]),
                    s["exact_value"],
                    s["median_value"],
                    " / ".join(_fmt(v) for v in s["values"]),
                    s["median_gap"],
                    f"{_fmt(min(s['values']))}–{_fmt(max(s['values']))}",
                    equilibrium_cell(s["checked"], len(s["seeds"])),
                    s["env_steps"],
                    s["steps_to_final"],
                    s["steps_to_exact"],
                    " / ".join("never" if x is None else _fmt(x) for x in s["steps_to_exact_per_seed"]),
                    f"{s['reached']}/{len(s['seeds'])}",
                    round(s["wall_seconds"], 1),
                ]
                for s in summary
            ],
        )
    )
    lines.append("")
    lines.append(
        "'steps to exact': env steps at the first evaluation from which the deterministic leader "
        "value stayed at the exact SSE value; 'never' if it did not hold it at the end."
    )
    lines.append("")
    curve = plot_learning_curves(
        runs, fig_dir / f"curves_{_slug(name)}.png", f"{name}: leader value vs env steps"
    )
    lines += [f"Learning curves (same command): ![learning curves]({_rel(curve, out)})", ""]
    if {"meta", "inner_outer"} <= {s["method"] for s in summary}:
        bars = plot_sample_efficiency(
            summary, fig_dir / f"efficiency_{_slug(name)}.png", f"{name}: meta vs inner-outer"
        )
        lines += [f"Sample efficiency (same command): ![sample efficiency]({_rel(bars, out)})", ""]
        ratio_rows = []
        for g in dict.fromkeys(s["game"] for s in summary):
            m = next((s for s in summary if s["game"] == g and s["method"] == "meta"), None)
            io = next((s for s in summary if s["game"] == g and s["method"] == "inner_outer"), None)
            if m is None or io is None:
                continue
            io_steps = dict(zip(io["seeds"], io["steps_to_exact_per_seed"]))
            m_steps = dict(zip(m["seeds"], m["steps_to_exact_per_seed"]))
            learn = [sd for sd, flag in zip(m["seeds"], m["must_learn_per_seed"]) if flag]
            all_ratio = ratio(list(m_steps.values()), list(io_steps.values()), io["env_steps_budget"])
            learn_ratio = ratio(
                [m_steps[sd] for sd in learn if sd in io_steps],
                [io_steps[sd] for sd in learn if sd in io_steps],
                io["env_steps_budget"],
            )
            m_leader = dict(zip(m["seeds"], m["leader_phase_steps_per_seed"]))
            amortized = ratio(
                [m_leader[sd] for sd in learn if sd in io_steps],
                [io_steps[sd] for sd in learn if sd in io_steps],
                io["env_steps_budget"],
            )
            ratio_rows.append(
                [
                    g,
                    m["steps_to_exact"],
                    io["steps_to_exact"],
                    "meta missed" if all_ratio is None else all_ratio,
                    ",".join(map(str, learn)) or "none",
                    "–" if learn_ratio is None else learn_ratio,
                    "–" if amortized is None else amortized,
                ]
            )
        lines += [
            _table(
                [
                    "game",
                    "meta steps to exact",
                    "inner-outer steps to exact",
                    "inner-outer / meta",
                    "seeds where the leader must learn",
                    "inner-outer / meta on those seeds",
                    "same, meta counted after pretraining",
                ],
                ratio_rows,
            ),
            "",
            "Medians over seeds. '>x': inner-outer's median seed missed the exact value within its "
            "budget (x = that budget / meta's steps). 'Must learn': the leader's initial greedy "
            "commitment (the same for both methods at a seed) is not optimal; on the other seeds the "
            "baseline only trains one follower for an already optimal commitment, while meta still "
            "pays its fixed follower pretraining. The last column counts meta's steps from the end "
            "of pretraining: pretraining does not depend on the leader, so one pretrained follower "
            "serves every leader trained on the game (experiments/sample_efficiency.py).",
            "",
        ]
    return "\n".join(lines)


def _ablation_history(ab: dict, row: dict) -> list[dict]:
    """The eval history of one ablation row's run (a result.json or an oracle_result.json)."""
    dirs = [Path(row["reused_from"])] if row.get("reused_from") else []
    slug = row["variant"].replace("=", "-").replace(",", "_")
    dirs.append(Path(ab["_dir"]) / slug / f"{row['game']}_s{row['seed']}")
    for d in dirs:
        for fname in ("result.json", "oracle_result.json"):
            if (d / fname).exists():
                history: list[dict] = _read_json(d / fname).get("eval_history", [])
                return history
    return []


def plot_ablation(ab: dict, path: Path) -> Path | None:
    """One panel per game: leader value vs env steps per variant and seed; exact value dashed."""
    rows = ab["rows"]
    games = list(dict.fromkeys(r["game"] for r in rows))
    curves = [(r, _ablation_history(ab, r)) for r in rows]
    if not any(h for _, h in curves):
        return None
    plt = _plt()
    fig, axes = _panels(plt, len(games))
    cmap = plt.get_cmap("tab10")
    colors = {v: cmap(i) for i, v in enumerate(ab["variants"])}
    for ax, game in zip(axes.flat, games):
        seen = set()
        for r, h in curves:
            if r["game"] != game or not h:
                continue
            v = r["variant"]
            ax.plot(
                [p["env_steps"] for p in h],
                [p["leader_value"] for p in h],
                color=colors[v],
                lw=1,
                alpha=0.8,
                label=v if v not in seen else None,
            )
            seen.add(v)
        ax.axhline(
            next(r["exact_value"] for r in rows if r["game"] == game),
            ls="--",
            color="k",
            lw=1,
            label="exact SSE",
        )
        _style_curve_axis(ax, game)
    _hide_unused(axes, len(games))
    fig.suptitle(f"ablation {ab['ablation']}: leader value vs env steps", fontsize=10)
    return _save(plt, fig, path)


def ablation_section(ab: dict, out: Path | None = None, fig_dir: Path | None = None) -> str:
    lines = [
        f"## Ablation: {ab['ablation']}",
        "",
        ab.get("description", ""),
        "",
        f"Produced by: `{ab['command']}` (runs in `{ab['_dir']}`)",
        "",
    ]
    variants = ab["variants"]
    rows = ab["rows"]
    games = list(dict.fromkeys(r["game"] for r in rows))
    header = ["game", "exact"]
    # Optional columns: what the play table earns against a best-responding follower (ES leader), and
    # the post-training equilibrium check's follower regret.
    vs_br = any("leader_value_vs_best_response" in r for r in rows)
    regret = any("follower_regret" in r for r in rows)
    for v in variants:
        header += [f"{v}: value (median)", f"{v}: per seed", f"{v}: gap"]
        header += [f"{v}: value vs BR (median)"] if vs_br else []
        header += [f"{v}: follower regret (max)"] if regret else []
    body = []
    for g in games:
        rg = [r for r in rows if r["game"] == g]
        line = [g, rg[0]["exact_value"]]
        for v in variants:
            rv = sorted((r for r in rg if r["variant"] == v), key=lambda r: r["seed"])
            if not rv:
                line += [None] * (3 + vs_br + regret)
                continue
            line += [
                statistics.median(r["leader_value"] for r in rv),
                " / ".join(_fmt(r["leader_value"]) for r in rv),
                statistics.median(r["gap"] for r in rv),
            ]
            if vs_br:
                br = [r["leader_value_vs_best_response"] for r in rv if "leader_value_vs_best_response" in r]
                line.append(statistics.median(br) if br else None)
            if regret:
                rg_ = [r["follower_regret"] for r in rv if "follower_regret" in r]
                line.append(max(rg_) if rg_ else None)
        body.append(line)
    lines.append(_table(header, body))
    lines.append("")
    total = [["variant", "games at exact value", "mean gap", "env steps per run (median)", "wall s (median)"]]
    trows = []
    for v in variants:
        rv = [r for r in rows if r["variant"] == v]
        if not rv:
            continue
        trows.append(
            [
                v,
                f"{sum(abs(r['gap']) < 1e-6 for r in rv)}/{len(rv)}",
                round(statistics.mean(r["gap"] for r in rv), 3),
                statistics.median(r.get("env_steps_total", 0) for r in rv),
                round(statistics.median(r.get("wall_seconds", 0.0) for r in rv), 1),
            ]
        )
    lines += [_table(total[0], trows), ""]
    above = sorted({f"{r['game']} ({r['variant']}, seed {r['seed']})" for r in rows if r["gap"] < -1e-9})
    if above:
        lines += [
            "Negative gap (value above the strong Stackelberg value): "
            + ", ".join(above)
            + ". No committed leader policy can earn more than the SSE value against a best-responding follower, "
            "so in these runs the follower is not best-responding to what the leader plays: the leader's play "
            "differs from the answers the follower conditioned on (with observed queries and commit=false it can "
            "tell query steps from play steps and answer one way while playing another, i.e. deceive the "
            "follower). This is the failure the invariant (hidden-query) leader rules out.",
            "",
        ]
    reused = sorted({r["reused_from"] for r in rows if r.get("reused_from")})
    if reused:
        lines += [
            "Runs with a config identical to one already under the ablation root (serial runs are "
            "deterministic for a seed) were reused, not retrained: " + ", ".join(f"`{x}`" for x in reused),
            "",
        ]
    if out is not None and fig_dir is not None:
        fig = plot_ablation(ab, fig_dir / f"ablation_{_slug(ab['ablation'])}.png")
        if fig is not None:
            lines += [f"Learning curves (same command): ![ablation {ab['ablation']}]({_rel(fig, out)})", ""]
    if ab.get("notes"):
        lines += [ab["notes"], ""]
    return "\n".join(lines)


def divergence_section(div: dict, out: Path, fig_dir: Path) -> str:
    fig = plot_divergence(div, fig_dir / f"divergence_{_slug(div['game'])}.png")
    lines = [
        f"## Theorem 2: naive best-response follower vs query oracle ({div['game']})",
        "",
        f"Produced by: `{div['command']}` (run in `{div['_dir']}`)",
        "",
        div.get("description", ""),
        "",
        f"![divergence]({_rel(fig, out)})",
        "",
    ]
    body = []
    for key in ("query", "naive"):
        for s in div["summary"].get(key, []):
            body.append(
                [
                    div["labels"][key],
                    s["seed"],
                    div["exact_value"],
                    s["final_value"],
                    s["final_policy"],
                    s.get("distinct_last_half", None),
                    s["env_steps"],
                ]
            )
    lines.append(
        _table(
            [
                "method",
                "seed",
                "exact SSE",
                "final deterministic value",
                "final leader policy",
                "distinct greedy policies (last half)",
                "env steps",
            ],
            body,
        )
    )
    lines.append("")
    return "\n".join(lines)


def _pm(d: dict, key: str) -> str:
    return f"{d[key]:.2f} ± {d[key + '_se']:.2f}"


def atari_section(ev: dict, out: Path, fig_dir: Path) -> str:
    """An Atari pricing run's `stackrl eval` report: demand by constant price, the learned schedule
    against the best constant and the searched schedule, follower regret, and the clips' GIF."""
    followers = ev.get("followers", ["follower_0"])
    run = Path(ev["_dir"]).name
    lines = [
        f"## Atari pricing: `{run}` ({ev['game']})",
        "",
        f"Produced by `stackrl eval {ev['_dir']}` ({ev['episodes']} episodes per schedule, "
        f"{ev['followers_act']} followers, episodes cut at {ev['max_episode_steps']} agent steps; the run "
        f"trained {ev['env_steps_trained']:,} agent steps"
        + (f", its followers pretrained in `{ev['followers_from']}`" if ev.get("followers_from") else "")
        + ").",
        "",
    ]
    header = ["constant price"]
    for f in followers:
        header += [f"FIRE / step {f}", f"return {f}"]
    header.append("leader revenue")
    body = []
    for row in ev["per_price"]:
        line = [row["price"]]
        for i in range(len(followers)):
            line += [row["fire_rate"][i], row["follower_return"][i]]
        body.append([*line, row["revenue"]])
    lines += [_table(header, body), ""]
    lines.append(
        f"- Learned schedule {ev['leader_schedule']}: revenue **{ev['leader_revenue']:.2f}**; best constant "
        f"price {ev['best_constant_price']:g}: {ev['best_constant_revenue']:.2f}."
    )
    search = ev.get("search")
    if search:
        lines.append(
            f"- Coordinate search ({search['schedules_evaluated']} schedules, {search['episodes_per_schedule']} "
            f"episodes each, ± one standard error): best schedule {search['best_schedule']} earns "
            f"{_pm(search, 'best_revenue')}; the learned leader {_pm(search, 'leader_revenue')} = "
            f"**{search['leader_fraction_of_best']:.3f} ± {search['leader_fraction_of_best_se']:.3f}** of it."
        )
        if "best_schedule_follower_regret" in search:
            regrets = ", ".join(f"{x:+.1f}" for x in search["best_schedule_follower_regret"])
            lines.append(
                f"- Follower regret on the searched schedule (scratch follower, {search['regret_steps']:,} "
                f"steps cap): {regrets}."
            )
    if "follower_regret" in ev:
        scratch = ev["scratch_training"]
        stop = (
            (", plateaued" if scratch.get("plateaued") else ", still improving at the cap")
            if "plateaued" in scratch
            else ""
        )
        regrets = ", ".join(
            f"{s:.1f} - {c:.1f} = {r:+.1f}"
            for s, c, r in zip(
                ev["scratch_follower_return"], ev["contextual_follower_return"], ev["follower_regret"]
            )
        )
        lines.append(
            f"- Follower regret on {ev.get('regret_schedule', ev['leader_schedule'])} (a follower trained from "
            f"scratch for {scratch['env_steps']:,} agent steps{stop}, minus the contextual follower): {regrets}."
        )
    video = ev.get("video")
    if video and Path(video["gif"]).exists():
        fig_dir.mkdir(parents=True, exist_ok=True)
        gif = fig_dir / f"atari_{_slug(run)}.gif"
        shutil.copyfile(video["gif"], gif)
        rates = ", ".join(f"{name}: {c['fire_rate']:.2f}" for name, c in video["clips"].items())
        lines += [
            "",
            f"![the follower under a cheap price, a dear price and the learned schedule]({_rel(gif, out)})",
            "",
            f"Clips of game 0, left to right (FIRE actions per step: {rates}); a red bar marks a step "
            "where the follower fired. The same clips are TensorBoard videos in the run's `tb/`.",
        ]
    lines.append("")
    return "\n".join(lines)


def generate(
    runs: list[str | Path], out: str | Path = "docs/results.md", fig_dir: str | Path | None = None
) -> Path:
    out = Path(out)
    fig_dir = Path(fig_dir) if fig_dir is not None else out.parent / "figures"
    collections, ablations, divergences = discover(runs)
    atari = discover_atari(runs)
    roots = " ".join(f"--runs {r}" for r in runs)
    parts = [
        "# stackrl results",
        "",
        f"Generated by `stackrl report {roots} --out {out}` from the run directories; do not edit by hand.",
        "Values are undiscounted leader returns over a 10-step episode under deterministic evaluation "
        "(greedy leader, greedy follower); 'exact' is the strong Stackelberg value from `stackrl solve`; "
        "gap = exact − achieved.",
        "",
    ]
    if not (collections or ablations or divergences or atari):
        parts.append("No runs found.")
    for name in sorted(collections):
        parts.append(main_section(name, collections[name], out, fig_dir))
    for ab in sorted(ablations, key=lambda a: a["ablation"]):
        parts.append(ablation_section(ab, out, fig_dir))
    for div in divergences:
        parts.append(divergence_section(div, out, fig_dir))
    for ev in atari:
        parts.append(atari_section(ev, out, fig_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts).rstrip() + "\n")
    return out


def _style_curve_axis(ax, game: str) -> None:
    """Shared look of a learning-curve panel: log-ish step axis, labels, legend."""
    ax.set_xscale("symlog", linthresh=1e4)
    ax.set_xlim(left=0)
    ax.set_title(game, fontsize=9)
    ax.set_xlabel("env steps", fontsize=8)
    ax.set_ylabel("leader value", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)


def _hide_unused(axes, used: int) -> None:
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
