"""Hostile calls for `stackrl bench hostile`: every RPC, every field kind, bombs, poison, oversize metadata.

Each `Case` is one call a hostile peer makes to a learner: which RPC, the request bytes (already
serialized, so bytes that are no message at all reach the server), the metadata (the right token,
none, a wrong one, or headers far over gRPC's limits), and whether the learner may accept it (a
message whose values are in range: a poison value the learner must survive, not refuse). The cases
are drawn from a seeded generator, so a run is repeatable.
"""

from __future__ import annotations

import contextlib
import functools
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from stackrl.config import ExperimentConfig
from stackrl.envs.base import EnvSpec
from stackrl.learner.servicer import expected_specs
from stackrl.protos import codec
from stackrl.protos.security import auth_metadata
from stackrl.trajectory import Trajectory

RPCS = ("Register", "PushTrajectories", "StreamWeights", "PullWeights", "Status")
FLOATS = ("logp", "rewards", "episode_returns")
ARRAYS = ("obs", "context", "elapsed", "actions", "logp", "rewards", "dones", "valid", "episode_returns")
POISON_CASES = 24
"""In-range poison unrolls per run (each is accepted and drives one learner update); the rest of the
cases must be refused."""

Metadata = tuple[tuple[str, str], ...]
Mutation = Callable[[codec.TrajectoryMsg], None]


@dataclass
class Case:
    """One hostile call."""

    kind: str  # what the case exercises (reported per kind)
    rpc: str  # one of RPCS
    requests: list[bytes]  # one request (unary) or the client stream (PushTrajectories)
    metadata: Metadata
    may_accept: bool = False  # in-range values: accepted is a correct answer


