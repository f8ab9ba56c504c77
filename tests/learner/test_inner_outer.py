"""learner/inner_outer.py: the inner-outer baseline's bookkeeping. Commitments (greedy first, then
sampled), when a follower's training counts as converged, when a leader update is due, the REINFORCE
batch it builds (which the ordinary actor-critic loss must accept), and when the leader is frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stackrl.config import LearnerConfig, PhaseConfig
from stackrl.envs.spaces import Discrete
from stackrl.learner.inner_outer import InnerOuterLoop
from stackrl.learner.models import PolicyNet
from stackrl.learner.update import actor_critic_loss

K = 5  # the matrix games' query set: the five memory-1 states
QUERIES = torch.arange(K)


def phase(**kw) -> PhaseConfig:
    base = dict(kind="inner_outer", env_steps=10_000, inner_patience=2, inner_min_updates=3,
                inner_tolerance=0.5, outer_batch=2, stop_when_frozen=2)  # fmt: skip
    return PhaseConfig(**{**base, **kw})


def leader(prefer: int | None = None, seed: int = 0) -> PolicyNet:
    """A leader network; with `prefer`, one whose policy picks that answer with probability ~1."""
    torch.manual_seed(seed)
    net = PolicyNet(Discrete(K), 2, hidden=8)
    if prefer is not None:
        with torch.no_grad():
            net.policy.weight.zero_()
            net.policy.bias.copy_(torch.tensor([0.0, 0.0]))
            net.policy.bias[prefer] = 30.0
    return net


def test_each_batch_opens_with_the_greedy_commitment_then_samples():
    net = leader(seed=1)
    loop = InnerOuterLoop(phase(), torch.Generator().manual_seed(0))
    greedy = loop.next_commitment(net, QUERIES)
    logits, _ = net(QUERIES)
    assert greedy.greedy and loop.current is greedy
    np.testing.assert_array_equal(greedy.answers, logits.argmax(-1).numpy())
    assert greedy.answers.dtype == np.int64 and greedy.answers.shape == (K,)
    loop.record(10.0)
    sampled = loop.next_commitment(net, QUERIES)
    assert not sampled.greedy
    expected_logp = torch.log_softmax(logits, -1).gather(-1, torch.as_tensor(sampled.answers)[:, None])
    np.testing.assert_allclose(sampled.logp, expected_logp.squeeze(-1).detach().numpy(), rtol=1e-6)
    # Sampling draws from the loop's own generator: the same seed samples the same commitments.
    again = InnerOuterLoop(phase(), torch.Generator().manual_seed(0))
    again.next_commitment(net, QUERIES)
    again.record(10.0)
    np.testing.assert_array_equal(again.next_commitment(net, QUERIES).answers, sampled.answers)


@pytest.mark.parametrize(
    ("returns", "converged_at"),
    [
        ([None, 10.0, 10.4, 10.3], 4),  # no episode ended; best 10, then within tolerance twice
        ([10.0, 11.0, 12.0, 13.0, 14.0, 14.2, 14.1], 7),  # improvements by more than 0.5 reset patience
        ([1.0, 1.0, 1.0, 1.0, 1.0], 3),  # patience met at update 3, the minimum
    ],
)
def test_a_follower_has_converged_after_patience_updates_without_improvement(returns, converged_at):
    loop = InnerOuterLoop(phase(), torch.Generator())
    loop.next_commitment(leader(), QUERIES)
    done = [loop.on_follower_update(r) for r in returns]
    assert done.index(True) + 1 == converged_at and not any(done[: converged_at - 1])


def test_min_updates_hold_back_convergence():
    loop = InnerOuterLoop(phase(inner_patience=1, inner_min_updates=5), torch.Generator())
    loop.next_commitment(leader(), QUERIES)
    assert [loop.on_follower_update(1.0) for _ in range(5)] == [False] * 4 + [True]
    loop.next_commitment(leader(), QUERIES)  # a new commitment starts a new inner loop
    assert loop.inner_updates == 0 and not loop.on_follower_update(1.0)


def test_leader_update_after_the_greedy_and_outer_batch_sampled_commitments():
    net = leader(seed=2)
    loop = InnerOuterLoop(phase(outer_batch=2), torch.Generator().manual_seed(0))
    values = [20.0, 31.0, 10.0]  # greedy, then two sampled
    due = []
    commitments = []
    for v in values:
        commitments.append(loop.next_commitment(net, QUERIES))
        due.append(loop.record(v))
    assert due == [False, False, True]
    batch = loop.leader_batch(QUERIES.numpy())
    assert loop.samples == []
    m = 2
    assert batch["obs"].shape == (K + 1, m) and batch["context"].shape == (K + 1, m, 0)
    np.testing.assert_array_equal(batch["obs"][:K, 0], np.arange(K))
    np.testing.assert_array_equal(batch["obs"][K], batch["obs"][K - 1])  # bootstrap row
    np.testing.assert_array_equal(batch["elapsed"][:, 1], np.arange(K + 1))
    np.testing.assert_array_equal(batch["actions"], np.stack([c.answers for c in commitments[1:]], 1))
    np.testing.assert_array_equal(batch["logp"], np.stack([c.logp for c in commitments[1:]], 1))
    # The commitment's value is the reward of its last query step; nothing else is rewarded.
    np.testing.assert_array_equal(batch["rewards"][K - 1], [31.0, 10.0])
    assert not batch["rewards"][: K - 1].any()
    assert batch["dones"][K - 1].all() and not batch["dones"][: K - 1].any() and batch["valid"].all()
    tensors = {k: torch.as_tensor(v) for k, v in batch.items()}
    loss, stats = actor_critic_loss(net, tensors, LearnerConfig(), entropy_cost=0.0, value_on_all_steps=True)
    assert torch.isfinite(loss) and stats.valid_fraction == 1.0


def _one_batch(loop: InnerOuterLoop, net: PolicyNet) -> None:
    for _ in range(loop.phase.outer_batch + 1):
        loop.next_commitment(net, QUERIES)
        loop.record(1.0)
    loop.leader_batch(QUERIES.numpy())


def test_frozen_after_stop_when_frozen_batches_that_only_repeat_the_greedy_commitment():
    certain = leader(prefer=1)  # samples equal the greedy commitment (all 1)
    loop = InnerOuterLoop(phase(stop_when_frozen=2), torch.Generator().manual_seed(0))
    _one_batch(loop, certain)
    assert loop.frozen_batches == 1 and not loop.frozen
    _one_batch(loop, certain)
    assert loop.frozen_batches == 2 and loop.frozen
    _one_batch(loop, leader(seed=3))  # an exploring leader samples other tables: the count restarts
    assert loop.frozen_batches == 0 and not loop.frozen
    never = InnerOuterLoop(phase(stop_when_frozen=0), torch.Generator())
    for _ in range(3):
        _one_batch(never, certain)
    assert never.frozen_batches == 3 and not never.frozen
