"""`learner.lr_anneal`: each role's learning rate decays linearly to 0 over a phase."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.config import ExperimentConfig
from stackrl.envs.factory import env_spec, make_stackelberg_env
from stackrl.learner.learner import Learner
from stackrl.learner.servicer import expected_specs
from stackrl.trajectory import Trajectory

BUDGET = 1600  # env steps of the one pretraining phase: 20 unrolls of 10 steps x 8 games


def _learner(lr_anneal: bool) -> Learner:
    cfg = ExperimentConfig.from_dict(
        {
            "name": "lr",
            "env": {"name": "stag_hunt", "num_games": 8},
            "actor": {"unroll_length": 10},
            "learner": {"lr_follower": 0.01, "lr_anneal": lr_anneal},
            "schedule": {"phases": [{"kind": "pretrain", "env_steps": BUDGET}]},
        }
    )
    return Learner(cfg, None)


def _unroll(learner: Learner) -> list[Trajectory]:
    spec = expected_specs(env_spec(make_stackelberg_env(learner.cfg.env)), learner.cfg)["follower_0"]
    rng = np.random.default_rng(learner.updates["follower_0"])
    arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in spec.fields().items()}
    arrays["actions"][:] = rng.integers(0, 2, arrays["actions"].shape)
    arrays["rewards"][:] = rng.normal(size=arrays["rewards"].shape)
    arrays["logp"][:] = np.log(0.5)
    arrays["valid"][:] = True
    steps = spec.unroll_length * spec.num_games
    version = learner.versions["follower_0"]
    return [
        Trajectory(
            "follower_0", version, learner.schedule.phase_id, 0, arrays, np.zeros((0, 2), np.float32), steps
        )
    ]


@pytest.mark.parametrize("lr_anneal", [True, False])
def test_learning_rate_decays_linearly_to_zero_over_the_phase_only_when_asked(lr_anneal):
    learner = _learner(lr_anneal)
    opt = learner.optimizers["follower_0"]
    lrs = []
    while not learner.done:
        learner.process(_unroll(learner))
        lrs.append(opt.param_groups[0]["lr"])
    learner.close()
    steps = 80 * np.arange(1, len(lrs) + 1)
    expected = 0.01 * (1 - steps / BUDGET) if lr_anneal else np.full(len(lrs), 0.01)
    # The last unroll ends the phase and is not learned from: its entry repeats the previous rate.
    np.testing.assert_allclose(lrs[:-1], expected[:-1], rtol=1e-6)
    assert learner.updates["follower_0"] == BUDGET // 80 - 1
    if lr_anneal:
        assert lrs[-2] == pytest.approx(0.01 / 20)
