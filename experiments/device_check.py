"""The pieces of benchmarks/device_check.sh that are Python: learner update rates on a device and
precision, and the summary (JSON and a short table) of everything the script measured.

  python -m stackrl.experiments.device_check rates --device cuda --json OUT/learner.json
  python -m stackrl.experiments.device_check summary OUT

`rates` times the learner's real update (`actor_critic_loss`, backward, gradient clip, Adam) of the
Atari follower at the preset's batch (`batch_trajectories` unrolls of T x B) and at 4x it, in fp32
and under bf16 autocast, after a warm-up, with the device synchronised before each clock read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from stackrl.experiments.bench_atari import _spec_and_nets, learner_batch, load_config


def measure_rate(env: str, device: str, precision: str, batch_mult: int, seconds: float) -> dict[str, Any]:
    """Learner samples (agent steps) per second of one follower update on `device`."""
    import torch
    from stackrl.learner.models import precision_autocast
    from stackrl.learner.update import actor_critic_loss

    base = load_config(env)
    cfg = load_config(env, (f"learner.batch_trajectories={base.learner.batch_trajectories * batch_mult}",))
    spec, nets = _spec_and_nets(cfg)
    role = spec.roles[1]
    net = nets[role].to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learner.lr_follower)
    tensors = {k: torch.as_tensor(v).to(device) for k, v in learner_batch(cfg, spec, role).items()}
    samples = tensors["actions"].numel()
    lc = cfg.learner
    autocast = precision_autocast(device, precision)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def update() -> None:
        with autocast:
            loss, _ = actor_critic_loss(
                net, tensors, lc, entropy_cost=lc.entropy_follower, value_on_all_steps=False
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), lc.max_grad_norm)
        opt.step()

    for _ in range(3):
        update()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n == 0:
        update()
        n += 1
        if n % 10 == 0:
            sync()
    sync()
    wall = time.perf_counter() - t0
    return {
        "device": device,
        "precision": precision,
        "batch": samples,
        "batch_multiple": batch_mult,
        "updates_per_s": n / wall,
        "samples_per_s": n * samples / wall,
    }


def rates(env: str, device: str, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for precision in ("fp32", "bf16"):
        for mult in (1, 4):
            rows.append(measure_rate(env, device, precision, mult, seconds))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def summary(out: Path) -> dict[str, Any]:
    """Collect the parts in `out` into device_check.json and device_check.md (a short table)."""
    learner = _read(out / "learner_rates.json") or []
    atari = _read(out / "bench_atari.json")
    scale = _read(out / "bench_scale.json")
    info = _read(out / "machine.json") or {}
    result = {"machine": info, "learner_rates": learner, "bench_atari": atari, "bench_scale": scale}
    (out / "device_check.json").write_text(json.dumps(result, indent=2))
    lines = [f"# device check: {info.get('gpu') or 'no GPU'}, {info.get('cores', '?')} cores", ""]
    if learner:
        lines += ["| learner | precision | batch | samples/s |", "|---|---|---|---|"]
        lines += [
            f"| {r['device']} | {r['precision']} | {r['batch']} | {r['samples_per_s']:,.0f} |"
            for r in learner
        ]
        lines.append("")
    if atari:
        lines += [
            "| bench atari | actors | end-to-end agent steps/s | limit | ratio | learner CPU | policy lag |",
            "|---|---|---|---|---|---|---|",
            f"| {atari['env']} | {atari['actors']} | {atari['end_to_end_steps_per_s']:,.0f} | "
            f"{atari['limit_steps_per_s']:,.0f} | {atari['ratio']:.2f} | {atari['learner_cpu']:.2f} | "
            f"{atari['mean_policy_lag']:.2f} |",
            "",
        ]
    if scale:
        lines += [
            "| bench scale | actors | served | agent steps/s | MB/s | push p99 ms | failed |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {'SGD' if r['update'] else 'no update'} | {r['actors']} | {r['served']} | "
            f"{r['agent_steps_per_s']:,.0f} | {r['mb_per_s']:.1f} | {r['push_p99_ms']:.1f} | {r['failed']} |"
            for r in scale["rows"]
        ]
    (out / "device_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackrl.experiments.device_check")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rates", help="learner samples/s, fp32 and bf16, at the Atari batch and 4x")
    r.add_argument("--env", default="space_invaders_pricing")
    r.add_argument("--device", default="cuda")
    r.add_argument("--seconds", type=float, default=8.0)
    r.add_argument("--json", required=True)
    s = sub.add_parser("summary", help="device_check.json and device_check.md from the parts in OUT")
    s.add_argument("out")
    args = parser.parse_args(argv)
    if args.command == "rates":
        Path(args.json).write_text(json.dumps(rates(args.env, args.device, args.seconds), indent=2))
    else:
        summary(Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
