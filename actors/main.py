"""An actor process: register with a learner service, then act until the learner says the run is done.

This is what `stackrl actor --learner HOST:PORT`, the local launcher's child processes, Slurm and
Kubernetes all run. The run's configuration comes from the learner's registration reply.
"""

from __future__ import annotations

import logging
import os

import torch
from stackrl.actors.actor import Actor
from stackrl.actors.grpc_client import GrpcActorEndpoint, LearnerError, LearnerRestarted

log = logging.getLogger(__name__)


def run_actor_process(
    address: str,
    token: str | None = None,
    tls_ca: str | None = None,
    connect_deadline_s: float = 60.0,
    compress: bool = False,
) -> int:
    """Register, build `Actor(cfg, actor_id, endpoint)` and run it to the end of the run.

    Args:
        address: the learner's `host:port`.
        token: the learner's shared secret, if it requires one.
        tls_ca: PEM file of the CA of the learner's TLS certificate (None: plaintext).
        connect_deadline_s: how long to keep trying to register.
        compress: zlib-compress trajectory tensors.

    Returns:
        The process exit code: 0 when the learner ended the run, 1 when it could not be reached or
        refused the actor (the reason is logged).
    """
    endpoint = GrpcActorEndpoint(
        address, token, tls_ca, connect_deadline_s=connect_deadline_s, compress=compress
    )
    reniced = False
    try:
        while True:
            actor_id, cfg = endpoint.register()
            torch.set_num_threads(cfg.actor.threads)
            if cfg.actor.nice and not reniced:
                os.nice(cfg.actor.nice)
                reniced = True
            actor = Actor(cfg, actor_id, endpoint)
            log.info(
                "actor %d: %d games of %s, learner %s", actor_id, cfg.env.num_games, cfg.env.name, address
            )
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
