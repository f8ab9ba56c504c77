"""A query oracle built on learning dynamics: tabular Q-learning followers (docs/design.md §1.1).

For every commitment the leader samples (its answers to the 5 memory-1 queries, which it then plays:
`commit: true`), a fresh tabular Q-learning follower learns from scratch for a block of episodes
against that fixed leader, then plays one greedy episode; the leader's return is that episode's
return. The leader is a tabular memory-1 softmax policy trained by REINFORCE on its sampled
commitments, the same update as the `query` leader of `experiments/divergence.py`, so that the
`exact` oracle (enumerated strong best response) is the direct comparison. Every base-game step the
followers take while learning counts towards the env-step budget.

Two ablations of the reference implementation vary the follower side (`stackrl ablation q-reset`,
`leader-reward-during-adaptation`): the Q-table carried over between commitments instead of reset,
and the leader paid during the follower's learning episodes too, not only after it adapted.

Followers maximise r_F + eps * r_L with eps below `max_tie_break_weight` (ties go the leader's way,
strong Stackelberg), discount `gamma`, epsilon-greedy exploration annealed over the block. The
leader is evaluated as everywhere else: greedy leader vs a strongly best-responding follower.
"""

from __future__ import annotations

import numpy as np
from stackrl.envs.solver import max_tie_break_weight
from stackrl.experiments.tabular_game import TabularGame, softmax
from stackrl.learner.tabular_q import QLearning, greedy_tables, play, q_learn, zero_q


def q_learning_responses(
    g: TabularGame,
    tables: np.ndarray,
    episodes: int,
    rng: np.random.Generator,
    gamma: float = 0.9,
    alpha: float = 0.3,
    tie_eps: float = 0.0,
) -> np.ndarray:
    """[B, S_F] greedy follower tables after `episodes` of Q-learning from scratch against each fixed
    leader table."""
    q = zero_q(g.spec, tables.shape[0])
    q_learn(g.spec, tables, q, episodes, rng, QLearning(gamma=gamma, alpha=alpha, tie_eps=tie_eps))
    return greedy_tables(q)


def run_oracle_leader(
    game: str,
    oracle: str = "q_learning",
    budget: int = 1_000_000,
    seed: int = 0,
    batch: int = 32,
    lr: float = 0.5,
    block_episodes: int = 50,
    eval_every: int = 2,
    reset: bool = True,
    leader_reward_during_adaptation: bool = False,
    alpha: float = 0.3,
    explore: tuple[float, float] = (1.0, 0.05),
    init_scale: float = 0.0,
) -> dict:
    """Train the leader against the given oracle; returns a result.json-like dict.

    With the Q-learning oracle, `reset=False` carries each of the `batch` followers' Q-tables from
    one leader commitment to the next instead of starting from zero (the reference's
    `reset_between_episodes`), and `leader_reward_during_adaptation=True` pays the leader its mean
    return over the follower's learning episodes and the greedy one (the reference's
    `leader_reward_during_q`) instead of only the greedy one played after the follower adapted.
    """
    if oracle not in ("q_learning", "exact"):
        raise ValueError(f"oracle must be 'q_learning' or 'exact', got {oracle!r}")
    g = TabularGame(game)
    rng = np.random.default_rng(seed)
    theta = np.zeros((g.s, g.n_l))  # uniform start
    if (
        init_scale > 0
    ):  # a random start, as a freshly initialised policy (drawn only then: seeds stay comparable)
        theta = init_scale * rng.standard_normal(theta.shape)
    w = max_tie_break_weight(g.payoffs, g.length, g.memory)
    tie_eps = 0.0 if w == 0 else min(0.01, 0.5 * w)
    per_commitment = g.length * ((block_episodes + 1) if oracle == "q_learning" else 1)
    scale = 1.0 / max(np.abs(g.payoffs).max(), 1e-9) / g.length
    hp = QLearning(alpha=alpha, explore_start=explore[0], explore_end=explore[1], tie_eps=tie_eps)
    q = zero_q(g.spec, batch)  # carried between commitments unless `reset`
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
            if reset:
                q = zero_q(g.spec, batch)
            during = q_learn(g.spec, tables, q, block_episodes, rng, hp)  # [B, block]
            returns = play(g.spec, tables, greedy_tables(q))[:, 0]
            if leader_reward_during_adaptation:
                returns = (during.sum(axis=1) + returns) / (block_episodes + 1)
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
        "reset": reset,
        "leader_reward_during_adaptation": leader_reward_during_adaptation,
    }
