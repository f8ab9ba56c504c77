"""The update step: every role's network and optimizer, and one optimizer step on a batch.

It owns what changes with learning (weights, Adam state, weight versions, update counts) and
nothing about when to learn (the schedule decides) or what to record (the run record does).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER, EnvSpec
from stackrl.learner.checkpoint import CheckpointError, load_checkpoint
from stackrl.learner.leader_restarts import fit_commitment
from stackrl.learner.metrics import Metrics
from stackrl.learner.models import PolicyNet, build_networks, resolve_precision
from stackrl.learner.update import actor_critic_loss


class UpdateStep:
    def __init__(self, cfg: ExperimentConfig, spec: EnvSpec, device: torch.device):
        # `auto` resolved for this device; the losses read the resolved value from self.cfg.
        self.precision = resolve_precision(cfg.learner.precision, device, "learner.precision")
        self.cfg = dataclasses.replace(
            cfg, learner=dataclasses.replace(cfg.learner, precision=self.precision)
        )
        self.spec = spec
        self.device = device
        self.nets: dict[str, PolicyNet] = {
            r: n.to(device) for r, n in build_networks(spec, cfg.model).items()
        }
        self.optimizers = {r: self._adam(r) for r in self.nets}
        self.versions = {r: 1 for r in spec.roles}
        self.updates: dict[str, int] = defaultdict(int)
        # Optimizer passes skipped because the loss or gradient was not finite (metric
        # `loss/<role>/skipped_nonfinite`): a poisoned batch costs one update, never the weights.
        self.skipped: dict[str, int] = defaultdict(int)

    def value_on_all_steps(self, role: str) -> bool:
        """Train `role`'s value on every step, not only its decisions: the leader, whose extended
        episode is all its steps, unless its trajectories are whole episodes of decisions only."""
        return role == LEADER and self.cfg.actor.leader_trajectories == "steps"

    def has_data(self, role: str, arrays: dict[str, np.ndarray]) -> bool:
        """Whether a trajectory of `role` gives any loss term: an update on one without decisions
        (and no value on other steps) would be an Adam step on zero gradients, moved by momentum alone."""
        return self.value_on_all_steps(role) or bool(np.any(arrays["valid"]))

    def load_followers(self, path: Path) -> list[str]:
        """Start the followers from another run's checkpoint (`learner.followers_from`: its run
        directory or checkpoint.pt); returns the roles loaded. The env and model must match that
        run's: a missing role or a tensor of another shape is a CheckpointError naming it."""
        path = Path(path)
        ckpt = path / "checkpoint.pt" if path.is_dir() else path
        state = load_checkpoint(ckpt)
        nets = state.get("nets", {})
        roles = [r for r in self.spec.roles if r != LEADER]
        for role in roles:
            if role not in nets:
                raise CheckpointError(f"learner.followers_from: {ckpt} has no network for {role}")
            own = self.nets[role].state_dict()
            theirs = nets[role]
            for name, tensor in own.items():
                if name not in theirs or tuple(theirs[name].shape) != tuple(tensor.shape):
                    got = tuple(theirs[name].shape) if name in theirs else "missing"
                    raise CheckpointError(
                        f"learner.followers_from: {ckpt}: {role}.{name} is {got}, this run's is "
                        f"{tuple(tensor.shape)} (env and model must match the run that trained them)"
                    )
            self.nets[role].load_state_dict(theirs)
        return roles

    def _base_lr(self, role: str) -> float:
        lc = self.cfg.learner
        return lc.lr_leader if role == LEADER else lc.lr_follower

    def _adam(self, role: str) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.nets[role].parameters(), lr=self._base_lr(role))

    @property
    def total_updates(self) -> int:
        return sum(self.updates.values())

    def weights(self) -> dict[str, dict[str, np.ndarray]]:
        """Every role's weights as numpy arrays (what a broadcast carries)."""
        return {
            r: {k: v.detach().cpu().numpy().copy() for k, v in n.state_dict().items()}
            for r, n in self.nets.items()
        }

    def step(
        self,
        role: str,
        arrays: dict[str, np.ndarray],
        phase_remaining: float,
        metrics: Metrics,
        log_step: int,
    ) -> None:
        """One update of `role` on a batch of trajectory arrays ([T(+1), B, ...]): `epochs` optimizer
        passes, with the entropy bonus and learning rate annealed by `phase_remaining` in [0, 1]."""
        net = self.nets[role]
        tensors = {k: torch.as_tensor(v, device=self.device) for k, v in arrays.items()}
        lc = self.cfg.learner
        entropy_cost = lc.entropy_leader if role == LEADER else lc.entropy_follower
        if lc.entropy_anneal:
            entropy_cost *= phase_remaining
        opt = self.optimizers[role]
        if lc.lr_anneal:
            for group in opt.param_groups:
                group["lr"] = self._base_lr(role) * phase_remaining
        applied = 0
        for _ in range(lc.epochs):
            loss, stats = actor_critic_loss(
                net, tensors, lc, entropy_cost=entropy_cost, value_on_all_steps=self.value_on_all_steps(role)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), lc.max_grad_norm)
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                # Adam would write NaN into the weights and its moments: skip this pass, count it.
                opt.zero_grad(set_to_none=True)
                self.skipped[role] += 1
                metrics.scalar(f"loss/{role}/skipped_nonfinite", self.skipped[role], log_step)
                continue
            opt.step()
            applied += 1
        if not applied:
            return
        self.versions[role] += 1
        self.updates[role] += 1
        for name in ("total", "policy", "baseline", "entropy", "mean_rho"):
            metrics.scalar(f"loss/{role}/{name}", getattr(stats, name), log_step)
        metrics.scalar(f"loss/{role}/grad_norm", float(grad_norm), log_step)

    def fresh_leader(
        self, seed: int, query_obs: np.ndarray, confidence: float, table: Sequence[int] | None = None
    ) -> None:
        """Replace the leader by a freshly initialised network (and optimizer) for a restart; with
        `confidence` > 0 it starts from a commitment played with that probability: `table` ([K]
        answers, e.g. the screen's next best) or else a uniformly random one."""
        # Its own seed per restart: actors in this process may reseed torch's global RNG, which
        # would otherwise hand every restart the same initial network.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = build_networks(self.spec, self.cfg.model)[LEADER].to(self.device)
            if confidence > 0:
                q = torch.as_tensor(query_obs, device=self.device)
                start = (
                    torch.as_tensor(list(table), device=self.device)
                    if table is not None
                    else torch.randint(self.spec.leader_actions, (len(q),), device=self.device)
                )
                fit_commitment(fresh, q, start, confidence)
        self.nets[LEADER].load_state_dict(fresh.state_dict())
        self.optimizers[LEADER] = self._adam(LEADER)
        self.versions[LEADER] += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": {r: n.state_dict() for r, n in self.nets.items()},
            "optimizers": {r: o.state_dict() for r, o in self.optimizers.items()},
            "versions": dict(self.versions),
            "updates": dict(self.updates),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for r, n in self.nets.items():
            n.load_state_dict(state["nets"][r])
        for r, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][r])
        self.versions = {r: int(v) for r, v in state["versions"].items()}
        self.updates = defaultdict(int, {r: int(v) for r, v in state["updates"].items()})
