"""A query oracle built on learning dynamics: tabular Q-learning followers (docs/design.md §1.1).

For every commitment the leader samples (its answers to the 5 memory-1 queries, which it then plays:
`commit: true`), a fresh tabular Q-learning follower learns from scratch for a block of episodes
against that fixed leader, then plays one greedy episode; the leader's return is that episode's
return. The leader is a tabular memory-1 softmax policy trained by REINFORCE on its sampled
commitments, the same update as the `query` leader of `experiments/divergence.py`, so that the
`exact` oracle (enumerated strong best response) is the direct comparison. Every base-game step the
followers take while learning counts towards the env-step budget.

Followers maximise r_F + eps * r_L with eps below `max_tie_break_weight` (ties go the leader's way,
strong Stackelberg), discount `gamma`, epsilon-greedy exploration annealed over the block. The
leader is evaluated as everywhere else: greedy leader vs a strongly best-responding follower.
"""

from __future__ import annotations

import numpy as np
from stackrl.envs.solver import max_tie_break_weight
from stackrl.experiments.tabular_game import TabularGame, softmax


def q_learning_responses(
    g: TabularGame,
    tables: np.ndarray,
    episodes: int,
    rng: np.random.Generator,
    gamma: float = 0.9,
    alpha: float = 0.3,
    tie_eps: float = 0.0,
) -> np.ndarray:
    """[B, S] greedy follower tables after `episodes` of Q-learning against each fixed leader table."""
    b = tables.shape[0]
    q = np.zeros((b, g.s, g.n_f))
    rows = np.arange(b)
    for ep in range(episodes):
        explore = max(0.05, 1.0 - ep / max(1, 0.7 * episodes))
        state = np.zeros(b, np.int64)
        for _ in range(g.length):
            greedy = q[rows, state].argmax(axis=1)
            rand = rng.integers(0, g.n_f, b)
            a_f = np.where(rng.random(b) < explore, rand, greedy)
            a_l = tables[rows, state]
            r = g.payoffs[a_l, a_f, 1] + tie_eps * g.payoffs[a_l, a_f, 0]
            nxt = 1 + a_l + g.n_l * a_f
            boot = gamma * q[rows, nxt].max(axis=1)  # the 10-step limit is a time-out: always bootstrap
            q[rows, state, a_f] += alpha * (r + boot - q[rows, state, a_f])
            state = nxt
    return q.argmax(axis=2)


def _play(g: TabularGame, l_tables: np.ndarray, f_tables: np.ndarray) -> np.ndarray:
    rows = np.arange(l_tables.shape[0])
    state = np.zeros(len(rows), np.int64)
    ret = np.zeros(len(rows))
    for _ in range(g.length):
        a_l, a_f = l_tables[rows, state], f_tables[rows, state]
        ret += g.payoffs[a_l, a_f, 0]
        state = 1 + a_l + g.n_l * a_f
    return ret


def run_oracle_leader(
    game: str,
    oracle: str = "q_learning",
    budget: int = 1_000_000,
    seed: int = 0,
    batch: int = 32,
    lr: float = 0.5,
    block_episodes: int = 50,
    eval_every: int = 2,
) -> dict:
    """Train the leader against the given oracle; returns a result.json-like dict."""
    if oracle not in ("q_learning", "exact"):
        raise ValueError(f"oracle must be 'q_learning' or 'exact', got {oracle!r}")
    g = TabularGame(game)
    rng = np.random.default_rng(seed)
    theta = np.zeros((g.s, g.n_l))
    w = max_tie_break_weight(g.payoffs, g.length)
    tie_eps = 0.0 if w == 0 else min(0.01, 0.5 * w)
    per_commitment = g.length * ((block_episodes + 1) if oracle == "q_learning" else 1)
    scale = 1.0 / max(np.abs(g.payoffs).max(), 1e-9) / g.length
    steps, it = 0, 0
    history: list[dict] = []

    def record():
        greedy = theta.argmax(axis=1)
        v = float(g.value[int(g.index(greedy))])
        history.append(
            {"env_steps": steps, "leader_value": v, "gap": g.exact - v, "leader_answers": greedy.tolist()}
        )

    record()
    while steps + batch * per_commitment <= budget:
        probs = softmax(theta)
        u = rng.random((batch, g.s, 1))
        tables = (u > np.cumsum(probs, axis=1)[None]).sum(axis=2).clip(max=g.n_l - 1)
        if oracle == "exact":
            returns = g.value[g.index(tables)]
        else:
            f_tables = q_learning_responses(g, tables, block_episodes, rng, tie_eps=tie_eps)
            returns = _play(g, tables, f_tables)
        adv = (returns - returns.mean()) * scale
        onehot = np.eye(g.n_l)[tables]
        theta += lr * g.length * (adv[:, None, None] * (onehot - probs[None])).mean(axis=0)
        steps += batch * per_commitment
        it += 1
        if it % eval_every == 0:
            record()
    if history[-1]["env_steps"] != steps:
        record()
    final = history[-1]
    steps_to_final = final["env_steps"]
    for point in reversed(history):
        if point["leader_value"] != final["leader_value"]:
            break
        steps_to_final = point["env_steps"]
    return {
        "name": f"{game}_{oracle}_s{seed}",
        "game": game,
        "method": f"oracle_{oracle}",
        "seed": seed,
        "leader_value": final["leader_value"],
        "exact_value": g.exact,
        "gap": g.exact - final["leader_value"],
        "leader_answers": final["leader_answers"],
        "env_steps": {"total": steps},
        "steps_to_final": steps_to_final,
        "eval_history": history,
        "block_episodes": block_episodes,
    }
