"""End to end over real gRPC: a learner and two actor processes (`run_local`) solve an easy matrix game."""

from __future__ import annotations

import json
import multiprocessing as mp

from stackrl.config import ExperimentConfig
from stackrl.runners.launch import run_local


def test_learner_and_two_actor_processes_reach_the_exact_value(tmp_path):
    cfg = ExperimentConfig.from_dict(
        {
            "name": "distributed",
            "env": {"name": "stag_hunt", "num_games": 64},
            "actor": {"num_actors": 2, "unroll_length": 30, "connect_deadline_s": 60},
            "schedule": {
                "phases": [{"kind": "pretrain", "env_steps": 60_000}, {"kind": "leader", "env_steps": 30_000}]
            },
        }
    )
    result = run_local(cfg, tmp_path, progress=False)

    assert result["exact_value"] == 40.0  # stag hunt: commit to stag, the follower hunts stag
    assert result["leader_value"] == result["exact_value"]
    assert result["env_steps"]["total"] >= 90_000

    actors = result["transport"]["actors"]
    assert set(actors) == {"0", "1"}, "trajectories must arrive from both actor processes"
    for stats in actors.values():
        assert stats["unrolls"] > 0 and stats["env_steps"] > 0
        # Each actor acted with weights newer than the initial version 1, for both phases' learners.
        assert stats["max_version"]["follower_0"] > 1
        assert stats["max_version"]["leader"] > 1
    assert result["transport"]["rejected"] == 0
    assert result["transport"]["actor_exit_codes"] == [0, 0]  # both saw the end of the run and left cleanly

    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == {k: v for k, v in result.items() if k != "transport"}
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "transport.json").exists()
    assert mp.active_children() == []  # no actor process outlives the launcher
