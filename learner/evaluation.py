"""Deterministic evaluation: greedy leader and greedy followers over one extended episode per game.

This is what benchmarks report (docs/design.md §5): the leader's value in raw payoff units, the
followers' values and the leader's greedy answers on the query set. The optimality gap against the
exact solver is computed by the caller where the exact value is known.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

import numpy as np
import torch
from stackrl.envs.base import LEADER
from stackrl.envs.query_phase import StackelbergEnv, StackelbergObs, StackelbergStep
from stackrl.learner.models import PolicyNet


@dataclass
class EvalResult:
    leader_value: float
    follower_values: list[float]
    leader_answers: list[int]
    episodes: int


def record_first_episodes(
    step: StackelbergStep, roles: tuple[str, ...], finished: np.ndarray, returns: np.ndarray
) -> None:
    """Store the raw returns [B, R] of games whose first episode ended with `step`; mark them finished.

    `step.episode_returns` are raw payoff sums (no tie-break shaping), one entry per game that ended.
    """
    ended = np.flatnonzero(step.dones)
    first = ~finished[ended]
    for i, role in enumerate(roles):
        returns[ended[first], i] = step.episode_returns[role][first]
    finished |= step.dones


@torch.no_grad()
def greedy_answers(env: StackelbergEnv, leader: PolicyNet, device: torch.device | str = "cpu") -> np.ndarray:
    """[K] the leader's greedy answers on the query set (as it sees them in query steps)."""
    q = torch.as_tensor(env.query_observations(), device=device)
    logits, _ = leader(q)
    answers: np.ndarray = logits.argmax(-1).cpu().numpy().astype(np.int64)
    return answers


_P = ParamSpec("_P")

ActHook = Callable[[str, StackelbergObs, torch.Tensor, torch.Tensor, np.ndarray], None]


@torch.no_grad()
def play_first_episodes(
    env: StackelbergEnv,
    nets: dict[str, PolicyNet],
    leader_source: str = "policy",
    table: np.ndarray | None = None,
    follower_context: bool = True,
    device: torch.device | str = "cpu",
    max_steps: int = 1_000_000,
    seed: int = 12345,
    sample_followers: bool = False,
    on_act: ActHook | None = None,
) -> np.ndarray:
    """Play every game of `env` until each has finished one episode; returns their raw returns
    [B, R]. The leader is greedy; followers are greedy or sample their policies (seeded by `seed`).
    `on_act(role, obs, logits, actions, live)` sees every acting role's decision (`live`: games
    still in their first episode), for callers that measure more than returns."""
    generator = torch.Generator(device=device).manual_seed(seed)
    env.set_leader_source(leader_source, table)
    obs = env.reset(seed=seed)
    b = env.num_games
    finished = np.zeros(b, bool)
    returns = np.zeros((b, len(env.roles)))
    for _ in range(max_steps):
        actions = {}
        live = ~finished
        for role in env.roles:
            if not obs.acting[role].any():
                actions[role] = np.zeros(b, np.int64)
                continue
            ctx = None
            if role != LEADER:
                ctx = torch.as_tensor(obs.follower_context(follower_context), device=device)
            logits, _ = nets[role](torch.as_tensor(obs.obs[role], device=device), ctx)
            if sample_followers and role != LEADER:
                a = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            else:
                a = logits.argmax(-1)
            actions[role] = a.cpu().numpy().astype(np.int64)
            if on_act is not None:
                on_act(role, obs, logits, a, live)
        step = env.step(actions)
        record_first_episodes(step, env.roles, finished, returns)
        obs = step.obs
        if finished.all():
            return returns
    raise RuntimeError(f"evaluation did not finish an episode in {max_steps} steps")


def _summary(
    returns: np.ndarray,
    env: StackelbergEnv,
    nets: dict[str, PolicyNet],
    leader_source: str,
    table: np.ndarray | None,
    device: torch.device | str,
    **_: object,
) -> EvalResult:
    """The first episodes' raw returns [B, R] averaged over the games, with the leader's answers: its
    greedy ones on the query set when it plays its policy, else the table it played."""
    answers = (
        greedy_answers(env, nets[LEADER], device)
        if leader_source == "policy"
        else np.asarray(table if table is not None else [], np.int64)
    )
    mean = returns.mean(axis=0)
    return EvalResult(
        leader_value=float(mean[0]),
        follower_values=[float(v) for v in mean[1:]],
        leader_answers=answers.tolist(),
        episodes=env.num_games,
    )


def _summarized(play: Callable[_P, np.ndarray]) -> Callable[_P, EvalResult]:
    """`play` (first-episode returns [B, R]) followed by `_summary`, taking exactly `play`'s arguments:
    one argument list, with its defaults, serves both."""
    signature = inspect.signature(play)

    @torch.no_grad()
    def evaluate(*args: _P.args, **kwargs: _P.kwargs) -> EvalResult:
        """Play every game of `env` greedily until each has finished one episode; average its returns.

        With `sample_followers` the followers sample their policies (seeded by `seed`); the leader and
        its answers stay greedy. The arguments are those of `play_first_episodes`."""
        returns = play(*args, **kwargs)
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        return _summary(returns, **call.arguments)

    evaluate.__signature__ = signature.replace(return_annotation="EvalResult")  # type: ignore[attr-defined]
    evaluate.__qualname__ = "evaluate"  # the module-level name below: picklable, as a plain function is
    return evaluate


evaluate = _summarized(play_first_episodes)
