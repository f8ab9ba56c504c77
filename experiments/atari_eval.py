"""Evaluation of an Atari pricing run (`stackrl eval RUN_DIR`): does the follower respond to prices,
does the leader price well, and does the contextual follower truly best-respond (docs/design.md §5)?

From `RUN_DIR/checkpoint.pt` (networks) and its embedded config:

- per-price table: for every price p, the constant schedule (p in every phase), played by the
  contextual follower(s) with that schedule as context (`table` leader source): FIRE actions per
  follower step (the actions played) and the policy's probability mass on FIRE actions, the follower's
  return and the leader's revenue;
- the leader's greedy schedule (its answers on the K phases) and the revenue it earns (`policy`
  source: query phase, then committed play), against the best constant schedule;
- follower regret: followers trained from scratch (fresh networks, no context) against the frozen
  leader's greedy schedule (`table` source) for `regret_steps` agent steps, minus the contextual
  followers' return on the same schedule. Positive: the contextual follower leaves return on the
  table; near zero or negative: within that budget it best-responds at least as well as a
  dedicated learner.

Every evaluation plays `episodes` games until each ended one episode, episodes cut at
`max_episode_steps`; followers sample from their policies with a fixed seed (the policy as trained:
a greedy Atari policy early in training often never fires and scores nothing, which says nothing
about its demand for shots), or act greedily with `greedy=True` (`--greedy`); the leader is greedy;
returns are raw game points (followers, net of shot costs)
and raw revenue (leader).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import ATARI_GAMES, env_spec, make_stackelberg_env
from stackrl.envs.query_phase import StackelbergEnv
from stackrl.learner.checkpoint import load_checkpoint
from stackrl.learner.evaluation import greedy_answers, play_first_episodes
from stackrl.learner.models import PolicyNet, build_networks

if TYPE_CHECKING:
    from stackrl.envs.atari_pricing import AtariPricingEnv

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Rollout:
    leader_return: float  # mean revenue per episode
    follower_returns: list[float]  # per follower, mean episode return
    fire_rate: list[float]  # per follower: FIRE actions / follower steps
    fire_prob: list[float]  # per follower: mean policy probability of a FIRE action
    steps: int  # play steps per episode, mean
    episodes: int


@torch.no_grad()
def rollout(
    env: StackelbergEnv,
    nets: dict[str, PolicyNet],
    source: str,
    table: np.ndarray | None = None,
    follower_context: bool = True,
    seed: int = 4242,
    max_steps: int = 1_000_000,
    greedy: bool = False,
) -> Rollout:
    """Play every game of `env` until each finished one episode (its first): followers sample from
    their policies (seeded), or act greedily with `greedy`; the leader is always greedy. Counts
    each follower's FIRE actions and FIRE probability per play step on the way."""
    b = env.num_games
    fire_actions = torch.as_tensor(cast("AtariPricingEnv", env.base).fire_actions)
    followers = env.followers
    fires = np.zeros((b, len(followers)))
    probs = np.zeros((b, len(followers)))
    steps = np.zeros(b)

    def count(role, obs, logits, actions, live) -> None:
        if role == LEADER:
            return
        i = followers.index(role)
        counted = obs.acting[role] & live  # [B]
        fires[counted, i] += fire_actions[actions].numpy()[counted]
        probs[counted, i] += (torch.softmax(logits, -1) * fire_actions.float()).sum(-1).numpy()[counted]
        if i == 0:
            steps[counted] += 1

    returns = play_first_episodes(
        env,
        nets,
        source,
        table,
        follower_context,
        max_steps=max_steps,
        seed=seed,
        sample_followers=not greedy,
        on_act=count,
    )
    denom = np.maximum(steps, 1)[:, None]
    return Rollout(
        leader_return=float(returns[:, 0].mean()),
        follower_returns=[float(v) for v in returns[:, 1:].mean(0)],
        fire_rate=[float(v) for v in (fires.sum(0) / denom.sum())],
        fire_prob=[float(v) for v in (probs.sum(0) / denom.sum())],
        steps=int(steps.mean()),
        episodes=b,
    )


EVAL_FILE = "atari_eval.json"


