"""The inner-outer-loop baseline (prior work): a follower re-trained for every leader commitment.

Outer loop: the leader samples a commitment (its answers on the query set) from its policy. Inner
loop: a follower *without* context is trained against that fixed commitment until its return stops
improving; the leader's deterministic value against the converged follower is the commitment's
return. After `outer_batch` commitments the leader takes one REINFORCE step (the extended game's
policy gradient with an expensive oracle). Each batch opens with the leader's greedy commitment,
trained the same way and used only to report the achieved value, so the baseline is measured
exactly like the meta method. Every inner training run's env steps count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from stackrl.config import PhaseConfig
from stackrl.learner.models import PolicyNet


@dataclass
class Commitment:
    answers: np.ndarray  # [K] int64
    logp: np.ndarray  # [K] float32 behaviour log-probs (unused for the greedy one)
    greedy: bool


class InnerOuterLoop:
    def __init__(self, phase: PhaseConfig, generator: torch.Generator):
        self.phase = phase
        self.generator = generator
        self.samples: list[tuple[Commitment, float]] = []
        self.current: Commitment | None = None
        self.frozen_batches = 0  # consecutive batches whose samples all equalled the greedy commitment
        self._reset_inner()

    def _reset_inner(self) -> None:
        self.best = -np.inf
        self.since_best = 0
        self.inner_updates = 0

    @torch.no_grad()
    def next_commitment(self, leader: PolicyNet, query_obs: torch.Tensor) -> Commitment:
        """Greedy answers at the start of each batch, sampled ones after."""
        logits, _ = leader(query_obs)
        logp_all = torch.log_softmax(logits, -1)
        greedy = not self.samples
        if greedy:
            a = logits.argmax(-1)
        else:
            a = (
                torch.multinomial(logp_all.exp().cpu(), 1, generator=self.generator)
                .squeeze(-1)
                .to(logits.device)
            )
        logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        self.current = Commitment(
            a.cpu().numpy().astype(np.int64), logp.cpu().numpy().astype(np.float32), greedy
        )
        self._reset_inner()
        return self.current

    def on_follower_update(self, mean_follower_return: float | None) -> bool:
        """Track the inner loop; True when the follower's return has stopped improving."""
        self.inner_updates += 1
        if mean_follower_return is None:
            return False
        if mean_follower_return > self.best + self.phase.inner_tolerance:
            self.best = mean_follower_return
            self.since_best = 0
        else:
            self.since_best += 1
        return (
            self.inner_updates >= self.phase.inner_min_updates
            and self.since_best >= self.phase.inner_patience
        )

    def record(self, leader_value: float) -> bool:
        """Store the converged value of the current commitment; True when a leader update is due."""
        assert self.current is not None
        self.samples.append((self.current, leader_value))
        return len(self.samples) > self.phase.outer_batch  # the greedy one plus outer_batch sampled

    @property
    def frozen(self) -> bool:
        """The leader has stopped exploring: further batches would repeat the same commitment."""
        n = self.phase.stop_when_frozen
        return n > 0 and self.frozen_batches >= n

    def leader_batch(self, query_obs: np.ndarray) -> dict[str, np.ndarray]:
        """The sampled commitments as a leader trajectory batch: T = K query steps, B = outer_batch.

        The commitment's value is the reward of its last query step, so the ordinary V-trace
        actor-critic loss yields REINFORCE with a learned per-query baseline.
        """
        greedy = next(c for c, _ in self.samples if c.greedy)
        sampled = [(c, v) for c, v in self.samples if not c.greedy]
        self.samples = []
        same = all(np.array_equal(c.answers, greedy.answers) for c, _ in sampled)
        self.frozen_batches = self.frozen_batches + 1 if same else 0
        k, m = len(query_obs), len(sampled)
        obs = np.repeat(query_obs[:, None], m, axis=1)  # [K, M, ...]
        obs = np.concatenate([obs, obs[-1:]], axis=0)  # bootstrap row: [K+1, M, ...]
        rewards = np.zeros((k, m), np.float32)
        rewards[-1] = [v for _, v in sampled]
        dones = np.zeros((k, m), bool)
        dones[-1] = True
        return {
            "obs": obs,
            "context": np.zeros((k + 1, m, 0), np.int64),
            "elapsed": np.repeat(np.arange(k + 1, dtype=np.int32)[:, None], m, axis=1),
            "actions": np.stack([c.answers for c, _ in sampled], axis=1),
            "logp": np.stack([c.logp for c, _ in sampled], axis=1),
            "rewards": rewards,
            "dones": dones,
            "valid": np.ones((k, m), bool),
        }
