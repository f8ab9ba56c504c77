"""Raw speed of the Atari pricing envs with random actions, so later benchmarks can cite it.

Steps `AtariPricingEnv` (the API the actors use, pricing included) with uniformly random leader and
follower actions and prints one row per (game, B, threads): game steps/s (one step of one game =
4 emulator frames), follower agent-steps/s (game steps x followers), emulator frames/s, and game steps per CPU-second
of the whole process (all its threads): the last column is the one to compare when the machine is
shared, since wall-clock rates fall with other load (the header prints the load average).

    python benchmarks/atari_env_speed.py                 # default table
    python benchmarks/atari_env_speed.py --sizes 1 8 --threads 1 2 --seconds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from stackrl.config import EnvConfig
from stackrl.envs.atari_pricing import make_atari_pricing

GAMES = ("space_invaders_pricing", "space_invaders_pricing_2p")


def measure(name: str, num_games: int, threads: int, seconds: float, seed: int = 0) -> dict[str, float]:
    """Step for about `seconds` after a short warm-up; returns rates per second."""
    env = make_atari_pricing(EnvConfig(name=name, num_games=num_games, num_threads=threads), seed)
    rng = np.random.default_rng(seed)
    env.reset(seed)

    def random_actions() -> dict[str, np.ndarray]:
        return {r: rng.integers(0, env.action_spaces[r].n, size=num_games) for r in env.roles}

    for _ in range(10):  # warm-up: thread pools, caches
        env.step(random_actions())
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < seconds:
        env.step(random_actions())
        steps += 1
    cpu = time.process_time() - cpu_start
    env.close()
    game_steps = steps * num_games / elapsed
    return {
        "game_steps": game_steps,
        "per_cpu_s": steps * num_games / cpu,
        "agent_steps": game_steps * (len(env.roles) - 1),
        "frames": game_steps * 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=GAMES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 4, 8], help="B values")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="worker thread counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="timed stepping per row")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {platform.machine()}, {os.cpu_count()} cores, load average {load}, random actions")
    print(
        f"| {'game':<26} | {'B':>3} | {'threads':>7} | {'game steps/s':>12} | {'agent steps/s':>13} "
        f"| {'frames/s':>8} | {'game steps/CPU-s':>16} |"
    )
    print(f"|{'-' * 28}|{'-' * 5}|{'-' * 9}|{'-' * 14}|{'-' * 15}|{'-' * 10}|{'-' * 18}|")
    for name in args.games:
        for b in args.sizes:
            for threads in args.threads:
                if threads > b:
                    continue  # more workers than games changes nothing
                r = measure(name, b, threads, args.seconds)
                print(
                    f"| {name:<26} | {b:>3} | {threads:>7} | {r['game_steps']:>12.0f} "
                    f"| {r['agent_steps']:>13.0f} | {r['frames']:>8.0f} | {r['per_cpu_s']:>16.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