def record_eval(run_dir: str | Path, report: dict[str, Any]) -> Path:
    """Merge `report` into RUN/atari_eval.json (a later `stackrl eval` with only --search or a
    --regret-schedule adds its parts to what an earlier one measured); returns the file."""
    path = Path(run_dir) / EVAL_FILE
    kept: dict[str, Any] = {}
    if path.exists():
        try:
            kept = json.loads(path.read_text())
        except json.JSONDecodeError:
            kept = {}  # a torn write: this report replaces it
    kept.update(report)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(kept, indent=2))
    tmp.replace(path)
    return path


def schedule_indices(schedule: list[float], prices: list[float], phases: int) -> np.ndarray:
    """[K] price indices of a schedule given as prices (one per phase, each on the menu)."""
    if len(schedule) != phases:
        raise ValueError(f"a schedule needs {phases} prices (one per phase), got {len(schedule)}")
    out = []
    for p in schedule:
        hits = [j for j, q in enumerate(prices) if abs(q - p) < 1e-9]
        if not hits:
            raise ValueError(f"price {p:g} is not on the menu {prices}")
        out.append(hits[0])
    return np.asarray(out, np.int64)


def eval_env(
    cfg: ExperimentConfig, episodes: int, max_episode_steps: int | None, seed: int
) -> StackelbergEnv:
    env_cfg = dataclasses.replace(
        cfg.env,
        num_games=episodes,
        num_threads=1,
        max_episode_steps=max_episode_steps or cfg.env.max_episode_steps,
    )
    return make_stackelberg_env(env_cfg, seed=seed)


def load_run(run_dir: Path) -> tuple[ExperimentConfig, dict]:
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    cfg = ExperimentConfig.from_yaml(state["config_yaml"])
    if cfg.env.name not in ATARI_GAMES:
        raise ValueError(
            f"{run_dir}: env {cfg.env.name!r} is not an Atari pricing game ({', '.join(ATARI_GAMES)})"
        )
    return cfg, state


@dataclasses.dataclass(frozen=True)
class Plateau:
    """Stop scratch training when its return stops improving: every `every` agent steps the
    followers are evaluated (`evaluate(nets)` -> mean follower return); training stops once
    `patience` evaluations in a row failed to beat the best by more than `min_delta`. The step
    budget stays the cap: a run that still improves at the cap says so (`plateaued: false`), and
    its regret is then a lower bound on how much better a dedicated learner could do."""

    every: int
    patience: int = 3
    min_delta: float = 0.0


