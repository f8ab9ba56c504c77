"""`stackrl sweep GRID.yaml`: a grid of runs (games x methods x seeds x variants), locally or as a Slurm job array.

A grid file names the runs; every run is one `stackrl train`-equivalent run with its own name under one
run root, so `stackrl report --runs ROOT` aggregates the sweep like any collection of runs:

```yaml
run_root: runs/sweep_matrix     # where the runs go (one directory per run, plus sweep.json)
experiment: null                # a preset or YAML file for every run; default: each game's own preset
games: [stag_hunt, chicken]
methods: [meta]                 # meta / inner_outer (default [meta])
seeds: [0, 1]
set: [schedule.eval_interval_updates=20]          # overrides for every run
variants: {base: [], fast: [learner.lr_leader=0.05]}   # optional named override sets (ablations)
serial: true                    # in-process runs (default); false: learner + actor processes
concurrency: 2                  # runs at once: the local pool's size, the array's %K
```

Backends use the machinery that exists for the job: locally a process pool of `concurrency` workers;
on Slurm one job array (`sbatch --array=0-N%K deploy/slurm/sweep.sbatch`), one run per array task,
whose task runs `stackrl sweep GRID --task I`. A run that already has its result.json is skipped, so
rerunning the sweep (or `--only` the failed indices it lists) finishes what is missing.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import shlex
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml
from stackrl.config import ConfigError, ExperimentConfig
from stackrl.runners.presets import build_config

log = logging.getLogger(__name__)

SWEEP_SBATCH = Path(__file__).resolve().parent.parent / "deploy" / "slurm" / "sweep.sbatch"
"""The array task script: data shipped with the deploy files (submitted, never imported)."""


@dataclass(frozen=True)
class SweepRun:
    """One cell of the grid: a run name and what builds its config."""

    index: int
    name: str
    game: str
    method: str
    seed: int
    variant: str
    overrides: tuple[str, ...]


@dataclass
class Grid:
    """A parsed grid file (see the module docstring); `extra` are the command line's `--set`s."""

    path: Path
    run_root: Path
    games: list[str]
    seeds: list[int]
    methods: list[str] = field(default_factory=lambda: ["meta"])
    experiment: str | None = None
    overrides: list[str] = field(default_factory=list)
    variants: dict[str, list[str]] = field(default_factory=dict)
    serial: bool = True
    concurrency: int = 1

    @classmethod
    def load(cls, path: str | Path, extra: tuple[str, ...] = ()) -> Grid:
        """Read and check GRID.yaml; relative run roots and experiment files are relative to the
        current directory, as they are for `stackrl train`.

        Raises:
            ConfigError: unreadable file, unknown key, or a value of the wrong shape.
        """
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the grid: {e}") from None
        known = {"run_root", "games", "seeds", "methods", "experiment", "set", "variants", "serial"}
        known |= {"concurrency"}
        if not isinstance(data, dict) or set(data) - known:
            bad = sorted(set(data) - known) if isinstance(data, dict) else "not a mapping"
            raise ConfigError(f"{path}: unknown grid keys {bad} (known: {', '.join(sorted(known))})")
        for key in ("games", "seeds"):
            if not isinstance(data.get(key), list) or not data[key]:
                raise ConfigError(f"{path}: `{key}` must be a non-empty list")
        variants = data.get("variants") or {}
        if not isinstance(variants, dict) or not all(isinstance(v, list) for v in variants.values()):
            raise ConfigError(f"{path}: `variants` must map names to lists of key=value overrides")
        grid = cls(
            path=path,
            run_root=Path(data.get("run_root") or f"runs/{path.stem}"),
            games=[str(g) for g in data["games"]],
            seeds=[int(s) for s in data["seeds"]],
            methods=[str(m) for m in data.get("methods") or ["meta"]],
            experiment=data.get("experiment"),
            overrides=[*[str(o) for o in data.get("set") or []], *extra],
            variants={str(k): [str(o) for o in v] for k, v in variants.items()},
            serial=bool(data.get("serial", True)),
            concurrency=int(data.get("concurrency", 1)),
        )
        if grid.concurrency < 1:
            raise ConfigError(f"{path}: `concurrency` must be >= 1")
        if not set(grid.methods) <= {"meta", "inner_outer"}:
            raise ConfigError(f"{path}: `methods` must be meta and/or inner_outer, got {grid.methods}")
        return grid

    def runs(self) -> list[SweepRun]:
        """The grid's cells in a fixed order (the array task index is the list index)."""
        variants = self.variants or {"": []}
        cells = itertools.product(self.games, self.methods, variants.items(), self.seeds)
        out = []
        for i, (game, method, (variant, extra), seed) in enumerate(cells):
            name = f"{game}_{method}{'_' + variant if variant else ''}_s{seed}"
            out.append(SweepRun(i, name, game, method, seed, variant, (*self.overrides, *extra)))
        return out

    def config(self, run: SweepRun) -> ExperimentConfig:
        """The run's validated config (as `stackrl train` builds it, named and rooted by the sweep)."""
        fields: dict[str, Any] = {"seed": run.seed, "name": run.name, "run_root": str(self.run_root)}
        experiment, method = (self.experiment, None) if self.experiment else (run.game, run.method)
        if self.experiment:
            fields["env"] = {"name": run.game}
        cfg = build_config(experiment or run.game, method=method, fields=fields, overrides=run.overrides)
        # The grid's own axes win over a `--set` of the same key: the run's name says its seed.
        return dataclasses.replace(cfg, name=run.name, seed=run.seed, run_root=str(self.run_root))


