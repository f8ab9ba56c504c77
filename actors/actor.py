"""The actor: steps B extended games with local network copies and streams one unroll at a time.

Each unroll: take the newest broadcast (weights are swapped only here, never inside an unroll),
then for t in range(T) act under no_grad, step the games and write the step; send the unroll and
carry its last observation into the next one (TorchBeast's overlapping unrolls).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from stackrl.actors.leader_episodes import LeaderEpisodes
from stackrl.config import ExperimentConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import env_spec, make_stackelberg_env
from stackrl.envs.query_phase import StackelbergObs
from stackrl.learner.models import build_networks, precision_autocast, resolve_precision
from stackrl.protos.transport import ActorEndpoint, Broadcast
from stackrl.trajectory import Trajectory, TrajectorySpec

log = logging.getLogger(__name__)


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample a ~ softmax(logits) [N, A]; returns (actions [N] int64, log-probs [N] float32)."""
    logp_all = torch.log_softmax(logits, dim=-1)
    actions = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return actions.numpy().astype(np.int64), logp.numpy().astype(np.float32)


class Actor:
    """One actor: an extended batched game plus local copies of every role's network."""

    def __init__(self, cfg: ExperimentConfig, actor_id: int, endpoint: ActorEndpoint):
        self.cfg = cfg
        self.actor_id = actor_id
        self.endpoint = endpoint
        # Before the env: a precision this CPU cannot run is a config error, not a slow actor.
        self.precision = resolve_precision(cfg.actor.precision, torch.device("cpu"), "actor.precision")
        seed = cfg.seed * 100_003 + actor_id
        self.env = make_stackelberg_env(cfg.env, seed=seed)
        self.spec = env_spec(self.env)
        self.nets = build_networks(self.spec, cfg.model)
        for net in self.nets.values():
            net.eval()
        self.generator = torch.Generator().manual_seed(seed)
        self.unroll_length = cfg.actor.unroll_length
        self.storage_specs = {
            role: TrajectorySpec(
                unroll_length=self.unroll_length,
                num_games=self.env.num_games,
                obs_shape=tuple(self.spec.observation_spaces[role].shape),
                obs_dtype=self.spec.observation_spaces[role].dtype,
                context_size=self.spec.context_size(role),
            )
            for role in self.spec.roles
        }
        self.storage = {role: s.allocate() for role, s in self.storage_specs.items()}
        # actor.leader_trajectories 'episodes': the leader's trajectories are whole episodes
        self.leader_episodes = (
            LeaderEpisodes(self.storage_specs[LEADER])
            if cfg.actor.leader_trajectories == "episodes"
            else None
        )
        self.versions = {role: -1 for role in self.spec.roles}  # -1: no weights yet
        self.broadcast: Broadcast | None = None
        self._greedy_roles: set[str] = (
            set()
        )  # followers that play greedily (frozen, see actor.frozen_followers)
        self.obs: StackelbergObs | None = None
        self.unrolls = 0

    # -- weights and phase ----------------------------------------------------------------------
    def apply(self, b: Broadcast) -> None:
        """Take in a broadcast: newer weights, and a restart of all games if the phase changed."""
        for role, state in b.weights.items():
            if b.versions[role] > self.versions[role]:
                # load_state_dict copies into the parameters: no copy of our own (np.require copies
                # only an array that is read-only, e.g. one viewing a message's bytes).
                self.nets[role].load_state_dict(
                    {k: torch.from_numpy(np.require(v, requirements="W")) for k, v in state.items()}
                )
                self.versions[role] = b.versions[role]
        if b.done:
            self.broadcast = b
            return
        if self.broadcast is None or b.phase_id != self.broadcast.phase_id:
            self.env.set_leader_source(b.leader_source, b.leader_table)
            self.obs = self.env.reset(seed=self.cfg.seed * 100_003 + self.actor_id + 7919 * b.phase_id)
            if self.leader_episodes is not None:
                self.leader_episodes.clear()
        self.broadcast = b
        greedy = self.cfg.actor.frozen_followers == "greedy"
        self._greedy_roles = {r for r in self.spec.roles[1:] if greedy and r not in b.send_roles}

    def wait_for_broadcast(self, timeout_s: float) -> Broadcast:
        """Block until the learner's first broadcast arrives (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            b = self.endpoint.poll()
            if b is not None:
                self.apply(b)
                return b
            time.sleep(0.01)
        raise TimeoutError(f"actor {self.actor_id}: no weights from the learner within {timeout_s:.0f}s")

    # -- acting ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _act(self, role: str, obs: StackelbergObs) -> tuple[np.ndarray, np.ndarray]:
        b = self.env.num_games
        acting = obs.acting[role]
        if not acting.any():
            return np.zeros(b, np.int64), np.zeros(b, np.float32)
        o = torch.from_numpy(obs.obs[role])
        ctx = None
        if role != LEADER:
            assert self.broadcast is not None  # unroll() acts only after apply()
            ctx = torch.from_numpy(obs.follower_context(self.broadcast.follower_context))
        logits, _ = self.nets[role](o, ctx)  # under unroll()'s autocast when bf16
        logits = logits.float()  # sampling and the logged log-probabilities in fp32
        if role in self._greedy_roles:
            actions = logits.argmax(-1).numpy().astype(np.int64)
            logp = torch.log_softmax(logits, -1).gather(-1, torch.from_numpy(actions)[:, None])[:, 0].numpy()
        else:
            actions, logp = sample_actions(logits, self.generator)
        return np.where(acting, actions, 0), np.where(acting, logp, 0).astype(np.float32)

    def unroll(self) -> list[Trajectory]:
        """Run T steps of all B games and return the trajectories of the roles the learner wants."""
        # One autocast context for the whole unroll: autocast caches its bf16 copy of each weight
        # until the context exits, so the weights are cast once per unroll (they change only between
        # unrolls), not once per step (a 7 MB cast per step made bf16 acting slower than fp32).
        with precision_autocast("cpu", self.precision):
            return self._unroll()

    def _unroll(self) -> list[Trajectory]:
        assert self.broadcast is not None and self.obs is not None, "apply() a broadcast first"
        send = self.broadcast.send_roles
        obs = self.obs
        episode_rows: list[np.ndarray] = []
        env_steps = 0
        for t in range(self.unroll_length):
            step_actions = {}
            for role in self.spec.roles:
                store = self.storage[role]
                store["obs"][t] = obs.obs[role]
                store["elapsed"][t] = obs.elapsed
                if role != LEADER:
                    store["context"][t] = obs.follower_context(self.broadcast.follower_context)
                a, lp = self._act(role, obs)
                if role == LEADER:
                    forced = obs.forced_leader >= 0
                    a = np.where(forced, obs.forced_leader, a)
                store["actions"][t] = a
                store["logp"][t] = lp
                store["valid"][t] = obs.acting[role]
                step_actions[role] = a
            step = self.env.step(step_actions)
            for role in self.spec.roles:
                self.storage[role]["rewards"][t] = step.rewards[role]
                self.storage[role]["dones"][t] = step.dones
            if step.dones.any():
                episode_rows.append(np.stack([step.episode_returns[r] for r in self.spec.roles], axis=1))
            env_steps += step.env_steps
            obs = step.obs
        for role in self.spec.roles:
            self.storage[role]["obs"][self.unroll_length] = obs.obs[role]
            self.storage[role]["elapsed"][self.unroll_length] = obs.elapsed
            if role != LEADER:
                self.storage[role]["context"][self.unroll_length] = obs.follower_context(
                    self.broadcast.follower_context
                )
        self.obs = obs
        self.unrolls += 1
        returns = (
            np.concatenate(episode_rows).astype(np.float32)
            if episode_rows
            else np.zeros((0, len(self.spec.roles)), np.float32)
        )
        if self.leader_episodes is not None:
            self._record_leader_episodes(keep=LEADER in send)
        out = []
        for i, role in enumerate(r for r in self.spec.roles if r in send):
            arrays, version = self._arrays(role)
            out.append(
                Trajectory(
                    role=role,
                    actor_id=self.actor_id,
                    version=version,
                    phase_id=self.broadcast.phase_id,
                    arrays=arrays,
                    episode_returns=returns,
                    env_steps=env_steps if i == 0 else 0,
                )
            )
        return out

    def _record_leader_episodes(self, keep: bool) -> None:
        """Feed this unroll's leader steps to the episode buffer; `keep` False drops the episodes
        that finished (the leader does not learn now, nobody would send them)."""
        store, eps = self.storage[LEADER], self.leader_episodes
        assert eps is not None
        version = max(self.versions[LEADER], 0)
        for t in range(self.unroll_length):
            eps.record(
                store["obs"][t],
                store["elapsed"][t],
                store["actions"][t],
                store["logp"][t],
                store["valid"][t],
                store["rewards"][t],
                store["dones"][t],
                version,
            )
        if not keep:
            eps.drop_finished()

    def _arrays(self, role: str) -> tuple[dict[str, np.ndarray], int]:
        """This unroll's arrays of `role` and the weights version that produced them: the storage's
        T steps, or for the leader with `leader_trajectories: episodes` the episodes that finished
        (the oldest version among them)."""
        current = max(self.versions[role], 0)
        if role != LEADER or self.leader_episodes is None:
            return {k: v.copy() for k, v in self.storage[role].items()}, current
        arrays, oldest = self.leader_episodes.take(self.storage[LEADER]["obs"][self.unroll_length])
        return arrays, current if oldest < 0 else oldest

    def run(self, max_unrolls: int | None = None) -> None:
        """The actor loop: poll weights, unroll, push; until the learner says the run is done."""
        if self.broadcast is None:
            self.wait_for_broadcast(self.cfg.actor.connect_deadline_s)
        while max_unrolls is None or self.unrolls < max_unrolls:
            b = self.endpoint.poll()
            if b is not None and b.done:
                return
            if b is not None:
                self.apply(b)
            self.endpoint.push(self.unroll())
