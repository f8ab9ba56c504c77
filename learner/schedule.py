"""Which role learns when: the phases of a run (DESIGN.md §3).

`pretrain`: followers learn against random leaders (leader frozen, no query steps).
`leader`: the leader learns over the extended episode; followers frozen, or fine-tuning.
`alternate`: k follower updates, then m leader updates, repeated.
`inner_outer`: the baseline; its leader updates are driven by `learner/inner_outer.py`.
Phases advance by consumed play-phase env steps; every change of what actors must do bumps
`phase_id`, so stale trajectories can be recognised and dropped.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from stackrl.config import PhaseConfig, ScheduleConfig
from stackrl.envs.base import LEADER


def expand_restarts(phases: list[PhaseConfig]) -> tuple[list[PhaseConfig], list[bool]]:
    """A leader phase with `restarts: R` becomes R leader phases of a 1/R budget each; the flags mark
    the phases that begin with a fresh leader network (every copy but the first). Only the first copy
    keeps the phase's `screen`: one screen serves all of its restarts."""
    out: list[PhaseConfig] = []
    fresh: list[bool] = []
    for p in phases:
        n = p.restarts
        for i in range(n):
            steps = p.env_steps // n + (1 if i < p.env_steps % n else 0)
            out.append(dataclasses.replace(p, env_steps=steps, restarts=1, screen=p.screen if i == 0 else 0))
            fresh.append(i > 0)
    return out, fresh


class Schedule:
    def __init__(self, cfg: ScheduleConfig, followers: tuple[str, ...]):
        self.cfg = cfg
        self.phases, self._fresh_leader = expand_restarts(cfg.phases)
        self.followers = followers
        self.index = 0
        self.phase_id = 0
        self.phase_env_steps = 0
        self.env_steps_by_phase: dict[str, int] = defaultdict(int)
        self._alt_leader_turn = False
        self._alt_updates = 0

    @property
    def phase(self) -> PhaseConfig:
        return self.phases[min(self.index, len(self.phases) - 1)]

    @property
    def finished(self) -> bool:
        return self.index >= len(self.phases)

    @property
    def kind(self) -> str:
        return self.phase.kind

    def phase_key(self) -> str:
        """Name of the current phase for step accounting: `<index>_<kind>` (e.g. `0_pretrain`)."""
        return f"{min(self.index, len(self.phases) - 1)}_{self.kind}"

    def fresh_leader(self) -> bool:
        """The current phase starts a new leader from a fresh network (a restart)."""
        return not self.finished and self._fresh_leader[self.index]

    def phase_remaining(self) -> float:
        """Fraction of the current phase's env-step budget not yet consumed, in [0, 1]."""
        if self.finished:
            return 0.0
        return max(0.0, 1.0 - self.phase_env_steps / self.phase.env_steps)

    def leader_source(self) -> str:
        return {"pretrain": "random", "leader": "policy", "alternate": "policy", "inner_outer": "table"}[
            self.kind
        ]

    def follower_context(self) -> bool:
        return self.kind != "inner_outer"

    def send_roles(self) -> tuple[str, ...]:
        kind = self.kind
        if kind in ("pretrain", "inner_outer"):
            return self.followers
        if kind == "leader":
            return (LEADER, *self.followers) if self.phase.finetune_followers else (LEADER,)
        return (LEADER, *self.followers)

    def learning_roles(self) -> tuple[str, ...]:
        kind = self.kind
        if kind == "alternate":
            return (LEADER,) if self._alt_leader_turn else self.followers
        return self.send_roles()

    def on_update(self, role: str) -> None:
        """Count updates for `alternate` and switch turns after k follower / m leader updates."""
        if self.kind != "alternate":
            return
        if role == LEADER or role == self.followers[-1]:
            self._alt_updates += 1
            limit = self.phase.leader_updates if self._alt_leader_turn else self.phase.follower_updates
            if self._alt_updates >= limit:
                self._alt_leader_turn = not self._alt_leader_turn
                self._alt_updates = 0

    def add_env_steps(self, n: int) -> bool:
        """Account consumed env steps; returns True when the phase advanced (or the run finished)."""
        if self.finished:
            return False
        self.phase_env_steps += n
        self.env_steps_by_phase[self.phase_key()] += n
        if self.phase_env_steps >= self.phase.env_steps:
            self.end_phase()
            return True
        return False

    def end_phase(self) -> None:
        """Move on to the next phase (budget spent, or the phase decided it has converged)."""
        self.index += 1
        self.phase_env_steps = 0
        self._alt_leader_turn = False
        self._alt_updates = 0
        self.phase_id += 1

    def new_phase_id(self) -> int:
        """A new actor instruction inside the same phase (inner-outer's next leader commitment)."""
        self.phase_id += 1
        return self.phase_id

    def state_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "phase_id": self.phase_id,
            "phase_env_steps": self.phase_env_steps,
            "env_steps_by_phase": dict(self.env_steps_by_phase),
            "alt_leader_turn": self._alt_leader_turn,
            "alt_updates": self._alt_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index = state["index"]
        self.phase_id = state["phase_id"]
        self.phase_env_steps = state["phase_env_steps"]
        self.env_steps_by_phase = defaultdict(int, state["env_steps_by_phase"])
        self._alt_leader_turn = state["alt_leader_turn"]
        self._alt_updates = state["alt_updates"]
