"""The leader's trajectories as whole episodes (`actor.leader_trajectories: episodes`).

A committed leader decides only in the query phase (K answers), then the base game runs for up to
thousands of steps while the revenue comes in. Cut into T-step unrolls, the revenue after the first
unroll reaches the query answers only through the leader's bootstrapped value, and that value sees
the phase and the clock but not the schedule it committed to: the answers are credited with the
revenue of their own unroll alone (in Atari pricing, the first ~15 play steps of phase 0).

Here each game's episode is kept as the leader's decisions only: a row per decision (observation,
clock, action, behaviour log-probability), the leader's rewards after a decision summed onto that
decision's row (a semi-Markov view: what RLlib hands a multi-agent agent at its next step), and the
episode closed (`dones`) on its last decision. A finished episode is one column of a [T, B] leader
trajectory of the usual layout, so codec, validation and the learner's V-trace take it unchanged:
its return is the whole episode's revenue, with no bootstrap. Columns no episode fills are padding
(`valid` False, `dones` True, so V-trace neither reads nor trains them).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from stackrl.trajectory import TrajectorySpec


@dataclass
class _Episode:
    """One game's leader decisions so far in its current extended episode."""

    obs: list[np.ndarray] = field(default_factory=list)
    elapsed: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    version: int = 0


class LeaderEpisodes:
    """Collects the leader's decisions per game and hands out finished episodes as [T, B] columns."""

    def __init__(self, spec: TrajectorySpec):
        self.spec = spec
        self._open = [_Episode() for _ in range(spec.num_games)]
        self._done: deque[_Episode] = deque()

    def clear(self) -> None:
        """Forget every open and finished episode (a new phase restarts the games)."""
        self._open = [_Episode() for _ in range(self.spec.num_games)]
        self._done.clear()

    def record(
        self,
        obs: np.ndarray,
        elapsed: np.ndarray,
        actions: np.ndarray,
        logp: np.ndarray,
        valid: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        version: int,
    ) -> None:
        """One step of all B games: the leader's observation [B, ...] and clock [B] before it, its
        actions/logp [B] and whether they were decisions (`valid` [B]), then the step's leader
        rewards [B] and episode ends [B]."""
        t_max = self.spec.unroll_length
        for g in np.flatnonzero(valid):
            ep = self._open[g]
            if len(ep.actions) >= t_max:
                raise ValueError(
                    f"the leader made more than {t_max} decisions (actor.unroll_length) in one episode: "
                    "actor.leader_trajectories 'episodes' needs every decision of an episode in one "
                    "unroll; raise actor.unroll_length or use 'steps'"
                )
            if not ep.actions:
                ep.version = version
            ep.obs.append(np.array(obs[g]))
            ep.elapsed.append(int(elapsed[g]))
            ep.actions.append(int(actions[g]))
            ep.logp.append(float(logp[g]))
            ep.rewards.append(0.0)
        for g in np.flatnonzero(rewards):
            ep = self._open[g]
            if ep.rewards:  # a reward before the episode's first decision has no decision to credit
                ep.rewards[-1] += float(rewards[g])
        for g in np.flatnonzero(dones):
            if self._open[g].actions:
                self._done.append(self._open[g])
            self._open[g] = _Episode()

    def drop_finished(self) -> None:
        """Forget finished episodes nobody will send (the leader does not learn now)."""
        self._done.clear()

    @property
    def finished(self) -> int:
        """Finished episodes waiting to be sent."""
        return len(self._done)

    def take(self, pad_obs: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """Up to B finished episodes as one trajectory's arrays ([T(+1), B, ...], the spec's layout),
        and the oldest weights version among them (the current one when empty is the caller's).
        `pad_obs` [B, ...]: valid leader observations to fill unused rows with (the learner runs the
        network on every row)."""
        b = self.spec.num_games
        arrays = self.spec.allocate()
        arrays["obs"][:] = pad_obs[None]
        arrays["context"][:] = 0
        arrays["elapsed"][:] = 0
        arrays["actions"][:] = 0
        arrays["logp"][:] = 0.0
        arrays["rewards"][:] = 0.0
        arrays["dones"][:] = True  # padding: every row ends its own empty episode
        arrays["valid"][:] = False
        versions = []
        for g in range(min(b, len(self._done))):
            ep = self._done.popleft()
            n = len(ep.actions)
            arrays["obs"][:n, g] = np.stack(ep.obs)
            arrays["elapsed"][:n, g] = ep.elapsed
            arrays["actions"][:n, g] = ep.actions
            arrays["logp"][:n, g] = ep.logp
            arrays["rewards"][:n, g] = ep.rewards
            arrays["dones"][: n - 1, g] = False
            arrays["valid"][:n, g] = True
            versions.append(ep.version)
        return arrays, min(versions) if versions else -1
