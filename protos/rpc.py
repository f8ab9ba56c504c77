"""The gRPC service surface: the one door from outside `protos/` to the generated stubs.

Learner and actors reach the generated `stackrl_pb2_grpc` module only through these names, so a
regenerated module (or another grpcio-tools version) changes one file.
"""

from __future__ import annotations

from stackrl.protos import stackrl_pb2_grpc as _generated

LearnerStub = _generated.LearnerStub
"""Client stub: `Register`, `PushTrajectories`, `StreamWeights`, `Status`."""
LearnerServicerBase = _generated.LearnerServicer
"""Base class of the learner's servicer (unimplemented methods answer UNIMPLEMENTED)."""
add_learner_servicer = _generated.add_LearnerServicer_to_server
"""Register a servicer on a `grpc.Server`."""
