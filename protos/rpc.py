"""The gRPC service surface: the one door from outside `protos/` to the generated stubs.

Learner and actors reach the generated `stackrl_pb2_grpc` module only through these names, so a
regenerated module (or another grpcio-tools version) changes one file. The message types are
named in protos/codec.py.
"""

from __future__ import annotations

import grpc
from stackrl.protos import stackrl_pb2_grpc as _generated

LearnerStub = _generated.LearnerStub
"""Client stub: `Register`, `PushTrajectories`, `StreamWeights`, `Status`."""
LearnerServicerBase = _generated.LearnerServicer
"""Base class of the learner's servicer (unimplemented methods answer UNIMPLEMENTED)."""


def add_learner_servicer(servicer: LearnerServicerBase, server: grpc.Server) -> None:
    """Register a servicer on a `grpc.Server`."""
    _generated.add_LearnerServicer_to_server(servicer, server)
