"""experiments/bench_scale.py and experiments/scale_sim.py: the stamped replay is a valid message with
the simulated actor's id and version, and a tiny run registers and serves every simulated actor over
real gRPC with a token, with learner-side ingest counted and no failed call."""

from __future__ import annotations

import numpy as np
from service_harness import fake_unroll, make_cfg
from stackrl.experiments.bench_scale import format_table, run_scale_benchmark
from stackrl.experiments.scale_sim import stamp
from stackrl.protos import codec


def test_stamp_overrides_actor_id_and_version_and_keeps_the_arrays():
    cfg = make_cfg()
    traj = fake_unroll(cfg)[0]
    traj.arrays["actions"][:] = 1
    raw = codec.encode_trajectory(traj).SerializeToString()
    for actor_id, version in ((0, 0), (5, 3), (300, 2**40)):
        msg = codec.TrajectoryMsg.FromString(stamp(raw, actor_id, version))
        assert (msg.actor_id, msg.version, msg.role) == (actor_id, version, traj.role)
        back = codec.decode_trajectory(msg)
        np.testing.assert_array_equal(back.arrays["actions"], traj.arrays["actions"])


def test_a_tiny_scale_run_serves_every_simulated_actor(tmp_path):
    out = tmp_path / "scale.json"
    rows = run_scale_benchmark(
        "space_invaders_pricing",
        [3],
        seconds=1.5,
        warmup=0.5,
        update_modes=(False,),
        processes=2,
        unroll_s=0.05,
        json_path=str(out),
        record=1,
    )
    (row,) = rows
    assert row.registered == row.served == 3
    assert row.failed == 0 and row.rejected == 0
    assert row.pushes > 3 and row.agent_steps_per_s > 0 and row.mb_per_s > 0
    assert row.push_p99_ms >= row.push_p50_ms > 0
    assert row.weight_mb_per_s == 0  # no SGD: versions never move after the first pull
    assert "| 3 | off | 3 / 3 |" in format_table(rows)
    assert out.exists() and '"agent_steps_per_s"' in out.read_text()
