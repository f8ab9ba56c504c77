"""`stackrl ablation NAME`: the query ablations of docs/design.md §1, one command each.

- `queries`: hidden vs observed queries (committed answers, the default meta preset otherwise).
- `invariance`: `commit: false` with hidden queries (an invariant leader: it cannot tell a query step
  from a play step, so it answers as it plays) vs `commit: false` with observed queries (it can tell
  them apart and could answer differently than it plays).
- `oracle`: the follower side of the query oracle: contextual (meta-RL) followers from the meta
  preset vs a tabular Q-learning follower that learns from scratch inside each block of episodes
  against the fixed committed leader (`experiments/q_follower.py`), vs the exact best-response oracle.
- `es-leader`: a leader trained by evolution strategies instead of RL (`experiments/es_leader.py`),
  hidden vs observed queries, against the exact best-responding oracle and against the meta
  preset's pretrained contextual follower (the reference's `smipd_es` experiment).
- `q-reset`: the Q-learning oracle's Q-table reset vs carried over between leader episodes (the
  reference's `bots_pg_tabularq`: "not resetting the follower between leader episodes can break
  things").
- `leader-reward-during-adaptation`: the leader paid only after the Q-learning follower adapted
  (off) vs also during its learning episodes (on; the reference's `bots_dqn_tabularq_out_of_eq`).

The games may be named matrix games or the reference's extra games of
`experiments/tabular_game.EXTRA_GAMES` (e.g. `hidden_queries_2x2`).

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
from stackrl.experiments.tabular_game import EXTRA_GAMES, env_fields
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
            "q_learning": {"runner": "oracle", "oracle": "q_learning"},
            "exact": {"runner": "oracle", "oracle": "exact"},
        },
    },
}

# The Q-learning follower of the reference's two tabular-Q ablations: 10 learning episodes per leader
# episode (its n_q_episodes), learning rate 0.1 (its q_alpha default), and a behaviour policy that
# explores throughout (its parameter noise of scale 1 on Q-values of order 1 is close to uniform);
# the tabular leader starts from random logits (N(0, 1)), as a freshly initialised policy does.
REFERENCE_Q: dict = {"block_episodes": 10, "alpha": 0.1, "explore": (1.0, 1.0), "init_scale": 1.0}

ABLATIONS["es-leader"] = {
    "description": "A leader trained by evolution strategies (antithetic OpenAI-ES on tabular logits, greedy "
    "play, centred ranks) over the extended episode, no commitment: with hidden queries its answers are its "
    "play; with observed queries it has separate logits for answering and for playing. Followers: exact "
    "(leader-favoured best response to the answers) or contextual (the meta preset's pretrained follower, "
    "greedy on the answers). 'value vs BR' is what its play table earns against a follower best-responding to "
    "that play (no deception possible).",
    "variants": {
        f"{q},{o}": {"runner": "es", "queries": q, "oracle": o}
        for o in ("exact", "contextual")
        for q in ("hidden", "observed")
    },
}
ABLATIONS["q-reset"] = {
    "description": "Q-learning oracle (tabular REINFORCE leader on sampled commitments, played committed) with "
    "the follower's Q-table reset to zero for every leader episode vs carried over from the previous one "
    "(10 learning episodes per leader episode, alpha 0.1, exploring throughout, random leader start).",
    "variants": {
        "reset": {"runner": "oracle", "oracle": "q_learning", "reset": True, **REFERENCE_Q},
        "carried": {"runner": "oracle", "oracle": "q_learning", "reset": False, **REFERENCE_Q},
    },
}
ABLATIONS["leader-reward-during-adaptation"] = {
    "description": "Q-learning oracle as in q-reset (Q-table reset): the leader's return is the greedy episode "
    "played after the follower's 10 learning episodes (off) vs its mean return over the learning episodes and "
    "that greedy one (on).",
    "variants": {
        "off": {
            "runner": "oracle",
            "oracle": "q_learning",
            "reset": True,
            "leader_reward_during_adaptation": False,
            **REFERENCE_Q,
        },
        "on": {
            "runner": "oracle",
            "oracle": "q_learning",
            "reset": True,
            "leader_reward_during_adaptation": True,
            **REFERENCE_Q,
        },
    },
}


def outcome_counts(rows: list[dict], variant: str) -> dict[str, int]:
    """Runs of `variant` at, below and above the exact value (above: the follower was deceived)."""
    rv = [r for r in rows if r["variant"] == variant]
    return {
        "n": len(rv),
        "at": sum(abs(r["gap"]) < 1e-6 for r in rv),
        "below": sum(r["gap"] > 1e-6 for r in rv),
        "above": sum(r["gap"] < -1e-6 for r in rv),
    }


def pairwise(rows: list[dict], a: str, b: str) -> dict[str, int]:
    """Over the (game, seed) runs both variants have: how often `b`'s value is below, equal to, above `a`'s."""
    va = {(r["game"], r["seed"]): r["leader_value"] for r in rows if r["variant"] == a}
    vb = {(r["game"], r["seed"]): r["leader_value"] for r in rows if r["variant"] == b}
    both = sorted(set(va) & set(vb))
    return {
        "pairs": len(both),
        "lower": sum(vb[k] < va[k] - 1e-6 for k in both),
        "equal": sum(abs(vb[k] - va[k]) <= 1e-6 for k in both),
        "higher": sum(vb[k] > va[k] + 1e-6 for k in both),
    }


def finding(name: str, rows: list[dict]) -> str:
    """The ablation's outcome in one sentence, counted from its rows (no number is written by hand)."""
    variants = list(ABLATIONS[name]["variants"])
    counts = {v: outcome_counts(rows, v) for v in variants}
    at = "; ".join(
        f"{v}: {c['at']}/{c['n']} at the exact value, {c['below']} below, {c['above']} above"
        for v, c in counts.items()
    )
    if len(variants) == 2:
        a, b = variants
        p = pairwise(rows, a, b)
        return (
            f"Outcome: {b} ended below {a} on {p['lower']} of {p['pairs']} (game, seed) runs, equal on "
            f"{p['equal']}, above on {p['higher']} ({at})."
        )
    return f"Outcome: {at}."


