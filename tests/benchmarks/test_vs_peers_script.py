"""benchmarks/vs_peers.sh end to end in seconds, with stand-ins for what it would install and run.

The peer's venv is a stub already stamped as installed (so nothing is downloaded), its python prints
the recorded Sample Factory log instead of training, and `stackrl bench atari` is a stub that
writes the recorded JSON; `stackrl bench peers` is the real one. What is checked is the script's
own part: which runs it makes with which arguments, the file names the table reads, repeats, and
that the table comes out. (The real installs and runs are the smoke runs quoted in the README.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "vs_peers.sh"
DATA = ROOT / "tests" / "experiments" / "data" / "vs_peers"
TORCH = "torch==2.13.0"  # the script's default pin
SF_PINS = "sample-factory[envpool]==2.1.1 envpool==1.2.5 gymnasium==0.29.1 numpy==1.26.4"


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def _stand_ins(tmp_path: Path) -> tuple[Path, Path]:
    cache = tmp_path / "cache"
    venv = cache / "sample-factory-2.1.1"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").write_text(f"{TORCH} {SF_PINS}\n")
    _stub(
        venv / "bin" / "python",
        f'if [[ "$1" == -m ]]; then echo sample-factory==2.1.1; exit 0; fi\ncat "{DATA}/sf_serial_1pass.log"\n',
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir / "stackrl",
        'if [[ "$1 $2" == "bench atari" ]]; then\n'
        '  players=1; [[ "$*" == *_2p* ]] && players=2\n'  # the two-player game has 2 followers
        "  while [[ $# -gt 0 ]]; do\n"
        f'    if [[ "$1" == --json ]]; then sed "s/\\"followers\\": 1/\\"followers\\": $players/" '
        f'"{DATA}/stackrl_1pass.json" > "$2"; fi; shift\n'
        "  done\n  exit 0\nfi\n"
        f'exec "{sys.executable}" -m stackrl.deploy.cli "$@"\n',
    )
    return cache, bin_dir


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cache, bin_dir = _stand_ins(tmp_path)
    env = {**os.environ, "STACKRL_PEERS_CACHE": str(cache), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


def test_script_runs_every_configuration_and_prints_the_table(tmp_path):
    out = tmp_path / "out"
    done = _run(tmp_path, "--seconds", "25", "--warmup", "5", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "already installed" in done.stdout  # the stamp matched: nothing was installed

    def cmd(name: str) -> list[str]:
        return (out / f"{name}.cmd").read_text().splitlines()

    assert cmd("stackrl_1pass")[:3] == ["stackrl", "bench", "atari"] and "--set" not in cmd("stackrl_1pass")
    assert {"learner.epochs=4", "learner.ppo_clip=0.1"} <= set(cmd("stackrl_4pass"))
    fp32 = {"learner.precision=fp32", "actor.precision=fp32"}
    assert fp32 <= set(cmd("stackrl_1pass_fp32")) and fp32 <= set(cmd("stackrl_4pass_fp32"))
    assert not fp32 & set(cmd("stackrl_4pass"))  # the preset's own precision (auto)
    for name in ("stackrl_2p_1pass", "stackrl_2p_4pass"):
        assert "space_invaders_pricing_2p" in cmd(name)
    assert "learner.epochs=4" in cmd("stackrl_2p_4pass")
    for name, serial, epochs in (
        ("sf_serial_1pass", "True", 1),
        ("sf_serial_4pass", "True", 4),
        ("sf_async_4pass", "False", 4),
    ):
        args = cmd(name)
        assert f"--serial_mode={serial}" in args and f"--num_epochs={epochs}" in args
        assert "--stop_after_update_s=30" in args and "--env=atari_spaceinvaders" in args
        assert args[0] == "timeout" and str(SCRIPT.parent / "sf_envpool_atari.py") in args
    assert (out / "sample-factory-2.1.1.freeze.txt").read_text().strip() == "sample-factory==2.1.1"
    table = (out / "table.md").read_text()
    assert table.strip() in done.stdout
    rows = {row["config"]: row for row in json.loads((out / "table.json").read_text())["rows"]}
    assert set(rows) == {
        "stackrl_1pass",
        "stackrl_1pass_fp32",
        "stackrl_4pass",
        "stackrl_4pass_fp32",
        "stackrl_2p_1pass",
        "stackrl_2p_4pass",
        "sf_serial_1pass",
        "sf_serial_4pass",
        "sf_async_4pass",
    }
    # The peer plays one-player Space Invaders: the two-player rows get no ratio. (Every stand-in SF
    # run prints the same recorded 1-epoch log, so every SF row is a 1-pass row here.)
    for peer in ("sf_serial_1pass", "sf_serial_4pass", "sf_async_4pass"):
        assert set(rows[peer]["ratios"]) == {"stackrl_1pass", "stackrl_1pass_fp32"}
    assert rows["stackrl_2p_1pass"]["players"] == 2 and rows["stackrl_2p_1pass"]["limit_ratios"]


def test_repeats_alternate_ours_and_peers_and_only_picks_configurations(tmp_path):
    out = tmp_path / "out"
    only = ("--only", "stackrl_1pass,sf_serial_1pass")
    done = _run(tmp_path, "--repeats", "2", *only, "--seconds", "25", "--warmup", "5", "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    order = [
        line.split()[1] for line in done.stdout.splitlines() if line.startswith("vs_peers: ") and "(" in line
    ]
    assert order == ["stackrl_1pass@1", "sf_serial_1pass@1", "stackrl_1pass@2", "sf_serial_1pass@2"]
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert sorted(len(r["runs"]) for r in rows) == [2, 2]
