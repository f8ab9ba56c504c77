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
from stackrl.learner.preemption import Preempted, stop_on_signals
from stackrl.learner.status_line import StatusLine
from stackrl.protos.transport import InProcessTransport
from tqdm import tqdm


def run_serial(
    cfg: ExperimentConfig, run_dir: Path | None = None, progress: bool = True, log_every_s: float = 30.0
) -> dict:
    """Train to the end of the schedule; returns (and writes, with a run dir) result.json's dict.

    Raises:
        Preempted: SIGTERM or SIGUSR1 arrived; the learner checkpointed first (with a run dir).
    """
    total = cfg.schedule.total_env_steps
    stopped: list[int] = []  # the signals that arrived; the loop checkpoints and stops at the first
    with stop_on_signals(stopped.append):
        return _run(cfg, run_dir, progress, stopped, StatusLine(0.0 if progress else log_every_s, total))


def _run(
    cfg: ExperimentConfig, run_dir: Path | None, progress: bool, stopped: list[int], status: StatusLine
) -> dict:
    torch.set_num_threads(cfg.learner.threads or 1)  # auto: 1 (learner/thread_budget.py)
    learner = Learner(cfg, run_dir)
    transport = InProcessTransport(cfg.learner.queue_size)
    actors = [Actor(learner.cfg, i, transport.actor()) for i in range(cfg.actor.num_actors)]
    transport.publish(learner.broadcast())
    for actor in actors:
        actor.wait_for_broadcast(1.0)
    bar = tqdm(total=cfg.schedule.total_env_steps, unit="step", disable=not progress, dynamic_ncols=True)
    try:
        while not learner.done and not stopped:
            for actor in actors:
                b = actor.endpoint.poll()
                if b is not None:
                    actor.apply(b)
                learner_changed = learner.process(actor.unroll())
                if learner_changed:
                    transport.publish(learner.broadcast())
                if learner.done or stopped:
                    break
            bar.n = min(learner.env_steps, bar.total)
            value = learner.last_eval.leader_value if learner.last_eval else float("nan")
            bar.set_postfix(phase=learner.schedule.kind, leader_value=f"{value:g}", refresh=False)
            bar.update(0)
            status.maybe_log(learner.env_steps, learner.schedule.kind, value, 0.0)  # serial: no lag
            learner.maybe_checkpoint()
        if stopped and not learner.done:
            raise Preempted(stopped[0], learner.save() if run_dir else None)
        result = learner.write_result()
        if run_dir:
            learner.save()
        return result
    finally:
        bar.close()
        learner.close()
