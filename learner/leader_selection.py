"""Which leader a run reports (`PhaseConfig.restarts`, `screen`, `verify`): a population of candidate
leaders against the one set of frozen followers, the best by evaluated value kept.

Candidates come from two places. Each restart trains a leader network by RL and offers its greedy
commitment when it ends. A screen, once at the start of a restarted leader phase, evaluates many
answer tables directly (one greedy evaluation episode each) and offers the best; the later restarts
start from the screen's best tables rather than from uniform random ones, so a policy-gradient
leader begins inside the basin of a good commitment (restarts from random tables missed optima that
need two answers changed together). With `verify`, a candidate that would be kept is first judged
against a fresh follower (learner/candidate_judge.py), so the contextual follower's mistakes cannot
make a commitment look better than it is.

Everything here plays against the followers the run learned; the exact solver is never asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from stackrl.config import ConfigError, ExperimentConfig, PhaseConfig
from stackrl.envs.base import LEADER, EnvSpec
from stackrl.learner.candidate_judge import FreshFollowerJudge
from stackrl.learner.evaluation import EvalResult
from stackrl.learner.evaluator import Evaluator
from stackrl.learner.leader_restarts import BestLeader, fit_commitment
from stackrl.learner.metrics import Metrics
from stackrl.learner.models import PolicyNet, build_networks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Screened:
    table: tuple[int, ...]
    value: float
    """Evaluated value (judged, when the phase verifies and the table was a contender)."""
    consistent: bool = True
    """False when a judge overruled the contextual follower's value (learner/candidate_judge.py)."""


