"""Where the time of an Atari pricing run goes, and how close training gets to the machine's limit:
`stackrl bench atari`.

In one run, each component of the actor-learner loop is measured on its own (before and after the
end-to-end window, averaged), and the real distributed path (1 learner + `actors` actor processes
over gRPC on 127.0.0.1):

  raw env           random actions on the base game (no networks), in `actors` processes at once,
                    each with the preset's `env.num_games` and `env.num_threads` (the actors' layout)
  actor inference   every follower network's forward pass + action sampling at the actor batch
                    (`env.num_games` observations, uint8 frames + context), `actor.threads` threads
  learner           the real `actor_critic_loss` + backward + Adam step at the learner batch
                    (`batch_trajectories` unrolls of T x B), `learner.threads` threads
  end to end        env steps consumed by the learner per wall second in an endless `pretrain`
                    phase, measured over a window after a warm-up (`deploy/bench_throughput.measure`)

Units. An *agent step* is one play step of one game: the unit of the schedule's budgets and of the
end-to-end rate. In the two-player game an agent step holds P = 2 follower decisions, each needing
one forward pass on the actor and one sample in the learner.

Costs are CPU seconds (user + system of the measuring process and all its threads, from /proc), not
wall seconds, so that other work on a shared machine inflates the wall-clock rates but not the
costs the limit is built from:

  cost per agent step  c = 1/env + P/inference + P/learner      [CPU-seconds; rates per CPU-second]
  compute-bound limit  L = cores / c                              [agent steps per wall second]
  ratio                  = end-to-end / L
  CPU efficiency         = c / (CPU-seconds the learner and actors spent per agent step end to end)

On a shared machine (load average above the core count) the run gets less than `cores` cores and
the wall-clock ratio says more about the neighbours than about stackrl; the CPU efficiency is the
same ratio computed on the cores the run actually got (both are printed, with the load average).

The limit assumes perfect overlap and no transport, copying or Python bookkeeping; ratio < 1 is
what the distributed machinery (trajectory copies, gRPC encode/decode of uint8 frames, the
Stackelberg layer, queueing) and the contention with other processes cost.

How `price_scale` in the presets was chosen: random play with a fixed share of FIRE actions
(`fire_economics` below; `python -m stackrl.experiments.bench_atari --economics`).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.runners.presets import build_config

_ENDLESS = 10**12


def load_config(env: str, overrides: tuple[str, ...] = ()) -> ExperimentConfig:
    return build_config(env, overrides=overrides)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# -- raw env ----------------------------------------------------------------------------------------
def _env_worker(env_yaml: str, seed: int, seconds: float, out: mp.Queue) -> None:
    from stackrl.envs.atari_pricing import make_atari_pricing
    from stackrl.envs.base import LEADER

    cfg = ExperimentConfig.from_yaml(env_yaml)
    env = make_atari_pricing(cfg.env, seed)
    b = env.num_games
    rng = np.random.default_rng(seed)
    env.reset(seed)
    n_actions = {r: env.action_spaces[r].n for r in env.roles}
    for _ in range(20):  # warm-up
        env.step({r: rng.integers(0, n_actions[r], b) for r in env.roles})
    steps, c0, t0 = 0, _cpu_seconds(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        actions = {r: rng.integers(0, n_actions[r], b) for r in env.roles}
        actions[LEADER] = rng.integers(0, n_actions[LEADER], b)
        env.step(actions)
        steps += b
    out.put((steps, time.perf_counter() - t0, _cpu_seconds() - c0))
    env.close()


def measure_raw_env(cfg: ExperimentConfig, seconds: float, processes: int) -> dict:
    """`processes` processes step their games with random actions at once; agent steps/s in total
    (wall) and per CPU-second."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_env_worker, args=(cfg.to_yaml(), cfg.seed + i, seconds, out))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    rows = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    steps = sum(r[0] for r in rows)
    wall = max(r[1] for r in rows)
    cpu = sum(r[2] for r in rows)
    return {"steps_per_s": steps / wall, "per_cpu_s": steps / max(cpu, 1e-9)}


# -- networks ---------------------------------------------------------------------------------------
def _spec_and_nets(cfg: ExperimentConfig):
    from stackrl.envs.factory import env_spec, make_stackelberg_env
    from stackrl.learner.models import build_networks

    env = make_stackelberg_env(dataclasses.replace(cfg.env, num_games=1, num_threads=1), seed=cfg.seed)
    spec = env_spec(env)
    env.close()
    return spec, build_networks(spec, cfg.model)


