"""The learner: consumes trajectory batches, updates the role the schedule names, publishes weights.

It owns the networks, the optimizers, the schedule, evaluation, TensorBoard logging, checkpoints and
the run's result.json. Transports feed it unrolls through `process`; how they arrive (in-process
queue or gRPC) is not its concern.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import env_spec, make_stackelberg_env
from stackrl.envs.probe import probe_hash
from stackrl.envs.solver import commitment_value, solve_env
from stackrl.learner.best_leader import BestLeader
from stackrl.learner.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stackrl.learner.evaluation import EvalResult, evaluate
from stackrl.learner.follower_check import FollowerCheck
from stackrl.learner.inner_outer import InnerOuterLoop
from stackrl.learner.metrics import Metrics
from stackrl.learner.models import build_networks
from stackrl.learner.schedule import Schedule
from stackrl.learner.update import actor_critic_loss
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
    def __init__(self, cfg: ExperimentConfig, run_dir: Path | None = None, evaluate: bool = True):
        """`evaluate=False`: no greedy evaluations (a caller that evaluates the nets itself, e.g. a
        follower trained from scratch against a fixed leader table)."""
        self.evaluates = evaluate
        self.run_dir = Path(run_dir) if run_dir is not None else None
        cfg = store_probe_set_with_run(cfg, self.run_dir)
        self.device = resolve_device(cfg.learner.device)
        torch.manual_seed(cfg.seed)
        eval_cfg = dataclasses.replace(cfg.env, num_games=cfg.schedule.eval_games)
        self.eval_env = make_stackelberg_env(eval_cfg, seed=cfg.seed + 99_991)
        self.cfg = cfg = pin_probe_hash(cfg, self.eval_env.query_set)
        self.spec = env_spec(self.eval_env)
        self.followers = self.spec.roles[1:]
        self.nets = {r: n.to(self.device) for r, n in build_networks(self.spec, cfg.model).items()}
        self.optimizers = {
            r: torch.optim.Adam(
                n.parameters(), lr=cfg.learner.lr_leader if r == LEADER else cfg.learner.lr_follower
            )
            for r, n in self.nets.items()
        }
        self.versions = {r: 1 for r in self.spec.roles}
        self.schedule = Schedule(cfg.schedule, self.followers)
        restarts = any(p.restarts > 1 for p in cfg.schedule.phases)
        self.best_leader: BestLeader | None = BestLeader() if restarts else None
        self.generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.inner_outer: InnerOuterLoop | None = None
        self.exact = solve_env(cfg.env)
        contextual = not any(p.kind == "inner_outer" for p in cfg.schedule.phases)
        self.follower_check = (
            FollowerCheck(cfg.env, seed=cfg.seed + 99_992)
            if evaluate and contextual and FollowerCheck.applies(cfg.env)
            else None
        )
        self.env_steps = 0
        self.updates: dict[str, int] = defaultdict(int)
        self.trajectories_received = 0
        self.dropped_stale = 0
        self.rejected = 0
        self.bytes_received = 0
        self.pending: dict[str, list[Trajectory]] = defaultdict(list)
        self.eval_history: list[dict] = []
        self.last_eval: EvalResult | None = None
        self.start_time = time.time()
        self.wall_offset = 0.0
        self._last_rate = (time.time(), 0, 0, 0)
        self._last_checkpoint = time.time()
        self._total_updates_at_eval = 0
        self.metrics = Metrics(self.run_dir / "tb" if self.run_dir else None)
        self._broadcast = self._make_broadcast()
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(cfg.to_yaml(redact_secrets=True))
            self.metrics.text("config", "```\n" + cfg.to_yaml(redact_secrets=True) + "\n```")

    # -- broadcast ------------------------------------------------------------------------------
    def _weights(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            r: {k: v.detach().cpu().numpy().copy() for k, v in n.state_dict().items()}
            for r, n in self.nets.items()
        }

    def _make_broadcast(self) -> Broadcast:
        s = self.schedule
        table = None
        if not s.finished and s.kind == "inner_outer":
            if self.inner_outer is None:
                self.inner_outer = InnerOuterLoop(s.phase, self.generator)
            if self.inner_outer.current is None:
                self._next_commitment(bump=False)
            table = self.inner_outer.current.answers
        return Broadcast(
            phase_id=s.phase_id,
            phase_kind=s.kind,
            leader_source=s.leader_source(),
            send_roles=s.send_roles(),
            follower_context=s.follower_context(),
            leader_table=table,
            versions=dict(self.versions),
            weights=self._weights(),
            done=s.finished,
        )

    def broadcast(self) -> Broadcast:
        """The current broadcast (rebuilt only after updates or phase changes)."""
        return self._broadcast

    def _refresh_broadcast(self) -> None:
        self._broadcast = self._make_broadcast()

    # -- consuming trajectories ----------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.schedule.finished

    def process(self, trajs: list[Trajectory], nbytes: int = 0) -> bool:
        """Take one unroll's trajectories; returns True if the broadcast changed (new weights/phase)."""
        if self.done or not trajs:
            return False
        self.trajectories_received += len(trajs)
        self.bytes_received += nbytes
        if trajs[0].phase_id != self.schedule.phase_id:
            self.dropped_stale += 1
            return False
        changed = False
        steps = sum(t.env_steps for t in trajs)
        self.env_steps += steps
        self._log_episodes(trajs[0])
        for t in trajs:
            self.metrics.scalar("lag/policy_lag", self.versions[t.role] - t.version, self.env_steps)
        learning = self.schedule.learning_roles()
        index_before = self.schedule.index
        kind_before = self.schedule.kind
        if not self.schedule.add_env_steps(steps):
            for t in trajs:
                if t.role in learning:
                    self.pending[t.role].append(t)
            for role in learning:
                if len(self.pending[role]) >= self.cfg.learner.batch_trajectories:
                    batch = self.pending.pop(role)
                    self._update(role, batch)
                    changed = True
                    if self.schedule.kind == "inner_outer" and role == self.followers[-1]:
                        self._inner_outer_step(batch)  # may end the phase early
        if self.schedule.index != index_before:
            self.pending.clear()
            self.inner_outer = None
            if self.best_leader is not None and kind_before == "leader":
                self._offer_leader()
            if self.schedule.fresh_leader():
                self._fresh_leader()
            if self.schedule.finished:
                if self.best_leader is not None:
                    self.best_leader.restore(self.nets[LEADER])
                self._evaluate()
            changed = True
        if changed:
            total = sum(self.updates.values())
            if total - self._total_updates_at_eval >= self.cfg.schedule.eval_interval_updates:
                self._total_updates_at_eval = total
                self._evaluate()
            self._refresh_broadcast()
        self._log_rates()
        return changed

    def _update(self, role: str, batch: list[Trajectory]) -> None:
        arrays = concat_trajectories(batch)
        self.update_on_arrays(role, arrays)

    def update_on_arrays(self, role: str, arrays: dict[str, np.ndarray]) -> None:
        """One optimizer step of `role` on a batch of trajectory arrays ([T(+1), B, ...])."""
        net = self.nets[role]
        tensors = {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}
        lc = self.cfg.learner
        entropy_cost = lc.entropy_leader if role == LEADER else lc.entropy_follower
        if lc.entropy_anneal:
            entropy_cost *= self.schedule.phase_remaining()
        opt = self.optimizers[role]
        if lc.lr_anneal:
            base_lr = lc.lr_leader if role == LEADER else lc.lr_follower
            for group in opt.param_groups:
                group["lr"] = base_lr * self.schedule.phase_remaining()
        for _ in range(lc.epochs):
            loss, stats = actor_critic_loss(
                net, tensors, lc, entropy_cost=entropy_cost, value_on_all_steps=role == LEADER
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), lc.max_grad_norm)
            opt.step()
        self.versions[role] += 1
        self.updates[role] += 1
        self.schedule.on_update(role)
        step = self.env_steps
        self.metrics.scalar(f"loss/{role}/total", stats.total, step)
        self.metrics.scalar(f"loss/{role}/policy", stats.policy, step)
        self.metrics.scalar(f"loss/{role}/baseline", stats.baseline, step)
        self.metrics.scalar(f"loss/{role}/entropy", stats.entropy, step)
        self.metrics.scalar(f"loss/{role}/mean_rho", stats.mean_rho, step)
        self.metrics.scalar(f"loss/{role}/grad_norm", float(grad_norm), step)

    # -- leader restarts -----------------------------------------------------------------------------
    def _offer_leader(self) -> None:
        """A leader training ended: keep its leader if its greedy commitment evaluates best so far."""
        value = evaluate(self.eval_env, self.nets, device=self.device).leader_value
        kept = self.best_leader.offer(value, self.nets[LEADER])
        self.metrics.scalar("restarts/leader_value", value, self.env_steps)
        log.debug(
            "leader restart %d ended at %g (%s)",
            self.best_leader.offers,
            value,
            "kept" if kept else "dropped",
        )

    def _fresh_leader(self) -> None:
        """Start the next restart: a freshly initialised leader network and optimizer."""
        fresh = build_networks(self.spec, self.cfg.model)[LEADER].to(self.device)
        self.nets[LEADER].load_state_dict(fresh.state_dict())
        self.optimizers[LEADER] = torch.optim.Adam(
            self.nets[LEADER].parameters(), lr=self.cfg.learner.lr_leader
        )
        self.versions[LEADER] += 1

    # -- inner-outer baseline -------------------------------------------------------------------
    def _query_obs(self) -> np.ndarray:
        return self.eval_env.query_observations()

    def _next_commitment(self, bump: bool = True) -> None:
        q = torch.as_tensor(self._query_obs(), device=self.device)
        self.inner_outer.next_commitment(self.nets[LEADER], q)
        if bump:
            self.schedule.new_phase_id()

    def _inner_outer_step(self, batch: list[Trajectory]) -> None:
        rows = [t.episode_returns for t in batch if len(t.episode_returns)]
        mean_f = float(np.concatenate(rows)[:, 1:].mean()) if rows else None
        if not self.inner_outer.on_follower_update(mean_f):
            return
        current = self.inner_outer.current
        res = evaluate(
            self.eval_env, self.nets, "table", current.answers, follower_context=False, device=self.device
        )
        if current.greedy:
            self._record_eval(res)
        if self.inner_outer.record(res.leader_value):
            self.update_on_arrays(LEADER, self.inner_outer.leader_batch(self._query_obs()))
            if self.inner_outer.frozen:
                self.schedule.end_phase()
                self.inner_outer = None
                return
        self._next_commitment()

    # -- evaluation and logging -----------------------------------------------------------------
    def _evaluate(self) -> None:
        if not self.evaluates:
            return
        if self.schedule.kind == "inner_outer" and not self.schedule.finished:
            return  # the inner-outer loop evaluates its greedy commitment itself
        if any(p.kind == "inner_outer" for p in self.cfg.schedule.phases):
            return
        sampled = self.cfg.schedule.eval_followers == "sampled"
        self._record_eval(evaluate(self.eval_env, self.nets, device=self.device, sample_followers=sampled))

    def _record_eval(self, res: EvalResult) -> None:
        self.last_eval = res
        point = {
            "env_steps": self.env_steps,
            "leader_value": res.leader_value,
            "follower_values": res.follower_values,
            "leader_answers": res.leader_answers,
            "wall_seconds": self.wall_seconds,
        }
        step = self.env_steps
        self.metrics.scalar("eval/leader_value", res.leader_value, step)
        for f, v in zip(self.followers, res.follower_values):
            self.metrics.scalar(f"eval/{f}_value", v, step)
        if self.exact is not None:
            point["gap"] = self.exact.value - res.leader_value
            self.metrics.scalar("eval/optimality_gap", point["gap"], step)
        if self.follower_check is not None:
            point["follower_check"] = self.follower_check(self.nets, self.device)
            self.metrics.scalar("eval/follower_check", point["follower_check"], step)
        self.eval_history.append(point)

    def _log_episodes(self, traj: Trajectory) -> None:
        if len(traj.episode_returns) == 0:
            return
        means = traj.episode_returns.mean(axis=0)
        for role, m in zip(self.spec.roles, means):
            self.metrics.scalar(f"return/{role}", float(m), self.env_steps)

    def _log_rates(self) -> None:
        now = time.time()
        t0, steps0, bytes0, upd0 = self._last_rate
        if now - t0 < 2.0:
            return
        dt = now - t0
        total_updates = sum(self.updates.values())
        self.metrics.scalar("throughput/env_steps_per_s", (self.env_steps - steps0) / dt, self.env_steps)
        self.metrics.scalar(
            "throughput/bytes_received_per_s", (self.bytes_received - bytes0) / dt, self.env_steps
        )
        self.metrics.scalar("throughput/updates_per_s", (total_updates - upd0) / dt, self.env_steps)
        self._last_rate = (now, self.env_steps, self.bytes_received, total_updates)

    @property
    def wall_seconds(self) -> float:
        return self.wall_offset + time.time() - self.start_time

    # -- results ----------------------------------------------------------------------------------
    def final_evaluation(self) -> EvalResult:
        if self.last_eval is None:
            self._evaluate()
        if self.last_eval is None:  # inner-outer before its first greedy commitment converged
            self._record_eval(evaluate(self.eval_env, self.nets, follower_context=False, device=self.device))
        return self.last_eval

    def result(self) -> dict:
        res = self.final_evaluation()
        by_phase = dict(self.schedule.env_steps_by_phase)
        out = {
            "name": self.cfg.name,
            "game": self.cfg.env.name,
            "method": "inner_outer"
            if any(p.kind == "inner_outer" for p in self.cfg.schedule.phases)
            else "meta",
            "seed": self.cfg.seed,
            "leader_value": res.leader_value,
            "follower_value": res.follower_values[0]
            if len(res.follower_values) == 1
            else res.follower_values,
            "leader_answers": res.leader_answers,
            "env_steps": {**by_phase, "total": self.env_steps},
            "steps_to_final": steps_to_final(self.eval_history),
            "wall_seconds": self.wall_seconds,
            "updates": dict(self.updates),
            "trajectories_received": self.trajectories_received,
            "dropped_stale": self.dropped_stale,
            "eval_history": self.eval_history,
        }
        if self.exact is not None:
            out["exact_value"] = self.exact.value
            out["gap"] = self.exact.value - res.leader_value
            out["leader_value_vs_best_response"] = self._value_against_best_response(res.leader_answers)
        if self.follower_check is not None:
            out["follower_check"] = self.follower_check(self.nets, self.device)
        return out

    def _value_against_best_response(self, answers: list[int]) -> float | None:
        """The greedy commitment's value when the follower strongly best-responds (exact solver).

        Separates leader errors from follower errors: above `exact_value` is impossible here, so a
        `leader_value` above it means the learned follower failed to best-respond."""
        return commitment_value(self.cfg.env, answers)

    def write_result(self) -> dict:
        out = self.result()
        if self.run_dir:
            tmp = self.run_dir / "result.json.tmp"
            tmp.write_text(json.dumps(out, indent=2))
            tmp.replace(self.run_dir / "result.json")
        self.metrics.flush()
        return out

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything a resumed run needs: networks, optimizers, schedule phase and position, step
        counters, RNG states, eval history and the run config (tensors, numbers, strings only)."""
        return {
            "format": "stackrl-checkpoint-v1",
            "config_yaml": self.cfg.to_yaml(redact_secrets=True),
            "nets": {r: n.state_dict() for r, n in self.nets.items()},
            "optimizers": {r: o.state_dict() for r, o in self.optimizers.items()},
            "versions": dict(self.versions),
            "schedule": self.schedule.state_dict(),
            "env_steps": self.env_steps,
            "updates": dict(self.updates),
            "counters": {
                "trajectories_received": self.trajectories_received,
                "dropped_stale": self.dropped_stale,
                "rejected": self.rejected,
                "bytes_received": self.bytes_received,
                "total_updates_at_eval": self._total_updates_at_eval,
            },
            "eval_history_json": json.dumps(self.eval_history),
            "wall_seconds": self.wall_seconds,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng_json": json.dumps(_numpy_rng_state()),
            "generator_rng": self.generator.get_state(),
            "best_leader": self.best_leader.state_dict() if self.best_leader is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        for r, n in self.nets.items():
            n.load_state_dict(state["nets"][r])
        for r, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][r])
        self.versions = {r: int(v) for r, v in state["versions"].items()}
        self.schedule.load_state_dict(state["schedule"])
        self.env_steps = int(state["env_steps"])
        self.updates = defaultdict(int, {r: int(v) for r, v in state["updates"].items()})
        counters = state.get("counters", {})
        self.trajectories_received = int(counters.get("trajectories_received", 0))
        self.dropped_stale = int(counters.get("dropped_stale", 0))
        self.rejected = int(counters.get("rejected", 0))
        self.bytes_received = int(counters.get("bytes_received", 0))
        self._total_updates_at_eval = int(counters.get("total_updates_at_eval", sum(self.updates.values())))
        self.eval_history = json.loads(state["eval_history_json"])
        self.wall_offset = float(state["wall_seconds"])
        self.start_time = time.time()
        torch.set_rng_state(state["torch_rng"])
        if "numpy_rng_json" in state:
            _set_numpy_rng_state(json.loads(state["numpy_rng_json"]))
        self.generator.set_state(state["generator_rng"])
        if self.best_leader is not None and state.get("best_leader") is not None:
            self.best_leader.load_state_dict(state["best_leader"])
        self.pending.clear()
        self.inner_outer = None
        self._last_rate = (time.time(), self.env_steps, self.bytes_received, sum(self.updates.values()))
        self._updates_at_checkpoint = sum(self.updates.values())
        self._refresh_broadcast()

    def save(self, path: Path | None = None) -> Path:
        path = Path(path) if path else self.run_dir / "checkpoint.pt"
        save_checkpoint(path, self.state_dict())
        self._last_checkpoint = time.time()
        self._updates_at_checkpoint = sum(self.updates.values())
        log.debug("checkpoint at %d env steps written to %s", self.env_steps, path)
        return path

    def maybe_checkpoint(self) -> bool:
        """Checkpoint if `schedule.checkpoint_interval_s` passed or `checkpoint_interval_updates`
        updates happened since the last one; returns whether one was written."""
        if not self.run_dir or self.done:
            return False
        sc = self.cfg.schedule
        due = time.time() - self._last_checkpoint >= sc.checkpoint_interval_s
        if sc.checkpoint_interval_updates:
            since = sum(self.updates.values()) - getattr(self, "_updates_at_checkpoint", 0)
            due = due or since >= sc.checkpoint_interval_updates
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
        path = Path(path) if path else self.run_dir / "checkpoint.pt"
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
            sum(self.updates.values()),
            self.schedule.index,
        )

    def close(self) -> None:
        self.metrics.close()
        if self.follower_check is not None:
            self.follower_check.close()


def store_probe_set_with_run(cfg: ExperimentConfig, run_dir: Path | None) -> ExperimentConfig:
    """A `probe` query set without `env.probe_path` is stored in the run directory, so a resumed
    run and the actors sharing the directory load the very set the learner started with."""
    env = cfg.env
    if env.name != "pettingzoo" or env.query_set != "probe" or env.probe_path or run_dir is None:
        return cfg
    return dataclasses.replace(cfg, env=dataclasses.replace(env, probe_path=str(run_dir / "probe_set.npz")))


def pin_probe_hash(cfg: ExperimentConfig, query_set: np.ndarray) -> ExperimentConfig:
    """Pin the learner's probe set's hash in the config that actors receive and config.yaml keeps:
    an actor whose rollout produced a different set (another emulator build) refuses to start."""
    env = cfg.env
    if env.name != "pettingzoo" or env.query_set != "probe" or env.probe_hash:
        return cfg
    return dataclasses.replace(cfg, env=dataclasses.replace(env, probe_hash=probe_hash(query_set)))


def steps_to_value(history: list[dict], value: float) -> int | None:
    """Env steps at the first evaluation from which the leader value stayed at `value` (None: never)."""
    first = None
    for point in history:
        if math.isclose(point["leader_value"], value, abs_tol=1e-6):
            first = int(point["env_steps"]) if first is None else first
        else:
            first = None
    return first


def steps_to_final(history: list[dict]) -> int | None:
    """Env steps at the first evaluation from which the leader value never changed again."""
    return steps_to_value(history, history[-1]["leader_value"]) if history else None


def _numpy_rng_state() -> dict:
    """numpy's global RNG state as JSON-able data (checkpoints hold no pickled objects)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": gauss}


def _set_numpy_rng_state(s: dict) -> None:
    np.random.set_state(
        (s["name"], np.asarray(s["keys"], dtype=np.uint32), s["pos"], s["has_gauss"], s["gauss"])
    )
