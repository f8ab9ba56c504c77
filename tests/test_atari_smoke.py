"""Atari pricing games end to end: learner + actor processes over gRPC on tiny budgets (issue 4).

CI part (~1 minute on 2 cores): for both games a few hundred agent steps through `run_local`,
result.json, revenue accounting on a direct rollout, and (2p) that both followers learn from their
own trajectories. The longer behaviour run is marked slow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("envpool")
pytest.importorskip("multi_agent_ale_py")

from stackrl.config import ExperimentConfig  # noqa: E402
from stackrl.envs.atari_pricing import make_atari_pricing  # noqa: E402
from stackrl.envs.base import LEADER  # noqa: E402
from stackrl.envs.factory import env_spec, make_stackelberg_env  # noqa: E402
from stackrl.learner.checkpoint import load_checkpoint  # noqa: E402
from stackrl.learner.models import build_networks  # noqa: E402
from stackrl.runners.presets import build_config  # noqa: E402

GAMES = ["space_invaders_pricing", "space_invaders_pricing_2p"]


def tiny_config(game: str, run_root, phases: list[dict], **extra: str) -> ExperimentConfig:
    overrides = {
        "name": f"smoke_{game}",
        "run_root": str(run_root),
        "env.num_games": 2,
        "env.num_threads": 1,
        "env.max_episode_steps": 60,
        "actor.num_actors": 1,
        "actor.unroll_length": 20,
        "learner.batch_trajectories": 1,
        "learner.queue_size": 4,
        "schedule.eval_interval_updates": 10**6,
        **extra,
    }
    return build_config(
        game, fields={"schedule": {"phases": phases}}, overrides=[f"{k}={v}" for k, v in overrides.items()]
    )


def initial_weights(cfg: ExperimentConfig) -> dict[str, dict[str, torch.Tensor]]:
    """The learner's networks before training (it seeds torch with cfg.seed, then builds them)."""
    env = make_stackelberg_env(cfg.env, seed=0)
    spec = env_spec(env)
    env.close()
    torch.manual_seed(cfg.seed)
    return {r: n.state_dict() for r, n in build_networks(spec, cfg.model).items()}


@pytest.mark.parametrize("game", GAMES)
def test_revenue_is_sum_of_prices_paid(game):
    """Leader reward == sum over followers of price_scale * price * [FIRE]; follower reward ==
    points - its own payment; on a direct rollout with random prices and actions."""
    cfg = tiny_config(game, "runs", [{"kind": "pretrain", "env_steps": 1}], **{"env.price_scale": 1.5})
    env = make_atari_pricing(cfg.env, seed=3)
    rng = np.random.default_rng(0)
    env.reset(seed=3)
    b = env.num_games
    revenue = paid = 0.0
    fired_any = False
    for _ in range(80):
        actions = {r: rng.integers(0, env.action_spaces[r].n, b) for r in env.roles}
        res = env.step(actions)
        price = res.info["price"]
        np.testing.assert_allclose(price, np.asarray(cfg.env.prices, np.float32)[actions[LEADER]])
        pay = {f: 1.5 * price * res.info[f"fire_{f}"] for f in env.followers}
        for f in env.followers:
            np.testing.assert_array_equal(res.info[f"fire_{f}"], env.fire_actions[actions[f]])
            np.testing.assert_allclose(res.rewards[f], res.info[f"points_{f}"] - pay[f], rtol=1e-6)
            fired_any |= bool(res.info[f"fire_{f}"].any())
        np.testing.assert_allclose(res.rewards[LEADER], sum(pay.values()), rtol=1e-6)
        revenue += float(res.rewards[LEADER].sum())
        paid += float(sum(p.sum() for p in pay.values()))
    env.close()
    assert fired_any and revenue > 0
    assert revenue == pytest.approx(paid, rel=1e-5)


@pytest.mark.parametrize("game", GAMES)
def test_grpc_smoke(game, tmp_path):
    """Pretrain then leader training over gRPC with one actor process: result.json, shapes, and
    every follower updated from its own trajectories (weights changed, update counts > 0)."""
    from stackrl.runners.launch import run_local

    cfg = tiny_config(
        game,
        tmp_path,
        # leader: 200 steps over 2 games ends one 60-step episode per game, and the preset's leader
        # learns from whole episodes (actor.leader_trajectories: episodes)
        [{"kind": "pretrain", "env_steps": 120}, {"kind": "leader", "env_steps": 200}],
    )
    before = initial_weights(cfg)
    result = run_local(cfg, cfg.run_dir, progress=False)
    path = cfg.run_dir / "result.json"
    assert path.exists()
    saved = json.loads(path.read_text())
    followers = [f"follower_{i}" for i in range(2 if game.endswith("_2p") else 1)]
    assert saved["game"] == game
    assert len(saved["leader_answers"]) == len(cfg.env.phase_edges)
    assert all(0 <= a < len(cfg.env.prices) for a in saved["leader_answers"])
    fv = saved["follower_value"]
    assert (len(fv) if isinstance(fv, list) else 1) == len(followers)
    assert saved["env_steps"]["total"] >= 320
    assert saved["updates"].get(LEADER, 0) > 0
    state = load_checkpoint(cfg.run_dir / "checkpoint.pt")
    for f in followers:
        assert saved["updates"].get(f, 0) > 0, f"{f} was never updated"
        changed = any(not torch.equal(before[f][k], v) for k, v in state["nets"][f].items())
        assert changed, f"{f}'s weights did not change"
    assert result["transport"]["actor_exit_codes"] == [0]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_follower_fire_rate_falls_with_price(tmp_path, precision):
    """Behaviour (slow): after pretraining, the contextual follower fires less at the top price than
    at price 0, in fp32 and with learner and actors in bf16 (issue 15: bf16 must not change what is
    learned). Budget here is small (a few minutes on 2 cores); see the issue-4 report for longer."""
    from stackrl.experiments.atari_eval import run_eval
    from stackrl.learner.models import bf16_supported
    from stackrl.runners.launch import run_local

    if precision == "bf16" and not bf16_supported(torch.device("cpu")):
        pytest.skip("this CPU has no bf16 instructions: bf16 is refused here (tests/learner/test_update.py)")
    cfg = tiny_config(
        "space_invaders_pricing",
        tmp_path,
        [{"kind": "pretrain", "env_steps": 60000}, {"kind": "leader", "env_steps": 5000}],
        **{
            "env.num_games": 8,
            "env.max_episode_steps": 500,
            "actor.num_actors": 2,
            "learner.batch_trajectories": 2,
            "learner.precision": precision,
            "actor.precision": precision,
        },
    )
    run_local(cfg, cfg.run_dir, progress=False)
    report = run_eval(cfg.run_dir, episodes=4, regret_steps=0, max_episode_steps=500)
    probs = [row["fire_prob"][0] for row in report["per_price"]]
    print(f"{precision}: FIRE probability by price {[round(p, 3) for p in probs]}")
    assert probs[-1] < probs[0]
