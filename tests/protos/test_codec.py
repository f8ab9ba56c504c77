"""protos/codec.py: numpy, trajectory and broadcast round trips, and every rejection naming its field."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from stackrl.config import ExperimentConfig
from stackrl.learner.learner import Learner
from stackrl.protos import codec
from stackrl.protos.transport import Broadcast

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


def small_cfg(**env) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "name": "codec",
            "env": {"name": "stag_hunt", "num_games": 4, **env},
            "actor": {"unroll_length": 6},
            "schedule": {"phases": [{"kind": "alternate", "env_steps": 1000}]},  # sends both roles
        }
    )


@pytest.fixture(scope="module")
def unroll(in_process_actor):
    """A real unroll (leader and follower trajectories) and the broadcast that produced it."""
    learner = Learner(small_cfg())
    actor, _ = in_process_actor(learner, actor_id=3)
    return actor, learner.broadcast(), actor.unroll()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4), (5, 0, 2)])
def test_tensor_round_trip(dtype, compress, shape):
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=shape) * 50).astype(dtype)
    out = codec.decode_tensor(codec.encode_tensor(arr, compress=compress), "x")
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable and out.flags.c_contiguous


def test_tensor_wire_bytes_are_little_endian_and_non_contiguous_input_is_fine():
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    msg = codec.encode_tensor(big.T)  # transposed: not C-contiguous, big-endian
    assert msg.data == np.ascontiguousarray(big.T).astype("<i4").tobytes()
    out = codec.decode_tensor(msg, "x")
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, big.T)


def test_compression_shrinks_redundant_data():
    arr = np.zeros((32, 84, 84), np.uint8)
    plain, packed = codec.encode_tensor(arr), codec.encode_tensor(arr, compress=True)
    assert len(packed.data) < len(plain.data) // 50
    np.testing.assert_array_equal(codec.decode_tensor(packed, "obs"), arr)


@pytest.mark.parametrize(
    "bad", [np.zeros(2, np.complex64), np.array(["a"]), np.array([object()]), np.zeros(2, "M8[s]")]
)
def test_unsendable_dtype_is_rejected_by_name(bad):
    with pytest.raises(codec.CodecError, match=r"^weights\['w'\]: dtype"):
        codec.encode_tensor(bad, name="weights['w']")


def tensor(arr=None, **fields):
    msg = codec.encode_tensor(np.arange(6, dtype=np.float32).reshape(2, 3) if arr is None else arr)
    for k, v in fields.items():
        if k == "shape":
            del msg.shape[:]
            msg.shape.extend(v)
        else:
            setattr(msg, k, v)
    return msg


@pytest.mark.parametrize(
    "msg, kwargs, match",
    [
        (tensor(dtype=0), {}, r"logp: unknown dtype DTYPE_UNSPECIFIED"),
        (tensor(dtype=42), {}, r"logp: unknown dtype 42"),
        (tensor(), {"dtype": "int64"}, r"logp: dtype float32, expected int64"),
        (tensor(), {"shape": (3, 2)}, r"logp: shape \(2, 3\), expected \(3, 2\)"),
        (tensor(shape=[2, -3]), {}, r"logp: negative dimension"),
        (tensor(data=b"\0" * 20), {}, r"logp: 20 data bytes, shape \(2, 3\) of float32 needs 24"),
        (tensor(shape=[2, 4]), {}, r"logp: 24 data bytes, shape \(2, 4\) of float32 needs 32"),
        (tensor(compression=7), {}, r"logp: unknown compression 7"),
        (tensor(compression=1), {}, r"logp: corrupt zlib data"),
        (tensor(compression=1, data=zlib.compress(b"\0" * 4096)), {}, r"logp: 25 data bytes.* needs 24"),
        (tensor(compression=1, data=zlib.compress(b"\0" * 24)[:-6]), {}, r"logp: truncated zlib data"),
        (tensor(shape=[1 << 20, 1 << 20]), {}, r"logp: \d+ bytes exceed the limit"),
        (
            tensor(np.array([True, False]), data=b"\x01\x02"),
            {},
            r"logp: bool tensor holds bytes other than 0 and 1",
        ),
    ],
)
def test_malformed_tensor_is_rejected_naming_the_field(msg, kwargs, match):
    with pytest.raises(codec.CodecError, match=match):
        codec.decode_tensor(msg, "logp", **kwargs)


def test_trajectory_round_trip_with_spec(unroll):
    actor, _, trajs = unroll
    assert {t.role for t in trajs} == {"leader", "follower_0"}  # leader context is [T+1, B, 0]
    for traj in trajs:
        for compress in (False, True):
            out = codec.decode_trajectory(
                codec.encode_trajectory(traj, compress=compress), actor.storage_specs[traj.role]
            )
            assert (out.role, out.actor_id, out.version, out.phase_id, out.env_steps) == (
                traj.role,
                3,
                traj.version,
                traj.phase_id,
                traj.env_steps,
            )
            assert out.arrays.keys() == traj.arrays.keys()
            for name, arr in traj.arrays.items():
                assert out.arrays[name].dtype == arr.dtype, name
                np.testing.assert_array_equal(out.arrays[name], arr)
            np.testing.assert_array_equal(out.episode_returns, traj.episode_returns)
            out.validate(actor.storage_specs[traj.role])


def test_every_spec_field_is_a_named_message_field():
    assert set(codec.ARRAY_FIELDS) == {
        "obs",
        "context",
        "elapsed",
        "actions",
        "logp",
        "rewards",
        "dones",
        "valid",
    }


@pytest.mark.parametrize(
    "tamper, match",
    [
        (
            lambda m: m.actions.CopyFrom(codec.encode_tensor(np.zeros((6, 4), np.float32))),
            r"'actions': dtype float32, expected int64",
        ),
        (
            lambda m: m.rewards.CopyFrom(codec.encode_tensor(np.zeros((7, 4), np.float32))),
            r"'rewards': shape \(7, 4\), expected \(6, 4\)",
        ),
        (lambda m: setattr(m.obs, "data", m.obs.data[:-1]), r"'obs': \d+ data bytes"),
        (lambda m: m.ClearField("valid"), r"'valid' is missing"),
        (lambda m: m.ClearField("episode_returns"), r"'episode_returns' is missing"),
        (
            lambda m: m.episode_returns.CopyFrom(codec.encode_tensor(np.zeros(3, np.float32))),
            r"'episode_returns': shape \(3,\), expected \[E, R\]",
        ),
        (
            lambda m: m.episode_returns.CopyFrom(codec.encode_tensor(np.zeros((1, 2)))),
            r"'episode_returns': dtype float64, expected float32",
        ),
        (lambda m: setattr(m, "role", ""), r"'role' is empty"),
        (lambda m: setattr(m, "version", -1), r"must be >= 0"),
    ],
)
def test_invalid_trajectory_is_rejected_naming_the_field(unroll, tamper, match):
    actor, _, trajs = unroll
    follower = next(t for t in trajs if t.role == "follower_0")
    msg = codec.encode_trajectory(follower)
    tamper(msg)
    with pytest.raises(codec.CodecError, match=match):
        codec.decode_trajectory(msg, actor.storage_specs["follower_0"])


def test_broadcast_round_trip_partial_weights_and_merge(unroll):
    _, b, _ = unroll
    table = Broadcast(
        **{**b.__dict__, "leader_table": np.array([1, 0, 1, 1, 0]), "phase_kind": "inner_outer"}
    )
    encoded = {r: codec.encode_role_weights(r, b.versions[r], w) for r, w in b.weights.items()}
    full = codec.decode_broadcast(codec.encode_broadcast(table, encoded.values()))
    assert (full.phase_id, full.phase_kind, full.leader_source, full.send_roles, full.done) == (
        b.phase_id,
        "inner_outer",
        b.leader_source,
        b.send_roles,
        b.done,
    )
    np.testing.assert_array_equal(full.leader_table, [1, 0, 1, 1, 0])
    for role, state in b.weights.items():
        assert full.weights[role].keys() == state.keys()
        for k, v in state.items():
            np.testing.assert_array_equal(full.weights[role][k], v)

    held: dict = {}
    merged = codec.merge_weights(held, full)
    assert merged.weights.keys() == b.weights.keys()
    # The next message carries only the leader, at a new version; merging keeps the follower's weights.
    newer = Broadcast(**{**b.__dict__, "versions": {**b.versions, "leader": b.versions["leader"] + 1}})
    leader_only = codec.encode_role_weights("leader", newer.versions["leader"], b.weights["leader"])
    partial = codec.decode_broadcast(codec.encode_broadcast(newer, [leader_only]))
    assert set(partial.weights) == {"leader"} and partial.leader_table is None
    merged = codec.merge_weights(held, partial)
    assert merged.versions == newer.versions and merged.weights.keys() == b.weights.keys()
    assert held["leader"][0] == newer.versions["leader"]


def test_merge_rejects_a_version_without_weights(unroll):
    _, b, _ = unroll
    partial = codec.decode_broadcast(codec.encode_broadcast(b, []))
    with pytest.raises(codec.CodecError, match=r"versions\['(leader|follower_0)'\] = 1 but no weights"):
        codec.merge_weights({}, partial)


def test_broadcast_rejects_weights_whose_version_disagrees(unroll):
    _, b, _ = unroll
    wrong = codec.encode_role_weights("leader", b.versions["leader"] + 5, b.weights["leader"])
    with pytest.raises(codec.CodecError, match=r"weights\['leader'\]: version"):
        codec.decode_broadcast(codec.encode_broadcast(b, [wrong]))


def test_register_reply_carries_the_config_as_yaml():
    cfg = small_cfg(queries="observed")
    actor_id, back = codec.decode_register_reply(codec.register_reply(7, cfg))
    assert actor_id == 7 and back == cfg
    bad = codec.register_reply(0, cfg)
    bad.config_yaml = "env: {num_games: 0}"
    with pytest.raises(codec.CodecError, match=r"config_yaml: env.num_games"):
        codec.decode_register_reply(bad)


def test_status_round_trip():
    status = codec.LearnerStatus(
        env_steps=5, versions={"leader": 2, "follower_0": 9}, phase_id=1, phase_kind="leader", queue_depth=3,
        done=True, trajectories_received=11, rejected=1, actors_registered=2, bytes_received=123,
    )  # fmt: skip
    assert codec.decode_status(codec.status_reply(status)) == status


def test_a_compressed_bomb_is_refused_from_its_declared_shape_before_inflating(unroll):
    """Issue 13, defect 4: 256 MB of zeros declared as `episode_returns` compress to about 250 kB;
    they were inflated (up to 1 GiB) before any layout check. The bound now follows the unroll's
    T*B, so the declared shape alone refuses it and the process allocates next to nothing."""
    import tracemalloc

    actor, _, trajs = unroll
    msg = codec.encode_trajectory(next(t for t in trajs if t.role == "follower_0"))
    bomb = np.zeros((1 << 25, 2), np.float32)
    msg.episode_returns.CopyFrom(codec.encode_tensor(bomb, compress=True))
    del bomb
    assert msg.episode_returns.ByteSize() < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(codec.CodecError, match=r"'episode_returns'.*bytes exceed the limit"):
            codec.decode_trajectory(msg, actor.storage_specs["follower_0"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"decoding allocated {peak / 2**20:.0f} MB"


def test_an_oversized_role_name_is_refused_without_quoting_it(unroll):
    actor, _, trajs = unroll
    msg = codec.encode_trajectory(next(t for t in trajs if t.role == "follower_0"))
    msg.role = "x" * 8_000_000
    with pytest.raises(codec.CodecError) as err:
        codec.decode_trajectory(msg, actor.storage_specs["follower_0"])
    assert len(str(err.value)) < 200


def test_broadcast_bytes_is_the_broadcast_with_its_weights_appended(unroll):
    """A pull reply built by concatenating pre-serialized weights parses to the same message as one
    built with encode_broadcast, for every subset of roles (issue 16)."""
    _, b, _ = unroll
    encoded = {r: codec.encode_role_weights(r, b.versions[r], w) for r, w in b.weights.items()}
    for roles in ([], ["leader"], list(encoded)):
        built = codec.encode_broadcast(b, [encoded[r] for r in roles])
        wire = codec.broadcast_bytes(b, [codec.weights_field(encoded[r]) for r in roles])
        assert codec.BroadcastMsg.FromString(wire) == built
        assert len(wire) == built.ByteSize()
