"""Probe query sets: K leader observations collected once from a seeded reference rollout.

When the leader's observation space is too large to enumerate (images, vectors), the followers
query the leader on a fixed *probe set* instead, and the context is the leader's answers on it: a
fingerprint of the leader's policy, not the whole policy (docs/byog.md explains what that costs).

Every process must query the same probes. Actors may run on other hosts, so the set is not shipped
as data: it is generated deterministically from (env config, `probe_seed`) by a uniformly random
rollout, identified by a content hash (sha256 over dtype, shape and bytes), and checked:
- `probe_path` (optional): the first construction writes the set there; later ones (a resumed run,
  actors sharing the run directory) load it, check its stored hash and use it.
- `probe_hash` (optional): every construction, wherever it runs, checks its set against this hash
  and refuses to start on a mismatch (e.g. an emulator or package version that rolls out differently).
`stackrl probe-hash <preset or yaml>` prints the hash to pin in the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from stackrl.config import ExperimentConfig


class ProbeSetMismatch(RuntimeError):
    """A probe set differs from the one the run was started with."""


def probe_hash(probes: np.ndarray) -> str:
    """sha256 (hex) of a probe set's dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(str(probes.dtype).encode())
    h.update(repr(tuple(probes.shape)).encode())
    h.update(np.ascontiguousarray(probes).tobytes())
    return h.hexdigest()


def select_probes(observations: Iterator[np.ndarray], k: int, pool: int) -> np.ndarray:
    """K distinct observations, evenly spaced over the first `pool` distinct ones of a rollout.

    Args:
        observations: leader observations in visit order (each [*obs_shape]).
        k: K, the number of probes.
        pool: distinct observations to collect before choosing (>= k); spacing the choice spreads
            the probes over the episode instead of taking K near-identical opening frames.

    Returns:
        [K, *obs_shape] probes, in visit order.
    """
    seen: dict[bytes, np.ndarray] = {}
    for obs in observations:
        key = np.ascontiguousarray(obs).tobytes()
        if key not in seen:
            seen[key] = np.array(obs, copy=True)
            if len(seen) >= pool:
                break
    distinct = list(seen.values())
    if len(distinct) < k:
        raise ValueError(
            f"probe set: the reference rollout visited {len(distinct)} distinct leader "
            f"observations, fewer than probe_size={k}"
        )
    idx = np.round(np.linspace(0, len(distinct) - 1, k)).astype(np.int64)
    return np.stack([distinct[i] for i in idx])


def save_probe_set(path: str | Path, probes: np.ndarray) -> None:
    """Write probes and their hash to an .npz file atomically (concurrent writers are harmless)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, probes=probes, sha256=np.array(probe_hash(probes)))
    tmp.replace(path)


def load_probe_set(path: str | Path) -> np.ndarray:
    """Read a probe set written by `save_probe_set`, checking its stored hash."""
    with np.load(path, allow_pickle=False) as f:
        probes: np.ndarray = f["probes"]
        stored = str(f["sha256"])
    if probe_hash(probes) != stored:
        raise ProbeSetMismatch(f"{path}: probe set does not match its stored hash (corrupted file)")
    return probes


def resolve_probe_set(
    generate: Callable[[], np.ndarray], path: str | None = None, expected_hash: str | None = None
) -> np.ndarray:
    """The run's probe set: loaded from `path` if it exists, else generated (and written to `path`).

    Raises:
        ProbeSetMismatch: the set's hash differs from `expected_hash`.
    """
    if path and Path(path).exists():
        probes = load_probe_set(path)
        source = f"stored at {path}"
    else:
        probes = generate()
        source = "generated from (env config, probe_seed)"
        if path:
            save_probe_set(path, probes)
    got = probe_hash(probes)
    if expected_hash is not None and got != expected_hash:
        raise ProbeSetMismatch(
            f"env.probe_hash: the probe set {source} has hash {got}, the config expects {expected_hash}; "
            "this host's environment rolls out differently from the one the run was started on"
        )
    return probes


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
