"""Frame-stacked observations sent once per frame: exact round trips (real Space Invaders unrolls
with episode restarts inside them), fewer bytes, and malformed parts rejected."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.config import ExperimentConfig
from stackrl.learner.learner import Learner
from stackrl.protos import codec
from stackrl.protos.frame_delta import FrameDeltaError, join_stacks, split_stacks
from stackrl.runners.presets import build_config

LIMIT = codec.DEFAULT_MAX_TENSOR_BYTES


def stacks(t1: int, b: int, s: int, restarts: dict[int, list[int]], seed: int = 0) -> np.ndarray:
    """[t1, B, S, 3, 2] frame stacks; at (t, games) in `restarts` a game's stack starts afresh."""
    rng = np.random.default_rng(seed)
    obs = np.empty((t1, b, s, 3, 2), np.uint8)
    obs[0] = rng.integers(0, 256, obs[0].shape)
    for t in range(1, t1):
        obs[t, :, :-1] = obs[t - 1, :, 1:]
        obs[t, :, -1] = rng.integers(0, 256, obs[t, :, -1].shape)
        for g in restarts.get(t, []):
            obs[t, g] = obs[t, g, -1]  # a reset repeats its first frame (as envpool does)
    return obs


def test_split_keeps_whole_stacks_only_at_the_start_and_at_restarts():
    obs = stacks(7, 3, 4, {3: [1], 5: [0, 2]})
    newest, rows, older = split_stacks(obs)
    assert newest.shape == (7, 3, 1, 3, 2) and older.shape == (6, 3, 3, 2)
    assert rows.tolist() == [0, 1, 2, 3 * 3 + 1, 5 * 3 + 0, 5 * 3 + 2]
    np.testing.assert_array_equal(join_stacks(newest, rows, older, LIMIT), obs)


def test_an_array_that_is_no_frame_stack_round_trips_as_all_restarts():
    obs = np.random.default_rng(1).integers(0, 256, (5, 2, 4, 3, 3), dtype=np.uint8)
    newest, rows, older = split_stacks(obs)
    assert len(rows) == 10
    np.testing.assert_array_equal(join_stacks(newest, rows, older, LIMIT), obs)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda n, r, o: (n, r[1:], o[1:]), "first step must be sent whole"),
        (lambda n, r, o: (n, r[[0, 1, 2, 4, 3]], o), "increasing"),
        (lambda n, r, o: (n, np.r_[r[:-1], 10**6], o), "increasing and below"),
        (lambda n, r, o: (n, r, o[:-1]), "do not match"),
        (lambda n, r, o: (n, r, o[:, :, :2]), "expected"),
        (lambda n, r, o: (n, r, o.astype(np.int16)), "older frames are int16"),
        (lambda n, r, o: (n[:, :, [0, 0]], r, o), "expected \\[T\\+1, B, 1"),
        (lambda n, r, o: (n, r, np.zeros((len(r), 10**6, 3, 2), np.uint8)), "limit"),
    ],
)
def test_parts_that_do_not_fit_are_rejected(edit, match):
    newest, rows, older = split_stacks(stacks(6, 3, 4, {2: [0], 4: [1]}))
    with pytest.raises(FrameDeltaError, match=match):
        join_stacks(*edit(newest, rows, older), max_bytes=10**6)


@pytest.fixture(scope="module")
def atari_unroll(in_process_actor):
    """A real follower unroll of Space Invaders pricing with episodes cut every 15 agent steps, so
    several games restart their frame stack inside the 40-step unroll."""
    pytest.importorskip("envpool")
    phases = [{"kind": "pretrain", "env_steps": 10**6}]
    overrides = ["env.num_games=3", "env.num_threads=1", "env.max_episode_steps=15", "actor.unroll_length=40"]
    cfg = build_config("space_invaders_pricing", fields={"schedule": {"phases": phases}}, overrides=overrides)
    learner = Learner(cfg)
    actor, _ = in_process_actor(learner)
    trajs = actor.unroll()
    actor.env.close()
    learner.close()
    return actor.storage_specs, next(t for t in trajs if t.role == "follower_0")


def test_real_atari_unroll_round_trips_exactly_in_a_quarter_of_the_bytes(atari_unroll):
    specs, traj = atari_unroll
    obs = traj.arrays["obs"]
    assert obs.shape[2:] == (4, 84, 84) and traj.arrays["dones"].any()  # restarts inside the unroll
    whole = codec.encode_trajectory(traj, frame_delta=False)
    delta = codec.encode_trajectory(traj)
    assert delta.HasField("obs_restart_rows") and not whole.HasField("obs_restart_rows")
    assert delta.ByteSize() < 0.35 * whole.ByteSize()
    for msg in (whole, delta):
        out = codec.decode_trajectory(msg, specs["follower_0"])
        for name, arr in traj.arrays.items():
            np.testing.assert_array_equal(out.arrays[name], arr, err_msg=name)


@pytest.mark.parametrize(
    "tamper, match",
    [
        (lambda m: m.ClearField("obs_restart_frames"), "'obs_restart_frames' is missing"),
        (
            lambda m: m.obs_restart_rows.CopyFrom(codec.encode_tensor(np.arange(2, dtype=np.int64))),
            "'obs_restart_frames': shape",
        ),
        (
            lambda m: m.obs.CopyFrom(codec.encode_tensor(np.zeros((41, 3, 4, 84, 84), np.uint8))),
            "newest frames\\): shape",
        ),
    ],
)
def test_malformed_frame_delta_messages_are_rejected_naming_the_field(atari_unroll, tamper, match):
    specs, traj = atari_unroll
    msg = codec.encode_trajectory(traj)
    tamper(msg)
    with pytest.raises(codec.CodecError, match=match):
        codec.decode_trajectory(msg, specs["follower_0"])


def test_frame_delta_on_a_role_without_image_stacks_is_rejected(in_process_actor):
    cfg = ExperimentConfig.from_dict(
        {"name": "fd", "env": {"name": "stag_hunt", "num_games": 2}, "actor": {"unroll_length": 3}}
    )
    actor, _ = in_process_actor(Learner(cfg))
    traj = next(t for t in actor.unroll() if t.role == "follower_0")
    msg = codec.encode_trajectory(traj)
    assert not msg.HasField("obs_restart_rows")  # [T+1, B] integer observations go whole
    msg.obs_restart_rows.CopyFrom(codec.encode_tensor(np.arange(2, dtype=np.int64)))
    with pytest.raises(codec.CodecError, match="not a frame stack"):
        codec.decode_trajectory(msg, actor.storage_specs["follower_0"])
