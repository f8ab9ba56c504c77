"""`stackrl bench matrix`: meta vs inner-outer on the iterated matrix games, against the exact solver.

With `--random N` it also draws a suite of N random bimatrices (integer payoffs 0-9) that nobody
tuned a preset on, to measure how robust the equilibrium is beyond the named games: the exact rate,
misses split into follower errors (the greedy commitment is optimal against the exact best response
but the learned follower misplays it) and leader errors (the commitment itself is not optimal).

Every run is a real training run (serial in-process, or the distributed path with `--actors N`);
the table reports per game the exact strong-Stackelberg value, the achieved deterministic value,
the gap, env steps until the final value was reached, and wall time. The inner-outer baseline gets
`inner_outer_factor` times the meta budget; the ratio column is the inner-outer steps needed to
reach the exact value divided by meta's (">" when inner-outer never reached it within its budget).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.envs.matrix_games import BENCHMARK_GAMES
from stackrl.envs.solver import episode_values, strong_best_response
from stackrl.experiments.background_load import background_load
from stackrl.experiments.sample_efficiency import leader_phase_steps, median_steps, must_learn, ratio
from stackrl.learner.evaluator import steps_to_value
from stackrl.runners.presets import build_config, load_experiment


@dataclass
class MatrixBench:
    """What `stackrl bench matrix` runs (the CLI's options, one field each)."""

    games: str | None = None
    """Comma-separated named games, `all`, or None: all unless --random or --payoffs are given."""
    seeds: str = "0,1,2"
    methods: str = "meta,inner_outer"
    payoff_sets: tuple[str, ...] = ()
    random: int = 0
    """Draw this many random bimatrices (integer payoffs 0-9) into the suite."""
    random_seed: int = 0
    memory: str = "full"
    actors: int = 0
    """0: serial in-process runs; N: the distributed path with N actor processes."""
    background_load: bool = False
    """Run one low-priority busy process per core while the benchmark runs."""
    inner_outer_factor: float = 10.0
    json_path: str | None = None
    overrides: tuple[str, ...] = ()
    run_root: str = "runs/bench_matrix"
    reuse: bool = False

    def game_names(self) -> list[str]:
        games = self.games if self.games is not None else ("" if self.random or self.payoff_sets else "all")
        return list(BENCHMARK_GAMES) if games == "all" else [g for g in games.split(",") if g]

    def command(self) -> str:
        """The command line that reproduces these runs (recorded in <run_root>/command.txt)."""
        cmd = ["stackrl", "bench", "matrix"]
        cmd += ["--games", self.games] if self.games is not None else []
        cmd += ["--seeds", self.seeds, "--methods", self.methods]
        cmd += [arg for p in self.payoff_sets for arg in ("--payoffs", p)]
        cmd += ["--random", str(self.random), "--random-seed", str(self.random_seed)] if self.random else []
        cmd += ["--memory", self.memory] if self.memory != "full" else []
        cmd += ["--actors", str(self.actors)] if self.actors else []
        cmd += ["--background-load"] if self.background_load else []
        cmd += (
            ["--inner-outer-factor", f"{self.inner_outer_factor:g}"] if "inner_outer" in self.methods else []
        )
        cmd += [arg for o in self.overrides for arg in ("--set", o)]
        return shlex.join([*cmd, "--run-root", self.run_root])


def random_games(n: int, seed: int, memory: str = "full", episode_length: int = 10) -> list[list]:
    """N random 2x2 bimatrices with integer payoffs 0-9, drawn in order from `seed`; a game in which
    every leader commitment reaches the exact value (nothing to learn) is rejected and redrawn."""
    rng = np.random.default_rng(seed)
    games: list[list] = []
    while len(games) < n:
        payoffs = rng.integers(0, 10, size=(2, 2, 2))
        _, _, v_l, v_f = episode_values(payoffs, episode_length, memory)
        values = strong_best_response(v_l, v_f)[1]
        if not np.allclose(values, values.max()):
            games.append(payoffs.tolist())
    return games


def outcome(row: dict) -> str:
    """`exact`; `follower_error`: the learned follower does not play the exact best response to the
    leader's final commitment (the measured value differs from the commitment's value against the
    exact best response; above the exact value, the leader exploited the error); `leader_error`:
    the follower responds exactly, but the commitment is not optimal."""
    vs_br = row.get("leader_value_vs_best_response")
    value = row["exact_value"] - row["gap"]
    if vs_br is not None and abs(value - vs_br) > 1e-6:
        return "follower_error"
    return "exact" if abs(row["gap"]) < 1e-6 else "leader_error"


def matrix_config(
    game: str,
    payoffs: list | None,
    method: str,
    seed: int,
    factor: float,
    actors: int,
    overrides: tuple[str, ...],
    run_root: str,
    memory: str = "full",
) -> ExperimentConfig:
    experiment = "matrix" if payoffs is not None else game
    fields: dict = {
        "env": {"name": experiment, "payoffs": payoffs, "memory": memory},
        "seed": seed,
        "run_root": run_root,
        "name": f"{game}_{method}_s{seed}" + (f"_{memory}" if memory != "full" else ""),
        "actor": {"num_actors": max(actors, 1)},
    }
    if method == "inner_outer":
        phases = load_experiment(experiment, method)["schedule"]["phases"]
        meta_budget = sum(p["env_steps"] for p in load_experiment(experiment, "meta")["schedule"]["phases"])
        fields["schedule"] = {"phases": [{**phases[0], "env_steps": int(factor * meta_budget)}, *phases[1:]]}
    return build_config(experiment, method=method, fields=fields, overrides=overrides)


def _same_config(saved_yaml: str, cfg: ExperimentConfig) -> bool:
    """The saved run's config equals `cfg`, read through the dataclasses: a key added to the config
    since the run was made compares at its default, so a code update does not void old runs. The
    run root is where the run was found, not part of the experiment (relative or absolute)."""
    try:
        saved = ExperimentConfig.from_yaml(saved_yaml)
    except Exception:  # a config that no longer loads is not the same run
        return False
    saved = dataclasses.replace(saved, run_root=cfg.run_root)
    return saved.to_yaml(redact_secrets=True) == cfg.to_yaml(redact_secrets=True)


def run_one(cfg: ExperimentConfig, actors: int, reuse: bool = False) -> dict:
    """Train one configuration; with `reuse`, a finished run with the same config is read back."""
    result_path, config_path = cfg.run_dir / "result.json", cfg.run_dir / "config.yaml"
    fresh = result_path.exists() and config_path.exists()
    if reuse and fresh and _same_config(config_path.read_text(), cfg):
        return json.loads(result_path.read_text())
    if actors > 0:
        from stackrl.runners.launch import run_local

        return run_local(cfg, cfg.run_dir, progress=False)
    from stackrl.runners.serial import run_serial

    return run_serial(cfg, cfg.run_dir, progress=False)


def summarise(rows: list[dict], factor: float) -> list[dict]:
    """Median over seeds per (game, method) and the inner-outer / meta sample ratio per game: over
    all seeds, and over the seeds whose initial commitment is not optimal (`sample_efficiency.py`)."""
    out = []
    for game in dict.fromkeys(r["game"] for r in rows):
        line: dict = {"game": game}
        for method in ("meta", "inner_outer"):
            rs = [r for r in rows if r["game"] == game and r["method"] == method]
            if not rs:
                continue
            line["exact_value"] = rs[0]["exact_value"]
            line[f"{method}_value"] = statistics.median(r["leader_value"] for r in rs)
            line[f"{method}_gap"] = statistics.median(r["gap"] for r in rs)
            line[f"{method}_steps_to_exact"] = median_steps([r["steps_to_exact"] for r in rs])
            line[f"{method}_budget"] = rs[0]["env_steps_total"]
            line[f"{method}_wall_s"] = statistics.median(r["wall_seconds"] for r in rs)
        by = {m: [r for r in rows if r["game"] == game and r["method"] == m] for m in ("meta", "inner_outer")}
        if by["meta"] and by["inner_outer"]:
            # Misses count against the configured budget (a run may stop early with a frozen leader).
            budget = factor * line["meta_budget"]
            line["ratio"] = ratio(
                [r["steps_to_exact"] for r in by["meta"]],
                [r["steps_to_exact"] for r in by["inner_outer"]],
                budget,
            )
            learn = {r["seed"] for r in by["meta"] if r.get("must_learn")}
            line["must_learn_seeds"] = sorted(learn)
            line["ratio_must_learn"] = ratio(
                [r["steps_to_exact"] for r in by["meta"] if r["seed"] in learn],
                [r["steps_to_exact"] for r in by["inner_outer"] if r["seed"] in learn],
                budget,
            )
            line["ratio_amortized"] = ratio(
                [
                    leader_phase_steps(r["steps_to_exact"], r["env_steps"])
                    for r in by["meta"]
                    if r["seed"] in learn
                ],
                [r["steps_to_exact"] for r in by["inner_outer"] if r["seed"] in learn],
                budget,
            )
        out.append(line)
    return out


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "never" if x == float("inf") else f"{x:g}"
    return str(x)


def print_tables(rows: list[dict], summary: list[dict]) -> None:
    click.echo("runs:")
    click.echo(
        f"{'game':20s} {'method':12s} {'seed':>4s} {'exact':>6s} {'value':>6s} {'gap':>5s} "
        f"{'steps_to_final':>14s} {'steps_total':>11s} {'wall_s':>7s}"
    )
    for r in rows:
        click.echo(
            f"{r['game']:20s} {r['method']:12s} {r['seed']:>4d} {_fmt(r['exact_value']):>6s} "
            f"{_fmt(r['leader_value']):>6s} {_fmt(r['gap']):>5s} {_fmt(r['steps_to_final']):>14s} "
            f"{r['env_steps_total']:>11d} {r['wall_seconds']:>7.1f}"
        )
    click.echo("\nmedian over seeds (steps_to_exact: env steps until the exact value was reached for good):")
    click.echo(
        f"{'game':20s} {'exact':>6s} {'meta':>6s} {'gap':>5s} {'meta_steps':>10s} "
        f"{'io':>6s} {'io_gap':>6s} {'io_steps':>10s} {'io/meta':>8s} {'learn seeds':>11s} {'io/meta':>8s} {'amortised':>9s}"
    )
    for s in summary:
        click.echo(
            f"{s['game']:20s} {_fmt(s.get('exact_value')):>6s} {_fmt(s.get('meta_value')):>6s} "
            f"{_fmt(s.get('meta_gap')):>5s} {_fmt(s.get('meta_steps_to_exact')):>10s} "
            f"{_fmt(s.get('inner_outer_value')):>6s} {_fmt(s.get('inner_outer_gap')):>6s} "
            f"{_fmt(s.get('inner_outer_steps_to_exact')):>10s} {_fmt(s.get('ratio')):>8s} "
            f"{','.join(map(str, s.get('must_learn_seeds', []))) or '-':>11s} {_fmt(s.get('ratio_must_learn')):>8s} "
            f"{_fmt(s.get('ratio_amortized')):>9s}"
        )
    click.echo(
        "io/meta: inner-outer / meta median env steps to the exact value ('>x': inner-outer missed it "
        "within its budget). 'learn seeds': seeds whose initial leader commitment is not optimal, "
        "and the ratio over those seeds only. 'amortised': the same seeds, meta counted from the end of "
        "its follower pretraining (leader-independent, paid once per game)."
    )
    checks = [r["equilibrium_check"] for r in rows if r.get("equilibrium_check")]
    if checks:
        agree = sum(bool(c["agrees_with_best_response"]) for c in checks)
        click.echo(
            f"equilibrium check: the fresh follower trained against each final leader found the exact best "
            f"response on {agree}/{len(checks)} runs; follower regret (fresh - run's follower) max "
            f"{_fmt(max(c['follower_regret'] for c in checks))}, min {_fmt(min(c['follower_regret'] for c in checks))}"
        )


def record_command(run_root: str, command: str) -> None:
    """Append the command to `<run_root>/command.txt` once; `stackrl report` quotes the file."""
    path = Path(run_root) / "command.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    if command not in lines:
        path.write_text("\n".join([*lines, command]) + "\n")


def steps_to_kept_leader(res: dict) -> int | None:
    """With leader restarts: env steps at which the run's reported leader was found (it never changes
    after that; ties keep the earlier candidate): the end of the restart that trained it, or, for the
    screen's candidate (`restart_values[0]` when the run screened), the start of the first restart.
    The selection's own steps (screen and judge) are counted in `env_steps_total`, not here.
    None without restarts."""
    values = res.get("restart_values")
    if not values:
        return None
    phases = sorted((k for k in res["env_steps"] if k != "total"), key=lambda k: int(k.split("_")[0]))
    leaders = [k for k in phases if k.endswith("_leader")]
    kept = res.get("kept_candidate")
    if kept is None:  # results written before the index was recorded
        kept = values.index(max(values))
    if res.get("screened_commitments"):
        if kept == 0:  # the screen ran when the first leader phase began
            return sum(int(res["env_steps"][k]) for k in phases[: phases.index(leaders[0])])
        kept -= 1
    end = leaders[kept]
    return sum(int(res["env_steps"][k]) for k in phases[: phases.index(end) + 1])


def steps_to_exact(res: dict) -> int | None:
    """Env steps until the run's reported value was exact for good. With leader restarts the
    evaluation history follows each restart's training leader, not the reported one (the best
    candidate so far, which never gets worse), so: the play steps until the kept leader was found
    plus every step the selection spent (screen and judge, counted in full), when that leader is
    exact; None when it is not. Without restarts: the first evaluation from which the value stayed
    exact."""
    kept = steps_to_kept_leader(res)
    if kept is None:
        return steps_to_value(res["eval_history"], res["exact_value"])
    if not math.isclose(res["leader_value"], res["exact_value"], abs_tol=1e-6):
        return None
    return kept + int(res.get("selection_env_steps", 0))


def env_steps_total(res: dict) -> int:
    """Every env step a run spent: its actors' play steps plus what choosing the leader spent
    (the screen's evaluation episodes and the judge's fresh followers)."""
    return int(res["env_steps"]["total"]) + int(res.get("selection_env_steps", 0))


def suite_summary(rows: list[dict]) -> dict:
    """Exact rate, misses by kind, steps and time over every run of the suite."""
    kinds = [outcome(r) for r in rows]
    finals = [r["steps_to_final"] for r in rows if r["steps_to_final"] is not None]
    return {
        "runs": len(rows),
        "exact": kinds.count("exact"),
        "exact_rate": kinds.count("exact") / len(rows) if rows else None,
        "follower_errors": kinds.count("follower_error"),
        "leader_errors": kinds.count("leader_error"),
        "median_env_steps_total": statistics.median(r["env_steps_total"] for r in rows) if rows else None,
        "max_env_steps_total": max((r["env_steps_total"] for r in rows), default=None),
        "median_steps_to_final": statistics.median(finals) if finals else None,
        "median_wall_seconds": statistics.median(r["wall_seconds"] for r in rows) if rows else None,
    }


def print_suite(rows: list[dict], summary: dict, wall: float) -> None:
    click.echo("\nsuite runs (outcome: exact | follower_error | leader_error):")
    click.echo(
        f"{'game':14s} {'seed':>4s} {'exact':>6s} {'value':>6s} {'vs_BR':>6s} {'f_check':>7s} "
        f"{'steps_to_final':>14s} {'steps_total':>11s} {'wall_s':>7s}  outcome"
    )
    for r in rows:
        click.echo(
            f"{r['game']:14s} {r['seed']:>4d} {_fmt(r['exact_value']):>6s} {_fmt(r['leader_value']):>6s} "
            f"{_fmt(r.get('leader_value_vs_best_response')):>6s} {_fmt(r.get('follower_check')):>7s} "
            f"{_fmt(r['steps_to_final']):>14s} {r['env_steps_total']:>11d} {r['wall_seconds']:>7.1f}  {outcome(r)}"
        )
    s = summary
    click.echo(
        f"\nsuite: exact on {s['exact']}/{s['runs']} runs ({100 * (s['exact_rate'] or 0):.1f}%); "
        f"misses: {s['follower_errors']} follower errors, {s['leader_errors']} leader errors; "
        f"env steps per run (pretraining included): median {_fmt(s['median_env_steps_total'])}, "
        f"max {_fmt(s['max_env_steps_total'])}; median steps to the final value "
        f"{_fmt(s['median_steps_to_final'])}; median wall {_fmt(s['median_wall_seconds'])} s per run, "
        f"{wall:.0f} s in all"
    )


def run_matrix_benchmark(bench: MatrixBench) -> dict:
    entries: list[tuple[str, list | None]] = [(g, None) for g in bench.game_names()]
    entries += [(f"user{i}", json.loads(p)) for i, p in enumerate(bench.payoff_sets)]
    suite = [
        (f"r{bench.random_seed}_{i}", p)
        for i, p in enumerate(random_games(bench.random, bench.random_seed, bench.memory))
    ]
    seed_list = [int(s) for s in bench.seeds.split(",") if s != ""]
    method_list = [m for m in bench.methods.split(",") if m]
    record_command(bench.run_root, bench.command())
    rows = []
    total = (len(entries) + len(suite)) * len(seed_list) * len(method_list)
    t0 = time.time()
    progress = click.progressbar(length=total, label="bench matrix", file=sys.stderr)
    with background_load(enabled=bench.background_load), progress as bar:
        for game, payoffs in [*entries, *suite]:
            for method in method_list:
                for seed in seed_list:
                    cfg = matrix_config(
                        game,
                        payoffs,
                        method,
                        seed,
                        bench.inner_outer_factor,
                        bench.actors,
                        bench.overrides,
                        bench.run_root,
                        bench.memory,
                    )
                    res = run_one(cfg, bench.actors, bench.reuse)
                    rows.append(
                        {
                            "game": game,
                            "payoffs": payoffs,
                            "suite": (game, payoffs) in suite,
                            "memory": bench.memory,
                            "method": method,
                            "seed": seed,
                            "exact_value": res["exact_value"],
                            "leader_value": res["leader_value"],
                            "gap": res["gap"],
                            "leader_value_vs_best_response": res.get("leader_value_vs_best_response"),
                            "follower_check": res.get("follower_check"),
                            "equilibrium_check": res.get("equilibrium_check"),
                            "leader_answers": res["leader_answers"],
                            # With restarts the history jumps between restarts; the reported leader
                            # is final from the end of the restart that found it.
                            "steps_to_final": steps_to_kept_leader(res) or res["steps_to_final"],
                            "steps_to_exact": steps_to_exact(res),
                            "env_steps": res["env_steps"],
                            "env_steps_total": env_steps_total(res),
                            "wall_seconds": res["wall_seconds"],
                            "must_learn": must_learn(cfg.env, res),
                            "actors": bench.actors,
                        }
                    )
                    bar.update(1)
    named = [r for r in rows if not r["suite"]]
    suite_rows = [r for r in rows if r["suite"] and r["method"] == "meta"]
    summary = summarise(named, bench.inner_outer_factor)
    out: dict = {
        "rows": rows,
        "summary": summary,
        "inner_outer_factor": bench.inner_outer_factor,
        "actors": bench.actors,
        "command": bench.command(),
    }
    if named:
        print_tables(named, summary)
    if suite:
        out["suite"] = suite_summary(suite_rows)
        print_suite(suite_rows, out["suite"], time.time() - t0)
    if bench.json_path:
        Path(bench.json_path).write_text(json.dumps(out, indent=2))
    return out
