"""`stackrl bench matrix`: meta vs inner-outer on the iterated matrix games, against the exact solver.

Every run is a real training run (serial in-process, or the distributed path with `--actors N`);
the table reports per game the exact strong-Stackelberg value, the achieved deterministic value,
the gap, env steps until the final value was reached, and wall time. The inner-outer baseline gets
`inner_outer_factor` times the meta budget; the ratio column is the inner-outer steps needed to
reach the exact value divided by meta's (">" when inner-outer never reached it within its budget).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import statistics
from pathlib import Path

import click
from stackrl.config import ExperimentConfig, apply_overrides
from stackrl.deploy.presets import load_experiment
from stackrl.deploy.sample_efficiency import leader_phase_steps, median_steps, must_learn, ratio
from stackrl.envs.matrix_games import BENCHMARK_GAMES
from stackrl.learner.learner import steps_to_value


def matrix_config(
    game: str,
    payoffs: list | None,
    method: str,
    seed: int,
    factor: float,
    actors: int,
    overrides: tuple[str, ...],
    run_root: str,
) -> ExperimentConfig:
    data = load_experiment("matrix" if payoffs is not None else game, method=method)
    data.pop("method_tag", None)
    data["env"]["name"] = "matrix" if payoffs is not None else game
    data["env"]["payoffs"] = payoffs
    data["seed"] = seed
    data["run_root"] = run_root
    data["name"] = f"{game}_{method}_s{seed}"
    data["actor"]["num_actors"] = max(actors, 1)
    if method == "inner_outer":
        meta = load_experiment(game if payoffs is None else "matrix", method="meta")
        meta_budget = sum(p["env_steps"] for p in meta["schedule"]["phases"])
        data["schedule"]["phases"][0]["env_steps"] = int(factor * meta_budget)
    data = apply_overrides(data, list(overrides))
    return ExperimentConfig.from_dict(data)


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
        from stackrl.deploy.launch import run_local

        return run_local(cfg, cfg.run_dir, progress=False)
    from stackrl.deploy.serial import run_serial

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


def record_command(run_root: str, command: str) -> None:
    """Append the command to `<run_root>/command.txt` once; `stackrl report` quotes the file."""
    path = Path(run_root) / "command.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    if command not in lines:
        path.write_text("\n".join([*lines, command]) + "\n")


def run_matrix_benchmark(
    games: str,
    seeds: str,
    methods: str,
    payoff_sets: tuple[str, ...],
    actors: int,
    inner_outer_factor: float,
    json_path: str | None,
    overrides: tuple[str, ...],
    run_root: str = "runs/bench_matrix",
    reuse: bool = False,
) -> dict:
    names = list(BENCHMARK_GAMES) if games == "all" else [g for g in games.split(",") if g]
    entries: list[tuple[str, list | None]] = [(g, None) for g in names]
    entries += [(f"user{i}", json.loads(p)) for i, p in enumerate(payoff_sets)]
    seed_list = [int(s) for s in seeds.split(",") if s != ""]
    method_list = [m for m in methods.split(",") if m]
    # The command line that reproduces these runs, recorded in <run_root>/command.txt.
    cmd = ["stackrl", "bench", "matrix", "--games", games, "--seeds", seeds, "--methods", methods]
    cmd += [arg for p in payoff_sets for arg in ("--payoffs", p)]
    cmd += ["--actors", str(actors)] if actors else []
    cmd += ["--inner-outer-factor", f"{inner_outer_factor:g}"] if "inner_outer" in methods else []
    cmd += [arg for o in overrides for arg in ("--set", o)]
    record_command(run_root, shlex.join([*cmd, "--run-root", run_root]))
    rows = []
    total = len(entries) * len(seed_list) * len(method_list)
    with click.progressbar(length=total, label="bench matrix", file=click.get_text_stream("stderr")) as bar:
        for game, payoffs in entries:
            for method in method_list:
                for seed in seed_list:
                    cfg = matrix_config(
                        game, payoffs, method, seed, inner_outer_factor, actors, overrides, run_root
                    )
                    res = run_one(cfg, actors, reuse)
                    rows.append(
                        {
                            "game": game,
                            "payoffs": payoffs,
                            "method": method,
                            "seed": seed,
                            "exact_value": res["exact_value"],
                            "leader_value": res["leader_value"],
                            "gap": res["gap"],
                            "leader_answers": res["leader_answers"],
                            "steps_to_final": res["steps_to_final"],
                            "steps_to_exact": steps_to_value(res["eval_history"], res["exact_value"]),
                            "env_steps": res["env_steps"],
                            "env_steps_total": res["env_steps"]["total"],
                            "wall_seconds": res["wall_seconds"],
                            "must_learn": must_learn(
                                cfg.env.name, cfg.env.payoffs, cfg.env.episode_length, res
                            ),
                            "actors": actors,
                        }
                    )
                    bar.update(1)
    summary = summarise(rows, inner_outer_factor)
    print_tables(rows, summary)
    out = {"rows": rows, "summary": summary, "inner_outer_factor": inner_outer_factor, "actors": actors}
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=2))
    return out
