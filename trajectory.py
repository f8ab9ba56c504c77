"""The trajectory layout, declared once: actor storage, codec validation and learner batching all use it.

One `Trajectory` is one unroll of one role (the leader or follower i) for a batch of B games.
Observation-like fields carry T+1 rows: the last row is the bootstrap observation, which is also the
first row of the next unroll (TorchBeast's overlapping unrolls).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Sentinel values written into freshly allocated storage, so that a slot the actor never wrote
# shows up in tests instead of passing silently as zeros (Sample Factory's fill values).
SENTINEL_FLOAT = np.float32(np.nan)
SENTINEL_INT = np.int64(-(2**31))


@dataclass(frozen=True)
class TrajectorySpec:
    """Shapes and dtypes of one role's unroll."""

    unroll_length: int  # T
    num_games: int  # B
    obs_shape: tuple[int, ...]
    obs_dtype: str
    context_size: int  # K (0 for the leader, whose trajectories carry no context)

    def fields(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Field name -> (shape, dtype) of every array of a trajectory."""
        t, b = self.unroll_length, self.num_games
        return {
            "obs": ((t + 1, b, *self.obs_shape), self.obs_dtype),
            "context": ((t + 1, b, self.context_size), "int64"),
            "elapsed": ((t + 1, b), "int32"),
            "actions": ((t, b), "int64"),
            "logp": ((t, b), "float32"),
            "rewards": ((t, b), "float32"),
            "dones": ((t, b), "bool"),
            "valid": ((t, b), "bool"),
        }

    def allocate(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (shape, dtype) in self.fields().items():
            dt = np.dtype(dtype)
            if dt.kind == "f":
                fill = SENTINEL_FLOAT
            elif dt.kind == "b":
                fill = False
            elif dt == np.uint8:
                fill = 0
            else:
                fill = SENTINEL_INT
            out[name] = np.full(shape, fill, dtype=dt)
        return out


@dataclass
class Trajectory:
    """One role's unroll for B games, stamped with the weights version that produced it.

    Arrays (T = unroll length, B = games):
      obs      [T+1, B, *obs_shape]  observations (last row: bootstrap)
      context  [T+1, B, K] int64     the leader's query answers seen by a follower
      elapsed  [T+1, B] int32        steps since the extended episode began: the critic's clock (the
                                     policy never sees it, so policies stay stationary)
      actions  [T, B] int64
      logp     [T, B] float32        behaviour log-probabilities (0 where not a decision)
      rewards  [T, B] float32        rewards as the learner should see them (tie-break included)
      dones    [T, B] bool           the extended episode ended after this step
      valid    [T, B] bool           this role decided at this step (not a query step for a follower,
                                     not a committed play step for the leader)
    """

    role: str
    actor_id: int
    version: int
    phase_id: int
    arrays: dict[str, np.ndarray]
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    """[E, R] float32: raw returns of the E episodes that ended in this unroll, one column per role
    (env role order); the same table rides on every trajectory of the unroll."""
    env_steps: int = 0
    """Play-phase env steps of the unroll, set on exactly one trajectory per unroll so counts add up."""

    @property
    def spec(self) -> TrajectorySpec:
        obs = self.arrays["obs"]
        return TrajectorySpec(
            unroll_length=obs.shape[0] - 1,
            num_games=obs.shape[1],
            obs_shape=tuple(obs.shape[2:]),
            obs_dtype=str(obs.dtype),
            context_size=self.arrays["context"].shape[2],
        )

    def validate(self, expected: TrajectorySpec | None = None) -> None:
        """Raise ValueError naming the first field whose shape, dtype or values are wrong."""
        spec = expected or self.spec
        for name, (shape, dtype) in spec.fields().items():
            if name not in self.arrays:
                raise ValueError(f"trajectory field {name!r} is missing")
            arr = self.arrays[name]
            if tuple(arr.shape) != tuple(shape):
                raise ValueError(
                    f"trajectory field {name!r}: shape {tuple(arr.shape)}, expected {tuple(shape)}"
                )
            if np.dtype(arr.dtype) != np.dtype(dtype):
                raise ValueError(f"trajectory field {name!r}: dtype {arr.dtype}, expected {dtype}")
        extra = set(self.arrays) - set(spec.fields())
        if extra:
            raise ValueError(f"trajectory has unknown fields {sorted(extra)}")
        for name in ("logp", "rewards"):
            if not np.all(np.isfinite(self.arrays[name])):
                raise ValueError(f"trajectory field {name!r} holds non-finite values")
        if self.arrays["obs"].dtype.kind == "f" and not np.all(np.isfinite(self.arrays["obs"])):
            raise ValueError("trajectory field 'obs' holds non-finite values")
        if not np.all(np.isfinite(self.episode_returns)):
            raise ValueError("trajectory field 'episode_returns' holds non-finite values")
        if self.version < 0 or self.env_steps < 0:
            raise ValueError("trajectory version and env_steps must be >= 0")


def concat_trajectories(trajs: list[Trajectory]) -> dict[str, np.ndarray]:
    """Join trajectories of one role along the batch axis: [T(+1), B1+B2+..., ...]."""
    return {name: np.concatenate([t.arrays[name] for t in trajs], axis=1) for name in trajs[0].arrays}
