from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    BOOL: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    INT8: _ClassVar[DType]
    INT16: _ClassVar[DType]
    INT32: _ClassVar[DType]
    INT64: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT64: _ClassVar[DType]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[Compression]
    ZLIB: _ClassVar[Compression]
DTYPE_UNSPECIFIED: DType
BOOL: DType
UINT8: DType
INT8: DType
INT16: DType
INT32: DType
INT64: DType
FLOAT16: DType
FLOAT32: DType
FLOAT64: DType
NONE: Compression
ZLIB: Compression

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data", "compression")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    compression: Compression
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., compression: _Optional[_Union[Compression, str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("hostname", "pid")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    pid: int
    def __init__(self, hostname: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("actor_id", "config_yaml")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_YAML_FIELD_NUMBER: _ClassVar[int]
    actor_id: int
    config_yaml: str
    def __init__(self, actor_id: _Optional[int] = ..., config_yaml: _Optional[str] = ...) -> None: ...

class TrajectoryMsg(_message.Message):
    __slots__ = ("role", "actor_id", "version", "phase_id", "env_steps", "obs", "context", "actions", "logp", "rewards", "dones", "valid", "episode_returns", "elapsed", "obs_restart_rows", "obs_restart_frames")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PHASE_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    OBS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    LOGP_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    DONES_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_RETURNS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    OBS_RESTART_ROWS_FIELD_NUMBER: _ClassVar[int]
    OBS_RESTART_FRAMES_FIELD_NUMBER: _ClassVar[int]
    role: str
    actor_id: int
    version: int
    phase_id: int
    env_steps: int
    obs: Tensor
    context: Tensor
    actions: Tensor
    logp: Tensor
    rewards: Tensor
    dones: Tensor
    valid: Tensor
    episode_returns: Tensor
    elapsed: Tensor
    obs_restart_rows: Tensor
    obs_restart_frames: Tensor
    def __init__(self, role: _Optional[str] = ..., actor_id: _Optional[int] = ..., version: _Optional[int] = ..., phase_id: _Optional[int] = ..., env_steps: _Optional[int] = ..., obs: _Optional[_Union[Tensor, _Mapping]] = ..., context: _Optional[_Union[Tensor, _Mapping]] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., logp: _Optional[_Union[Tensor, _Mapping]] = ..., rewards: _Optional[_Union[Tensor, _Mapping]] = ..., dones: _Optional[_Union[Tensor, _Mapping]] = ..., valid: _Optional[_Union[Tensor, _Mapping]] = ..., episode_returns: _Optional[_Union[Tensor, _Mapping]] = ..., elapsed: _Optional[_Union[Tensor, _Mapping]] = ..., obs_restart_rows: _Optional[_Union[Tensor, _Mapping]] = ..., obs_restart_frames: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class PushReply(_message.Message):
    __slots__ = ("accepted", "done")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    done: bool
    def __init__(self, accepted: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class RoleWeights(_message.Message):
    __slots__ = ("role", "version", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    role: str
    version: int
    params: _containers.MessageMap[str, Tensor]
    def __init__(self, role: _Optional[str] = ..., version: _Optional[int] = ..., params: _Optional[_Mapping[str, Tensor]] = ...) -> None: ...

class BroadcastMsg(_message.Message):
    __slots__ = ("phase_id", "phase_kind", "leader_source", "send_roles", "follower_context", "leader_table", "versions", "weights", "done")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PHASE_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_KIND_FIELD_NUMBER: _ClassVar[int]
    LEADER_SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEND_ROLES_FIELD_NUMBER: _ClassVar[int]
    FOLLOWER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LEADER_TABLE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    phase_id: int
    phase_kind: str
    leader_source: str
    send_roles: _containers.RepeatedScalarFieldContainer[str]
    follower_context: bool
    leader_table: Tensor
    versions: _containers.ScalarMap[str, int]
    weights: _containers.RepeatedCompositeFieldContainer[RoleWeights]
    done: bool
    def __init__(self, phase_id: _Optional[int] = ..., phase_kind: _Optional[str] = ..., leader_source: _Optional[str] = ..., send_roles: _Optional[_Iterable[str]] = ..., follower_context: _Optional[bool] = ..., leader_table: _Optional[_Union[Tensor, _Mapping]] = ..., versions: _Optional[_Mapping[str, int]] = ..., weights: _Optional[_Iterable[_Union[RoleWeights, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class WeightsRequest(_message.Message):
    __slots__ = ("actor_id", "versions")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    actor_id: int
    versions: _containers.ScalarMap[str, int]
    def __init__(self, actor_id: _Optional[int] = ..., versions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("env_steps", "versions", "phase_id", "phase_kind", "queue_depth", "done", "trajectories_received", "rejected", "actors_registered", "bytes_received")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENV_STEPS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    PHASE_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_KIND_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ACTORS_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    env_steps: int
    versions: _containers.ScalarMap[str, int]
    phase_id: int
    phase_kind: str
    queue_depth: int
    done: bool
    trajectories_received: int
    rejected: int
    actors_registered: int
    bytes_received: int
    def __init__(self, env_steps: _Optional[int] = ..., versions: _Optional[_Mapping[str, int]] = ..., phase_id: _Optional[int] = ..., phase_kind: _Optional[str] = ..., queue_depth: _Optional[int] = ..., done: _Optional[bool] = ..., trajectories_received: _Optional[int] = ..., rejected: _Optional[int] = ..., actors_registered: _Optional[int] = ..., bytes_received: _Optional[int] = ...) -> None: ...