def run_task(grid_path: str, index: int, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run cell `index` of the grid to its result.json (skipped when it is already there)."""
    grid = Grid.load(grid_path, extra)
    run = grid.runs()[index]
    cfg = grid.config(run)
    run_dir = cfg.run_dir
    if (run_dir / "result.json").exists():
        log.info("sweep task %d: %s already finished", index, run_dir)
        return {"index": index, "name": run.name, "status": "done", "skipped": True}
    from stackrl.runners.run_dir import clear

    if run_dir.is_dir():  # an earlier attempt that did not finish (a failed or preempted task)
        clear(run_dir)
    log.info("sweep task %d: %s -> %s", index, run.name, run_dir)
    if grid.serial:
        from stackrl.runners.serial import run_serial

        result = run_serial(cfg, run_dir, progress=False)
    else:
        from stackrl.runners.launch import run_local

        result = run_local(cfg, run_dir, progress=False)
    return {"index": index, "name": run.name, "status": "done", "leader_value": result["leader_value"]}


def write_manifest(grid: Grid, command: str) -> Path:
    """sweep.json (the cells, for listing and reruns) and command.txt (what `stackrl report` cites)."""
    grid.run_root.mkdir(parents=True, exist_ok=True)
    (grid.run_root / "command.txt").write_text(command + "\n")
    path = grid.run_root / "sweep.json"
    cells = [dataclasses.asdict(r) for r in grid.runs()]
    path.write_text(json.dumps({"grid": str(grid.path.resolve()), "runs": cells}, indent=2))
    return path


def status(grid: Grid) -> dict[str, list[SweepRun]]:
    """Cells by state: `done` (result.json written) or `missing` (failed, not run, or still running)."""
    out: dict[str, list[SweepRun]] = {"done": [], "missing": []}
    for r in grid.runs():
        cfg_dir = grid.run_root / r.name
        out["done" if (cfg_dir / "result.json").exists() else "missing"].append(r)
    return out


def _selected(grid: Grid, only: list[int] | None) -> list[int]:
    n = len(grid.runs())
    indices = list(range(n)) if only is None else sorted(set(only))
    if any(not 0 <= i < n for i in indices):
        raise ConfigError(f"--only: indices must be in 0..{n - 1}, got {only}")
    return indices


def run_local_pool(grid: Grid, only: list[int] | None = None, extra: tuple[str, ...] = ()) -> list[dict]:
    """Run the selected cells in a pool of `grid.concurrency` processes (spawned: no forked torch)."""
    indices = _selected(grid, only)
    rows: list[dict] = []
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=grid.concurrency, mp_context=ctx) as pool:
        futures = {pool.submit(run_task, str(grid.path), i, extra): i for i in indices}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                rows.append(fut.result())
            except Exception as e:  # one failed run does not stop the others; it is listed for rerun
                log.error("sweep task %d failed: %s: %s", i, type(e).__name__, e)
                rows.append({"index": i, "status": "failed", "error": f"{type(e).__name__}: {e}"})
    return sorted(rows, key=lambda r: r["index"])


def slurm_array_command(
    grid: Grid, only: list[int] | None, extra: tuple[str, ...], sbatch_args: tuple[str, ...], wait: bool
) -> list[str]:
    """`sbatch --array=<indices>%K ... sweep.sbatch GRID [--set ...]`: one array task per cell."""
    indices = _selected(grid, only)
    spec = f"0-{indices[-1]}" if indices == list(range(indices[-1] + 1)) else ",".join(map(str, indices))
    logs = grid.run_root.resolve() / ".slurm"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = ["sbatch", "--parsable", f"--array={spec}%{grid.concurrency}", f"--output={logs}/%A_%a.out"]
    cmd += ["--job-name=stackrl-sweep", *(["--wait"] if wait else []), *sbatch_args, str(SWEEP_SBATCH)]
    cmd += [str(grid.path.resolve()), *(a for o in extra for a in ("--set", o))]
    return cmd


def submit_slurm(
    grid: Grid,
    only: list[int] | None = None,
    extra: tuple[str, ...] = (),
    sbatch_args: tuple[str, ...] = (),
    wait: bool = True,
) -> str:
    """Submit the sweep as one job array; with `wait`, return when every task has ended.

    Returns:
        The array's job id.

    Raises:
        RuntimeError: sbatch refused the submission (its message is included).
    """
    cmd = slurm_array_command(grid, only, extra, sbatch_args, wait)
    env = {**os.environ, "STACKRL_PYTHON": os.environ.get("STACKRL_PYTHON", sys.executable)}
    log.info("submitting: %s", shlex.join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path.cwd())
    job = proc.stdout.strip().split(";")[0]
    if not job:  # with --wait, a failed task makes sbatch exit non-zero after printing the id
        raise RuntimeError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    return job