def measure_inference(cfg: ExperimentConfig, seconds: float) -> dict:
    """One follower network's acting cost at the actor batch: forward + sampling, no_grad."""
    import torch
    from stackrl.actors.actor import sample_actions
    from stackrl.learner.models import precision_autocast, resolve_precision

    spec, nets = _spec_and_nets(cfg)
    role = spec.roles[1]
    net = nets[role].eval()
    b = cfg.env.num_games
    shape = tuple(spec.observation_spaces[role].shape)
    k = spec.context_size(role)
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.integers(0, 256, (b, *shape), dtype=np.uint8))
    ctx = torch.from_numpy(rng.integers(0, spec.leader_actions, (b, k)).astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    precision = resolve_precision(cfg.actor.precision, torch.device("cpu"), "actor.precision")
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.actor.threads)

    def act_unroll() -> None:  # as Actor.unroll does it: T steps in one autocast context
        with precision_autocast("cpu", precision):
            for _ in range(cfg.actor.unroll_length):
                sample_actions(net(obs, ctx)[0].float(), gen)

    try:
        with torch.no_grad():
            act_unroll()
            n, c0, t0 = 0, _cpu_seconds(), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                act_unroll()
                n += b * cfg.actor.unroll_length
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    finally:
        torch.set_num_threads(previous)
    return {"samples_per_s": n / wall, "per_cpu_s": n / max(cpu, 1e-9), "batch": b, "precision": precision}


def learner_batch(cfg: ExperimentConfig, spec, role: str) -> dict[str, np.ndarray]:
    """Random trajectory arrays of one update's shape: [T+1, B * batch_trajectories, ...]."""
    from stackrl.trajectory import TrajectorySpec

    t = cfg.actor.unroll_length
    b = cfg.env.num_games * cfg.learner.batch_trajectories
    ts = TrajectorySpec(
        unroll_length=t,
        num_games=b,
        obs_shape=tuple(spec.observation_spaces[role].shape),
        obs_dtype=spec.observation_spaces[role].dtype,
        context_size=spec.context_size(role),
    )
    arrays = ts.allocate()
    rng = np.random.default_rng(0)
    arrays["obs"][:] = rng.integers(0, 256, arrays["obs"].shape, dtype=np.uint8)
    arrays["context"][:] = rng.integers(0, spec.leader_actions, arrays["context"].shape)
    arrays["actions"][:] = rng.integers(0, spec.action_spaces[role].n, arrays["actions"].shape)
    arrays["logp"][:] = -np.log(spec.action_spaces[role].n)
    arrays["rewards"][:] = rng.random(arrays["rewards"].shape) < 0.05
    arrays["valid"][:] = True
    arrays["elapsed"][:] = np.arange(t + 1)[:, None]
    return arrays


def measure_learner(cfg: ExperimentConfig, seconds: float) -> dict:
    """One follower update as the learner does it: `actor_critic_loss`, backward, clip, Adam."""
    import torch
    from stackrl.learner.models import resolve_precision
    from stackrl.learner.update import actor_critic_loss

    spec, nets = _spec_and_nets(cfg)
    role = spec.roles[1]
    net = nets[role].train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learner.lr_follower)
    tensors = {k: torch.as_tensor(v) for k, v in learner_batch(cfg, spec, role).items()}
    samples = tensors["actions"].numel()
    # `auto` resolved as the learner's UpdateStep does (the loss reads the resolved value).
    precision = resolve_precision(cfg.learner.precision, torch.device("cpu"), "learner.precision")
    lc = dataclasses.replace(cfg.learner, precision=precision)
    previous = torch.get_num_threads()
    # auto (0) is decided by the run's launcher from its actors' load; measured alone here, the
    # learner takes 1 thread, where its cost per CPU-second (what the limit is built from) is lowest.
    torch.set_num_threads(lc.threads or 1)

    def update() -> None:
        for _ in range(lc.epochs):
            loss, _ = actor_critic_loss(
                net, tensors, lc, entropy_cost=lc.entropy_follower, value_on_all_steps=False
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), lc.max_grad_norm)
            opt.step()

    try:
        update()
        n, c0, t0 = 0, _cpu_seconds(), time.perf_counter()
        while time.perf_counter() - t0 < seconds or n == 0:
            update()
            n += samples
        wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    finally:
        torch.set_num_threads(previous)
    return {
        "samples_per_s": n / wall,
        "per_cpu_s": n / max(cpu, 1e-9),
        "batch": samples,
        "precision": precision,
    }