class HostileCases:
    """A seeded source of hostile cases against a learner running `cfg` (whose token is `token`)."""

    def __init__(self, cfg: ExperimentConfig, spec: EnvSpec, token: str, seed: int = 0):
        self.cfg = cfg
        self.env = spec
        self.role = spec.roles[1]  # a follower: what the first (pretraining) phase asks for
        self.spec = expected_specs(spec, cfg)[self.role]
        self.auth = auth_metadata(token)
        self.rng = random.Random(seed)
        self.nrng = np.random.default_rng(seed)

    # -- valid and poisoned unrolls ---------------------------------------------------------------
    def valid(self) -> codec.TrajectoryMsg:
        """A valid follower unroll: random in-range actions, zero rewards, no env steps claimed (it
        must not advance the learner's schedule)."""
        arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in self.spec.fields().items()}
        n = self.env.action_spaces[self.role].n
        arrays["actions"][:] = self.nrng.integers(0, n, arrays["actions"].shape)
        arrays["logp"][:] = np.log(1.0 / n)
        arrays["valid"][:] = True
        returns = np.zeros((0, len(self.env.roles)), np.float32)
        return codec.encode_trajectory(Trajectory(self.role, 0, 1, 0, arrays, returns, env_steps=0))

    def poison(self) -> codec.TrajectoryMsg:
        """Values at the edge of what validation admits: a behaviour log-prob of -100 or -9999 (the
        ratio exp(logp - logp_behaviour) overflows), rewards at the most the game can pay, clocks at
        the horizon."""
        edge = min(self.env.max_abs_reward or 9.9e5, 9.9e5)
        msg = self.valid()
        t = codec.decode_trajectory(msg, self.spec)
        a = t.arrays
        which = self.rng.randrange(4)
        if which == 0:
            a["logp"].reshape(-1)[self.rng.randrange(a["logp"].size)] = self.rng.choice([-100.0, -9999.0])
            a["rewards"].reshape(-1)[0] = -edge
        elif which == 1:
            a["rewards"][:] = self.rng.choice([edge, -edge])
        elif which == 2:
            a["elapsed"][:] = self.env.horizon
            a["logp"][:] = -9999.0
        else:
            a["logp"][:] = 0.0
            a["rewards"].reshape(-1)[-1] = edge
        return codec.encode_trajectory(t)

    # -- hostile pushes ---------------------------------------------------------------------------
    def _field_mutations(self, n: str) -> list[Mutation]:
        """Ways to break tensor field `n`: dtype, shape, data, compression, absence, values."""
        rng = self.rng

        def t(m: codec.TrajectoryMsg) -> Any:
            return getattr(m, n)

        out: list[Mutation] = [
            lambda m: setattr(t(m), "dtype", rng.choice([d for d in range(40) if d != t(m).dtype])),
            lambda m: t(m).shape.append(rng.choice([0, 1, 3, 2**31])),
            lambda m: (
                t(m).shape.__setitem__(0, rng.choice([-1, 2**62, 10**6]))
                if len(t(m).shape)
                else t(m).shape.append(-7)
            ),
            lambda m: t(m).shape.extend([2**40, 2**40]),
            lambda m: setattr(t(m), "data", t(m).data[: rng.randrange(len(t(m).data) or 1)] or b"x"),
            lambda m: setattr(t(m), "data", t(m).data + b"\x01" * rng.randrange(1, 64)),
            lambda m: setattr(t(m), "compression", rng.choice([1, 2, 99])),
            lambda m: m.ClearField(n),
        ]
        if n in FLOATS:
            out += [self._value_mutation(n, bad) for bad in (np.nan, -3e38, np.inf)]
        else:  # the largest value of the type: outside every space (bools: a byte other than 0/1)
            out.append(
                lambda m: self._set(
                    m, n, lambda a: a.__setitem__(rng.randrange(a.size), np.iinfo(a.dtype).max)
                )
            )
        return out

    def _value_mutation(self, n: str, bad: float) -> Mutation:
        """Write `bad` into one random element of float field `n`."""
        rng = self.rng
        return lambda m: self._set(m, n, lambda a: a.__setitem__(rng.randrange(a.size), bad))

    def _tensor_mutations(self) -> list[Mutation]:
        """Every mutation; each turns a valid unroll into one the learner must refuse."""
        rng = self.rng
        out: list[Mutation] = []
        for name in ARRAYS:
            out += self._field_mutations(name)
        out += [
            lambda m: setattr(
                m, "role", rng.choice(["", "leader", "follower_9", "\x00" * 100, "r" * 100_000])
            ),
            lambda m: setattr(m, "version", rng.choice([-1, -(2**63), 10**12])),
            lambda m: setattr(m, "phase_id", rng.choice([-1, 10**9])),
            lambda m: setattr(m, "actor_id", rng.choice([-1, -(2**63)])),
            lambda m: setattr(m, "env_steps", rng.choice([-5, 10**12])),
            lambda m: self._set(m, "actions", lambda a: a.__setitem__(0, 99)),
            lambda m: self._set(m, "context", lambda a: a.__setitem__(0, 50)),
            lambda m: self._set(m, "obs", lambda a: a.__setitem__(0, 10**9)),
            lambda m: self._set(m, "logp", lambda a: a.__setitem__(0, 3.0)),
            lambda m: self._set(m, "elapsed", lambda a: a.__setitem__(0, -1)),
            lambda m: self._set(m, "rewards", lambda a: a.__setitem__(0, 5e6)),
            lambda m: setattr(m.dones, "data", b"\x07" + m.dones.data[1:]),
            lambda m: m.obs_restart_rows.CopyFrom(codec.encode_tensor(np.arange(3, dtype=np.int64))),
        ]
        return out

    @staticmethod
    def _set(msg: codec.TrajectoryMsg, name: str, fn: Callable[[np.ndarray], None]) -> None:
        """Decode field `name`, let `fn` write into its flat values (a bool field as its bytes),
        encode it back."""
        t = getattr(msg, name)
        arr = codec.decode_tensor(t, name).copy()
        if arr.size == 0:
            arr = np.zeros((1, 1), arr.dtype)
        flat = arr.reshape(-1)
        fn(flat.view(np.uint8) if arr.dtype == np.bool_ else flat)
        t.CopyFrom(codec.encode_tensor(arr))

    def bomb(self) -> codec.TrajectoryMsg:
        """A compressed tensor that declares a huge shape: at most 250 kB that inflate to up to 256 MB."""
        msg = self.valid()
        name = self.rng.choice(["episode_returns", "obs_restart_rows", "obs", "rewards", "logp"])
        rows = self.rng.choice([1 << 22, 1 << 23, 1 << 24])
        dtype, shape = (np.int64, (rows,)) if name == "obs_restart_rows" else (np.float32, (rows, 4))
        t = codec.encode_tensor(np.zeros((1,), dtype), compress=True)  # zlib, as the bomb declares
        t.shape[:] = list(shape)
        t.data = _zeros_compressed(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        getattr(msg, name).CopyFrom(t)
        if name == "obs_restart_rows":
            msg.obs_restart_frames.CopyFrom(codec.encode_tensor(np.zeros((0,), np.uint8)))
        return msg

    # -- the case stream --------------------------------------------------------------------------
    def cases(self, n: int) -> Iterator[Case]:
        """`n` cases, every kind in proportion (poison limited to `POISON_CASES`)."""
        kinds: list[tuple[str, float]] = [
            ("push_mutation", 0.36),
            ("push_mutations", 0.14),
            ("push_bomb", 0.06),
            ("raw_junk", 0.14),
            ("register", 0.06),
            ("status", 0.04),
            ("weights", 0.05),
            ("metadata", 0.07),
            ("stream", 0.05),
            ("flip", 0.03),
        ]
        poison_every = max(n // POISON_CASES, 1)
        muts = self._tensor_mutations()
        for i in range(n):
            if i % poison_every == poison_every - 1 and i // poison_every < POISON_CASES:
                yield Case(
                    "push_poison", "PushTrajectories", [self.poison().SerializeToString()], self.auth, True
                )
                continue
            kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
            yield getattr(self, f"_case_{kind}")(muts)

    def _push(self, kind: str, msgs: list[codec.TrajectoryMsg], may_accept: bool = False) -> Case:
        return Case(kind, "PushTrajectories", [m.SerializeToString() for m in msgs], self.auth, may_accept)

    def _case_push_mutation(self, muts: list[Callable[[codec.TrajectoryMsg], None]]) -> Case:
        msg = self.valid()
        self.rng.choice(muts)(msg)
        return self._push("push_mutation", [msg])

    def _case_push_mutations(self, muts: list[Callable[[codec.TrajectoryMsg], None]]) -> Case:
        msg = self.valid()
        for mutate in self.rng.sample(muts, self.rng.randint(2, 5)):
            # An earlier mutation may have made this one impossible to apply.
            with contextlib.suppress(ValueError, IndexError, TypeError, OverflowError, codec.CodecError):
                mutate(msg)
        return self._push("push_mutations", [msg])

    def _case_push_bomb(self, _muts: object) -> Case:
        return self._push("push_bomb", [self.bomb()])

    def _case_raw_junk(self, _muts: object) -> Case:
        rpc = self.rng.choice(RPCS)
        good = self.valid().SerializeToString()
        data = (
            self.rng.randbytes(self.rng.randrange(1, 600))
            if self.rng.random() < 0.5
            else good[: self.rng.randrange(1, len(good))]
        )
        # Random bytes can parse as a valid small request (Register, Status, weights); not as an unroll.
        return Case("raw_junk", rpc, [data], self.auth, may_accept=rpc != "PushTrajectories")

    def _case_register(self, _muts: object) -> Case:
        which = self.rng.randrange(3)
        if which == 0:  # a valid registration (accepted: registrations are free, but bounded by rate)
            req = codec.register_request("fuzzer", self.rng.randrange(1 << 31))
            return Case("register", "Register", [req.SerializeToString()], self.auth, True)
        if which == 1:  # a hostname of 1 MB (logged bounded)
            req = codec.register_request("h" * (1 << 20), -1)
            return Case("register", "Register", [req.SerializeToString()], self.auth, True)
        return Case("register", "Register", [self.rng.randbytes(64)], self.auth)

    def _case_status(self, _muts: object) -> Case:
        ok = self.rng.random() < 0.5
        data = codec.status_request().SerializeToString() if ok else b"\x0a\xff\xff\xff\xff\x0f"
        return Case("status", "Status", [data], self.auth, ok)

    def _case_weights(self, _muts: object) -> Case:
        """Weight streams and pulls: negative actor ids (refused), and pulls claiming absurd versions
        of real and unknown roles (answered: a pull only ever sends the learner's own weights)."""
        rpc = self.rng.choice(["StreamWeights", "PullWeights"])
        if rpc == "PullWeights" and self.rng.random() < 0.5:
            role = self.rng.choice([*self.env.roles, "x" * 1000])
            req = codec.weights_request(
                self.rng.randrange(1 << 20), {role: self.rng.choice([-(2**63), 2**63 - 1])}
            )
            return Case("weights", rpc, [req.SerializeToString()], self.auth, True)
        req = codec.weights_request(self.rng.choice([-1, -(2**63)]))
        return Case("weights", rpc, [req.SerializeToString()], self.auth)

    def _case_metadata(self, _muts: object) -> Case:
        """A valid call with hostile metadata: no token, a wrong one, or headers over gRPC's limit."""
        req = codec.status_request().SerializeToString()
        which = self.rng.randrange(4)
        if which == 0:
            return Case("metadata", "Status", [req], ())
        if which == 1:
            return Case("metadata", "Status", [req], auth_metadata("wrong-token-" + "x" * 20))
        if which == 2:
            return Case("metadata", "Status", [req], (*self.auth, ("x-junk", "j" * (64 << 10))))
        many = tuple((f"x-junk-{k}", "v" * 100) for k in range(400))
        return Case("metadata", "PushTrajectories", [self.valid().SerializeToString()], (*self.auth, *many))

    def _case_stream(self, _muts: object) -> Case:
        """Stream-level: empty, too many, a repeated role, a valid message followed by junk."""
        good, bad = self.valid(), self.valid()
        bad.rewards.data = b""
        which = self.rng.randrange(4)
        if which == 0:
            return self._push("stream", [])
        if which == 1:
            return self._push("stream", [good] * 40)
        if which == 2:
            return self._push("stream", [good, good])
        return Case("stream", "PushTrajectories", [good.SerializeToString(), b"\xff\xfe junk"], self.auth)

    def _case_flip(self, _muts: object) -> Case:
        """Random byte flips in a valid unroll: refused, or (a flip that left it valid) accepted."""
        data = bytearray(self.valid().SerializeToString())
        for _ in range(self.rng.randint(1, 4)):
            data[self.rng.randrange(len(data))] = self.rng.getrandbits(8)
        return Case("flip", "PushTrajectories", [bytes(data)], self.auth, True)


@functools.lru_cache(maxsize=8)
def _zeros_compressed(nbytes: int) -> bytes:
    """zlib of `nbytes` zero bytes, built in 1 MiB pieces (the bomb never exists inflated here)."""
    z = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [z.compress(chunk) for _ in range(nbytes >> 20)]
    parts.append(z.compress(bytes(nbytes & ((1 << 20) - 1))))
    parts.append(z.flush())
    return b"".join(parts)
