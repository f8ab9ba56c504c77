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

    def __init__(self, address, token, tls_ca, *, connect_deadline_s, compress):
        self.address, self.token, self.tls_ca = address, token, tls_ca
        self.connect_deadline_s, self.compress = connect_deadline_s, compress
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
    assert main.run_actor_process("h:1", "tok", "ca.pem", connect_deadline_s=7.0, compress=True) == 0
    (ep,) = ScriptedEndpoint.instances
    assert (ep.address, ep.token, ep.tls_ca, ep.connect_deadline_s, ep.compress) == (
        "h:1",
        "tok",
        "ca.pem",
        7.0,
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
