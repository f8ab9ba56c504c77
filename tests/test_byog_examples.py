"""The bring-your-own-game examples: RPS against its exact Stackelberg value, Pong over gRPC.

Ground truth for rock-paper-scissors (PettingZoo rps_v2, 10 rounds, each agent observes the
opponent's last move) comes from `envs/small_game_solver.py`: all 81 x 81 pairs of deterministic
policies simulated on the real environment, strong-Stackelberg tie-breaking.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from stackrl.config import ExperimentConfig
from stackrl.envs.pettingzoo_adapter import PettingZooBatch, parallel_env_maker
from stackrl.envs.small_game_solver import solve_small_game
from stackrl.runners.presets import build_config
from stackrl.runners.serial import run_serial


def preset(name: str, **overrides) -> ExperimentConfig:
    fields: dict = {}
    for path, value in overrides.items():
        node = fields
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return build_config(name, fields=fields)


@functools.lru_cache(maxsize=1)
def rps_solution():
    env = preset("rps").env

    def make(b: int) -> PettingZooBatch:
        maker = parallel_env_maker(env.pettingzoo, env.pettingzoo_kwargs)
        return PettingZooBatch(maker, b, env.leader_agent, env.max_episode_steps)

    return solve_small_game(make)


def table_index(answers: list[int], actions: int = 3) -> int:
    """Row of a leader table in `policy_tables` (lexicographic order)."""
    return int(np.ravel_multi_index(tuple(answers), (actions,) * len(answers)))


def test_rps_exact_value():
    sol = rps_solution()
    assert sol.leader_values.shape == (81, 81)
    np.testing.assert_array_equal(sol.leader_values, -sol.follower_values)  # zero-sum
    # Observing the leader's last move, the follower can predict every committed deterministic
    # leader and win all 10 rounds: the Stackelberg value over deterministic leaders is -10.
    assert sol.value == -10.0 and sol.follower_value == 10.0
    assert np.all(sol.follower_values.max(axis=1) == 10.0)
    # A best response really is worth +10 against, e.g., "always rock": always play paper.
    assert sol.follower_values[table_index([0, 0, 0, 0]), table_index([1, 1, 1, 1])] == 10.0


def test_rps_preset_learns_the_exact_stackelberg_value(tmp_path):
    """The whole rps preset (about 40 s on 2 cores). Every leader table is worth -10, so the leader
    would find any table the follower misplays: the value is exact only if the contextual follower
    best-responds to all 81 tables, which is checked too (greedy follower against each table)."""
    import itertools

    from stackrl.learner.evaluation import evaluate
    from stackrl.learner.learner import Learner

    cfg = preset("rps")
    result = run_serial(cfg, tmp_path, progress=False)
    sol = rps_solution()
    assert result["leader_value"] == sol.value == -10.0
    assert result["follower_value"] == sol.follower_values[table_index(result["leader_answers"])].max()
    learner = Learner(cfg, None)
    learner.restore(tmp_path / "checkpoint.pt")
    wrong = []
    for table in itertools.product(range(3), repeat=4):
        res = evaluate(learner.eval_env, learner.nets, "table", np.array(table))
        if res.follower_values[0] != sol.follower_values[table_index(list(table))].max():
            wrong.append((table, res.follower_values[0]))
    learner.close()
    assert wrong == []


def test_pong_smoke_over_grpc(tmp_path):
    """Two-player Pong through the adapter, one learner and one actor process over gRPC."""
    pytest.importorskip("multi_agent_ale_py")
    from stackrl.runners.launch import run_local

    cfg = preset("pong", **{"actor.connect_deadline_s": 120})  # the learner stores the probe set in the run
    result = run_local(cfg, tmp_path, progress=False)
    assert result["env_steps"]["total"] >= 600
    assert result["updates"]["leader"] > 0 and result["updates"]["follower_0"] > 0  # both roles trained
    assert len(result["leader_answers"]) == 8  # the answers on the 8 probes
    assert np.isfinite(result["leader_value"]) and np.isfinite(result["follower_value"])
    assert result["transport"]["actor_exit_codes"] == [0]
    assert (tmp_path / "result.json").exists() and (tmp_path / "probe_set.npz").exists()


def test_your_own_factory_runs_once_this_machine_allows_it(tmp_path, monkeypatch):
    """docs/byog.md: a config only names a factory; a process imports it only when its own machine
    allows it (here the flag's `allow_factory`; entry points and STACKRL_ALLOW_FACTORY work alike)."""
    from stackrl.envs import registry
    from stackrl.envs.factory import make_env

    (tmp_path / "my_rps_game.py").write_text("from pettingzoo.classic.rps_v2 import parallel_env\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_allowed", set())
    cfg = preset("rps", **{"env.pettingzoo": "my_rps_game:parallel_env", "env.num_games": 2})
    with pytest.raises(registry.FactoryNotAllowed, match="--allow-factory my_rps_game:parallel_env"):
        make_env(cfg.env)
    registry.allow_factory("my_rps_game:parallel_env")
    env = make_env(cfg.env)
    try:
        obs = env.reset(seed=0)
        assert set(obs) == {"leader", "follower_0"}
    finally:
        env.close()
