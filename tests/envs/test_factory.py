"""Building domains from an EnvConfig (envs/factory.py): which names are known, the error for an
unknown one, the follower's tie-break weight, and the extended game's spec."""

from __future__ import annotations

import pytest
from stackrl.config import ConfigError, EnvConfig
from stackrl.envs.base import LEADER
from stackrl.envs.factory import (
    ATARI_GAMES,
    check_env_name,
    env_spec,
    is_matrix_game,
    is_pettingzoo,
    known_games,
    make_env,
    make_stackelberg_env,
    resolve_tie_break,
)
from stackrl.envs.matrix_games import GAMES, IteratedMatrixGame
from stackrl.envs.solver import max_tie_break_weight

BIMATRIX = [[[1, 0], [0, 2]], [[3, 1], [0, 0]]]


def test_known_games_lists_every_domain():
    names = known_games()
    assert set(GAMES) <= set(names)
    assert {"matrix", "pettingzoo", *ATARI_GAMES} <= set(names)
    assert len(names) == len(set(names))


def test_every_known_name_passes_the_name_check():
    for name in known_games():
        check_env_name(EnvConfig(name=name))
    check_env_name(EnvConfig(name="my_game", payoffs=BIMATRIX))  # a user bimatrix under any name
    check_env_name(EnvConfig(name="my_pz_game", pettingzoo="pettingzoo.classic.rps_v2:parallel_env"))


def test_unknown_name_is_a_config_error_naming_env_name():
    with pytest.raises(ConfigError, match=r"^env\.name: unknown game 'no_such_game'; known: ") as err:
        check_env_name(EnvConfig(name="no_such_game"))
    assert "chicken" in str(err.value) and "pettingzoo" in str(err.value)
    with pytest.raises(ValueError, match="no_such_game"):
        make_env(EnvConfig(name="no_such_game"))


def test_domain_predicates():
    assert is_matrix_game(EnvConfig(name="chicken"))
    assert is_matrix_game(EnvConfig(name="matrix", payoffs=BIMATRIX))
    assert is_matrix_game(EnvConfig(name="anything", payoffs=BIMATRIX))
    assert not is_matrix_game(EnvConfig(name=ATARI_GAMES[0]))
    assert not is_matrix_game(EnvConfig(name="pettingzoo"))
    assert is_pettingzoo(EnvConfig(name="pettingzoo"))
    assert is_pettingzoo(EnvConfig(name="custom", pettingzoo="pkg.mod:env"))
    assert not is_pettingzoo(EnvConfig(name="chicken"))


def test_an_explicit_tie_break_is_used_as_given():
    assert resolve_tie_break(EnvConfig(name="chicken", tie_break=0.25)) == 0.25
    assert resolve_tie_break(EnvConfig(name="chicken", tie_break=0.0)) == 0.0  # 0 is a choice, not "unset"
    assert resolve_tie_break(EnvConfig(name=ATARI_GAMES[0], tie_break=0.5)) == 0.5


def test_the_automatic_tie_break_is_half_the_safe_bound_capped():
    bound = max_tie_break_weight(GAMES["chicken"], 10)
    assert 0 < bound < 0.2
    assert resolve_tie_break(EnvConfig(name="chicken")) == pytest.approx(0.5 * bound)
    # One-shot battle of the sexes: no pair constrains it (bound inf), so the cap applies.
    assert resolve_tie_break(EnvConfig(name="battle_of_the_sexes")) == 0.1
    # The episode length is part of the game.
    short = max_tie_break_weight(BIMATRIX, 2)
    assert resolve_tie_break(EnvConfig(name="m", payoffs=BIMATRIX, episode_length=2)) == min(0.5 * short, 0.1)
    assert resolve_tie_break(EnvConfig(name=ATARI_GAMES[0])) == 0.0  # no exact game to bound it


def test_make_env_builds_the_configured_matrix_game():
    env = make_env(EnvConfig(name="chicken", num_games=3, episode_length=7))
    assert isinstance(env, IteratedMatrixGame)
    assert env.num_games == 3 and env.max_episode_steps == 7
    assert env.payoffs.tolist() == [[list(p) for p in row] for row in GAMES["chicken"]]
    user = make_env(EnvConfig(name="matrix", payoffs=BIMATRIX, num_games=2))
    assert user.payoffs.tolist() == BIMATRIX and user.max_episode_steps == 10


def test_the_extended_games_spec():
    cfg = EnvConfig(name="chicken", num_games=3, tie_break=0.05)
    env = make_stackelberg_env(cfg)
    spec = env_spec(env)
    assert spec.roles == (LEADER, "follower_0")
    assert spec.num_queries == 5 and spec.leader_actions == 2  # every memory-1 state of a 2x2 game
    assert spec.horizon == 5 + 10  # the query phase, then the played episode
    assert spec.context_size("follower_0") == 5 and not spec.current_answer
    assert env.tie_break == 0.05