def _cfg(
    game: str, seed: int, overrides: list[str], run_root: Path, extra: tuple[str, ...]
) -> ExperimentConfig:
    fields = {
        "env": env_fields(game),
        "seed": seed,
        "run_root": str(run_root),
        "name": f"{game}_s{seed}",
        "actor": {"num_actors": 1},
    }
    preset = "matrix" if game in EXTRA_GAMES else game
    return build_config(preset, method="meta", fields=fields, overrides=[*overrides, *extra])


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
    row = {
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
    if res.get("leader_value_vs_best_response") is not None:
        row["leader_value_vs_best_response"] = res["leader_value_vs_best_response"]
    check = res.get("equilibrium_check")
    if check:
        row["follower_regret"] = check["follower_regret"]
        row["fresh_follower_agrees"] = check["agrees_with_best_response"]
    return row


def _run_tabular(
    spec: dict, game: str, seed: int, vdir: Path, q_budget: int, q_block_episodes: int, es_budget: int
) -> dict:
    """A variant that is not a serial training run: the tabular oracle leader or the ES leader."""
    kwargs = {k: v for k, v in spec.items() if k != "runner"}
    if spec["runner"] == "oracle":
        from stackrl.experiments.q_follower import run_oracle_leader

        kwargs.setdefault("block_episodes", q_block_episodes)
        return run_oracle_leader(game, budget=q_budget, seed=seed, **kwargs)
    from stackrl.experiments.es_leader import (
        contextual_responses,
        exact_responses,
        pretrained_follower,
        run_es_leader,
    )
    from stackrl.experiments.tabular_game import TabularGame

    g = TabularGame(game)
    if kwargs["oracle"] == "exact":
        responses = exact_responses(g)
    else:  # one pretrained follower per game and seed, shared by the hidden and observed variants
        follower = pretrained_follower(game, seed, vdir.parent / "follower" / f"{game}_s{seed}")
        responses = contextual_responses(g, follower)
    return run_es_leader(game, kwargs["queries"], responses, kwargs["oracle"], es_budget, seed)


def run_ablation(
    name: str,
    games: list[str],
    seeds: list[int],
    run_root: str = "runs/ablations",
    extra: tuple[str, ...] = (),
    command: str | None = None,
    q_budget: int = 1_000_000,
    q_block_episodes: int = 50,
    es_budget: int = 200_000,
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
                if isinstance(overrides, list):
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
                    t0 = time.time()
                    res = _run_tabular(overrides, game, seed, vdir, q_budget, q_block_episodes, es_budget)
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
        "notes": finding(name, rows),
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "ablation.json").write_text(json.dumps(out, indent=1))
    return out
