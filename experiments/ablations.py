"""`stackrl ablation NAME`: the query ablations of docs/design.md §1, one command each.

- `queries`: hidden vs observed queries (committed answers, the default meta preset otherwise).
- `invariance`: `commit: false` with hidden queries (an invariant leader: it cannot tell a query step
  from a play step, so it answers as it plays) vs `commit: false` with observed queries (it can tell
  them apart and could answer differently than it plays).
- `oracle`: the follower side of the query oracle: contextual (meta-RL) followers from the meta
  preset vs a tabular Q-learning follower that learns from scratch inside each block of episodes
  against the fixed committed leader (`experiments/q_follower.py`), vs the exact best-response oracle.

Every run is a real training run; runs go to `runs/ablations/<name>/<variant>/<game>_s<seed>/` and
the table to `runs/ablations/<name>/ablation.json`, which `stackrl report` turns into a section.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from stackrl.config import ExperimentConfig
from stackrl.experiments.report import steps_to_value
from stackrl.runners.presets import build_config

ABLATIONS: dict[str, dict] = {
    "queries": {
        "description": "Hidden vs observed queries (meta preset, committed answers). With hidden queries the "
        "leader sees exactly the observation it would see in play; with observed queries a query flag is "
        "added to its observation.",
        "variants": {
            "hidden": ["env.queries=hidden", "env.commit=true"],
            "observed": ["env.queries=observed", "env.commit=true"],
        },
    },
    "invariance": {
        "description": "Invariant vs non-invariant leader (meta preset, commit=false: the leader samples again "
        "in play). hidden: it cannot tell query steps from play steps, so it answers as it plays; observed: it "
        "can tell them apart and could answer differently than it plays.",
        "variants": {
            "commit=false,hidden": ["env.queries=hidden", "env.commit=false"],
            "commit=false,observed": ["env.queries=observed", "env.commit=false"],
        },
    },
    "oracle": {
        "description": "Which follower answers the query oracle. contextual: the meta preset's pretrained "
        "contextual follower (hidden queries, committed answers). q_learning: per leader commitment, a "
        "tabular Q-learning follower trained from scratch for a block of episodes against the fixed committed "
        "leader, then played greedily (leader: tabular REINFORCE on its sampled commitments). exact: the same "
        "leader update with the exact strong best response (enumeration) as the oracle.",
        "variants": {
            "contextual": ["env.queries=hidden", "env.commit=true"],
            "q_learning": None,
            "exact": None,
        },
    },
}


def _cfg(
    game: str, seed: int, overrides: list[str], run_root: Path, extra: tuple[str, ...]
) -> ExperimentConfig:
    fields = {
        "env": {"name": game},
        "seed": seed,
        "run_root": str(run_root),
        "name": f"{game}_s{seed}",
        "actor": {"num_actors": 1},
    }
    return build_config(game, method="meta", fields=fields, overrides=[*overrides, *extra])


def _same_run(cfg: ExperimentConfig, run_root: Path) -> Path | None:
    """A finished run with exactly this config (its own run dir first, then any other under the
    ablation root, ignoring name/root): serial runs are deterministic for a seed, so its result is
    reused instead of training again (re-running an ablation with more seeds trains only the new ones)."""
    import yaml

    want = cfg.to_dict()
    for key in ("name", "run_root"):
        want.pop(key, None)
    own = cfg.run_dir / "result.json"
    candidates = [own] if own.exists() else []
    candidates += [r for r in sorted(run_root.glob(f"*/*/{cfg.name}/result.json")) if r != own]
    for res in candidates:
        try:
            have = yaml.safe_load((res.parent / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        for key in ("name", "run_root"):
            have.pop(key, None)
        if have == want:
            return res.parent
    return None


def _row_from_result(game: str, variant: str, seed: int, res: dict) -> dict:
    return {
        "game": game,
        "variant": variant,
        "seed": seed,
        "exact_value": res["exact_value"],
        "leader_value": res["leader_value"],
        "gap": res["gap"],
        "leader_answers": res.get("leader_answers"),
        "steps_to_exact": steps_to_value(res.get("eval_history", []), res["exact_value"]),
        "env_steps_total": res["env_steps"]["total"],
        "wall_seconds": res["wall_seconds"],
    }


def run_ablation(
    name: str,
    games: list[str],
    seeds: list[int],
    run_root: str = "runs/ablations",
    extra: tuple[str, ...] = (),
    command: str | None = None,
    q_budget: int = 1_000_000,
    q_block_episodes: int = 50,
) -> dict:
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
    spec = ABLATIONS[name]
    root = Path(run_root) / name
    rows = []
    for game in games:
        for variant, overrides in spec["variants"].items():
            for seed in seeds:
                vdir = root / variant.replace("=", "-").replace(",", "_")
                if overrides is not None:
                    from stackrl.runners.serial import run_serial

                    cfg = _cfg(game, seed, overrides, vdir, extra)
                    same = _same_run(cfg, Path(run_root))
                    if same is not None:
                        res = json.loads((same / "result.json").read_text())
                    else:
                        res = run_serial(cfg, cfg.run_dir, progress=False)
                    row = _row_from_result(game, variant, seed, res)
                    if same is not None and same != cfg.run_dir:
                        row["reused_from"] = str(same)
                else:
                    from stackrl.experiments.q_follower import run_oracle_leader

                    t0 = time.time()
                    res = run_oracle_leader(
                        game,
                        "q_learning" if variant == "q_learning" else "exact",
                        q_budget,
                        seed,
                        block_episodes=q_block_episodes,
                    )
                    res["wall_seconds"] = time.time() - t0
                    d = vdir / f"{game}_s{seed}"
                    d.mkdir(parents=True, exist_ok=True)
                    (d / "oracle_result.json").write_text(json.dumps(res, indent=1))
                    row = _row_from_result(game, variant, seed, res)
                rows.append(row)
                click.echo(
                    f"{name} {game:18s} {variant:22s} seed {seed}: value {row['leader_value']:g} "
                    f"(exact {row['exact_value']:g}) steps {row['env_steps_total']} {row['wall_seconds']:.1f}s",
                    err=True,
                )
    out = {
        "ablation": name,
        "description": spec["description"],
        "command": command
        or f"stackrl ablation {name} --games {','.join(games)} --seeds " + ",".join(map(str, seeds)),
        "variants": list(spec["variants"]),
        "rows": rows,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "ablation.json").write_text(json.dumps(out, indent=1))
    return out
