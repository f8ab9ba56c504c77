"""Serial mode: the learner and N actors in one process, joined by the in-memory transport.

The same `Actor` and `Learner` classes as the distributed run, stepped in turn: deterministic for a
seed, and the fastest way to run small games, tests and the matrix benchmark.
"""

from __future__ import annotations

from pathlib import Path

import torch
from stackrl.actors.actor import Actor
from stackrl.config import ExperimentConfig
from stackrl.learner.learner import Learner
from stackrl.protos.transport import InProcessTransport
from tqdm import tqdm


def run_serial(cfg: ExperimentConfig, run_dir: Path | None = None, progress: bool = True) -> dict:
    """Train to the end of the schedule; returns (and writes, with a run dir) result.json's dict."""
    torch.set_num_threads(cfg.learner.threads)
    learner = Learner(cfg, run_dir)
    transport = InProcessTransport(cfg.learner.queue_size)
    actors = [Actor(learner.cfg, i, transport.actor()) for i in range(cfg.actor.num_actors)]
    transport.publish(learner.broadcast())
    for actor in actors:
        actor.wait_for_broadcast(1.0)
    bar = tqdm(total=cfg.schedule.total_env_steps, unit="step", disable=not progress, dynamic_ncols=True)
    try:
        while not learner.done:
            for actor in actors:
                b = actor.endpoint.poll()
                if b is not None:
                    actor.apply(b)
                learner_changed = learner.process(actor.unroll())
                if learner_changed:
                    transport.publish(learner.broadcast())
                if learner.done:
                    break
            bar.n = min(learner.env_steps, bar.total)
            value = learner.last_eval.leader_value if learner.last_eval else float("nan")
            bar.set_postfix(phase=learner.schedule.kind, leader_value=f"{value:g}", refresh=False)
            bar.update(0)
            learner.maybe_checkpoint()
        result = learner.write_result()
        if run_dir:
            learner.save()
        return result
    finally:
        bar.close()
        learner.close()
