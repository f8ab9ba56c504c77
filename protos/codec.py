"""The one hand-written layer over the generated protobuf code: numpy, trajectories and broadcasts.

Everything received from the network passes through here and is checked before use: the dtype must
be on a closed list (named by an enum, not numpy's fragile type codes), the shape must be sane, the
byte count must match the shape exactly (also after zlib decompression, which is bounded so that a
small message cannot inflate without limit), and, when the receiver knows the trajectory layout,
shapes and dtypes must match it. Failures raise `CodecError` naming the field. Nothing is unpickled.

The generated modules `stackrl_pb2*.py(i)` are regenerated with `python -m stackrl.protos.generate`.
Besides this module, only the gRPC service and client import the generated `stackrl_pb2_grpc` stubs.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.protos import stackrl_pb2 as pb
from stackrl.protos.frame_delta import FrameDeltaError, join_stacks, split_stacks
from stackrl.protos.transport import Broadcast
from stackrl.trajectory import Trajectory, TrajectorySpec

DEFAULT_MAX_TENSOR_BYTES = 1 << 30
"""Largest decoded tensor accepted (bounds zlib inflation; gRPC bounds the raw message size)."""
MAX_RETURN_COLUMNS = 64
"""Most roles an `episode_returns` row may hold: with a known layout, that tensor's declared size is
bounded by T * B rows of this many columns before anything is inflated (issue 13, defect 4)."""


# The messages of each RPC, for type annotations outside protos/ (build and read them with the
# functions below).
RegisterRequest = pb.RegisterRequest
RegisterReply = pb.RegisterReply
TrajectoryMsg = pb.TrajectoryMsg
PushReply = pb.PushReply
RoleWeights = pb.RoleWeights
BroadcastMsg = pb.BroadcastMsg
WeightsRequest = pb.WeightsRequest
StatusRequest = pb.StatusRequest
StatusReply = pb.StatusReply


class CodecError(ValueError):
    """A message is malformed or does not match the expected layout; the message names the field."""


# The closed list of element types; everything travels little-endian.
_DTYPES: dict[pb.DType, np.dtype] = {
    pb.BOOL: np.dtype(np.bool_),
    pb.UINT8: np.dtype(np.uint8),
    pb.INT8: np.dtype(np.int8),
    pb.INT16: np.dtype(np.int16),
    pb.INT32: np.dtype(np.int32),
    pb.INT64: np.dtype(np.int64),
    pb.FLOAT16: np.dtype(np.float16),
    pb.FLOAT32: np.dtype(np.float32),
    pb.FLOAT64: np.dtype(np.float64),
}
_ENUMS: dict[np.dtype, pb.DType] = {dt: code for code, dt in _DTYPES.items()}

# Trajectory arrays are named fields of TrajectoryMsg; the spec is the source of their names.
ARRAY_FIELDS: tuple[str, ...] = tuple(TrajectorySpec(1, 1, (), "float32", 0).fields())
_missing = [
    f for f in (*ARRAY_FIELDS, "episode_returns") if f not in pb.TrajectoryMsg.DESCRIPTOR.fields_by_name
]
if _missing:  # the spec grew a field the proto lacks: fail at import, not on the first push
    raise ImportError(f"stackrl.proto's TrajectoryMsg lacks trajectory fields {_missing}")


# -- tensors ----------------------------------------------------------------------------------------
def encode_tensor(array: np.ndarray, *, compress: bool = False, name: str = "tensor") -> pb.Tensor:
    """numpy array (any shape, a whitelisted dtype) -> Tensor message (C order, little-endian).

    Args:
        array: the array; copied into the message.
        compress: zlib-compress the bytes (level 1: fast; worth it for image observations).
        name: field name used in error messages.
    """
    arr = np.asarray(array)
    code = _ENUMS.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise CodecError(f"{name}: dtype {arr.dtype} cannot be sent (allowed: {_allowed()})")
    data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
    msg = pb.Tensor(dtype=code, shape=arr.shape)
    if compress:
        msg.data = zlib.compress(data, 1)
        msg.compression = pb.ZLIB
    else:
        msg.data = data
    return msg


def decode_tensor(
    msg: pb.Tensor,
    name: str,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: str | np.dtype | None = None,
    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> np.ndarray:
    """Tensor message -> a fresh, writable numpy array in native byte order.

    Args:
        msg: the message.
        name: field name used in error messages.
        shape: if given, the shape the tensor must have.
        dtype: if given, the dtype the tensor must have.
        max_bytes: largest accepted decoded size.

    Raises:
        CodecError: unknown dtype or compression, bad shape, byte count not matching the shape,
            or a mismatch with `shape` / `dtype`.
    """
    dt = _DTYPES.get(msg.dtype)
    if dt is None:
        label = pb.DType.Name(msg.dtype) if msg.dtype in pb.DType.values() else str(msg.dtype)
        raise CodecError(f"{name}: unknown dtype {label} (allowed: {_allowed()})")
    if dtype is not None and dt != np.dtype(dtype):
        raise CodecError(f"{name}: dtype {dt}, expected {np.dtype(dtype)}")
    dims = tuple(int(d) for d in msg.shape)
    if any(d < 0 for d in dims):
        raise CodecError(f"{name}: negative dimension in shape {dims}")
    if shape is not None and dims != tuple(shape):
        raise CodecError(f"{name}: shape {dims}, expected {tuple(shape)}")
    nbytes = math.prod(dims) * dt.itemsize
    if nbytes > max_bytes:
        raise CodecError(f"{name}: {nbytes} bytes exceed the limit of {max_bytes}")
    if msg.compression == pb.NONE:
        raw = msg.data
    elif msg.compression == pb.ZLIB:
        raw = _inflate(msg.data, nbytes, name)
    else:
        raise CodecError(f"{name}: unknown compression {msg.compression}")
    if len(raw) != nbytes:
        raise CodecError(f"{name}: {len(raw)} data bytes, shape {dims} of {dt} needs {nbytes}")
    arr = np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt).reshape(dims)
    if dt == np.bool_ and nbytes and np.frombuffer(raw, np.uint8).max() > 1:
        raise CodecError(f"{name}: bool tensor holds bytes other than 0 and 1")
    return arr


def _inflate(data: bytes, expected: int, name: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, expected + 1)  # one byte over reveals an oversized payload
    except zlib.error as e:
        raise CodecError(f"{name}: corrupt zlib data ({e})") from None
    if not inflater.eof and len(raw) <= expected:
        raise CodecError(f"{name}: truncated zlib data")
    return raw


def _allowed() -> str:
    return ", ".join(str(dt) for dt in _DTYPES.values())


# -- trajectories -----------------------------------------------------------------------------------
def _is_frame_stack(obs: np.ndarray) -> bool:
    """uint8 images stacked along the first observation axis: [T+1, B, S >= 2, H, W(, C)]."""
    return obs.dtype == np.uint8 and obs.ndim >= 5 and obs.shape[2] >= 2


def encode_trajectory(
    traj: Trajectory, *, compress: bool = False, frame_delta: bool = True
) -> pb.TrajectoryMsg:
    """Trajectory -> TrajectoryMsg (every array as a named Tensor field).

    With `frame_delta`, frame-stacked image observations travel once per frame
    (`frame_delta.py`): lossless, about S times fewer observation bytes. When fewer than half of the
    rows continue the previous row's stack (not a frame stack after all), `obs` goes whole."""
    unknown = set(traj.arrays) - set(ARRAY_FIELDS)
    if unknown:
        raise CodecError(f"trajectory has fields the wire format lacks: {sorted(unknown)}")
    msg = pb.TrajectoryMsg(
        role=traj.role,
        actor_id=traj.actor_id,
        version=traj.version,
        phase_id=traj.phase_id,
        env_steps=traj.env_steps,
        episode_returns=encode_tensor(traj.episode_returns, name="episode_returns"),
    )
    arrays = dict(traj.arrays)
    obs = arrays.get("obs")
    if frame_delta and obs is not None and _is_frame_stack(obs):
        newest, rows, older = split_stacks(obs)
        if 2 * len(rows) <= obs.shape[0] * obs.shape[1]:
            arrays["obs"] = newest
            msg.obs_restart_rows.CopyFrom(encode_tensor(rows, name="obs_restart_rows"))
            msg.obs_restart_frames.CopyFrom(
                encode_tensor(older, compress=compress, name="obs_restart_frames")
            )
    for name, arr in arrays.items():
        getattr(msg, name).CopyFrom(encode_tensor(arr, compress=compress, name=f"trajectory field {name!r}"))
    return msg


