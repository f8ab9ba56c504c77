"""Probe query sets: stored with the run, reloaded on resume, identical across actors, exact lookup."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.config import EnvConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import make_env, make_stackelberg_env
from stackrl.envs.probe import ProbeSetMismatch, load_probe_set, probe_hash, save_probe_set


def pong_cfg(tmp_path, **kw) -> EnvConfig:
    pytest.importorskip("multi_agent_ale_py")
    base = dict(
        name="pettingzoo",
        pettingzoo="pettingzoo.atari.pong_v3:parallel_env",
        pettingzoo_kwargs={"obs_type": "grayscale_image", "max_cycles": 400},
        leader_agent="first_0",
        max_episode_steps=40,
        num_games=1,
        query_set="probe",
        probe_size=4,
        probe_steps=60,
        frame_skip=4,
        probe_path=str(tmp_path / "run" / "probe_set.npz"),
    )
    return EnvConfig(**{**base, **kw})


def test_probe_set_stored_reloaded_and_identical_across_actors(tmp_path):
    cfg = pong_cfg(tmp_path)
    first = make_env(cfg, seed=1)  # the learner's, say: generates and stores the set
    probes = first.leader_query_set()
    first.close()
    assert probes.shape == (4, 4, 84, 84) and probes.dtype == np.uint8
    assert len({p.tobytes() for p in probes}) == 4  # distinct
    stored = load_probe_set(cfg.probe_path)
    np.testing.assert_array_equal(stored, probes)
    # Two actors (other seeds) and a resumed run read the same set.
    a1, a2 = make_env(cfg, seed=2), make_env(cfg, seed=3)
    np.testing.assert_array_equal(a1.leader_query_set(), probes)
    np.testing.assert_array_equal(a2.leader_query_set(), probes)
    a1.close()
    a2.close()
    # An actor on another host (no shared file) regenerates it deterministically; the pinned hash agrees.
    remote = make_env(pong_cfg(tmp_path, probe_path=None, probe_hash=probe_hash(probes)), seed=4)
    np.testing.assert_array_equal(remote.leader_query_set(), probes)
    remote.close()


def test_resume_uses_stored_set_even_if_generation_changed(tmp_path):
    cfg = pong_cfg(tmp_path)
    fake = np.arange(2 * 4 * 84 * 84, dtype=np.uint8).reshape(2, 4, 84, 84)
    save_probe_set(cfg.probe_path, fake)  # the run's set, whatever generated it
    env = make_env(cfg)
    np.testing.assert_array_equal(env.leader_query_set(), fake)
    np.testing.assert_array_equal(env.query_index(fake[::-1]), [1, 0])
    env.close()


def test_hash_mismatch_refuses_to_start(tmp_path):
    with pytest.raises(ProbeSetMismatch, match="env.probe_hash"):
        make_env(pong_cfg(tmp_path, probe_path=None, probe_hash="0" * 64))
    cfg = pong_cfg(tmp_path)
    make_env(cfg).close()
    with np.load(cfg.probe_path) as f:
        probes = f["probes"].copy()
    probes[0, 0, 0, 0] ^= 1
    np.savez(cfg.probe_path, probes=probes, sha256=np.array("1" * 64))
    with pytest.raises(ProbeSetMismatch, match="corrupted"):
        make_env(cfg)


def test_query_index_matches_bytes_exactly(tmp_path):
    env = make_env(pong_cfg(tmp_path, num_games=2))
    q = env.leader_query_set()
    np.testing.assert_array_equal(env.query_index(q), np.arange(4))
    near = q[:2].copy()
    near[0, 3, 40, 40] ^= 1  # one pixel off: not a probe
    np.testing.assert_array_equal(env.query_index(near), [-1, 1])
    env.close()


def test_context_changes_only_when_the_leader_changes_on_a_probe(tmp_path):
    """The follower's context is the leader's answers on the probes: changing the leader's policy
    off the probe set leaves it unchanged; changing one probe's answer changes exactly that entry."""
    cfg = pong_cfg(tmp_path, num_games=1)
    env = make_stackelberg_env(cfg)
    env.set_leader_source("policy")
    q = env.query_observations()
    key = {p.tobytes(): k for k, p in enumerate(q)}

    def context_of(policy) -> np.ndarray:
        obs = env.reset(seed=0)
        for _ in range(env.num_queries):
            a = np.array([policy(o) for o in obs.obs[LEADER]])
            obs = env.step({LEADER: a, "follower_0": np.zeros(1, np.int64)}).obs
        assert not obs.in_query.any()
        return obs.context[0].copy()

    base = {0: 2, 1: 3, 2: 4, 3: 5}

    def leader(answers, off_probe):
        return lambda o: answers[key[o.tobytes()]] if o.tobytes() in key else off_probe

    c0 = context_of(leader(base, 0))
    np.testing.assert_array_equal(c0, [2, 3, 4, 5])
    np.testing.assert_array_equal(context_of(leader(base, 1)), c0)  # differs off the probes only
    changed = {**base, 2: 0}
    c2 = context_of(leader(changed, 0))
    np.testing.assert_array_equal(c2 != c0, [False, False, True, False])
    env.close()


def test_learner_stores_the_probe_set_with_the_run_and_pins_its_hash(tmp_path):
    """Without `env.probe_path` the learner puts the set in its run directory and pins its hash in
    the config that config.yaml keeps and actors receive, so every actor checks it has the same set."""
    from stackrl.config import ExperimentConfig
    from stackrl.learner.learner import Learner

    run = tmp_path / "run"
    env = pong_cfg(tmp_path, probe_path=None)
    cfg = ExperimentConfig.from_dict({"name": "probe_run", "env": env.__dict__})
    learner = Learner(cfg, run)
    try:
        stored = load_probe_set(run / "probe_set.npz")
        np.testing.assert_array_equal(stored, learner.eval_env.query_set)
        assert learner.cfg.env.probe_path == str(run / "probe_set.npz")
        assert learner.cfg.env.probe_hash == probe_hash(stored)
        saved = ExperimentConfig.from_yaml((run / "config.yaml").read_text())
        assert saved.env.probe_hash == probe_hash(stored) and saved.env.probe_path == str(
            run / "probe_set.npz"
        )
    finally:
        learner.close()
    # An actor given that config but without the file (another host) regenerates and checks the set.
    remote = make_env(pong_cfg(tmp_path, probe_path=None, probe_hash=learner.cfg.env.probe_hash), seed=5)
    np.testing.assert_array_equal(remote.leader_query_set(), stored)
    remote.close()
    # A run without a run directory keeps the config as given.
    bare = Learner(cfg, None)
    assert bare.cfg.env.probe_path is None
    bare.close()
