"""The gRPC service surface of protos/rpc.py: the stub and servicer base are the generated ones, and a
servicer registered with `add_learner_servicer` answers through `LearnerStub` on a real server."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from stackrl.protos import codec, rpc, stackrl_pb2_grpc


def test_the_names_are_the_generated_stub_and_servicer():
    assert rpc.LearnerStub is stackrl_pb2_grpc.LearnerStub
    assert rpc.LearnerServicerBase is stackrl_pb2_grpc.LearnerServicer
    for method in ("Register", "PushTrajectories", "StreamWeights", "Status"):
        assert callable(getattr(rpc.LearnerServicerBase, method)), method


class StatusOnly(rpc.LearnerServicerBase):
    def Status(self, request, context):
        return codec.status_reply(
            codec.LearnerStatus(env_steps=42, versions={"leader": 3}, phase_kind="leader")
        )


@pytest.fixture
def served():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc.add_learner_servicer(StatusOnly(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield rpc.LearnerStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)


def test_a_registered_servicer_answers_through_the_stub(served):
    reply = served.Status(codec.status_request(), timeout=10)
    status = codec.decode_status(reply)
    assert status.env_steps == 42 and status.versions == {"leader": 3} and status.phase_kind == "leader"


def test_methods_the_servicer_leaves_out_answer_unimplemented(served):
    with pytest.raises(grpc.RpcError) as err:
        served.Register(codec.register_request("host", 1), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
