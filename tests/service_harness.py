"""A learner service on 127.0.0.1 for tests: a small config, a served `LearnerServer`, fake unrolls.

Shared by the tests of the service (tests/learner/test_service.py), its handlers
(tests/learner/test_servicer.py) and the actor's gRPC client (tests/actors/test_grpc_client.py).
pytest puts this folder on `sys.path` when it loads tests/conftest.py (its default `prepend` import mode).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.envs.base import EnvSpec
from stackrl.learner.service import LearnerServer
from stackrl.learner.servicer import expected_specs
from stackrl.protos import rpc
from stackrl.trajectory import Trajectory


def make_cfg(
    num_games: int = 8, max_message_mb: int = 64, queue_size: int = 16, **server
) -> ExperimentConfig:
    """stag_hunt with an endless pretraining phase (followers learn; the run never ends by itself)."""
    return ExperimentConfig.from_dict(
        {
            "name": "svc",
            "env": {"name": "stag_hunt", "num_games": num_games},
            "actor": {"unroll_length": 10, "connect_deadline_s": 20},
            "learner": {"queue_size": queue_size},
            "schedule": {"phases": [{"kind": "pretrain", "env_steps": 10**9}]},
            "server": {"host": "127.0.0.1", "port": 0, "max_message_mb": max_message_mb, **server},
        }
    )


@contextlib.contextmanager
def serving(
    cfg: ExperimentConfig,
    token: str | None = None,
    loop: bool = True,
    run_dir: Path | None = None,
    resume: bool = False,
) -> Iterator[LearnerServer]:
    """A started LearnerServer; with `loop`, its learner loop runs in a background thread."""
    server = LearnerServer(cfg, run_dir, token=token, resume=resume)
    server.start()
    thread = threading.Thread(target=server.run, kwargs={"progress": False}, daemon=True) if loop else None
    if thread:
        thread.start()
    try:
        yield server
    finally:
        server.stop()
        if thread:
            thread.join(30)
        server.close(grace_s=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_spec_of(cfg: ExperimentConfig) -> EnvSpec:
    from stackrl.envs.factory import env_spec, make_stackelberg_env

    return env_spec(make_stackelberg_env(cfg.env))


def fake_unroll(
    cfg: ExperimentConfig, role: str = "follower_0", num_games: int | None = None
) -> list[Trajectory]:
    """A valid-looking unroll for `role` (zeros), built from the learner's own expected layout."""
    server_spec = expected_specs(env_spec_of(cfg), cfg)[role]
    b = num_games or server_spec.num_games
    spec = type(server_spec)(server_spec.unroll_length, b, server_spec.obs_shape, server_spec.obs_dtype,
                             server_spec.context_size)  # fmt: skip
    arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in spec.fields().items()}
    arrays["valid"][:] = True
    returns = np.zeros((0, 2), np.float32)
    return [Trajectory(role, 0, 1, 0, arrays, returns, env_steps=spec.unroll_length * b)]


def raw_stub(port: int, channel_options=()) -> tuple[grpc.Channel, rpc.LearnerStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=list(channel_options))
    return channel, rpc.LearnerStub(channel)


def wait_until(cond: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
