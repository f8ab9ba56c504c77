"""Typed experiment configuration: nested dataclasses, strict YAML loading, validation by field name.

One `ExperimentConfig` is the whole run. It is loaded from a YAML preset (deploy/configs/), edited
by command-line overrides (`--set learner.lr_leader=0.01`), validated before any process starts and
saved resolved to `runs/<name>/config.yaml`. Actors receive it as YAML text inside the typed
registration reply, never as a pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dacite
import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown, mistyped or impossible; the message names the key."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a repeated key (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                mark = key_node.start_mark
                raise ConfigError(f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str = "the config") -> Any:
    """Parse YAML safely and strictly: repeated keys and syntax errors are one-line `ConfigError`s."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None


MAX_EPISODE_REWARD = 1e5
"""Largest |payoff| x episode length a matrix game may have: the learner refuses received rewards and
episode returns above 1e6 in magnitude (learner/servicer.py), so a bigger game would start and then
have every unroll rejected (issue 13); the margin leaves room for the follower's tie-break term."""


PRECISIONS = ("fp32", "bf16", "auto")
LEADER_TRAJECTORIES = ("steps", "episodes")
"""What `learner.precision` and `actor.precision` accept (learner/models.py resolves `auto`)."""


def _require(cond: bool, key: str, why: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {why}")


@dataclass
class EnvConfig:
    name: str = "prisoners_dilemma"
    """Game: one of the iterated matrix games, `matrix` (with `payoffs`), or an Atari pricing game."""
    payoffs: list[list[list[float]]] | None = None
    """User bimatrix `[a_L][a_F] = [r_L, r_F]` (any number of actions); overrides a named game's table."""
    episode_length: int | None = None
    """Play steps per episode; None takes the game's own (10 for the iterated games, 1 for one-shot)."""
    memory: str = "full"
    """Matrix games: what a player observes. `full`: the previous joint action (5 states in 2x2),
    `small`: the other player's previous action (3), `none`: nothing (1; the repeated one-shot game)."""
    explore_starts: float = 0.0
    """Matrix games: while followers learn against random leaders, this fraction of episodes starts
    in a uniformly random state (exploring starts), so every state is learned under every table."""
    num_games: int = 64
    """B: games stepped together in one actor process."""
    queries: str = "hidden"
    """`hidden`: a query step looks exactly like a play step to the leader; `observed`: it carries a flag."""
    commit: bool = True
    """The leader's query answers bind it in play on queried observations (DESIGN.md §1)."""
    current_answer: bool = False
    """Followers' context gets one more entry: the leader's committed answer for its current
    observation (the posted price of the current phase in the Atari pricing games). Needs `commit`.
    Without it a follower sees the whole schedule but not which entry applies now, unless its own
    observation reveals the leader's (the matrix games' memory-1 state does; a screen does not)."""
    tie_break: float | None = None
    """Weight of the leader's reward added to the follower's, so that follower ties go the leader's way
    (strong Stackelberg). None: the largest weight that provably changes no strict preference
    (computed by the exact solver for matrix games; 0 elsewhere)."""
    phase_edges: list[int] = field(default_factory=lambda: [0, 250, 500, 1000, 2000])
    """Atari pricing: agent-step edges of the leader's episode phases (K = len)."""
    prices: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """Atari pricing: the leader's price menu."""
    price_scale: float = 1.0
    """Atari pricing: a shot costs price_scale * price in game points."""
    max_episode_steps: int = 2500
    """Atari pricing: agent steps (4 frames each) before an episode is cut."""
    num_threads: int = 0
    """Atari pricing: envpool worker threads (0 = one per core)."""
    pettingzoo: str | None = None
    """Bring your own game (`name: pettingzoo`): a `ParallelEnv` factory as `package.module:callable`,
    e.g. `pettingzoo.classic.rps_v2:parallel_env` (docs/byog.md)."""
    pettingzoo_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the `pettingzoo` factory."""
    leader_agent: str | None = None
    """The PettingZoo agent that leads; all others follow in `possible_agents` order."""
    query_set: str = "enumerate"
    """PettingZoo games: `enumerate` (every leader observation; Discrete only) or `probe`."""
    probe_size: int = 8
    """probe: K, the number of probe observations."""
    probe_seed: int = 0
    """probe: seed of the uniformly random reference rollout the probes are taken from."""
    probe_steps: int = 1000
    """probe: the most agent steps of the reference rollout."""
    probe_path: str | None = None
    """probe: .npz file holding the run's probe set: written if absent, else loaded (resume)."""
    probe_hash: str | None = None
    """probe: sha256 the probe set must have (`stackrl probe-hash <preset>` prints it)."""
    frame_skip: int = 1
    """PettingZoo games: env steps per agent step (actions repeated, rewards summed)."""
    follower_last_action: bool = False
    """PettingZoo games with Discrete follower observations: each follower also observes its own
    previous action (perfect recall). Use it when the leader reacts to the follower's moves but the
    follower's own observation omits them (rps_v2): the follower's problem becomes Markov."""

    def validate(self) -> None:
        _require(self.num_games >= 1, "env.num_games", f"must be >= 1, got {self.num_games}")
        _require(
            self.queries in ("hidden", "observed"),
            "env.queries",
            f"must be 'hidden' or 'observed', got {self.queries!r}",
        )
        _require(
            0 <= self.explore_starts <= 1,
            "env.explore_starts",
            f"must be in [0, 1], got {self.explore_starts}",
        )
        _require(
            self.memory in ("full", "small", "none"),
            "env.memory",
            f"must be 'full', 'small' or 'none', got {self.memory!r}",
        )
        _require(
            self.episode_length is None or self.episode_length >= 1,
            "env.episode_length",
            f"must be >= 1, got {self.episode_length}",
        )
        _require(
            self.tie_break is None or self.tie_break >= 0,
            "env.tie_break",
            f"must be >= 0, got {self.tie_break}",
        )
        _require(
            self.query_set in ("enumerate", "probe"),
            "env.query_set",
            f"must be 'enumerate' or 'probe', got {self.query_set!r}",
        )
        _require(self.probe_size >= 1, "env.probe_size", f"must be >= 1, got {self.probe_size}")
        _require(self.probe_steps >= 1, "env.probe_steps", f"must be >= 1, got {self.probe_steps}")
        _require(self.frame_skip >= 1, "env.frame_skip", f"must be >= 1, got {self.frame_skip}")
        _require(
            self.commit or not self.current_answer,
            "env.current_answer",
            "needs env.commit: true (an uncommitted leader's answer is not what it plays)",
        )
        if self.name == "pettingzoo" or self.pettingzoo is not None:
            _require(
                self.pettingzoo is not None and ":" in self.pettingzoo,
                "env.pettingzoo",
                f"must name a factory as 'package.module:callable', got {self.pettingzoo!r}",
            )
            _require(bool(self.leader_agent), "env.leader_agent", "must name the leading PettingZoo agent")
        _require(self.price_scale >= 0, "env.price_scale", f"must be >= 0, got {self.price_scale}")
        _require(len(self.prices) >= 1, "env.prices", "needs at least one price")
        _require(
            len(self.phase_edges) >= 1
            and self.phase_edges[0] == 0
            and all(a < b for a, b in zip(self.phase_edges, self.phase_edges[1:])),
            "env.phase_edges",
            f"must start at 0 and increase, got {self.phase_edges}",
        )
        if self.payoffs is not None:
            p = self.payoffs
            ok = (
                len(p) >= 1
                and isinstance(p[0], list)
                and len(p[0]) >= 1
                and all(isinstance(row, list) and len(row) == len(p[0]) for row in p)
                and all(isinstance(c, list) and len(c) == 2 for row in p for c in row)
            )
            _require(ok, "env.payoffs", "must be a rectangular [n_L][n_F][2] list of (r_L, r_F) pairs")
            largest = max(abs(v) for row in p for cell in row for v in cell)
            steps = self.episode_length or 10  # the iterated games' own length when not given
            _require(
                largest * steps <= MAX_EPISODE_REWARD,
                "env.payoffs",
                f"|payoff| up to {largest:g} over {steps} steps exceeds {MAX_EPISODE_REWARD:g} per episode "
                "(the learner bounds received rewards and returns); rescale the payoffs",
            )


@dataclass
class ModelConfig:
    hidden: int = 64
    """Width of the MLP layers (leader, follower heads, context embedding)."""
    context_join: str = "concat"
    """How a follower joins its context to its observation features: `concat` or `film`."""

    def validate(self) -> None:
        _require(self.hidden >= 1, "model.hidden", f"must be >= 1, got {self.hidden}")
        _require(
            self.context_join in ("concat", "film"),
            "model.context_join",
            f"must be 'concat' or 'film', got {self.context_join!r}",
        )


@dataclass
class ActorConfig:
    num_actors: int = 1
    """Actor processes (each steps env.num_games games)."""
    unroll_length: int = 30
    """T: steps per trajectory message. Multiples of the extended episode keep returns exact."""
    threads: int = 1
    """torch CPU threads per actor process."""
    connect_deadline_s: float = 60.0
    """An actor that cannot reach the learner for this long exits non-zero."""
    nice: int = 0
    """Added to each actor process's niceness (0-19). On a machine with fewer cores than processes,
    a positive value lets the learner, usually the bottleneck, keep its core; actors still get all
    CPU the learner does not use."""
    frozen_followers: str = "sample"
    """How followers act while they do not learn (the leader phase without fine-tuning): `sample`
    their policy, or play it `greedy`. A best response is a deterministic policy and evaluation plays
    it greedily; with `greedy` the leader learns against exactly the responses it is judged by,
    instead of against the residual randomness of a sampled follower, which can make the optimal
    commitment look worse than it is and pull the leader away from it."""
    precision: str = "fp32"
    """Acting networks' forward pass: `fp32`; `bf16` autocast (a CPU with bf16 instructions, refused
    elsewhere; the Atari CNN acts about 1.5x faster, action probabilities move by ~1e-4); `auto`: bf16
    where this actor's CPU runs it natively, else fp32. The logged log-probabilities are the ones the
    actor sampled with, so V-trace corrects for whatever rounding differs from the learner's."""
    leader_trajectories: str = "steps"
    """How the leader's experience is cut into trajectories. `steps`: like every role, T consecutive
    steps, bootstrapped from the leader's value at the unroll's end (exact when an extended episode
    fits in an unroll, as in the matrix games). `episodes`: each finished extended episode becomes one
    column of the leader's decisions only, the rewards after a decision summed onto it and the episode
    closed after the last one (a semi-Markov view, as RLlib hands a multi-agent env's rewards to an
    agent at its next step): the leader's return is the whole episode's, not a bootstrap. Needed where
    episodes are much longer than an unroll (Atari pricing: ~2,000 steps): the leader's critic cannot
    see the schedule it committed to, so a bootstrapped value credits a query answer only with the
    revenue earned inside its own unroll. Needs `env.commit` and at most `unroll_length` leader
    decisions per episode."""

    def validate(self) -> None:
        _require(
            self.leader_trajectories in LEADER_TRAJECTORIES,
            "actor.leader_trajectories",
            f"must be 'steps' or 'episodes', got {self.leader_trajectories!r}",
        )
        _require(
            self.frozen_followers in ("sample", "greedy"),
            "actor.frozen_followers",
            f"must be 'sample' or 'greedy', got {self.frozen_followers!r}",
        )
        _require(self.num_actors >= 1, "actor.num_actors", f"must be >= 1, got {self.num_actors}")
        _require(self.unroll_length >= 1, "actor.unroll_length", f"must be >= 1, got {self.unroll_length}")
        _require(self.threads >= 1, "actor.threads", f"must be >= 1, got {self.threads}")
        _require(self.connect_deadline_s > 0, "actor.connect_deadline_s", "must be > 0")
        _require(0 <= self.nice <= 19, "actor.nice", f"must be in [0, 19], got {self.nice}")
        _require(
            self.precision in PRECISIONS,
            "actor.precision",
            f"must be 'fp32', 'bf16' or 'auto', got {self.precision!r}",
        )


@dataclass
class LearnerConfig:
    lr_leader: float = 0.02
    """Adam step size of the leader."""
    lr_follower: float = 0.01
    """Adam step size of the followers."""
    discount: float = 1.0
    """Per-step discount; 1 for the finite iterated games (values are undiscounted sums)."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this inside the losses (reported values stay in raw units)."""
    entropy_leader: float = 0.01
    """Entropy bonus of the leader (at the start of a phase, see `entropy_anneal`)."""
    entropy_follower: float = 0.05
    """Entropy bonus of the followers (at the start of a phase, see `entropy_anneal`)."""
    entropy_anneal: bool = True
    """Decay entropy bonuses linearly to 0 over each phase: early exploration smooths the stationary
    best-response problem (whose policy-gradient landscape has local optima), late decay lets
    policies become deterministic."""
    lr_anneal: bool = False
    """Decay both learning rates linearly to 0 over each phase, so the last updates of a phase barely
    move the policy: the follower that pretraining hands over and the leader that the run reports
    are settled, not caught mid-step (most visible with policy lag, where late steps are noisiest)."""
    baseline_cost: float = 0.5
    clip_rho: float = 1.0
    """V-trace rho-bar (IMPALA)."""
    clip_c: float = 1.0
    """V-trace c-bar (IMPALA)."""
    ppo_clip: float = 0.0
    """If > 0, clip the importance ratio in the policy loss PPO-style (epsilon)."""
    max_grad_norm: float = 10.0
    epochs: int = 1
    """Optimizer passes over each batch (sample reuse; pair with `ppo_clip` when > 1)."""
    batch_trajectories: int = 1
    """Trajectory messages of one role concatenated into one update."""
    queue_size: int = 16
    """Bound of the learner's trajectory queue; full means actors wait (back-pressure)."""
    device: str = "auto"
    """`auto` (CUDA when present), `cpu` or `cuda`."""
    threads: int = 0
    """torch CPU threads of the learner; 0 (auto): the cores the rest of the machine leaves idle,
    measured through the run (`learner/thread_budget.py`; serial runs: 1)."""
    precision: str = "fp32"
    """`fp32`; `bf16`: the networks' forward and backward passes under bfloat16 autocast (CUDA, or a
    CPU with bf16 instructions; refused elsewhere); losses, V-trace and Adam stay in fp32; `auto`:
    bf16 where the learner's device runs it natively, else fp32."""
    followers_from: str | None = None
    """A run directory (or its checkpoint.pt) whose trained followers this run starts from: pretraining
    does not depend on the leader, so one pretrained contextual follower serves every leader trained
    against it (drop the pretrain phase from `schedule.phases`). Env and model must match that run's;
    a mismatch is refused at start, naming the tensor. Only networks are read (weights-only load)."""

    def validate(self) -> None:
        for key in ("lr_leader", "lr_follower"):
            _require(getattr(self, key) > 0, f"learner.{key}", f"must be > 0, got {getattr(self, key)}")
        _require(0 < self.discount <= 1, "learner.discount", f"must be in (0, 1], got {self.discount}")
        _require(self.reward_scale > 0, "learner.reward_scale", f"must be > 0, got {self.reward_scale}")
        for key in ("entropy_leader", "entropy_follower", "baseline_cost", "ppo_clip"):
            _require(getattr(self, key) >= 0, f"learner.{key}", f"must be >= 0, got {getattr(self, key)}")
        for key in ("clip_rho", "clip_c", "max_grad_norm"):
            _require(getattr(self, key) > 0, f"learner.{key}", f"must be > 0, got {getattr(self, key)}")
        _require(self.batch_trajectories >= 1, "learner.batch_trajectories", "must be >= 1")
        _require(self.epochs >= 1, "learner.epochs", f"must be >= 1, got {self.epochs}")
        _require(self.queue_size >= 1, "learner.queue_size", "must be >= 1")
        _require(
            self.device in ("auto", "cpu", "cuda"),
            "learner.device",
            f"must be 'auto', 'cpu' or 'cuda', got {self.device!r}",
        )
        _require(self.threads >= 0, "learner.threads", f"must be >= 0 (0: auto), got {self.threads}")
        _require(
            self.precision in PRECISIONS,
            "learner.precision",
            f"must be 'fp32', 'bf16' or 'auto', got {self.precision!r}",
        )


PHASE_KINDS = ("pretrain", "leader", "alternate", "inner_outer")


@dataclass
class PhaseConfig:
    kind: str = "pretrain"
    """`pretrain` (followers vs random leaders), `leader` (leader learns), `alternate`
    (k follower updates then m leader updates), `inner_outer` (baseline, DESIGN.md §3)."""
    env_steps: int = 100_000
    """Play-phase env steps (summed over games) this phase lasts."""
    follower_updates: int = 1
    """alternate: k follower updates per cycle."""
    leader_updates: int = 1
    """alternate: m leader updates per cycle."""
    finetune_followers: bool = False
    """leader: followers keep learning (on the same trajectories) while the leader learns."""
    restarts: int = 1
    """leader: split the budget into this many trainings of a fresh leader network against the same
    followers, one after another; the run keeps the leader whose greedy commitment evaluated best.
    A contextual follower makes each restart cheap, and a restart escapes the local optima a single
    policy-gradient leader settles in (a small leader population, in sequence)."""
    restart_confidence: float = 0.0
    """leader: every restart after the first starts from a random commitment (a uniformly drawn
    answer table, fitted into the fresh network) that it plays with this probability per query; 0
    keeps the plain fresh network. A fresh network is nearly uniform, so restarts from it follow
    nearly the same gradient path into the same local optimum; a random start puts each restart in
    another basin."""
    screen: int = 0
    """leader: before the first of its restarts, evaluate this many distinct random commitments
    (answer tables; all of them when there are no more) against the frozen followers, greedy as the
    restarts are judged, and start the later restarts from the best instead of from random draws. The
    screen's best is itself a candidate leader. A contextual follower answers any commitment at
    once, so a screen costs one evaluation episode per table: a population of leaders in parallel,
    where restarts are a population in sequence. 0: no screen."""
    verify: bool = False
    """leader, matrix games with one follower: judge every candidate leader that would be kept (each
    restart's and the screen's) by its value against a fresh tabular follower trained on its play
    (the equilibrium check's cross-entropy follower) whenever that follower earns more than the
    contextual one: a commitment is worth what it earns against a best response, not against the
    contextual follower's mistake. Learned from play alone; the exact solver is never asked."""
    inner_patience: int = 4
    """inner_outer: follower updates without improvement before its training counts as converged."""
    inner_min_updates: int = 4
    """inner_outer: follower updates before convergence may be declared."""
    inner_tolerance: float = 0.05
    """inner_outer: a follower return must beat its best by this much (raw units) to count as improvement."""
    outer_batch: int = 8
    """inner_outer: leader commitments sampled (each with its own follower training) per leader update."""
    stop_when_frozen: int = 3
    """inner_outer: end the phase early after this many consecutive outer batches in which every
    sampled commitment equalled the greedy one (all advantages are then 0: the leader cannot move
    again, so the rest of the budget would only repeat the same result). 0 disables."""

    def validate(self, key: str) -> None:
        _require(self.kind in PHASE_KINDS, f"{key}.kind", f"must be one of {PHASE_KINDS}, got {self.kind!r}")
        _require(self.env_steps >= 1, f"{key}.env_steps", f"must be >= 1, got {self.env_steps}")
        for name in ("follower_updates", "leader_updates", "inner_patience", "outer_batch"):
            _require(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1, got {getattr(self, name)}")
        _require(self.inner_min_updates >= 0, f"{key}.inner_min_updates", "must be >= 0")
        _require(self.restarts >= 1, f"{key}.restarts", f"must be >= 1, got {self.restarts}")
        _require(
            0 <= self.restart_confidence < 1,
            f"{key}.restart_confidence",
            f"must be in [0, 1), got {self.restart_confidence}",
        )
        _require(
            self.restarts == 1 or self.kind == "leader", f"{key}.restarts", "only a `leader` phase restarts"
        )
        _require(
            self.env_steps >= self.restarts,
            f"{key}.restarts",
            f"{self.restarts} restarts need at least as many env steps, got {self.env_steps}",
        )
        _require(self.screen >= 0, f"{key}.screen", f"must be >= 0, got {self.screen}")
        for name in ("screen", "verify"):
            _require(
                not getattr(self, name) or self.kind == "leader",
                f"{key}.{name}",
                "only a `leader` phase has it",
            )
        _require(
            not (self.screen and self.restarts > 1) or self.restart_confidence > 0,
            f"{key}.screen",
            "restarts start from the screen's tables only with restart_confidence > 0",
        )
        _require(self.stop_when_frozen >= 0, f"{key}.stop_when_frozen", "must be >= 0")
        _require(self.inner_tolerance >= 0, f"{key}.inner_tolerance", "must be >= 0")


def _default_phases() -> list[PhaseConfig]:
    return [PhaseConfig("pretrain", 120_000), PhaseConfig("leader", 60_000)]


@dataclass
class ScheduleConfig:
    phases: list[PhaseConfig] = field(default_factory=_default_phases)
    """Phases run in order; the run ends after the last."""
    eval_interval_updates: int = 20
    """Deterministic evaluation (greedy leader and followers) every this many learner updates."""
    eval_followers: str = "greedy"
    """`greedy`: deterministic evaluation (DESIGN.md §5). `sampled`: followers sample their policies
    (the leader stays greedy), for games whose greedy follower degenerates: a greedy Space Invaders
    player facing any price never fires, so its revenue is 0 whatever the leader does."""
    eval_games: int = 1
    """Games (one episode each) per evaluation; more than 1 only helps with `sampled` followers."""
    checkpoint_interval_s: float = 300.0
    """Wall seconds between checkpoints (one is always written at the end)."""
    checkpoint_interval_updates: int = 0
    """Also checkpoint after this many learner updates (summed over roles); 0: time interval only."""

    def validate(self) -> None:
        _require(len(self.phases) >= 1, "schedule.phases", "needs at least one phase")
        for i, phase in enumerate(self.phases):
            phase.validate(f"schedule.phases[{i}]")
        _require(self.eval_interval_updates >= 1, "schedule.eval_interval_updates", "must be >= 1")
        _require(
            self.eval_followers in ("greedy", "sampled"),
            "schedule.eval_followers",
            f"must be 'greedy' or 'sampled', got {self.eval_followers!r}",
        )
        _require(self.eval_games >= 1, "schedule.eval_games", f"must be >= 1, got {self.eval_games}")
        _require(self.checkpoint_interval_s > 0, "schedule.checkpoint_interval_s", "must be > 0")
        _require(
            self.checkpoint_interval_updates >= 0,
            "schedule.checkpoint_interval_updates",
            f"must be >= 0, got {self.checkpoint_interval_updates}",
        )

    @property
    def total_env_steps(self) -> int:
        return sum(p.env_steps for p in self.phases)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    """Learner bind address; anything but loopback requires a token."""
    port: int = 0
    """0 picks a free port (the local launcher passes it to the actors)."""
    token: str | None = None
    """Shared secret sent by actors as call metadata; required off loopback."""
    tls_cert: str | None = None
    tls_key: str | None = None
    max_message_mb: int = 64
    """Largest accepted gRPC message (gRPC counts bytes in a signed 32-bit int: at most 2047)."""
    max_weight_streams: int = 256
    """Weight streams open at once: the most actors one learner serves (each holds one stream and one
    server thread; the stream carries versions, not weights). More are refused with RESOURCE_EXHAUSTED
    and retry with back-off; raise it for more actors (`stackrl bench scale` measures 256)."""
    max_pushes: int = 32
    """Trajectory pushes in flight at once; more are refused with RESOURCE_EXHAUSTED."""
    push_deadline_s: float = 60.0
    """A push whose client has not finished sending after this long is cancelled."""
    idle_stream_s: float = 300.0
    """A weight stream whose actor neither pushed nor registered for this long is closed (the actor
    reconnects if it is alive)."""

    def validate(self) -> None:
        _require(0 <= self.port <= 65535, "server.port", f"must be in [0, 65535], got {self.port}")
        _require(
            1 <= self.max_message_mb <= 2047,
            "server.max_message_mb",
            f"must be in [1, 2047] (gRPC's limit is below 2 GiB), got {self.max_message_mb}",
        )
        for key in ("max_weight_streams", "max_pushes"):
            _require(getattr(self, key) >= 1, f"server.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("push_deadline_s", "idle_stream_s"):
            _require(getattr(self, key) > 0, f"server.{key}", f"must be > 0, got {getattr(self, key)}")
        _require(
            (self.tls_cert is None) == (self.tls_key is None),
            "server.tls_cert",
            "tls_cert and tls_key must be given together",
        )


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    """Run name: results go to `<run_root>/<name>/`."""
    seed: int = 0
    run_root: str = "runs"
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check_finite(self, "")
        _require(
            bool(self.name)
            and self.name not in (".", "..")
            and not any(c in self.name for c in "/\\\0")
            and len(self.name) <= 200,
            "name",
            f"must be a plain directory name (no '/', not '.' or '..'), got {self.name!r}",
        )
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        self.env.validate()
        self.model.validate()
        self.actor.validate()
        self.learner.validate()
        self.schedule.validate()
        self.server.validate()
        _require(
            self.actor.leader_trajectories == "steps" or self.env.commit,
            "actor.leader_trajectories",
            "'episodes' needs env.commit: an uncommitted leader also decides in play, so an episode "
            "holds more leader decisions than an unroll",
        )

    @property
    def run_dir(self) -> Path:
        return Path(self.run_root) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, redact_secrets: bool = False) -> str:
        data = self.to_dict()
        if redact_secrets and data["server"]["token"] is not None:
            data["server"]["token"] = "<redacted>"
        return yaml.safe_dump(data, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        _check_fields(cls, data, "")
        try:
            return dacite.from_dict(cls, data, config=dacite.Config(strict=True))
        except dacite.UnexpectedDataError as e:
            raise ConfigError(f"unknown key(s) {sorted(e.keys)}") from None
        except dacite.WrongTypeError as e:
            raise ConfigError(
                f"{e.field_path}: expected {_type_name(e.field_type)}, got {e.value!r}"
            ) from None
        except dacite.DaciteError as e:
            raise ConfigError(str(e)) from None

    @classmethod
    def from_yaml(cls, text: str) -> ExperimentConfig:
        data = load_yaml(text) or {}
        if not isinstance(data, dict):
            raise ConfigError("the config must be a YAML mapping")
        return cls.from_dict(data)


def _check_fields(cls: type, data: Any, prefix: str) -> None:
    """Check raw data against a config dataclass before dacite builds it, naming keys by full path:
    unknown keys (dacite names them without their section) and booleans given for numbers (YAML
    `true` passes dacite's int and float checks, as bool is an int)."""
    if not isinstance(data, dict):
        return  # dacite reports the wrong type with its path
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{path}: unknown key; known keys here: {', '.join(names)}")
        tp = hints[key]
        args = typing.get_args(tp)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            _check_fields(tp, value, f"{path}.")
        elif (
            typing.get_origin(tp) is list
            and args
            and isinstance(args[0], type)
            and dataclasses.is_dataclass(args[0])
        ):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    _check_fields(args[0], item, f"{path}[{i}].")
        elif isinstance(value, bool) and ({int, float} & {tp, *args}):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a config dict; unknown paths are errors."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node, cls = out, ExperimentConfig
        for k in keys[:-1]:
            sub = _field_class(cls, k)
            if not isinstance(node, dict) or (k not in node and sub is None):
                raise ConfigError(f"{path}: unknown key {k!r}")
            node, cls = node.setdefault(k, {}), sub
        known = cls is not None and _has_field(cls, keys[-1])
        if not isinstance(node, dict) or (keys[-1] not in node and not known):
            raise ConfigError(f"{path}: unknown key {keys[-1]!r}")
        node[keys[-1]] = yaml.safe_load(raw)
    return out


def _check_finite(obj: Any, path: str) -> None:
    """Every float in the config (nested dataclasses and lists included) must be finite."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            _check_finite(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, f"{path}[{i}]")
    elif isinstance(obj, float):
        _require(math.isfinite(obj), path, f"must be finite, got {obj}")


def _field_class(cls: Any, name: str) -> Any:
    """The dataclass type of field `name` of dataclass `cls` (None if absent or not a dataclass)."""
    if cls is None or not dataclasses.is_dataclass(cls):
        return None
    hints = typing.get_type_hints(cls)
    tp = hints.get(name)
    return tp if tp is not None and dataclasses.is_dataclass(tp) else None


def _has_field(cls: Any, name: str) -> bool:
    return dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}