def draw_tables(n_actions: int, n_queries: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct answer tables [count, n_queries] drawn uniformly, or every table (in a random
    order) when there are no more than `count` of them."""
    total = n_actions**n_queries
    if total <= count:
        idx = rng.permutation(total)
        return (idx[:, None] // n_actions ** np.arange(n_queries)[None, :]) % n_actions  # [total, K]
    seen: set[tuple[int, ...]] = set()
    out: list[np.ndarray] = []
    while len(out) < count:
        t = rng.integers(n_actions, size=n_queries)
        if tuple(t) not in seen:
            seen.add(tuple(t))
            out.append(t)
    return np.stack(out)


class LeaderSelection:
    def __init__(self, cfg: ExperimentConfig, evaluator: Evaluator, spec: EnvSpec, device: torch.device):
        self.cfg = cfg
        self.evaluator = evaluator
        self.spec = spec
        self.device = device
        self.best = BestLeader()
        self.restart_tables: list[list[int]] = []
        """Where the remaining restarts start, best first (from the screen)."""
        self.screened = 0
        self.judge: FreshFollowerJudge | None = None
        verify = [i for i, p in enumerate(cfg.schedule.phases) if p.verify]
        if verify:
            if evaluator.exact is None or len(spec.roles) != 2:
                raise ConfigError(
                    f"schedule.phases[{verify[0]}].verify: only a matrix game with one follower has a "
                    "tabular follower to judge leaders with"
                )
            self.judge = FreshFollowerJudge(cfg.env, seed=cfg.seed)
        self.screen_env_steps = 0

    @staticmethod
    def applies(cfg: ExperimentConfig) -> bool:
        return any(p.restarts > 1 or p.screen > 0 or p.verify for p in cfg.schedule.phases)

    @property
    def env_steps(self) -> int:
        """Play steps spent choosing the leader: the screen's evaluation episodes and the judge's
        fresh followers (the restarts' own training steps are the run's env steps)."""
        return self.screen_env_steps + (self.judge.env_steps if self.judge is not None else 0)

    def _value(self, phase: PhaseConfig, res: EvalResult, play_table: list[int]) -> tuple[float, bool]:
        if not phase.verify or self.judge is None:
            return res.leader_value, True
        return self.judge(play_table, res.leader_value, res.follower_values[0])

    # -- the screen ------------------------------------------------------------------------------
    def screen(
        self, phase: PhaseConfig, nets: dict[str, PolicyNet], seed: int, metrics: Metrics, step: int
    ) -> None:
        """Evaluate `phase.screen` tables, keep the best as restart starts and offer it as a candidate."""
        q = self.evaluator.env.query_observations()
        rng = np.random.default_rng(seed)
        tables = draw_tables(self.spec.leader_actions, len(q), phase.screen, rng)
        scored = [Screened(tuple(int(a) for a in t), self._play_table(nets, t).leader_value) for t in tables]
        scored.sort(key=lambda s: -s.value)  # stable: ties keep the draw order
        if phase.verify and self.judge is not None:
            scored = self._judge_contenders(scored, nets)
        self.screened += len(scored)
        self.restart_tables = [list(s.table) for s in scored]
        best = scored[0]
        metrics.scalar("restarts/screen_best", best.value, step)
        log.debug("screened %d commitments, best %s worth %g", len(scored), best.table, best.value)
        self._offer_table(phase, nets, best)

    def _play_table(self, nets: dict[str, PolicyNet], table: np.ndarray) -> EvalResult:
        """One greedy evaluation of the leader playing `table`; the base-game steps it took are counted
        (all games until the last finishes its first episode: what the play cost, at any episode length)."""
        env = self.evaluator.env
        before = env.play_steps_taken
        res = self.evaluator.play(nets, source="table", table=table)
        self.screen_env_steps += env.play_steps_taken - before
        return res

    def _judge_contenders(self, scored: list[Screened], nets: dict[str, PolicyNet]) -> list[Screened]:
        """Judge tables best first until the next one's unjudged value cannot beat the best judged
        one, then re-rank. Cheap: usually one or two judgements. Only contenders are judged: the judge
        is there to stop a follower's mistake in the leader's favour from winning; a table the
        contextual follower misplays against the leader stays under-valued (judging all 32 would
        cost about 130k env steps)."""
        judged: list[Screened] = []
        best = BestLeader()  # scores only: no network
        order = lambda x: (-x.value, not x.consistent)  # noqa: E731
        for i, s in enumerate(scored):
            if not best.beats(s.value):  # a consistent value as high as its unjudged one cannot win
                return sorted(judged + scored[i:], key=order)
            res = self._play_table(nets, np.asarray(s.table))
            assert self.judge is not None
            value, consistent = self.judge(list(s.table), res.leader_value, res.follower_values[0])
            judged.append(Screened(s.table, value, consistent))
            if best.beats(value, consistent):
                best.value, best.consistent = value, consistent
        return sorted(judged, key=order)

    def _offer_table(self, phase: PhaseConfig, nets: dict[str, PolicyNet], best: Screened) -> None:
        """Offer the screen's best table as a leader network fitted to play it."""
        torch_seed = self.cfg.seed * 7919 + 104_729
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            net = build_networks(self.spec, self.cfg.model)[LEADER].to(self.device)
        q = torch.as_tensor(self.evaluator.env.query_observations(), device=self.device)
        fit_commitment(net, q, torch.as_tensor(best.table, device=self.device), confidence=0.99)
        candidate = {**nets, LEADER: net}
        res = self.evaluator.play(candidate)
        if list(res.leader_answers) != list(best.table):  # the fit did not take: offer nothing false
            log.warning(
                "the screen's best table %s did not fit (got %s); not offered", best.table, res.leader_answers
            )
            return
        value = best.value if phase.verify else res.leader_value
        self.best.offer(value, net, best.consistent)

    # -- restarts --------------------------------------------------------------------------------
    def next_restart_table(self) -> list[int] | None:
        """The table the next restart starts from (the screen's next best), or None: a random one."""
        return self.restart_tables.pop(0) if self.restart_tables else None

    def offer_trained(
        self, phase: PhaseConfig, nets: dict[str, PolicyNet], metrics: Metrics, step: int
    ) -> None:
        """A leader training ended: keep its leader if its greedy commitment is worth the most so far."""
        res = self.evaluator.play(nets)
        value, consistent = res.leader_value, True
        if self.best.beats(value):  # judge only a contender (see _judge_contenders)
            value, consistent = self._value(phase, res, self.evaluator.play_table(nets, res))
        kept = self.best.offer(value, nets[LEADER], consistent)
        metrics.scalar("restarts/leader_value", value, step)
        log.debug(
            "leader restart %d ended at %g (%s)", self.best.offers, value, "kept" if kept else "dropped"
        )

    def restore(self, nets: dict[str, PolicyNet]) -> bool:
        return self.best.restore(nets[LEADER])

    # -- what result.json and checkpoints hold -----------------------------------------------------
    def result_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "restart_values": list(self.best.values),
            "kept_candidate": self.best.kept_index,
        }
        if self.screened:
            out["screened_commitments"] = self.screened
        if self.judge is not None:
            out["judge_overruled"] = self.judge.overruled
        out["selection_env_steps"] = self.env_steps
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.best.state_dict(),
            "restart_tables": [list(t) for t in self.restart_tables],
            "screened": self.screened,
            "screen_env_steps": self.screen_env_steps,
            "judge_env_steps": self.judge.env_steps if self.judge is not None else 0,
            "judge_overruled": self.judge.overruled if self.judge is not None else 0,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best.load_state_dict(state)
        self.restart_tables = [list(t) for t in state.get("restart_tables", [])]
        self.screened = int(state.get("screened", 0))
        self.screen_env_steps = int(state.get("screen_env_steps", 0))
        if self.judge is not None:
            self.judge.env_steps = int(state.get("judge_env_steps", 0))
            self.judge.overruled = int(state.get("judge_overruled", 0))
