"""The learner: consumes trajectory batches, updates the role the schedule names, publishes weights.

It composes the pieces that each own one job: the update step (networks, optimizers, versions),
the schedule (which role learns when), the evaluator (evaluations and exact yardsticks), the run
record (counters, wall clock, rates), leader restarts and the inner-outer baseline's driver, and
writes result.json and checkpoints from them. Transports feed it unrolls through `process`; how
they arrive (in-process queue or gRPC) is not its concern.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stackrl.config import ExperimentConfig, PhaseConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import env_spec
from stackrl.envs.probe import pin_probe_hash, store_probe_set_with_run
from stackrl.learner.checkpoint import (
    CheckpointError,
    load_checkpoint,
    numpy_rng_state,
    save_checkpoint,
    set_numpy_rng_state,
)
from stackrl.learner.evaluation import EvalResult
from stackrl.learner.evaluator import Evaluator, steps_to_final
from stackrl.learner.inner_outer import InnerOuterLoop
from stackrl.learner.leader_selection import LeaderSelection
from stackrl.learner.metrics import Metrics, flat_hparams
from stackrl.learner.models import PolicyNet
from stackrl.learner.run_record import RunRecord
from stackrl.learner.schedule import Schedule
from stackrl.learner.update_step import UpdateStep
from stackrl.protos.transport import Broadcast
from stackrl.trajectory import Trajectory, concat_trajectories

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("learner.device=cuda but CUDA is not available")
    return torch.device(name)


class Learner:
    def __init__(
        self, cfg: ExperimentConfig, run_dir: Path | None = None, evaluate: bool = True, fresh: bool = True
    ):
        """`evaluate=False`: no greedy evaluations (a caller that evaluates the nets itself, e.g. a
        follower trained from scratch against a fixed leader table). `fresh=False`: the caller
        restores a checkpoint next (`resume`), so `learner.followers_from` is not read: the run's own
        checkpoint holds the followers, and the source run need not exist any more."""
        self.run_dir = Path(run_dir) if run_dir is not None else None
        cfg = store_probe_set_with_run(cfg, self.run_dir)
        self.device = resolve_device(cfg.learner.device)
        torch.manual_seed(cfg.seed)
        self.evaluator = Evaluator(cfg, self.device, enabled=evaluate)
        self.cfg = cfg = pin_probe_hash(cfg, self.evaluator.env.query_set)
        self.evaluator.cfg = cfg
        self.spec = env_spec(self.evaluator.env)
        self.followers = self.spec.roles[1:]
        self.step = UpdateStep(cfg, self.spec, self.device)
        if cfg.learner.followers_from and fresh:
            loaded = self.step.load_followers(Path(cfg.learner.followers_from))
            log.info("followers %s start from %s", ", ".join(loaded), cfg.learner.followers_from)
        self.schedule = Schedule(cfg.schedule, self.followers)
        self.selection: LeaderSelection | None = (
            LeaderSelection(cfg, self.evaluator, self.spec, self.device)
            if LeaderSelection.applies(cfg)
            else None
        )
        self.generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.inner_outer: InnerOuterLoop | None = None
        self.record = RunRecord()
        self.pending: dict[str, list[Trajectory]] = defaultdict(list)
        self._last_checkpoint = time.time()
        self._updates_at_checkpoint = 0
        self._total_updates_at_eval = 0
        self.metrics = Metrics(self.run_dir / "tb" if self.run_dir else None)
        self._screen_if_due()  # a run that opens with a screened leader phase
        self._broadcast = self._make_broadcast()
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml(redact_secrets=True))
            self.metrics.text("config", "```\n" + cfg.to_yaml(redact_secrets=True) + "\n```")

    # -- the pieces' state, under the names callers use ----------------------------------------------
    @property
    def nets(self) -> dict[str, PolicyNet]:
        return self.step.nets

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.step.optimizers

    @property
    def versions(self) -> dict[str, int]:
        return self.step.versions

    @property
    def updates(self) -> dict[str, int]:
        return self.step.updates

    @property
    def env_steps(self) -> int:
        return self.record.env_steps

    @property
    def trajectories_received(self) -> int:
        return self.record.trajectories_received

    @property
    def rejected(self) -> int:
        return self.record.rejected

    @rejected.setter
    def rejected(self, value: int) -> None:
        self.record.rejected = value

    @property
    def eval_env(self) -> Any:
        return self.evaluator.env

    @property
    def last_eval(self) -> EvalResult | None:
        return self.evaluator.last

    @property
    def eval_history(self) -> list[dict[str, Any]]:
        return self.evaluator.history

    @property
    def wall_seconds(self) -> float:
        return self.record.wall_seconds

    @property
    def done(self) -> bool:
        return self.schedule.finished

    # -- broadcast ------------------------------------------------------------------------------
    def _make_broadcast(self) -> Broadcast:
        s = self.schedule
        table = None
        if not s.finished and s.kind == "inner_outer":
            current = self._inner_outer().current
            assert current is not None
            table = current.answers
        return Broadcast(
            phase_id=s.phase_id,
            phase_kind=s.kind,
            leader_source=s.leader_source(),
            send_roles=s.send_roles(),
            follower_context=s.follower_context(),
            leader_table=table,
            versions=dict(self.versions),
            weights=self.step.weights(),
            done=s.finished,
        )

    def broadcast(self) -> Broadcast:
        """The current broadcast (rebuilt only after updates or phase changes)."""
        return self._broadcast

    def _refresh_broadcast(self) -> None:
        self._broadcast = self._make_broadcast()

    # -- consuming trajectories ----------------------------------------------------------------
    def process(self, trajs: list[Trajectory], nbytes: int = 0) -> bool:
        """Take one unroll's trajectories; returns True if the broadcast changed (new weights/phase)."""
        if self.done or not trajs:
            return False
        rec = self.record
        rec.trajectories_received += len(trajs)
        rec.bytes_received += nbytes
        if trajs[0].phase_id != self.schedule.phase_id:
            rec.dropped_stale += 1
            return False
        changed = False
        steps = sum(t.env_steps for t in trajs)
        rec.env_steps += steps
        self._log_episodes(trajs[0])
        for t in trajs:
            self.metrics.scalar("lag/policy_lag", self.versions[t.role] - t.version, rec.env_steps)
        learning = self.schedule.learning_roles()
        index_before, phase_before = self.schedule.index, self.schedule.phase
        if not self.schedule.add_env_steps(steps):
            for t in trajs:
                if t.role in learning and self.step.has_data(t.role, t.arrays):
                    self.pending[t.role].append(t)
            for role in learning:
                if len(self.pending[role]) >= self.cfg.learner.batch_trajectories:
                    batch = self.pending.pop(role)
                    self.update_on_arrays(role, concat_trajectories(batch))
                    changed = True
                    if self.schedule.kind == "inner_outer" and role == self.followers[-1]:
                        self._inner_outer_step(batch)  # may end the phase early
        if self.schedule.index != index_before:
            self._on_phase_end(phase_before)
            changed = True
        if changed:
            total = self.step.total_updates
            if total - self._total_updates_at_eval >= self.cfg.schedule.eval_interval_updates:
                self._total_updates_at_eval = total
                self._evaluate()
            self._refresh_broadcast()
        rec.log_rates(self.metrics, self.step.total_updates)
        return changed

    def _on_phase_end(self, ended: PhaseConfig) -> None:
        self.pending.clear()
        self.inner_outer = None
        sel = self.selection
        if sel is not None and ended.kind == "leader":
            sel.offer_trained(ended, self.nets, self.metrics, self.env_steps)
        self._screen_if_due()
        if self.schedule.fresh_leader():
            phase = self.schedule.phase
            seed = self.cfg.seed * 7919 + self.schedule.index
            table = sel.next_restart_table() if sel is not None else None
            self.step.fresh_leader(
                seed, self.evaluator.env.query_observations(), phase.restart_confidence, table
            )
        if self.schedule.finished:
            if sel is not None:
                sel.restore(self.nets)
            self._evaluate()

    def _screen_if_due(self) -> None:
        """Run the screen of commitments when the current phase is a screened leader phase's start."""
        if self.selection is not None and not self.schedule.finished and self.schedule.phase.screen > 0:
            phase, seed = self.schedule.phase, self.cfg.seed * 7919 + 1
            self.selection.screen(phase, self.nets, seed, self.metrics, self.env_steps)

    def update_on_arrays(self, role: str, arrays: dict[str, np.ndarray]) -> None:
        """One optimizer step of `role` on a batch of trajectory arrays ([T(+1), B, ...])."""
        self.step.step(role, arrays, self.schedule.phase_remaining(), self.metrics, self.env_steps)
        self.schedule.on_update(role)

    # -- inner-outer baseline -------------------------------------------------------------------
    def _inner_outer(self) -> InnerOuterLoop:
        if self.inner_outer is None:
            self.inner_outer = InnerOuterLoop(self.schedule.phase, self.generator)
        if self.inner_outer.current is None:
            self._next_commitment(bump=False)
        return self.inner_outer

    def _next_commitment(self, bump: bool = True) -> None:
        assert self.inner_outer is not None
        q = torch.as_tensor(self.evaluator.env.query_observations(), device=self.device)
        self.inner_outer.next_commitment(self.nets[LEADER], q)
        if bump:
            self.schedule.new_phase_id()

    def _inner_outer_step(self, batch: list[Trajectory]) -> None:
        loop = self._inner_outer()
        rows = [t.episode_returns for t in batch if len(t.episode_returns)]
        mean_f = float(np.concatenate(rows)[:, 1:].mean()) if rows else None
        if not loop.on_follower_update(mean_f):
            return
        current = loop.current
        assert current is not None
        res = self.evaluator.play(self.nets, "table", current.answers, context=False)
        if current.greedy and self.evaluator.enabled:
            self.evaluator.record(res, self.nets, self.env_steps, self.wall_seconds, self.metrics)
        if loop.record(res.leader_value):
            self.update_on_arrays(LEADER, loop.leader_batch(self.evaluator.env.query_observations()))
            if loop.frozen:
                self.schedule.end_phase()
                self.inner_outer = None
                return
        self._next_commitment()

    # -- evaluation and logging -----------------------------------------------------------------
    def _evaluate(self) -> None:
        if not self.evaluator.enabled or not self.evaluator.contextual:
            return  # inner-outer runs evaluate their greedy commitment themselves
        self._record(self.evaluator.play(self.nets))

    def _record(self, res: EvalResult) -> None:
        self.evaluator.record(res, self.nets, self.env_steps, self.wall_seconds, self.metrics)

    def _log_episodes(self, traj: Trajectory) -> None:
        if len(traj.episode_returns) == 0:
            return
        means = traj.episode_returns.mean(axis=0)
        for role, m in zip(self.spec.roles, means):
            self.metrics.scalar(f"return/{role}", float(m), self.env_steps)

    # -- results ----------------------------------------------------------------------------------
    def final_evaluation(self) -> EvalResult:
        if self.evaluator.last is None:
            self._evaluate()
        if self.evaluator.last is None:  # inner-outer before its first greedy commitment converged
            self._record(self.evaluator.play(self.nets, context=False))
        assert self.evaluator.last is not None
        return self.evaluator.last

    def result(self) -> dict[str, Any]:
        res = self.final_evaluation()
        followers: Any = res.follower_values[0] if len(res.follower_values) == 1 else res.follower_values
        out: dict[str, Any] = {
            "name": self.cfg.name,
            "game": self.cfg.env.name,
            "method": "meta" if self.evaluator.contextual else "inner_outer",
            "seed": self.cfg.seed,
            "leader_value": res.leader_value,
            "follower_value": followers,
            "leader_answers": res.leader_answers,
            "env_steps": {**self.schedule.env_steps_by_phase, "total": self.env_steps},
            "steps_to_final": steps_to_final(self.eval_history),
            "wall_seconds": self.wall_seconds,
            "updates": dict(self.updates),
            "trajectories_received": self.record.trajectories_received,
            "dropped_stale": self.record.dropped_stale,
            "eval_history": self.eval_history,
            **self.evaluator.exact_fields(self.nets, res),
        }
        if self.selection is not None:
            out.update(self.selection.result_fields())
        return out

    def write_result(self) -> dict[str, Any]:
        out = self.result()
        if self.run_dir:
            tmp = self.run_dir / "result.json.tmp"
            tmp.write_text(json.dumps(out, indent=2))
            tmp.replace(self.run_dir / "result.json")
            final = {
                "hparam/leader_value": float(out["leader_value"]),
                "hparam/env_steps": float(self.env_steps),
            }
            if out.get("gap") is not None:
                final["hparam/optimality_gap"] = float(out["gap"])
            config = dataclasses.asdict(self.cfg)
            config["server"].pop("token", None)  # never a secret in the event files
            self.metrics.hparams(flat_hparams(config), final)
        self.metrics.flush()
        return out

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: networks, optimizers, schedule phase and position, step
        counters, RNG states, eval history and the run config (tensors, numbers, strings only)."""
        return {
            "format": "stackrl-checkpoint-v1",
            "config_yaml": self.cfg.to_yaml(redact_secrets=True),
            **self.step.state_dict(),
            "schedule": self.schedule.state_dict(),
            "env_steps": self.env_steps,
            "counters": {**self.record.state_dict(), "total_updates_at_eval": self._total_updates_at_eval},
            "eval_history_json": json.dumps(self.eval_history),
            "wall_seconds": self.wall_seconds,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng_json": json.dumps(numpy_rng_state()),
            "generator_rng": self.generator.get_state(),
            "best_leader": self.selection.state_dict() if self.selection is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step.load_state_dict(state)
        self.schedule.load_state_dict(state["schedule"])
        counters = state.get("counters", {})
        total = self.step.total_updates
        self.record.load_state_dict(counters, state["env_steps"], state["wall_seconds"], total)
        self._total_updates_at_eval = int(counters.get("total_updates_at_eval", total))
        self.evaluator.history = json.loads(state["eval_history_json"])
        torch.set_rng_state(state["torch_rng"])
        if "numpy_rng_json" in state:
            set_numpy_rng_state(json.loads(state["numpy_rng_json"]))
        self.generator.set_state(state["generator_rng"])
        if self.selection is not None and state.get("best_leader") is not None:
            self.selection.load_state_dict(state["best_leader"])
        self.pending.clear()
        self.inner_outer = None
        self._updates_at_checkpoint = total
        self._refresh_broadcast()

    def save(self, path: Path | None = None) -> Path:
        if path is None:
            if self.run_dir is None:
                raise ValueError("save() needs a path for a learner without a run directory")
            path = self.run_dir / "checkpoint.pt"
        save_checkpoint(Path(path), self.state_dict())
        self._last_checkpoint = time.time()
        self._updates_at_checkpoint = self.step.total_updates
        log.debug("checkpoint at %d env steps written to %s", self.env_steps, path)
        return Path(path)

    def maybe_checkpoint(self) -> bool:
        """Checkpoint if `schedule.checkpoint_interval_s` passed or `checkpoint_interval_updates`
        updates happened since the last one; returns whether one was written."""
        if not self.run_dir or self.done:
            return False
        sc = self.cfg.schedule
        due = time.time() - self._last_checkpoint >= sc.checkpoint_interval_s
        if sc.checkpoint_interval_updates:
            due = (
                due or self.step.total_updates - self._updates_at_checkpoint >= sc.checkpoint_interval_updates
            )
        if due:
            self.save()
        return due

    def restore(self, path: Path) -> None:
        """Load a checkpoint into this learner.

        Raises:
            CheckpointError: the file is missing, corrupt, not a stackrl checkpoint, or does not
                match this run's networks.
        """
        state = load_checkpoint(path)
        try:
            self.load_state_dict(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {path} does not match this run: {type(e).__name__}: {e}"
            ) from None

    def resume(self, path: Path | None = None) -> None:
        """Continue a run from its checkpoint (default `run_dir/checkpoint.pt`): restore everything and
        reopen TensorBoard so curves continue from the restored env steps (events the interrupted run
        logged after its checkpoint are purged)."""
        if path is None and self.run_dir is None:
            raise ValueError("resume() needs a path for a learner without a run directory")
        path = Path(path) if path else self.run_dir / "checkpoint.pt"  # type: ignore[operator]
        self.restore(path)
        if self.run_dir is not None:
            self.metrics.close()
            # TensorBoard drops events with step >= purge_step; those logged at exactly the
            # checkpoint's step (e.g. the evaluation that preceded it) belong to the checkpoint.
            self.metrics = Metrics(self.run_dir / "tb", purge_step=self.env_steps + 1)
        self._last_checkpoint = time.time()
        log.info(
            "resumed from %s at %d env steps (%d updates, phase %d)",
            path,
            self.env_steps,
            self.step.total_updates,
            self.schedule.index,
        )

    def close(self) -> None:
        self.metrics.close()
        self.evaluator.close()
