"""The bring-your-own-game examples: RPS against its exact Stackelberg value, Pong over gRPC.

Ground truth for rock-paper-scissors (PettingZoo rps_v2, 10 rounds, each agent observes the
opponent's last move) comes from `envs/small_game_solver.py`: all 81 x 81 pairs of deterministic
policies simulated on the real environment, strong-Stackelberg tie-breaking.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from stackrl.config import ExperimentConfig
from stackrl.deploy.presets import load_experiment
from stackrl.deploy.serial import run_serial
from stackrl.envs.pettingzoo_adapter import PettingZooBatch, parallel_env_maker
from stackrl.envs.small_game_solver import solve_small_game


def preset(name: str, **overrides) -> ExperimentConfig:
    data = load_experiment(name)
    data.pop("method_tag", None)
    for path, value in overrides.items():
        node = data
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return ExperimentConfig.from_dict(data)


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


def test_rps_pretrained_follower_best_responds_to_the_leader(tmp_path):
    """CI version: after a short pretraining the contextual follower's greedy response to the
    leader's (greedy) table is an exact best response, worth what the solver says for that table."""
    cfg = preset(
        "rps",
        **{
            "schedule.phases": [{"kind": "pretrain", "env_steps": 60_000}],
            "schedule.eval_interval_updates": 1000,
        },
    )
    result = run_serial(cfg, tmp_path, progress=False)
    sol = rps_solution()
    i = table_index(result["leader_answers"])
    assert result["follower_value"] == sol.follower_values[i].max()
    assert result["leader_value"] == sol.value
    assert json.loads((tmp_path / "result.json").read_text())["leader_value"] == result["leader_value"]


@pytest.mark.slow
def test_rps_preset_learns_the_exact_stackelberg_value(tmp_path):
    """The whole rps preset. Known to fail today (open work, see docs/byog.md): every leader table
    is worth -10 because the follower can always win, so the leader finds any table the
    contextual follower still misplays; measured 0 with this preset and -2 with 300k pretraining
    steps, a frozen follower and the matrix-game settings."""
    result = run_serial(preset("rps"), tmp_path, progress=False)
    assert result["leader_value"] == rps_solution().value


def test_pong_smoke_over_grpc(tmp_path):
    """Two-player Pong through the adapter, one learner and one actor process over gRPC."""
    pytest.importorskip("multi_agent_ale_py")
    from stackrl.deploy.launch import run_local

    cfg = preset(
        "pong", **{"env.probe_path": str(tmp_path / "probe_set.npz"), "actor.connect_deadline_s": 120}
    )
    result = run_local(cfg, tmp_path, progress=False)
    assert result["env_steps"]["total"] >= 600
    assert result["updates"]["leader"] > 0 and result["updates"]["follower_0"] > 0  # both roles trained
    assert len(result["leader_answers"]) == 8  # the answers on the 8 probes
    assert np.isfinite(result["leader_value"]) and np.isfinite(result["follower_value"])
    assert result["transport"]["actor_exit_codes"] == [0]
    assert (tmp_path / "result.json").exists() and (tmp_path / "probe_set.npz").exists()
