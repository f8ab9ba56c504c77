"""An evolution-strategies leader over the extended episode (`stackrl ablation es-leader`).

The paper's construction (Theorem 1) needs no property of the leader's learner: any algorithm that
maximises its return over the extended episode (query phase, then play) finds a Stackelberg
equilibrium when the followers best-respond to the answers. The reference implementation shows it
with RLlib's ES, which needs no gradient of the leader's policy. This module does the same with
OpenAI-style ES (Salimans et al. 2017): a deterministic tabular leader, logits theta [obs, actions]
played greedily; each iteration perturbs theta with antithetic Gaussian noise, plays one extended
episode per perturbation, and moves theta along the rank-weighted noise.

Queries follow the reference (no commitment): with *hidden* queries a query observation is the
play observation, so the leader's answers are what it plays; with *observed* queries the query
flag is part of its observation (`obs + S` as in `envs/query_phase.py`), so it has separate
logits for answering and for playing and can answer one table while playing another.

The follower answers the queries as an oracle: `exact` (the leader-favoured best response to the
answers, by enumeration, as the reference's exact follower) or `contextual` (a follower network
pretrained on random leaders by the meta preset's pretraining phase, acting greedily on the
answers). Either way it conditions on the answers only, never on the leader's parameters or play
table. Every play step of every perturbation counts towards the env-step budget.

Reported: `leader_value`, the greedy leader's return against the oracle it trained with, and
`leader_value_vs_best_response`, what its play table earns against a follower that best-responds
to that play table (no deception possible). A leader_value above the exact value means the leader
deceived its follower.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stackrl.experiments.tabular_game import TabularGame, env_fields


@dataclass(frozen=True)
class ESConfig:
    """OpenAI-ES hyperparameters for the tabular leader."""

    population: int = 32
    """Perturbations per iteration (antithetic pairs: population / 2 noise draws)."""
    sigma: float = 0.5
    """Noise scale on the logits."""
    lr: float = 0.2
    init_scale: float = 0.1
    """Initial logits ~ N(0, init_scale^2): a random start, as a freshly initialised policy."""
    eval_every: int = 5


def split_tables(theta: np.ndarray, states: int) -> tuple[np.ndarray, np.ndarray]:
    """(answers [..., S], play [..., S]) of greedy logits theta [..., obs, A]: with hidden queries
    (obs == S) they are the same table; with observed queries (obs == 2S) the answers are read on
    the flagged observations s + S and play on the unflagged ones."""
    greedy = theta.argmax(axis=-1)
    if theta.shape[-2] == states:
        return greedy, greedy
    return greedy[..., states:], greedy[..., :states]


def exact_responses(g: TabularGame) -> np.ndarray:
    """[N_L] the follower policy (column index) the exact oracle plays against each answer table."""
    out: np.ndarray = g.br
    return out


@torch.no_grad()
def contextual_responses(g: TabularGame, follower: torch.nn.Module) -> np.ndarray:
    """[N_L] the follower policy (column index) a contextual follower network plays, greedily,
    given each answer table as its context (one batched forward pass over every table and state)."""
    n = len(g.lp)
    obs = torch.arange(g.s_f).repeat(n)  # [N * S_F]
    ctx = torch.as_tensor(np.repeat(g.lp, g.s_f, axis=0))  # [N * S_F, K]
    logits, _ = follower(obs, ctx)
    tables = logits.argmax(-1).numpy().reshape(n, g.s_f)
    out: np.ndarray = g.f_index(tables)
    return out


def run_es_leader(
    game: str,
    queries: str,
    responses: np.ndarray,
    oracle: str,
    budget: int = 200_000,
    seed: int = 0,
    es: ESConfig = ESConfig(),
) -> dict:
    """Train the ES leader for `budget` play steps against the follower `responses` ([N_L] follower
    policy per answer table); returns a result.json-like dict."""
    if queries not in ("hidden", "observed"):
        raise ValueError(f"queries must be 'hidden' or 'observed', got {queries!r}")
    g = TabularGame(game)
    rng = np.random.default_rng(seed)
    n_obs = g.s if queries == "hidden" else 2 * g.s
    theta = es.init_scale * rng.standard_normal((n_obs, g.n_l))
    half = es.population // 2

    def value(thetas: np.ndarray) -> np.ndarray:
        answers, play = split_tables(thetas, g.s)
        out: np.ndarray = g.v_l[g.index(play), responses[g.index(answers)]]
        return out

    steps, it = 0, 0
    history: list[dict] = []

    def record() -> None:
        answers, play = split_tables(theta, g.s)
        v = float(value(theta[None])[0])
        history.append(
            {
                "env_steps": steps,
                "leader_value": v,
                "gap": g.exact - v,
                "leader_answers": answers.tolist(),
                "leader_play": play.tolist(),
            }
        )

    record()
    while steps + es.population * g.length <= budget:
        noise = rng.standard_normal((half, *theta.shape))
        noise = np.concatenate([noise, -noise])  # antithetic pairs
        returns = value(theta[None] + es.sigma * noise)
        ranks = np.empty(len(returns))
        ranks[np.argsort(returns, kind="stable")] = np.arange(len(returns))
        fitness = ranks / (len(returns) - 1) - 0.5  # centred ranks: invariant to the payoff scale
        theta += es.lr / (len(returns) * es.sigma) * np.tensordot(fitness, noise, axes=1)
        steps += es.population * g.length
        it += 1
        if it % es.eval_every == 0:
            record()
    if history[-1]["env_steps"] != steps:
        record()
    final = history[-1]
    return {
        "name": f"{game}_es_{queries}_{oracle}_s{seed}",
        "game": game,
        "method": f"es_{queries}_{oracle}",
        "seed": seed,
        "leader_value": final["leader_value"],
        "exact_value": g.exact,
        "gap": g.exact - final["leader_value"],
        "leader_answers": final["leader_answers"],
        "leader_play": final["leader_play"],
        "leader_value_vs_best_response": float(g.value[int(g.index(np.asarray(final["leader_play"])))]),
        "env_steps": {"total": steps},
        "eval_history": history,
    }


def pretrained_follower(game: str, seed: int, run_dir: Path) -> torch.nn.Module:
    """The meta preset's contextual follower for `game`, pretrained on random leaders (its
    pretraining phase only), or loaded from `run_dir` if a finished pretraining is there."""
    from stackrl.envs.base import follower_role
    from stackrl.envs.factory import env_spec, make_stackelberg_env
    from stackrl.learner.checkpoint import load_checkpoint
    from stackrl.learner.models import build_networks
    from stackrl.runners.presets import build_config
    from stackrl.runners.serial import run_serial

    fields = {
        "env": env_fields(game),
        "seed": seed,
        "name": run_dir.name,
        "run_root": str(run_dir.parent),
        "actor": {"num_actors": 1},
    }
    cfg = build_config("matrix", method="meta", fields=fields)
    pretrain = [p for p in cfg.schedule.phases if p.kind == "pretrain"]
    data = cfg.to_dict()
    data["schedule"]["phases"] = [{"kind": "pretrain", "env_steps": sum(p.env_steps for p in pretrain)}]
    cfg = type(cfg).from_dict(data)
    ckpt = run_dir / "checkpoint.pt"
    if not (run_dir / "result.json").exists() or not ckpt.exists():
        run_serial(cfg, run_dir, progress=False)
    state = load_checkpoint(ckpt)
    env = make_stackelberg_env(dataclasses.replace(cfg.env, num_games=1), seed=0)
    nets = build_networks(env_spec(env), cfg.model)
    env.close()
    role = follower_role(0)
    nets[role].load_state_dict(state["nets"][role])
    return nets[role].eval()