# -- end to end -------------------------------------------------------------------------------------
def measure_end_to_end(env: str, actors: int, seconds: float, warmup: float, overrides: tuple[str, ...]):
    from stackrl.experiments.bench_throughput import bench_config, measure

    extra = (
        "schedule.eval_interval_updates=1000000000",
        "schedule.checkpoint_interval_s=1000000",
        *overrides,
    )
    cfg = bench_config(env, actors, "pretrain", extra)
    return measure(cfg, seconds, warmup)


# -- the benchmark ----------------------------------------------------------------------------------
@dataclass
class AtariBench:
    env: str
    cores: int
    followers: int
    actors: int
    actor_batch: int
    learner_batch: int
    actor_precision: str  # what `actor.precision` / `learner.precision` resolved to on this machine
    learner_precision: str
    raw_env_steps_per_s: float
    raw_env_steps_per_cpu_s: float
    actor_inference_per_s: float
    actor_inference_per_cpu_s: float
    learner_samples_per_s: float
    learner_samples_per_cpu_s: float
    cpu_seconds_per_step: float
    limit_steps_per_s: float
    end_to_end_steps_per_s: float
    ratio: float
    end_to_end_cpu_seconds_per_step: float
    cpu_efficiency: float
    end_to_end_seconds: float
    learner_cpu: float
    learner_wait: float
    actor_cpu: list[float]
    actor_wait: list[float]
    mean_policy_lag: float
    bytes_per_env_step: float
    load_average_start: float
    load_average_end: float
    formula: str


def run_atari_benchmark(
    env: str = "space_invaders_pricing",
    seconds: float = 20.0,
    warmup: float = 10.0,
    actors: int | None = None,
    json_path: str | None = None,
    overrides: tuple[str, ...] = (),
) -> AtariBench:
    load0 = os.getloadavg()[0]
    cfg = load_config(env, overrides)
    n_actors = actors or cfg.actor.num_actors
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    p = len(_spec_and_nets(cfg)[0].roles) - 1
    # Components are measured before and after the end-to-end window and averaged, so that the
    # limit and the end-to-end rate see the same (possibly drifting) machine.
    component_s = max(1.0, seconds / 4)

    def components() -> tuple[dict, dict, dict]:
        return (
            measure_raw_env(cfg, component_s, n_actors),
            measure_inference(cfg, component_s),
            measure_learner(cfg, component_s),
        )

    before = components()
    e2e = measure_end_to_end(env, n_actors, seconds, warmup, overrides)
    after = components()
    raw, inf, lrn = (
        {k: (a[k] + b[k]) / 2 if k not in ("batch", "precision") else a[k] for k in a}
        for a, b in zip(before, after)
    )
    cost = 1.0 / raw["per_cpu_s"] + p / inf["per_cpu_s"] + p / lrn["per_cpu_s"]
    limit = cores / cost
    e2e_cpu = e2e.learner_cpu + sum(e2e.actor_cpu)  # cores the run actually got
    e2e_cost = e2e_cpu / max(e2e.env_steps_per_s, 1e-9)
    res = AtariBench(
        env=env,
        cores=cores,
        followers=p,
        actors=n_actors,
        actor_batch=inf["batch"],
        learner_batch=lrn["batch"],
        actor_precision=inf["precision"],
        learner_precision=lrn["precision"],
        raw_env_steps_per_s=raw["steps_per_s"],
        raw_env_steps_per_cpu_s=raw["per_cpu_s"],
        actor_inference_per_s=inf["samples_per_s"],
        actor_inference_per_cpu_s=inf["per_cpu_s"],
        learner_samples_per_s=lrn["samples_per_s"],
        learner_samples_per_cpu_s=lrn["per_cpu_s"],
        cpu_seconds_per_step=cost,
        limit_steps_per_s=limit,
        end_to_end_steps_per_s=e2e.env_steps_per_s,
        ratio=e2e.env_steps_per_s / limit,
        end_to_end_cpu_seconds_per_step=e2e_cost,
        cpu_efficiency=cost / e2e_cost,
        end_to_end_seconds=e2e.seconds,
        learner_cpu=e2e.learner_cpu,
        learner_wait=e2e.learner_wait,
        actor_cpu=e2e.actor_cpu,
        actor_wait=e2e.actor_wait,
        mean_policy_lag=e2e.mean_policy_lag,
        bytes_per_env_step=e2e.bytes_per_env_step,
        load_average_start=load0,
        load_average_end=os.getloadavg()[0],
        formula=(
            f"limit = cores / (1/env + P/inference + P/learner) = {cores} / "
            f"(1/{raw['per_cpu_s']:.0f} + {p}/{inf['per_cpu_s']:.0f} + {p}/{lrn['per_cpu_s']:.0f}) "
            f"= {limit:.0f} agent steps/s  (rates per CPU-second, P = {p} followers)"
        ),
    )
    print(format_report(res))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(asdict(res), f, indent=2)
    return res


