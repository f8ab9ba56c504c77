"""The actor process of actors/main.py, with its gRPC endpoint replaced by a scripted one (no learner
service): exit code 0 when the learner ends the run, registering again after a learner restart,
exit code 1 when the learner refuses the actor or sends no weights, and the endpoint always closed."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from stackrl.actors import main
from stackrl.actors.grpc_client import LearnerError, LearnerRestarted
from stackrl.config import ExperimentConfig
from stackrl.learner.learner import Learner


def make_cfg(**actor) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "env": {"name": "stag_hunt", "num_games": 2},
            "actor": {"unroll_length": 5, "connect_deadline_s": 5, **actor},
            "learner": {"device": "cpu"},
        }
    )


@pytest.fixture(scope="module")
def broadcasts():
    """(a learner's first broadcast, the same broadcast saying that the run is over)."""
    learner = Learner(make_cfg(), evaluate=False)
    running = learner.broadcast()
    learner.close()
    assert not running.done
    return running, dataclasses.replace(running, done=True)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()  # run_actor_process sets the run's actor.threads
    yield
    torch.set_num_threads(threads)


class ScriptedEndpoint:
    """Stands in for GrpcActorEndpoint: `script` lists, per registration, the broadcasts `poll` returns
    (None: nothing new) and what `push` does (an exception to raise, or None)."""

    instances: list[ScriptedEndpoint] = []

    def __init__(self, address, token, tls_ca, *, connect_deadline_s, compress, insecure=False):
        self.address, self.token, self.tls_ca = address, token, tls_ca
        self.connect_deadline_s, self.compress, self.insecure = connect_deadline_s, compress, insecure
        self.registrations = 0
        self.pushed = 0
        self.closed = False
        self.polls: list = []
        self.push_error: Exception | None = None
        ScriptedEndpoint.instances.append(self)

    def register(self):
        if isinstance(self.cfg, Exception):
            raise self.cfg
        self.polls, self.push_error = self.script[self.registrations]
        self.registrations += 1
        return 10 + self.registrations, self.cfg

    def poll(self):
        return self.polls.pop(0) if self.polls else None

    def push(self, trajectories):
        self.pushed += 1
        if self.push_error is not None:
            raise self.push_error

    def close(self):
        self.closed = True


@pytest.fixture
def endpoint(monkeypatch):
    """The endpoint `run_actor_process` will build; set its `cfg` and `script` before calling it."""
    ScriptedEndpoint.instances.clear()
    monkeypatch.setattr(main, "GrpcActorEndpoint", ScriptedEndpoint)

    def configure(cfg, script):
        ScriptedEndpoint.cfg, ScriptedEndpoint.script = cfg, script

    yield configure
    for name in ("cfg", "script"):
        if name in vars(ScriptedEndpoint):
            delattr(ScriptedEndpoint, name)


def test_the_endpoint_gets_the_process_arguments(endpoint, broadcasts):
    _, done = broadcasts
    endpoint(make_cfg(), [([done], None)])
    code = main.run_actor_process(
        "h:1", "tok", "ca.pem", connect_deadline_s=7.0, compress=True, insecure=True
    )
    assert code == 0
    (ep,) = ScriptedEndpoint.instances
    assert (ep.address, ep.token, ep.tls_ca, ep.connect_deadline_s, ep.compress, ep.insecure) == (
        "h:1",
        "tok",
        "ca.pem",
        7.0,
        True,
        True,
    )
    assert ep.registrations == 1 and ep.pushed == 0 and ep.closed


def test_acts_until_the_learner_ends_the_run(endpoint, broadcasts):
    running, done = broadcasts
    endpoint(make_cfg(threads=1), [([running, None, None, done], None)])
    assert main.run_actor_process("h:1") == 0
    (ep,) = ScriptedEndpoint.instances
    assert ep.registrations == 1 and ep.pushed == 2 and ep.closed  # one unroll per poll without news
    assert torch.get_num_threads() == 1  # the run's actor.threads


def test_registers_again_after_a_learner_restart(endpoint, broadcasts, caplog):
    running, done = broadcasts
    caplog.set_level(logging.INFO, logger=main.__name__)
    endpoint(make_cfg(), [([running], LearnerRestarted("weight stream re-established")), ([done], None)])
    assert main.run_actor_process("h:1") == 0
    (ep,) = ScriptedEndpoint.instances
    assert ep.registrations == 2 and ep.pushed == 1 and ep.closed
    assert "registering again" in caplog.text


def test_a_refusing_learner_exits_1_and_says_why(endpoint, caplog):
    endpoint(LearnerError("learner at h:1 refused the actor: bad token"), [])
    assert main.run_actor_process("h:1") == 1
    (ep,) = ScriptedEndpoint.instances
    assert ep.closed
    assert any(r.levelno == logging.ERROR and "bad token" in r.getMessage() for r in caplog.records)


def test_no_weights_within_the_deadline_exits_1(endpoint, caplog):
    endpoint(make_cfg(connect_deadline_s=0.2), [([], None)])
    assert main.run_actor_process("h:1") == 1
    (ep,) = ScriptedEndpoint.instances
    assert ep.registrations == 1 and ep.pushed == 0 and ep.closed
    assert any("no weights from the learner" in r.getMessage() for r in caplog.records)


def test_a_learner_error_while_acting_exits_1(endpoint, broadcasts):
    running, _ = broadcasts
    endpoint(make_cfg(), [([running], LearnerError("invalid trajectory"))])
    assert main.run_actor_process("h:1") == 1
    assert ScriptedEndpoint.instances[0].closed


class EvilLearner:
    """A process answering at the learner's address whose registration reply names code to run."""

    def __init__(self, factory: str):
        import grpc as _grpc
        from stackrl.protos import codec, rpc

        cfg = ExperimentConfig.from_dict(
            {"env": {"name": "pettingzoo", "pettingzoo": factory, "leader_agent": "a", "num_games": 1}}
        )
        self.tokens: list[str] = []
        outer = self

        class Servicer(rpc.LearnerServicerBase):
            def Register(self, request, context):
                outer.tokens += [v for k, v in context.invocation_metadata() if k == "authorization"]
                return codec.register_reply(0, cfg)

        from concurrent.futures import ThreadPoolExecutor

        self.server = _grpc.server(ThreadPoolExecutor(max_workers=4))
        rpc.add_learner_servicer(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_a_fake_learner_cannot_make_the_actor_run_code(tmp_path, monkeypatch, caplog):
    """Issue 13, defect 1: an actor imported and called whatever `env.pettingzoo` the registration
    reply named, so a fake learner made it run `os:system`. The actor now refuses a config naming a
    factory its own machine has not allowed, before importing anything, and exits 1."""
    from stackrl.envs import registry

    marker = tmp_path / "ran"
    (tmp_path / "evil_for_actor.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        f"def parallel_env(**kw):\n    pathlib.Path({str(marker)!r}).write_text('called')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_allowed", set())
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    fake = EvilLearner("evil_for_actor:parallel_env")
    try:
        with caplog.at_level(logging.ERROR):
            code = main.run_actor_process(
                f"127.0.0.1:{fake.port}", "a-token-of-enough-length", connect_deadline_s=5
            )
    finally:
        fake.server.stop(0)
    assert code == 1
    assert not marker.exists()
    assert "evil_for_actor:parallel_env' is not an allowed factory" in caplog.text
