"""`stackrl eval RUN --search`: the best price schedule coordinate search finds against the run's own
contextual follower, and the learned leader's revenue as a fraction of it.

The learned leader of the Atari pricing game cannot be compared with an exact solution (there is
none), and the best *constant* price is a weak yardstick for a schedule that may vary by phase. This
searches the 5^5 schedules (experiments/schedule_search.py: phase by phase over all prices, repeated
until no phase changes; starts: the learned schedule, every constant schedule, and random ones)
against the same contextual follower the leader trained with, acting on the schedule as context.

Every schedule is played for `episodes` episodes (one per game of a batched env, each to its first
end or the step cap) with the same seed, so schedules are compared on common random numbers; the
standard error over episodes is reported with every estimate. The learned leader is played the same
way (`policy` source: query phase, then committed play). Optionally (`regret_steps`, the cap; with
`plateau_every`, until its return stops improving), a follower is trained from scratch on the best
schedule found, to check that the contextual follower best-responds
there too (a positive regret means the searched revenue rests on a follower error).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stackrl.envs.base import LEADER
from stackrl.envs.factory import env_spec
from stackrl.experiments.atari_eval import Plateau, eval_env, load_run, rollout, train_scratch_followers
from stackrl.experiments.schedule_search import Estimate, Schedule, coordinate_search
from stackrl.learner.evaluation import greedy_answers, play_first_episodes
from stackrl.learner.models import build_networks

log = logging.getLogger(__name__)


def revenue_estimate(returns: np.ndarray) -> Estimate:
    """Leader revenue over the games' first episodes: returns [B, R] -> mean and standard error."""
    return Estimate.of(returns[:, 0])


def fraction(num: Estimate, den: Estimate) -> tuple[float, float]:
    """num / den with its standard error (first-order propagation, independent errors)."""
    if den.mean == 0:
        return float("nan"), float("nan")
    f = num.mean / den.mean
    rel = math.hypot(num.se / num.mean if num.mean else 0.0, den.se / den.mean)
    return f, abs(f) * rel


def run_search(
    run_dir: str | Path,
    episodes: int = 16,
    max_episode_steps: int | None = None,
    seed: int = 4242,
    greedy: bool = False,
    random_restarts: int = 2,
    regret_steps: int = 0,
    plateau_every: int = 0,
) -> dict[str, Any]:
    """The search report as a JSON-able dict (see the module docstring)."""
    cfg, state = load_run(Path(run_dir))
    torch.set_num_threads(cfg.actor.threads)
    env = eval_env(cfg, episodes, max_episode_steps, seed)
    nets = build_networks(env_spec(env), cfg.model)
    for role, net in nets.items():
        net.load_state_dict(state["nets"][role])
        net.eval()
    prices = [float(p) for p in cfg.env.prices]
    k = env.num_queries

    def play(source: str, table: np.ndarray | None = None) -> np.ndarray:
        return play_first_episodes(
            env, nets, source, table, max_steps=10**7, seed=seed, sample_followers=not greedy
        )

    evaluated = [0]

    def evaluate(schedule: Schedule) -> Estimate:
        t0 = time.monotonic()
        est = revenue_estimate(play("table", np.asarray(schedule, np.int64)))
        evaluated[0] += 1
        log.info(
            "search: schedule %d %s revenue %.2f ± %.2f (%.0f s)",
            evaluated[0],
            [prices[a] for a in schedule],
            est.mean,
            est.se,
            time.monotonic() - t0,
        )
        return est

    learned = tuple(int(a) for a in greedy_answers(env, nets[LEADER]))
    constants = [tuple([j] * k) for j in range(len(prices))]
    res = coordinate_search(
        evaluate, k, len(prices), starts=[learned, *constants], random_restarts=random_restarts, seed=seed
    )
    led = revenue_estimate(play("policy"))
    frac, frac_se = fraction(led, res.best_estimate)
    best_const = max(constants, key=lambda s: res.cache[s].mean)
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "game": cfg.env.name,
        "episodes_per_schedule": episodes,
        "followers_act": "greedy" if greedy else "sampled",
        "max_episode_steps": env.base.max_episode_steps,
        "prices": prices,
        "best_schedule": [prices[a] for a in res.best],
        "best_revenue": res.best_estimate.mean,
        "best_revenue_se": res.best_estimate.se,
        "learned_schedule": [prices[a] for a in learned],
        "learned_schedule_revenue": res.cache[learned].mean,
        "learned_schedule_revenue_se": res.cache[learned].se,
        "leader_revenue": led.mean,
        "leader_revenue_se": led.se,
        "leader_fraction_of_best": frac,
        "leader_fraction_of_best_se": frac_se,
        "best_constant_schedule": [prices[a] for a in best_const],
        "best_constant_revenue": res.cache[best_const].mean,
        "best_constant_revenue_se": res.cache[best_const].se,
        "schedules_evaluated": res.evaluations,
        "restarts": [
            {**t, "start": [prices[a] for a in t["start"]], "end": [prices[a] for a in t["end"]]}
            for t in res.restarts
        ],
    }
    if regret_steps > 0:
        best = np.asarray(res.best, np.int64)

        def scratch_return(fresh: dict[str, Any]) -> float:
            r = rollout(
                env, {**fresh, LEADER: nets[LEADER]}, "table", best, follower_context=False, seed=seed
            )
            return float(np.mean(r.follower_returns))

        plateau = Plateau(plateau_every) if plateau_every > 0 else None
        scratch_nets, info = train_scratch_followers(
            cfg, best, regret_steps, max_episode_steps, plateau=plateau, evaluate=scratch_return
        )
        scratch = rollout(
            env, {**scratch_nets, LEADER: nets[LEADER]}, "table", best, follower_context=False, seed=seed
        )
        contextual = rollout(env, nets, "table", best, follower_context=True, seed=seed)
        regrets = [s - c for s, c in zip(scratch.follower_returns, contextual.follower_returns)]
        report.update(
            {
                "regret_steps": regret_steps,
                "scratch_training": info,
                "best_schedule_follower_regret": regrets,
            }
        )
    env.close()
    return report


def format_search(r: dict[str, Any]) -> str:
    def pm(key: str) -> str:
        return f"{r[key]:.2f} ± {r[key + '_se']:.2f}"

    lines = [
        f"schedule search ({r['episodes_per_schedule']} episodes per schedule, {r['followers_act']} followers, "
        f"{r['schedules_evaluated']} schedules evaluated; ± one standard error):",
        f"  best schedule found   {r['best_schedule']}: revenue {pm('best_revenue')}",
        f"  best constant         {r['best_constant_schedule']}: revenue {pm('best_constant_revenue')}",
        f"  learned schedule      {r['learned_schedule']}: revenue {pm('learned_schedule_revenue')} "
        f"(as a table)",
        f"  learned leader        revenue {pm('leader_revenue')} = {r['leader_fraction_of_best']:.3f} ± "
        f"{r['leader_fraction_of_best_se']:.3f} of the best schedule",
    ]
    for t in r["restarts"]:
        lines.append(f"  restart from {t['start']} -> {t['end']} ({t['mean']:.2f}, {t['sweeps']} sweeps)")
    if "best_schedule_follower_regret" in r:
        regrets = ", ".join(f"{x:+.1f}" for x in r["best_schedule_follower_regret"])
        lines.append(
            f"  follower regret on the best schedule (scratch, {r['regret_steps']:,} steps): {regrets}"
        )
    return "\n".join(lines)
