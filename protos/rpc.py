"""The gRPC service surface: the one door from outside `protos/` to the generated stubs.

Learner and actors reach the generated `stackrl_pb2_grpc` module only through these names, so a
regenerated module (or another grpcio-tools version) changes one file. The message types are
named in protos/codec.py.

The server side is registered here rather than with the generated `add_LearnerServicer_to_server`:
when gRPC's own deserializer fails on a request stream, grpc-python leaves the call unfinished and
`server.stop(grace).wait()` never returns (issue 13, defect 2). Our deserializers never raise; bytes
that do not parse arrive at the handler as a `MalformedRequest`, which it refuses by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message
from stackrl.protos import codec as _pb  # the message types, named in the codec
from stackrl.protos import stackrl_pb2_grpc as _generated

LearnerStub = _generated.LearnerStub
"""Client stub: `Register`, `PushTrajectories`, `StreamWeights`, `PullWeights`, `Status`."""
LearnerServicerBase = _generated.LearnerServicer
"""Base class of the learner's servicer (unimplemented methods answer UNIMPLEMENTED)."""
SERVICE = "stackrl.Learner"


class MalformedRequest:
    """A request whose bytes are not the message the RPC takes; the handler answers INVALID_ARGUMENT."""

    def __init__(self, message_type: str, error: str):
        self.message_type = message_type
        self.error = error

    def describe(self) -> str:
        return f"request is not a valid {self.message_type}: {self.error[:200]}"


def _parser(cls: type[Message]) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.name

    def parse(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as e:
            return MalformedRequest(name, str(e))

    return parse


def _as_bytes(reply: Message | bytes) -> bytes:
    """A reply the handler already serialized passes as it is; a message is serialized."""
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


def add_learner_servicer(servicer: LearnerServicerBase, server: grpc.Server | grpc.aio.Server) -> None:
    """Register a servicer (the learner's: coroutines on a `grpc.aio.Server`) with deserializers that
    never fail a call."""
    handlers = {
        "Register": grpc.unary_unary_rpc_method_handler(
            servicer.Register,
            request_deserializer=_parser(_pb.RegisterRequest),
            response_serializer=_pb.RegisterReply.SerializeToString,
        ),
        "PushTrajectories": grpc.stream_unary_rpc_method_handler(
            servicer.PushTrajectories,
            request_deserializer=_parser(_pb.TrajectoryMsg),
            response_serializer=_pb.PushReply.SerializeToString,
        ),
        "StreamWeights": grpc.unary_stream_rpc_method_handler(
            servicer.StreamWeights,
            request_deserializer=_parser(_pb.WeightsRequest),
            response_serializer=_pb.BroadcastMsg.SerializeToString,
        ),
        "PullWeights": grpc.unary_unary_rpc_method_handler(
            servicer.PullWeights,
            request_deserializer=_parser(_pb.WeightsRequest),
            response_serializer=_as_bytes,  # the learner serializes weights once per version
        ),
        "Status": grpc.unary_unary_rpc_method_handler(
            servicer.Status,
            request_deserializer=_parser(_pb.StatusRequest),
            response_serializer=_pb.StatusReply.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
