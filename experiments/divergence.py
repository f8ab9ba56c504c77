"""Theorem 2 demonstration (docs/design.md §1.4): outside the query framework, an RL leader can fail.

Two leaders with the same tabular memory-1 softmax policy, the same REINFORCE update and the same
budget of base-game env steps, on an iterated matrix game:

- `naive`: NO query phase. Every iteration the follower reads the leader's CURRENT parameters and
  plays the exact (leader-favoured) best response to the leader's current greedy policy, computed
  by enumerating the follower's deterministic memory-1 policies. The leader then plays B episodes,
  sampling its actions step by step, against that fixed follower and takes a policy-gradient step
  on its own play actions. Its gradient treats the follower as part of the environment, so it
  climbs towards a best response to the follower's current policy; the follower then moves. This
  is best-response dynamics: it settles on a non-Stackelberg point or cycles.
- `query`: the construction of Theorem 1 with committed answers (`commit: true`). Per episode the
  leader samples its answers to the 5 queries (one action per memory-1 state: its commitment);
  the follower best-responds exactly to those answers (an exact query oracle); the leader plays
  its commitment. The episode return is therefore a function of the answers, and the policy
  gradient flows through them, so the leader climbs the Stackelberg objective.

Both are evaluated the same way: the leader's greedy policy against a follower that strongly
best-responds to it (the solver's metric), reported as the undiscounted episode sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from stackrl.experiments.tabular_game import TabularGame, softmax


@dataclass
class DivergenceResult:
    method: str
    seed: int
    env_steps: list[int] = field(default_factory=list)
    leader_value: list[float] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        half = self.policies[len(self.policies) // 2 :]
        return {
            "seed": self.seed,
            "final_value": self.leader_value[-1],
            "final_policy": self.policies[-1],
            "distinct_last_half": len(set(half)),
            "env_steps": self.env_steps[-1],
        }


def run_divergence(
    game: str = "prisoners_dilemma",
    method: str = "naive",
    budget: int = 200_000,
    seed: int = 0,
    batch: int = 64,
    lr: float = 0.5,
    eval_every: int = 5,
) -> DivergenceResult:
    """Train one leader for `budget` base-game env steps; returns its deterministic learning curve."""
    if method not in ("naive", "query"):
        raise ValueError(f"method must be 'naive' or 'query', got {method!r}")
    g = TabularGame(game)
    rng = np.random.default_rng(seed)
    theta = np.zeros((g.s, g.n_l))
    res = DivergenceResult(method, seed)
    steps = 0
    it = 0
    scale = 1.0 / max(np.abs(g.payoffs).max(), 1e-9) / g.length

    def record():
        greedy = theta.argmax(axis=1)
        idx = int(g.index(greedy))
        res.env_steps.append(steps)
        res.leader_value.append(float(g.value[idx]))
        res.policies.append("".join(map(str, greedy)))

    record()
    while steps + batch * g.length <= budget:
        probs = softmax(theta)  # [S, n_l]
        grad = np.zeros_like(theta)
        if method == "query":
            # commitments: one sampled answer per query (state); exact oracle best-responds to them
            u = rng.random((batch, g.s, 1))
            tables = (u > np.cumsum(probs, axis=1)[None]).sum(axis=2).clip(max=g.n_l - 1)
            idx = g.index(tables)
            returns = g.value[idx]  # leader's play-phase return vs the best response to its answers
            adv = (returns - returns.mean()) * scale
            onehot = np.eye(g.n_l)[tables]  # [B, S, n_l]
            grad = (adv[:, None, None] * (onehot - probs[None])).mean(axis=0)
        else:
            # the follower reads the leader's current greedy policy and best-responds exactly
            f_table = g.fp[g.br[int(g.index(theta.argmax(axis=1)))]]
            state = np.zeros(batch, np.int64)
            ret = np.zeros(batch)
            counts = np.zeros((batch, g.s, g.n_l))  # sum over steps of grad log pi
            for _ in range(g.length):
                p = probs[state]
                a_l = (rng.random((batch, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(max=g.n_l - 1)
                a_f = f_table[state]
                ret += g.payoffs[a_l, a_f, 0]
                counts[np.arange(batch), state] += np.eye(g.n_l)[a_l] - p
                state = 1 + a_l + g.n_l * a_f
            adv = (ret - ret.mean()) * scale
            grad = (adv[:, None, None] * counts).mean(axis=0)
        theta += lr * grad * g.length
        steps += batch * g.length
        it += 1
        if it % eval_every == 0:
            record()
    if res.env_steps[-1] != steps:
        record()
    return res


def exact_value(game: str) -> float:
    return TabularGame(game).exact


LABELS = {
    "query": "query oracle (Theorem 1, committed answers)",
    "naive": "naive: follower best-responds to current parameters (no queries)",
}


def run_demo(game: str, budget: int, seeds: list[int], run_root: str, command: str, **kw) -> dict:
    """Both methods x seeds over the same budget; writes <run_root>/<game>/divergence.json."""
    import json
    from pathlib import Path

    curves: dict[str, list[dict]] = {"query": [], "naive": []}
    summary: dict[str, list[dict]] = {"query": [], "naive": []}
    for method in ("query", "naive"):
        for seed in seeds:
            r = run_divergence(game, method, budget, seed, **kw)
            curves[method].append(
                {
                    "seed": seed,
                    "env_steps": r.env_steps,
                    "leader_value": r.leader_value,
                    "policies": r.policies,
                }
            )
            summary[method].append(r.summary())
    out = {
        "game": game,
        "budget": budget,
        "exact_value": exact_value(game),
        "command": command,
        "labels": LABELS,
        "description": (
            "Same tabular memory-1 softmax leader, same REINFORCE update and the same budget of base-game "
            "env steps. The naive follower best-responds exactly to the leader's current greedy policy "
            "(read from its parameters, no query phase); the query-based follower best-responds exactly "
            "to the leader's sampled answers to the 5 queries, which the leader then plays. Values: "
            "greedy leader vs a strongly best-responding follower."
        ),
        "curves": curves,
        "summary": summary,
    }
    d = Path(run_root) / game
    d.mkdir(parents=True, exist_ok=True)
    (d / "divergence.json").write_text(json.dumps(out, indent=1))
    out["_dir"] = str(d)
    return out
