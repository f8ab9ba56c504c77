"""V-trace against a slow reference written from the IMPALA paper (Espeholt et al. 2018, eq. 1).

    v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) rho_t delta_t,
    delta_t = r_t + gamma_t V(x_{t+1}) - V(x_t),
    rho_t = min(rho_bar, pi/mu), c_i = min(c_bar, pi/mu), V(x_T) = bootstrap value,
    pg advantage_s = min(rho_pg_bar, pi/mu) (r_s + gamma_s v_{s+1} - V(x_s)), v_T = V(x_T).

The discount is per step (gamma_t = 0 where an episode ended), so gamma^{t-s} is a product.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stackrl.learner.vtrace import vtrace


def clip(x, bar):
    return x if bar is None else min(bar, x)


def reference(log_rhos, discounts, rewards, values, bootstrap, rho_bar, c_bar, pg_bar):
    """Nested loops over every element; [T, B, ...] numpy in, (vs, pg_advantages) out."""
    t_len = log_rhos.shape[0]
    vs = np.zeros_like(values)
    adv = np.zeros_like(values)
    for idx in np.ndindex(*log_rhos.shape[1:]):
        value = [values[(t, *idx)] for t in range(t_len)] + [bootstrap[idx]]
        ratio = [float(np.exp(log_rhos[(t, *idx)])) for t in range(t_len)]
        gamma = [discounts[(t, *idx)] for t in range(t_len)]
        reward = [rewards[(t, *idx)] for t in range(t_len)]
        v = []
        for s in range(t_len):
            total = value[s]
            for t in range(s, t_len):
                weight = 1.0
                for i in range(s, t):
                    weight *= gamma[i] * clip(ratio[i], c_bar)
                delta = reward[t] + gamma[t] * value[t + 1] - value[t]
                total += weight * clip(ratio[t], rho_bar) * delta
            v.append(total)
        v.append(value[t_len])
        for s in range(t_len):
            vs[(s, *idx)] = v[s]
            adv[(s, *idx)] = clip(ratio[s], pg_bar) * (reward[s] + gamma[s] * v[s + 1] - value[s])
    return vs, adv


def random_inputs(t, batch_shape, seed):
    rng = np.random.default_rng(seed)
    shape = (t, *batch_shape)
    log_rhos = rng.normal(0, 1, shape)
    # Ratios on both sides of every threshold used below, whatever the draw.
    log_rhos[0] = 1.5
    log_rhos[-1] = -1.5
    discounts = rng.uniform(0.8, 1.0, shape) * (rng.random(shape) > 0.15)  # some episode ends
    rewards = rng.normal(0, 1, shape)
    values = rng.normal(0, 1, shape)
    bootstrap = rng.normal(0, 1, batch_shape)
    return log_rhos, discounts, rewards, values, bootstrap


def run_vtrace(inputs, **clips):
    tensors = [torch.tensor(x, dtype=torch.float64) for x in inputs]
    out = vtrace(*tensors, **clips)
    return out.vs.numpy(), out.pg_advantages.numpy()


CLIPS = [
    dict(clip_rho_threshold=1.0, clip_c_threshold=1.0, clip_pg_rho_threshold=1.0),
    dict(clip_rho_threshold=2.0, clip_c_threshold=0.5, clip_pg_rho_threshold=1.5),
    dict(clip_rho_threshold=0.8, clip_c_threshold=1.2, clip_pg_rho_threshold=2.0),
    dict(clip_rho_threshold=None, clip_c_threshold=None, clip_pg_rho_threshold=None),
    dict(clip_rho_threshold=1.0, clip_c_threshold=None, clip_pg_rho_threshold=None),
]


@pytest.mark.parametrize("batch_shape", [(1,), (5,), (4, 3), (2, 3, 2)])
@pytest.mark.parametrize("clips", CLIPS)
def test_matches_paper_reference(batch_shape, clips):
    inputs = random_inputs(7, batch_shape, seed=int(np.prod(batch_shape)))
    vs, adv = run_vtrace(inputs, **clips)
    ref_vs, ref_adv = reference(
        *inputs, clips["clip_rho_threshold"], clips["clip_c_threshold"], clips["clip_pg_rho_threshold"]
    )
    assert vs.shape == inputs[3].shape and adv.shape == inputs[3].shape
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-10, atol=1e-10)


def test_clipping_changes_the_result():
    inputs = random_inputs(6, (4,), seed=5)
    clipped = run_vtrace(inputs, clip_rho_threshold=1.0, clip_c_threshold=1.0, clip_pg_rho_threshold=1.0)
    unclipped = run_vtrace(inputs, clip_rho_threshold=None, clip_c_threshold=None, clip_pg_rho_threshold=None)
    assert not np.allclose(clipped[0], unclipped[0])
    assert not np.allclose(clipped[1], unclipped[1])


@pytest.mark.parametrize("batch_shape", [(1,), (6,), (3, 2)])
def test_on_policy_vs_is_the_n_step_bootstrapped_return(batch_shape):
    log_rhos, discounts, rewards, values, bootstrap = random_inputs(8, batch_shape, seed=9)
    log_rhos = np.zeros_like(log_rhos)
    vs, adv = run_vtrace((log_rhos, discounts, rewards, values, bootstrap))
    # G_s = r_s + gamma_s r_{s+1} + ... + (gamma_s ... gamma_{T-1}) V(x_T): the values cancel.
    t_len = rewards.shape[0]
    expected = np.zeros_like(rewards)
    for s in range(t_len):
        ret = np.zeros(batch_shape)
        scale = np.ones(batch_shape)
        for t in range(s, t_len):
            ret = ret + scale * rewards[t]
            scale = scale * discounts[t]
        expected[s] = ret + scale * bootstrap
    np.testing.assert_allclose(vs, expected, rtol=1e-10, atol=1e-10)
    # adv_s = r_s + gamma_s G_{s+1} - V(x_s) = G_s - V(x_s).
    np.testing.assert_allclose(adv, expected - values, rtol=1e-10, atol=1e-10)


def test_hand_computed_two_steps():
    # T = 2, B = 1, gamma = 0.5, rho = c = 1: v_1 = r_1 + 0.5 * V_boot = 1 + 0.5 * 4 = 3;
    # v_0 = r_0 + 0.5 * v_1 = 2 + 1.5 = 3.5. Advantages: 3.5 - 1 = 2.5 and 3 - 2 = 1.
    out = vtrace(
        torch.zeros(2, 1),
        torch.full((2, 1), 0.5),
        torch.tensor([[2.0], [1.0]]),
        torch.tensor([[1.0], [2.0]]),
        torch.tensor([4.0]),
    )
    torch.testing.assert_close(out.vs, torch.tensor([[3.5], [3.0]]))
    torch.testing.assert_close(out.pg_advantages, torch.tensor([[2.5], [1.0]]))


def test_episode_end_cuts_the_trace():
    # With gamma_0 = 0 nothing after step 0 reaches v_0.
    inputs = list(random_inputs(5, (3,), seed=11))
    inputs[1][0] = 0.0
    vs_a, _ = run_vtrace(inputs)
    inputs[2][1:] += 10.0
    inputs[4] += 10.0
    vs_b, _ = run_vtrace(inputs)
    np.testing.assert_allclose(vs_a[0], vs_b[0])
    assert not np.allclose(vs_a[1:], vs_b[1:])


def test_outputs_carry_no_gradient():
    inputs = [torch.tensor(x, requires_grad=True) for x in random_inputs(4, (2,), seed=0)]
    out = vtrace(*inputs)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad


def test_float32_matches_float64():
    inputs = random_inputs(10, (8,), seed=2)
    vs64, adv64 = run_vtrace(inputs)
    out = vtrace(*[torch.tensor(x, dtype=torch.float32) for x in inputs])
    assert out.vs.dtype == torch.float32
    np.testing.assert_allclose(out.vs.numpy(), vs64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.pg_advantages.numpy(), adv64, rtol=1e-4, atol=1e-4)
