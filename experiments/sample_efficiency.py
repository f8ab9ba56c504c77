"""Meta vs inner-outer sample efficiency: one definition for `bench matrix` and `stackrl report`.

Where the leader's initial commitment is already optimal, neither method has anything to learn: the
inner-outer baseline only trains one follower for it, while meta still pays its fixed follower
pretraining. The issue's "at least 10x" is a statement about *learning* the commitment, so the
ratio is reported twice: over all seeds, and over the seeds whose initial commitment is not optimal
(the leader must learn). Both methods start from the same leader network for a seed (the same
`torch.manual_seed` before the networks are built), so the split is the same for both.

A third ratio counts meta's steps from the end of follower pretraining only (`leader_phase_steps`).
Pretraining is independent of the leader, so one pretrained follower serves every leader trained on
the game (and every run of the inner loop the baseline would repeat): this is the cost per leader
once pretraining is amortised, the comparison the contextual follower is built for.
"""

from __future__ import annotations

import statistics

from stackrl.config import EnvConfig
from stackrl.envs.solver import commitment_value

MISS = float("inf")


def initial_answers(result: dict) -> list[int] | None:
    """The leader's greedy answers at the first evaluation, before any leader update (meta
    evaluates during pretraining, where the leader does not train; inner-outer's first evaluation
    is its initial greedy commitment)."""
    history = result.get("eval_history") or []
    answers = history[0].get("leader_answers") if history else None
    return list(answers) if answers is not None else None


def must_learn(env: EnvConfig, result: dict) -> bool | None:
    """True when the run's initial commitment is not optimal (None: unknown)."""
    answers = initial_answers(result)
    if answers is None or result.get("exact_value") is None:
        return None
    value = commitment_value(env, answers)
    return None if value is None else value < result["exact_value"]


def pretrain_steps(env_steps: dict[str, int]) -> int:
    """Env steps spent in follower pretraining phases (`env_steps` as in result.json)."""
    return sum(int(v) for k, v in env_steps.items() if k.endswith("_pretrain"))


def leader_phase_steps(steps_to_exact: int | None, env_steps: dict[str, int]) -> int | None:
    """Steps to the exact value counted from the end of pretraining (0: held before it ended)."""
    return None if steps_to_exact is None else max(0, steps_to_exact - pretrain_steps(env_steps))


def median_steps(steps: list[int | None]) -> float:
    """Median env steps to the exact value over seeds; a seed that never held it counts as MISS."""
    return statistics.median(MISS if s is None else s for s in steps)


def ratio(meta_steps: list[int | None], io_steps: list[int | None], io_budget: float) -> str | float | None:
    """Inner-outer / meta median steps to the exact value; '>x' when inner-outer's median missed
    within its budget (x = budget / meta's median), None when there are no seeds or meta missed."""
    if not meta_steps or not io_steps:
        return None
    m, io = median_steps(meta_steps), median_steps(io_steps)
    if m == MISS:
        return None
    if m == 0:
        return "inf"  # meta's leader needed no steps of its own (amortised count only)
    if io == MISS:
        return f">{io_budget / m:.1f}"
    return round(io / m, 2)
