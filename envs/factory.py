"""Build a domain's batched env (and its Stackelberg extension) from an `EnvConfig`."""

from __future__ import annotations

import functools

import numpy as np
from stackrl.config import ConfigError, EnvConfig
from stackrl.envs.base import BatchedMultiAgentEnv, EnvSpec
from stackrl.envs.matrix_games import GAMES, IteratedMatrixGame, resolve_game
from stackrl.envs.query_phase import StackelbergEnv

ATARI_GAMES = ("space_invaders_pricing", "space_invaders_pricing_2p")


def is_matrix_game(cfg: EnvConfig) -> bool:
    return cfg.payoffs is not None or cfg.name in GAMES or cfg.name == "matrix"


def is_pettingzoo(cfg: EnvConfig) -> bool:
    """A user's PettingZoo game (docs/design.md §4.3)."""
    return cfg.name == "pettingzoo" or cfg.pettingzoo is not None


def known_games() -> list[str]:
    """Every value `env.name` may take."""
    return [*GAMES, "matrix", *ATARI_GAMES, "pettingzoo"]


def check_env_name(cfg: EnvConfig) -> None:
    """Raise ConfigError naming `env.name` when no domain builds it (config.py knows no domains)."""
    if not (is_matrix_game(cfg) or is_pettingzoo(cfg) or cfg.name in ATARI_GAMES):
        raise ConfigError(f"env.name: unknown game {cfg.name!r}; known: {', '.join(known_games())}")


def make_env(cfg: EnvConfig, seed: int = 0) -> BatchedMultiAgentEnv:
    """The base (non-extended) batched game."""
    if is_matrix_game(cfg):
        payoffs, length = resolve_game(cfg.name, cfg.payoffs, cfg.episode_length)
        return IteratedMatrixGame(payoffs, length, cfg.num_games, cfg.memory, cfg.explore_starts)
    if is_pettingzoo(cfg):
        from stackrl.envs.pettingzoo_adapter import make_pettingzoo  # optional dependency

        return make_pettingzoo(cfg, seed)
    if cfg.name in ATARI_GAMES:
        from stackrl.envs.atari_pricing import make_atari_pricing  # optional dependency

        return make_atari_pricing(cfg, seed)
    raise ValueError(
        f"env.name: unknown game {cfg.name!r}; known: {', '.join([*GAMES, *ATARI_GAMES, 'pettingzoo'])}"
    )


def resolve_tie_break(cfg: EnvConfig) -> float:
    """The follower's weight on the leader's reward: the configured one, or the safe automatic one."""
    if cfg.tie_break is not None:
        return cfg.tie_break
    if is_matrix_game(cfg):
        payoffs, length = resolve_game(cfg.name, cfg.payoffs, cfg.episode_length)
        return _tie_break_for(payoffs, length)
    return 0.0


def _tie_break_for(payoffs: np.ndarray, length: int) -> float:
    key = (payoffs.shape, tuple(payoffs.ravel().tolist()), length)
    return _cached_tie_break(key)


@functools.lru_cache(maxsize=64)
def _cached_tie_break(key: tuple[tuple[int, ...], tuple[float, ...], int]) -> float:
    from stackrl.envs.solver import max_tie_break_weight

    shape, flat, length = key
    bound = max_tie_break_weight(np.array(flat).reshape(shape), length)
    # Half the bound keeps every strict follower preference with margin; the cap keeps it a tie-breaker.
    return min(0.5 * bound, 0.1)


def make_stackelberg_env(cfg: EnvConfig, seed: int = 0) -> StackelbergEnv:
    """The extended game (query phase + play) the actors run."""
    return StackelbergEnv(
        make_env(cfg, seed),
        queries=cfg.queries,
        commit=cfg.commit,
        tie_break=resolve_tie_break(cfg),
        current_answer=cfg.current_answer,
        seed=seed,
    )


def env_spec(env: StackelbergEnv) -> EnvSpec:
    """The spec the networks and trajectory storage are built from."""
    return EnvSpec(
        roles=env.roles,
        observation_spaces=dict(env.observation_spaces),
        action_spaces=dict(env.action_spaces),
        num_queries=env.num_queries,
        leader_actions=env.leader_actions,
        horizon=env.horizon,
        current_answer=env.current_answer,
        max_abs_reward=_max_abs_reward(env),
    )


def _max_abs_reward(env: StackelbergEnv) -> float | None:
    """A matrix game pays at most max |payoff| per step, plus the follower's tie-break share of the
    leader's payoff; other domains do not declare a bound."""
    payoffs = getattr(env.base, "payoffs", None)
    if not isinstance(payoffs, np.ndarray):
        return None
    return float(np.abs(payoffs).max()) * (1.0 + env.tie_break)
