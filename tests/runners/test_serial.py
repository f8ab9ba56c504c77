"""Serial mode (runners/serial.py): the learner and its actors in one process run the schedule to its
end, write result.json and a checkpoint, and are deterministic for a seed."""

from __future__ import annotations

import json

import pytest
import torch
from stackrl.config import ExperimentConfig
from stackrl.learner.checkpoint import load_checkpoint
from stackrl.runners.serial import run_serial

GAMES, UNROLL = 4, 15


def make_cfg(seed: int = 0, actors: int = 2) -> ExperimentConfig:
    """A few hundred env steps: three pretraining unrolls, then a few of leader training."""
    return ExperimentConfig.from_dict(
        {
            "name": "serial",
            "seed": seed,
            "env": {"name": "stag_hunt", "num_games": GAMES},
            "actor": {"unroll_length": UNROLL, "num_actors": actors},
            "learner": {"device": "cpu"},
            "schedule": {
                "phases": [
                    {"kind": "pretrain", "env_steps": 3 * GAMES * UNROLL},
                    {"kind": "leader", "env_steps": 3 * GAMES * (UNROLL - 5)},
                ],
                "eval_interval_updates": 1,
            },
        }
    )


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()  # run_serial sets learner.threads
    yield
    torch.set_num_threads(threads)


def test_runs_the_schedule_to_its_end_and_writes_the_run(tmp_path):
    cfg = make_cfg()
    result = run_serial(cfg, tmp_path, progress=False)
    assert json.loads((tmp_path / "result.json").read_text()) == json.loads(json.dumps(result))
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "tb").is_dir()
    steps = result["env_steps"]
    assert steps["0_pretrain"] >= cfg.schedule.phases[0].env_steps
    assert steps["1_leader"] >= cfg.schedule.phases[1].env_steps
    assert steps["total"] == steps["0_pretrain"] + steps["1_leader"]
    assert result["updates"]["follower_0"] >= 1 and result["updates"]["leader"] >= 1
    # Each actor polls before it unrolls, so no unroll is ever from a phase that already ended.
    assert result["dropped_stale"] == 0 and result["trajectories_received"] >= 4
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["env_steps"] == steps["total"]
    assert state["versions"] == {r: 1 + n for r, n in result["updates"].items()}


def test_a_seed_gives_the_same_run():
    a = run_serial(make_cfg(seed=3), None, progress=False)
    b = run_serial(make_cfg(seed=3), None, progress=False)
    for key in ("leader_value", "follower_value", "leader_answers", "env_steps", "updates", "dropped_stale"):
        assert a[key] == b[key], key
    strip = [{k: v for k, v in p.items() if k != "wall_seconds"} for p in a["eval_history"]]
    assert strip == [{k: v for k, v in p.items() if k != "wall_seconds"} for p in b["eval_history"]]