def _decode_frame_delta(msg: pb.TrajectoryMsg, expected: tuple[tuple[int, ...], str] | None) -> np.ndarray:
    """Rebuild frame-stacked `obs` from its newest frames and restart rows (checked, bounded)."""
    shape, dtype = expected or (None, None)
    if shape is not None and len(shape) < 5:
        raise CodecError(f"trajectory field 'obs': frame-delta encoded, but {shape} is not a frame stack")
    newest_shape = (*shape[:2], 1, *shape[3:]) if shape is not None else None
    newest = decode_tensor(msg.obs, "trajectory field 'obs' (newest frames)", shape=newest_shape, dtype=dtype)
    if not msg.HasField("obs_restart_frames"):
        raise CodecError("trajectory field 'obs_restart_frames' is missing (obs_restart_rows is set)")
    # At most one restart per row of the unroll: the bound applies to the declared shape, before zlib.
    max_rows = (shape[0] * shape[1] if shape is not None else DEFAULT_MAX_TENSOR_BYTES // 8) * 8
    rows = decode_tensor(
        msg.obs_restart_rows, "trajectory field 'obs_restart_rows'", dtype="int64", max_bytes=max_rows
    )
    older_shape = (len(rows), shape[2] - 1, *shape[3:]) if shape is not None and rows.ndim == 1 else None
    older = decode_tensor(
        msg.obs_restart_frames, "trajectory field 'obs_restart_frames'", shape=older_shape, dtype=dtype
    )
    try:
        return join_stacks(newest, rows, older, max_bytes=DEFAULT_MAX_TENSOR_BYTES)
    except FrameDeltaError as e:
        raise CodecError(f"trajectory field 'obs': {e}") from None


def decode_trajectory(msg: pb.TrajectoryMsg, spec: TrajectorySpec | None = None) -> Trajectory:
    """TrajectoryMsg -> Trajectory, checked against `spec` (the receiver's layout for that role).

    Raises:
        CodecError: a missing field, or any tensor that fails `decode_tensor`'s checks or the spec.
    """
    if not msg.role:
        raise CodecError("trajectory field 'role' is empty")
    if len(msg.role) > 64:
        raise CodecError(f"trajectory field 'role': {len(msg.role)} characters, at most 64")
    if msg.actor_id < 0 or msg.version < 0 or msg.env_steps < 0 or msg.phase_id < 0:
        raise CodecError("trajectory fields actor_id, version, phase_id and env_steps must be >= 0")
    expected = spec.fields() if spec is not None else {}
    arrays = {}
    for name in ARRAY_FIELDS:
        label = f"trajectory field {name!r}"
        if not msg.HasField(name):
            raise CodecError(f"{label} is missing")
        if name == "obs" and msg.HasField("obs_restart_rows"):
            arrays[name] = _decode_frame_delta(msg, expected.get(name))
            continue
        shape, dtype = expected.get(name, (None, None))
        arrays[name] = decode_tensor(getattr(msg, name), label, shape=shape, dtype=dtype)
    if not msg.HasField("episode_returns"):
        raise CodecError("trajectory field 'episode_returns' is missing")
    # Episodes that end inside the unroll: at most T * B, each a row of per-role returns.
    unroll = spec.unroll_length * spec.num_games if spec is not None else None
    returns = decode_tensor(
        msg.episode_returns,
        "trajectory field 'episode_returns'",
        dtype="float32",
        max_bytes=unroll * MAX_RETURN_COLUMNS * 4 if unroll is not None else DEFAULT_MAX_TENSOR_BYTES,
    )
    if returns.ndim != 2:
        raise CodecError(f"trajectory field 'episode_returns': shape {returns.shape}, expected [E, R]")
    return Trajectory(
        role=msg.role,
        actor_id=msg.actor_id,
        version=msg.version,
        phase_id=msg.phase_id,
        arrays=arrays,
        episode_returns=returns,
        env_steps=msg.env_steps,
    )


# -- broadcasts -------------------------------------------------------------------------------------
def encode_role_weights(role: str, version: int, state: Mapping[str, np.ndarray]) -> pb.RoleWeights:
    """One role's state dict (name -> array) and version -> RoleWeights."""
    msg = pb.RoleWeights(role=role, version=version)
    for key, arr in state.items():
        msg.params[key].CopyFrom(encode_tensor(arr, name=f"weights[{role!r}][{key!r}]"))
    return msg


def encode_broadcast(b: Broadcast, weights: Iterable[pb.RoleWeights]) -> pb.BroadcastMsg:
    """Broadcast's phase fields and versions, plus the given (already encoded) role weights.

    The caller picks the roles: a stream sends a role's weights only when its version changed.
    """
    msg = pb.BroadcastMsg(
        phase_id=b.phase_id,
        phase_kind=b.phase_kind,
        leader_source=b.leader_source,
        send_roles=list(b.send_roles),
        follower_context=b.follower_context,
        versions=b.versions,
        weights=list(weights),
        done=b.done,
    )
    if b.leader_table is not None:
        msg.leader_table.CopyFrom(encode_tensor(b.leader_table, name="leader_table"))
    return msg


def weights_field(rw: pb.RoleWeights) -> bytes:
    """`rw` serialized as one entry of BroadcastMsg.weights (field 8, length-delimited): a learner
    serializes each role once per version and answers every pull by concatenation (`broadcast_bytes`)."""
    data = rw.SerializeToString()
    return _BROADCAST_WEIGHTS_TAG + varint(len(data)) + data


def broadcast_bytes(b: Broadcast, fields: Iterable[bytes]) -> bytes:
    """A serialized BroadcastMsg equal to `encode_broadcast(b, weights)` whose weights are already in
    `weights_field` form: protobuf messages may be concatenated, so the weights are appended, not
    copied into a message and serialized again (a 7 MB Atari copy per pull otherwise)."""
    return encode_broadcast(b, []).SerializeToString() + b"".join(fields)


_BROADCAST_WEIGHTS_TAG = bytes([(pb.BroadcastMsg.DESCRIPTOR.fields_by_name["weights"].number << 3) | 2])


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint of `n` >= 0 (for splicing fields onto serialized messages)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_broadcast(msg: pb.BroadcastMsg) -> Broadcast:
    """BroadcastMsg -> Broadcast whose `weights` holds only the roles the message carried.

    `versions` lists every role's latest version; merge weights across messages (see
    `merge_weights`) to hold them all.
    """
    weights = {}
    for rw in msg.weights:
        if rw.role not in msg.versions or msg.versions[rw.role] != rw.version:
            raise CodecError(f"weights[{rw.role!r}]: version {rw.version} does not match the versions map")
        weights[rw.role] = {k: decode_tensor(t, f"weights[{rw.role!r}][{k!r}]") for k, t in rw.params.items()}
    table = decode_tensor(msg.leader_table, "leader_table") if msg.HasField("leader_table") else None
    return Broadcast(
        phase_id=msg.phase_id,
        phase_kind=msg.phase_kind,
        leader_source=msg.leader_source,
        send_roles=tuple(msg.send_roles),
        follower_context=msg.follower_context,
        leader_table=table,
        versions=dict(msg.versions),
        weights=weights,
        done=msg.done,
    )


def merge_weights(held: dict[str, tuple[int, dict[str, np.ndarray]]], partial: Broadcast) -> Broadcast:
    """Fold a partial broadcast into `held` (role -> (version, state), updated in place).

    Returns:
        The same broadcast with every role's latest weights, so an actor needs only the newest one.

    Raises:
        CodecError: a version is announced for a role whose weights were never received.
    """
    for role, state in partial.weights.items():
        held[role] = (partial.versions[role], state)
    for role, version in partial.versions.items():
        if role not in held or held[role][0] != version:
            raise CodecError(f"versions[{role!r}] = {version} but no weights of that version were received")
    return dataclasses.replace(partial, weights={role: state for role, (_, state) in held.items()})


# -- handshake and status ---------------------------------------------------------------------------
def register_request(hostname: str, pid: int) -> pb.RegisterRequest:
    return pb.RegisterRequest(hostname=hostname, pid=pid)


def register_reply(actor_id: int, cfg: ExperimentConfig) -> pb.RegisterReply:
    return pb.RegisterReply(actor_id=actor_id, config_yaml=cfg.to_yaml())


def decode_register_reply(msg: pb.RegisterReply) -> tuple[int, ExperimentConfig]:
    """RegisterReply -> (actor id, config); the YAML is loaded strictly into the dataclasses."""
    if msg.actor_id < 0:
        raise CodecError(f"actor_id: must be >= 0, got {msg.actor_id}")
    try:
        return msg.actor_id, ExperimentConfig.from_yaml(msg.config_yaml)
    except ValueError as e:
        raise CodecError(f"config_yaml: {e}") from None


def weights_request(actor_id: int, versions: Mapping[str, int] | None = None) -> pb.WeightsRequest:
    """StreamWeights' request (`versions` None), or PullWeights' with the versions the actor holds."""
    return pb.WeightsRequest(actor_id=actor_id, versions=dict(versions or {}))


def stale_roles(held: Mapping[str, int], newest: Mapping[str, int]) -> list[str]:
    """Roles whose newest version differs from the one held (missing counts as stale; a lower newest
    version is stale too: a learner restarted from an older checkpoint)."""
    return [role for role, version in newest.items() if held.get(role) != version]


def push_reply(accepted: int, done: bool) -> pb.PushReply:
    return pb.PushReply(accepted=accepted, done=done)


def status_request() -> pb.StatusRequest:
    return pb.StatusRequest()


@dataclass
class LearnerStatus:
    """What `Status` reports about a running learner."""

    env_steps: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    phase_id: int = 0
    phase_kind: str = ""
    queue_depth: int = 0
    done: bool = False
    trajectories_received: int = 0
    rejected: int = 0
    actors_registered: int = 0
    bytes_received: int = 0


def status_reply(status: LearnerStatus) -> pb.StatusReply:
    return pb.StatusReply(**dataclasses.asdict(status))


def decode_status(msg: pb.StatusReply) -> LearnerStatus:
    values = {f.name: getattr(msg, f.name) for f in dataclasses.fields(LearnerStatus)}
    return LearnerStatus(**{**values, "versions": dict(msg.versions)})
