"""The trajectory layout of trajectory.py: the spec's fields, sentinel-filled storage, validation
errors naming the field, and batching along the game axis."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.trajectory import (
    SENTINEL_FLOAT,
    SENTINEL_INT,
    Trajectory,
    TrajectorySpec,
    concat_trajectories,
)

SPEC = TrajectorySpec(unroll_length=3, num_games=2, obs_shape=(4,), obs_dtype="float32", context_size=5)


def filled(spec: TrajectorySpec = SPEC, **kw) -> Trajectory:
    """A valid trajectory: every field of `spec` written with finite values."""
    arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in spec.fields().items()}
    return Trajectory(role="follower_0", actor_id=0, version=1, phase_id=0, arrays=arrays, **kw)


def test_fields_have_t_plus_one_observation_rows_and_t_step_rows():
    f = SPEC.fields()
    assert f["obs"] == ((4, 2, 4), "float32")
    assert f["context"] == ((4, 2, 5), "int64")
    assert f["elapsed"] == ((4, 2), "int32")
    for name in ("actions", "logp", "rewards", "dones", "valid"):
        assert f[name][0] == (3, 2), name
    assert {n: d for n, (_, d) in f.items() if n in ("actions", "logp", "dones")} == {
        "actions": "int64",
        "logp": "float32",
        "dones": "bool",
    }


def test_allocate_fills_with_sentinels_so_unwritten_slots_show():
    a = SPEC.allocate()
    assert set(a) == set(SPEC.fields())
    assert np.isnan(a["logp"]).all() and np.isnan(a["obs"]).all()
    assert (a["actions"] == SENTINEL_INT).all() and (a["context"] == SENTINEL_INT).all()
    assert not a["dones"].any() and not a["valid"].any()
    images = TrajectorySpec(2, 1, (2, 2), "uint8", 0).allocate()
    assert images["obs"].dtype == np.uint8 and (images["obs"] == 0).all()
    assert np.isnan(SENTINEL_FLOAT)
    # A freshly allocated (never written) trajectory fails validation.
    t = Trajectory("leader", 0, 0, 0, SPEC.allocate())
    with pytest.raises(ValueError, match="non-finite"):
        t.validate(SPEC)


def test_spec_is_read_back_from_the_arrays():
    assert filled().spec == SPEC
    filled().validate(SPEC)
    filled().validate()


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda a: a.pop("rewards"), "'rewards' is missing"),
        (lambda a: a.__setitem__("actions", np.zeros((2, 2), np.int64)), "'actions': shape"),
        (lambda a: a.__setitem__("logp", np.zeros((3, 2), np.float64)), "'logp': dtype"),
        (lambda a: a.__setitem__("extra", np.zeros(1)), "unknown fields"),
        (lambda a: a["rewards"].__setitem__((0, 0), np.inf), "'rewards' holds non-finite"),
        (lambda a: a["obs"].__setitem__((1, 1, 0), np.nan), "'obs' holds non-finite"),
    ],
    ids=["missing", "shape", "dtype", "unknown", "inf_reward", "nan_obs"],
)
def test_validate_names_the_bad_field(breakage, message):
    t = filled()
    breakage(t.arrays)
    with pytest.raises(ValueError, match=message):
        t.validate(SPEC)


def test_validate_rejects_bad_returns_and_negative_counters():
    with pytest.raises(ValueError, match="episode_returns"):
        filled(episode_returns=np.array([[np.nan, 1.0]], np.float32)).validate(SPEC)
    with pytest.raises(ValueError, match=">= 0"):
        filled(env_steps=-1).validate(SPEC)
    t = filled()
    t.version = -1
    with pytest.raises(ValueError, match=">= 0"):
        t.validate(SPEC)


def test_concat_joins_along_the_game_axis():
    a, b = filled(), filled(TrajectorySpec(3, 5, (4,), "float32", 5))
    a.arrays["actions"][:] = 1
    b.arrays["actions"][:] = 2
    joined = concat_trajectories([a, b])
    assert set(joined) == set(SPEC.fields())
    assert joined["obs"].shape == (4, 7, 4) and joined["context"].shape == (4, 7, 5)
    assert joined["actions"].shape == (3, 7) and joined["valid"].shape == (3, 7)
    assert (joined["actions"][:, :2] == 1).all() and (joined["actions"][:, 2:] == 2).all()
    assert joined["actions"].dtype == np.int64