def format_report(r: AtariBench) -> str:
    rows = [
        ("raw env (agent steps)", r.raw_env_steps_per_s, r.raw_env_steps_per_cpu_s, f"{r.actors} processes"),
        (
            "actor inference (samples)",
            r.actor_inference_per_s,
            r.actor_inference_per_cpu_s,
            f"batch {r.actor_batch}, {r.actor_precision}",
        ),
        (
            "learner fwd+bwd+Adam (samples)",
            r.learner_samples_per_s,
            r.learner_samples_per_cpu_s,
            f"batch {r.learner_batch}, {r.learner_precision}",
        ),
    ]
    lines = [
        f"stackrl bench atari: env={r.env} cores={r.cores} followers P={r.followers} actors={r.actors} "
        f"load average {r.load_average_start:.2f} -> {r.load_average_end:.2f}",
        f"{'component':32s} {'per wall s':>11s} {'per CPU s':>10s}  layout",
    ]
    for name, wall, cpu, how in rows:
        lines.append(f"{name:32s} {wall:>11,.0f} {cpu:>10,.0f}  {how}")
    lines += [
        f"CPU cost per agent step c = 1/env + P/inference + P/learner = {r.cpu_seconds_per_step * 1e3:.3f} ms",
        r.formula,
        f"end-to-end (1 learner + {r.actors} actors, gRPC, {r.end_to_end_seconds:.0f}s window): "
        f"{r.end_to_end_steps_per_s:,.0f} agent steps/s",
        f"  learner cpu/wait {r.learner_cpu:.2f}/{r.learner_wait:.2f}  actors cpu/wait "
        + " ".join(f"{c:.2f}/{w:.2f}" for c, w in zip(r.actor_cpu, r.actor_wait))
        + f"  policy lag {r.mean_policy_lag:.2f}  bytes/step {r.bytes_per_env_step:,.0f}",
        f"ratio end-to-end / limit = {r.ratio:.2f}",
        f"CPU efficiency = c / (CPU-seconds the run spent per agent step = {r.end_to_end_cpu_seconds_per_step * 1e3:.3f} ms)"
        f" = {r.cpu_efficiency:.2f}  (the ratio the run would reach if it had the {r.cores} cores to itself)",
    ]
    return "\n".join(lines)


# -- price economics (how price_scale was chosen) -----------------------------------------------------
def fire_economics(env: str, fire_share: float, steps: int = 1500, seed: int = 0) -> dict:
    """Random play where each follower picks a FIRE action with probability `fire_share`; game
    points per step and per FIRE action, at price 0."""

    from stackrl.envs.atari_pricing import make_atari_pricing
    from stackrl.envs.base import LEADER

    cfg = load_config(env)
    game = make_atari_pricing(dataclasses.replace(cfg.env, price_scale=0.0), seed)
    b = game.num_games
    rng = np.random.default_rng(seed)
    fire_ids, other_ids = np.flatnonzero(game.fire_actions), np.flatnonzero(~game.fire_actions)
    game.reset(seed)
    points: float = 0
    fires = n = 0
    for _ in range(steps):
        actions = {LEADER: np.zeros(b, np.int64)}
        for f in game.followers:
            actions[f] = np.where(
                rng.random(b) < fire_share, rng.choice(fire_ids, b), rng.choice(other_ids, b)
            )
        res = game.step(actions)
        for f in game.followers:
            points += float(res.info[f"points_{f}"].sum())
            fires += int(res.info[f"fire_{f}"].sum())
            n += b
    game.close()
    return {
        "fire_share": fire_share,
        "points_per_step": points / n,
        "points_per_fire": points / max(fires, 1),
    }


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="space_invaders_pricing")
    ap.add_argument("--economics", action="store_true")
    a = ap.parse_args()
    if a.economics:
        for share in (0.1, 0.5, 0.9):
            print(fire_economics(a.env, share))
