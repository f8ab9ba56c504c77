"""An actor process: register with a learner service, then act until the learner says the run is done.

This is what `stackrl actor --learner HOST:PORT`, the local launcher's child processes, Slurm and
Kubernetes all run. The run's configuration comes from the learner's registration reply.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import torch
from stackrl.actors.actor import Actor
from stackrl.actors.grpc_client import GrpcActorEndpoint, LearnerError, LearnerRestarted
from stackrl.config import ConfigError, ExperimentConfig
from stackrl.envs.registry import allow_factory, allow_from_environment, check_env_factories

log = logging.getLogger(__name__)


def run_actor_process(
    address: str,
    token: str | None = None,
    tls_ca: str | None = None,
    connect_deadline_s: float = 60.0,
    compress: bool = False,
    insecure: bool = False,
    allow_factories: tuple[str, ...] = (),
) -> int:
    """Register, build `Actor(cfg, actor_id, endpoint)` and run it to the end of the run.

    Args:
        address: the learner's `host:port`.
        token: the learner's shared secret, if it requires one.
        tls_ca: PEM file of the CA of the learner's TLS certificate (None: plaintext).
        connect_deadline_s: how long to keep trying to register.
        compress: zlib-compress trajectory tensors.
        insecure: allow plaintext to a learner off loopback (the token then travels in clear).
        allow_factories: environment factories this actor may import besides the registry's
            (`envs/registry.py`; `STACKRL_ALLOW_FACTORY` is read too).

    Returns:
        The process exit code: 0 when the learner ended the run, 1 when it could not be reached or
        refused the actor (the reason is logged).
    """
    for path in allow_factories:
        allow_factory(path)
    allow_from_environment()
    try:
        endpoint = GrpcActorEndpoint(
            address,
            token,
            tls_ca,
            connect_deadline_s=connect_deadline_s,
            compress=compress,
            insecure=insecure,
        )
    except LearnerError as e:
        log.error("actor: %s", e)
        return 1
    reniced = False
    try:
        while True:
            actor_id, received = endpoint.register()
            try:
                cfg = vet_received_config(received)
            except ConfigError as e:
                log.error("actor: refusing the learner's config: %s", e)
                return 1
            torch.set_num_threads(cfg.actor.threads)
            if cfg.actor.nice and not reniced:
                os.nice(cfg.actor.nice)
                reniced = True
            try:
                actor = Actor(cfg, actor_id, endpoint)
            except ConfigError as e:  # e.g. actor.precision: bf16 on a CPU without bf16 instructions
                log.error("actor: cannot act on this machine: %s", e)
                return 1
            log.info(
                "actor %d: %d games of %s (%s), learner %s",
                actor_id, cfg.env.num_games, cfg.env.name, actor.precision, address,
            )  # fmt: skip
            try:
                if not actor.wait_for_broadcast(cfg.actor.connect_deadline_s).done:
                    actor.run()
            except LearnerRestarted as e:
                # The learner came back (maybe from a checkpoint): register again and act on the
                # weights it holds now, whatever versions this actor had seen before.
                log.warning("actor %d: %s; registering again", actor_id, e)
                continue
            log.info("actor %d: the learner ended the run after %d unrolls", actor_id, actor.unrolls)
            return 0
    except (LearnerError, TimeoutError) as e:
        log.error("actor: %s", e)
        return 1
    finally:
        endpoint.close()


def vet_received_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The learner's config, checked against what this actor may do before anything is built from it.

    The config came over the network; it must not make this process import code (every factory it
    names must be allowed here) or write files where the learner says (a probe-set path that does not
    exist here is dropped: the actor regenerates the set and checks it against `env.probe_hash`).

    Raises:
        ConfigError: naming the key this actor refuses.
    """
    check_env_factories(cfg.env)
    if cfg.env.probe_path is not None and not Path(cfg.env.probe_path).is_file():
        cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, probe_path=None))
    return cfg
