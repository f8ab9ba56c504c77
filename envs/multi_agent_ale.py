"""B copies of a two-player PettingZoo Atari game with envpool-style preprocessing, in one process.

envpool has no multi-player Atari (its Atari config has `max_num_players=1`), so the two-player
pricing game runs on the multi-agent ALE through PettingZoo (`space_invaders_v2`), wrapped rather
than reimplemented (STYLE.md item 15). PettingZoo steps one raw frame per call and returns the full
210x160 screen; this module adds what envpool does for the single-player game, so both pricing games
see the same inputs: frameskip 4 with rewards summed, a max-pool of the last two frames (Space
Invaders flickers), an area-weighted resize to 84x84 over the whole batch (numpy
only: no OpenCV, no SuperSuit), a 4-frame stack filled with the first frame on reset,
and 0..noop_max-1 random no-op frames at the start of each episode, drawn from a seeded generator
(envpool also presses FIRE once on reset; Space Invaders starts without it, so we do not).

The ROM comes from `ale_py`'s bundled ROMs (`auto_rom_install_path`), so nothing is downloaded.
The emulator is called through ctypes, which releases the GIL, so games are stepped in chunks on a
small thread pool when `num_threads > 1`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np

FRAME_SKIP = 4
STACK = 4
SIZE = 84
NOOP_MAX = 30


def rom_dir() -> str:
    """The folder of ROMs bundled with `ale_py` (>= 0.9), where PettingZoo finds `<game>.bin`."""
    import ale_py.roms

    return os.path.dirname(ale_py.roms.__file__)


def make_space_invaders_2p(**kwargs: Any) -> Any:
    """One raw two-player Space Invaders `ParallelEnv` (PettingZoo's `ParallelAtariEnv`).

    `parallel_env(...)` wraps the raw env in parallel->AEC->parallel conversions and order checks;
    `.unwrapped` is the same PettingZoo `ParallelEnv` without them (about 30 % fewer seconds per frame,
    measured), and we check actions ourselves.
    """
    from pettingzoo.atari import space_invaders_v2

    env = space_invaders_v2.parallel_env(
        obs_type="grayscale_image", auto_rom_install_path=rom_dir(), max_cycles=2**62, **kwargs
    )
    return env.unwrapped


def area_weights(src: int, dst: int) -> np.ndarray:
    """[dst, src] float32: row i averages the source pixels under output pixel i, weighted by overlap.

    This is OpenCV's INTER_AREA (what envpool uses) for any scale factor, as a matrix.
    """
    scale = src / dst
    lo = np.arange(dst)[:, None] * scale  # [dst, 1] start of each output cell in source pixels
    j = np.arange(src)[None, :]  # [1, src]
    overlap = np.clip(np.minimum(j + 1, lo + scale) - np.maximum(j, lo), 0.0, None)
    weights: np.ndarray = (overlap / scale).astype(np.float32)
    return weights


class AreaResize:
    """Area-weighted resize of [n, H, W] uint8 images to [n, h, w] uint8, without BLAS.

    `area_weights` is banded (each output pixel touches at most ceil(scale) + 1 source pixels), so
    a few gathers and multiply-adds per axis do the work. A dense matrix product would be shorter but
    goes through OpenBLAS, whose worker threads slow it down 50-100x when the emulator threads and
    other processes already busy the cores (measured on 2 busy cores: 18 ms a frame through
    OpenBLAS, about 0.1 ms here).
    """

    def __init__(self, src: tuple[int, int], dst: tuple[int, int]):
        self.rows = self._taps(area_weights(src[0], dst[0]))
        self.cols = self._taps(area_weights(src[1], dst[1]))

    @staticmethod
    def _taps(dense: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """[dst, src] weights -> per tap k: (source index [dst] int64, weight [dst] float32)."""
        first = np.argmax(dense > 0, axis=1)  # [dst] first source pixel with weight
        width = int((dense > 0).sum(1).max())
        src = dense.shape[1]
        taps = []
        for k in range(width):
            idx = np.minimum(first + k, src - 1)
            w = np.where(first + k < src, dense[np.arange(len(dense)), idx], 0.0)
            taps.append((idx, w.astype(np.float32)))
        return taps

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32)  # [n, H, W]
        # sum() of arrays is an array (its start value 0 only types as int).
        y = cast(np.ndarray, sum(w[:, None] * x[:, idx, :] for idx, w in self.rows))  # [n, h, W]
        z = cast(np.ndarray, sum(w * y[:, :, idx] for idx, w in self.cols))  # [n, h, w]
        out: np.ndarray = np.clip(z + 0.5, 0, 255).astype(np.uint8)
        return out


def action_names(ale_actions: np.ndarray) -> list[str]:
    """ALE action ids (e.g. a minimal action set) -> names such as `RIGHTFIRE`."""
    import ale_py

    return [ale_py.Action(int(a)).name for a in ale_actions]


class MultiAgentAtariBatch:
    """B preprocessed two-player Atari games; players share the screen.

    Args:
        num_games: B.
        make_game: builds one PettingZoo `ParallelAtariEnv` (default: two-player Space Invaders).
        seed: seeds the no-op starts of the first `reset(None)` and of every auto-reset.
        num_threads: worker threads stepping chunks of games (1: step in the calling thread).
        noop_max: episodes start after 0..noop_max-1 no-op frames.
    """

    def __init__(
        self,
        num_games: int,
        make_game: Callable[[], Any] = make_space_invaders_2p,
        seed: int = 0,
        num_threads: int = 1,
        noop_max: int = NOOP_MAX,
    ):
        if num_games < 1:
            raise ValueError(f"num_games must be >= 1, got {num_games}")
        self.num_games = num_games
        self.noop_max = noop_max
        self.games = [make_game() for _ in range(num_games)]
        first = self.games[0]
        self.players: tuple[str, ...] = tuple(first.possible_agents)
        self.num_players = len(self.players)
        self.action_meanings = action_names(first.action_mapping)
        self.num_actions = len(self.action_meanings)
        self.fire_actions = np.array(["FIRE" in m for m in self.action_meanings])  # [A] bool
        h, w = first.observation_spaces[self.players[0]].shape[:2]
        self._resize_frames = AreaResize((h, w), (SIZE, SIZE))  # [n, 210, 160] -> [n, 84, 84]
        self._raw = np.zeros((num_games, h, w), np.uint8)  # pooled last screen of each game
        self._stack = np.zeros((num_games, STACK, SIZE, SIZE), np.uint8)
        self._rewards = np.zeros((num_games, self.num_players), np.float32)
        self._over = np.zeros(num_games, bool)
        self._rngs = [np.random.default_rng([seed, i]) for i in range(num_games)]
        self._noop = {p: 0 for p in self.players}
        self.num_threads = max(1, min(num_threads, num_games))
        self._pool = ThreadPoolExecutor(self.num_threads) if self.num_threads > 1 else None

    # -- one game (runs on a worker thread) -------------------------------------------------------
    def _start(self, i: int, seed: int | None) -> None:
        # No `reset(seed=...)` on the PettingZoo env: it reloads the ROM (0.1-0.3 s a game) and buys
        # nothing, since with sticky actions off the ALE is deterministic and its reset is independent
        # of the previous episode (checked on the RAM). Episodes differ only by the no-op starts.
        if seed is not None:
            self._rngs[i] = np.random.default_rng([seed, i])
        game = self.games[i]
        obs, _ = game.reset()
        screen = obs[self.players[0]][..., 0]
        for _ in range(int(self._rngs[i].integers(0, self.noop_max)) if self.noop_max > 0 else 0):
            obs = game.step(self._noop)[0]
            screen = obs[self.players[0]][..., 0]
        self._raw[i] = screen

    def _advance(self, i: int, action: dict[str, int]) -> None:
        game = self.games[i]
        total = np.zeros(self.num_players, np.float32)
        last: np.ndarray | None = None
        prev: np.ndarray | None = None
        for _ in range(FRAME_SKIP):
            obs, rew, term, _, _ = game.step(action)
            total += [rew.get(p, 0) for p in self.players]
            prev, last = last, obs[self.players[0]][..., 0]
            if not game.agents or any(term.values()):
                break
        assert last is not None  # FRAME_SKIP >= 1 frames were played
        self._raw[i] = last if prev is None else np.maximum(prev, last)
        self._rewards[i] = total
        # Lives are shared in Space Invaders, so one player out means the game is over.
        self._over[i] = not game.agents or any(term.values())

    def _run(self, fn: Callable[[int], None], ids: np.ndarray) -> None:
        if self._pool is None or len(ids) < 2:
            for i in ids:
                fn(int(i))
            return
        chunks = np.array_split(ids, min(self.num_threads, len(ids)))

        def run_chunk(chunk: np.ndarray) -> None:
            for i in chunk:
                fn(int(i))

        for f in [self._pool.submit(run_chunk, c) for c in chunks]:
            f.result()

    # -- batched ---------------------------------------------------------------------------------
    def _resize(self, ids: np.ndarray) -> np.ndarray:
        """[n, 84, 84] uint8 from the pooled raw screens of games `ids`."""
        return self._resize_frames(self._raw[ids])

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start all games; returns the stacked screens [B, 4, 84, 84] uint8."""
        return self.reset_games(np.arange(self.num_games), seed)

    def reset_games(self, ids: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Start new episodes in games `ids` [n]; returns their stacks [n, 4, 84, 84] uint8."""
        ids = np.asarray(ids, np.int64)
        self._run(lambda i: self._start(i, seed), ids)
        self._stack[ids] = self._resize(ids)[:, None]
        stacks: np.ndarray = self._stack[ids]
        return stacks

    def step(self, actions: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance games `ids` [n] by one agent step (4 frames) with actions [n, P] (minimal set).

        Returns:
            stacks [n, 4, 84, 84] uint8 (the last one if the game ended, not reset here),
            rewards [n, P] float32 game points summed over the frames,
            game_over [n] bool.
        """
        ids = np.asarray(ids, np.int64)
        actions = np.asarray(actions)
        rows = {int(i): {p: int(a) for p, a in zip(self.players, row)} for i, row in zip(ids, actions)}
        self._run(lambda i: self._advance(i, rows[i]), ids)
        stack = self._stack[ids]
        stack[:, :-1] = stack[:, 1:]
        stack[:, -1] = self._resize(ids)
        self._stack[ids] = stack
        return stack.copy(), self._rewards[ids].copy(), self._over[ids].copy()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for game in self.games:
            game.close()
