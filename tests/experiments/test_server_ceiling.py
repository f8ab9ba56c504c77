"""experiments/server_ceiling.py: the sync and the grpc.aio server both take recorded Atari unrolls
through the servicer's decode and checks, and count what they consumed."""

from __future__ import annotations

from stackrl.experiments.bench_scale import scale_config
from stackrl.experiments.scale_sim import record_in_child
from stackrl.experiments.server_ceiling import measure


def test_both_server_kinds_consume_recorded_unrolls():
    cfg = scale_config("space_invaders_pricing", 1)
    rec = record_in_child(cfg, 1)
    for kind in ("sync", "aio"):
        row = measure(kind, cfg, rec, actors=2, processes=1, seconds=1.0)
        assert row["server"] == kind
        assert row["agent_steps_per_s"] > 0 and row["mb_per_s"] > 0 and row["server_cpu"] > 0
        # every message is one 160-step unroll of 1.37 MB: bytes and steps move together
        assert 5_000 < row["mb_per_s"] * 1e6 / row["agent_steps_per_s"] < 12_000