def train_scratch_followers(
    cfg: ExperimentConfig,
    table: np.ndarray,
    steps: int,
    max_episode_steps: int | None,
    seed: int = 777,
    plateau: Plateau | None = None,
    evaluate: Any = None,
) -> tuple[dict[str, PolicyNet], dict]:
    """Fresh followers (no context) trained against the fixed schedule `table` for `steps` agent
    steps (the cap; with `plateau` and `evaluate`, until their return stops improving), in-process
    (the same Actor and Learner classes as a serial run, one actor), with the run's own learner
    settings and a single pretrain-like phase whose leader source is `table`."""
    from stackrl.actors.actor import Actor
    from stackrl.learner.learner import Learner

    data = cfg.to_dict()
    data["name"] = f"{cfg.name}_regret"
    data["seed"] = seed
    data["env"]["max_episode_steps"] = max_episode_steps or cfg.env.max_episode_steps
    data["actor"]["num_actors"] = 1
    data["schedule"]["phases"] = [{"kind": "pretrain", "env_steps": max(int(steps), 1)}]
    data["schedule"]["eval_interval_updates"] = 10**9
    data["schedule"]["checkpoint_interval_s"] = 10**9
    rcfg = ExperimentConfig.from_dict(data)
    learner = Learner(rcfg, None, evaluate=False)  # the final greedy evaluation is ours, below
    actor = Actor(rcfg, 0, endpoint=None)  # type: ignore[arg-type]

    def broadcast():
        return dataclasses.replace(
            learner.broadcast(), leader_source="table", leader_table=np.asarray(table), follower_context=False
        )

    actor.apply(broadcast())
    t0 = time.time()
    curve: list[tuple[int, float]] = []
    best, since, plateaued = -np.inf, 0, False
    next_eval = plateau.every if plateau is not None else None
    report_every, next_report = max(int(steps) // 20, 1), max(int(steps) // 20, 1)
    while not learner.done:
        if learner.process(actor.unroll()) and not learner.done:
            actor.apply(broadcast())
        if learner.env_steps >= next_report:  # progress: a line per 5% of the budget
            next_report += report_every
            log.info(
                "scratch followers: %d / %d agent steps (%.0f s)", learner.env_steps, steps, time.time() - t0
            )
        if next_eval is not None and plateau is not None and learner.env_steps >= next_eval:
            next_eval += plateau.every
            ret = float(evaluate({r: n for r, n in learner.nets.items()}))
            curve.append((learner.env_steps, ret))
            log.info(
                "scratch followers: %d agent steps, return %.1f (%.0f s)",
                learner.env_steps,
                ret,
                time.time() - t0,
            )
            if ret > best + plateau.min_delta:
                best, since = ret, 0
            else:
                since += 1
                if since >= plateau.patience:
                    plateaued = True
                    break
    info = {
        "env_steps": learner.env_steps,
        "updates": {r: n for r, n in learner.updates.items()},
        "seconds": time.time() - t0,
    }
    if plateau is not None:
        info.update({"plateaued": plateaued, "curve": curve, "cap": steps, "every": plateau.every})
    nets = {r: n.cpu().eval() for r, n in learner.nets.items()}
    learner.close()
    actor.env.close()
    return nets, info


def run_eval(
    run_dir: str | Path,
    episodes: int = 8,
    regret_steps: int = 20_000,
    max_episode_steps: int | None = None,
    seed: int = 4242,
    greedy: bool = False,
    plateau_every: int = 0,
    regret_schedule: list[float] | None = None,
) -> dict:
    """The whole report as a JSON-able dict (see the module docstring). `plateau_every` > 0: the
    scratch followers train until their return stops improving (checked every that many steps,
    `Plateau`), with `regret_steps` as the cap. `regret_schedule` (prices, one per phase): measure
    the regret on that schedule (e.g. the best one `--search` found) instead of the leader's."""
    cfg, state = load_run(Path(run_dir))
    # One thread, like the actors: on a loaded 2-core machine more threads only wait on each other.
    torch.set_num_threads(cfg.actor.threads)
    env = eval_env(cfg, episodes, max_episode_steps, seed)
    spec = env_spec(env)
    nets = build_networks(spec, cfg.model)
    for role, net in nets.items():
        net.load_state_dict(state["nets"][role])
        net.eval()
    followers = list(env.followers)
    prices = [float(p) for p in cfg.env.prices]
    k = env.num_queries

    # a schedule off the menu fails here, before minutes of rollouts
    fixed_schedule = None if regret_schedule is None else schedule_indices(regret_schedule, prices, k)
    per_price: list[dict[str, Any]] = []
    for j, price in enumerate(prices):
        r = rollout(env, nets, "table", np.full(k, j, np.int64), seed=seed, greedy=greedy)
        per_price.append(
            {
                "price": price,
                "fire_rate": r.fire_rate,
                "fire_prob": r.fire_prob,
                "follower_return": r.follower_returns,
                "revenue": r.leader_return,
                "steps": r.steps,
            }
        )
    best = max(range(len(prices)), key=lambda j: per_price[j]["revenue"])
    schedule = greedy_answers(env, nets[LEADER]).astype(np.int64)
    led = rollout(env, nets, "policy", seed=seed, greedy=greedy)
    regret_on = schedule if fixed_schedule is None else fixed_schedule
    contextual = rollout(env, nets, "table", regret_on, follower_context=True, seed=seed, greedy=greedy)

    report: dict = {
        "run_dir": str(run_dir),
        "game": cfg.env.name,
        "followers": followers,
        "episodes": episodes,
        "followers_act": "greedy" if greedy else "sampled",
        "max_episode_steps": env.base.max_episode_steps,
        "price_scale": cfg.env.price_scale,
        "env_steps_trained": int(state.get("env_steps", 0)),
        "followers_from": cfg.learner.followers_from,
        "per_price": per_price,
        "leader_schedule": [prices[a] for a in schedule.tolist()],
        "leader_schedule_index": schedule.tolist(),
        "phase_edges": list(cfg.env.phase_edges),
        "leader_revenue": led.leader_return,
        "leader_fire_rate": led.fire_rate,
        "best_constant_price": prices[best],
        "best_constant_revenue": per_price[best]["revenue"],
        "leader_minus_best_constant": led.leader_return - per_price[best]["revenue"],
        "regret_schedule": [prices[a] for a in regret_on.tolist()],
        "contextual_follower_return": contextual.follower_returns,
    }
    if regret_steps > 0:
        plateau = Plateau(plateau_every) if plateau_every > 0 else None

        def play_scratch(fresh: dict[str, PolicyNet]):  # the schedule against context-free followers
            return rollout(
                env,
                {**fresh, LEADER: nets[LEADER]},
                "table",
                regret_on,
                follower_context=False,
                seed=seed,
                greedy=greedy,
            )

        def scratch_return(fresh: dict[str, PolicyNet]) -> float:
            return float(np.mean(play_scratch(fresh).follower_returns))

        scratch_nets, info = train_scratch_followers(
            cfg, regret_on, regret_steps, max_episode_steps, plateau=plateau, evaluate=scratch_return
        )
        scratch = play_scratch(scratch_nets)
        regrets = [s - c for s, c in zip(scratch.follower_returns, contextual.follower_returns)]
        report.update(
            {
                "regret_steps": regret_steps,
                "scratch_training": info,
                "scratch_follower_return": scratch.follower_returns,
                "follower_regret": regrets,
                "follower_regret_mean": float(np.mean(regrets)),
            }
        )
    env.close()
    return report


def format_report(r: dict) -> str:
    fs = r["followers"]
    lines = [
        f"stackrl eval {r['run_dir']}: {r['game']}  ({r['episodes']} episodes per schedule, {r['followers_act']} followers, cut at "
        f"{r['max_episode_steps']} steps; trained {r['env_steps_trained']:,} agent steps; price_scale {r['price_scale']:g})",
        "constant-price schedules, contextual follower(s):",
        f"{'price':>6} "
        + " ".join(f"{'fire/step ' + f:>22} {'P(fire) ' + f:>20} {'return ' + f:>19}" for f in fs)
        + f" {'revenue':>9}",
    ]
    for row in r["per_price"]:
        cells = " ".join(
            f"{row['fire_rate'][i]:>22.3f} {row['fire_prob'][i]:>20.3f} {row['follower_return'][i]:>19.1f}"
            for i in range(len(fs))
        )
        lines.append(f"{row['price']:>6.2f} {cells} {row['revenue']:>9.2f}")
    edges = r["phase_edges"]
    phases = [f"[{a},{b})" for a, b in zip(edges, [*edges[1:], "end"])]
    lines += [
        "leader's greedy schedule: " + ", ".join(f"{p} {s:g}" for p, s in zip(phases, r["leader_schedule"])),
        f"leader revenue {r['leader_revenue']:.2f}  vs best constant price {r['best_constant_price']:g}: "
        f"{r['best_constant_revenue']:.2f}  (difference {r['leader_minus_best_constant']:+.2f})",
    ]
    if "follower_regret" in r:
        if r["regret_schedule"] != r["leader_schedule"]:
            lines.append(f"follower regret measured on the schedule {r['regret_schedule']}")
        for i, f in enumerate(fs):
            lines.append(
                f"follower regret {f}: scratch ({r['scratch_training']['env_steps']:,} steps"
                + (
                    f", {'plateaued' if r['scratch_training']['plateaued'] else 'still improving at the cap'}"
                    if "plateaued" in r["scratch_training"]
                    else ""
                )
                + f") {r['scratch_follower_return'][i]:.1f} - "
                f"contextual {r['contextual_follower_return'][i]:.1f} = {r['follower_regret'][i]:+.1f}"
            )
    return "\n".join(lines)
