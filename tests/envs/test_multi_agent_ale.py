"""Two-player Atari with envpool-style preprocessing (envs/multi_agent_ale.py): the area resize against
the dense area average, and a batch of two-player Space Invaders games (frame stacks, stepping a
subset of games, seeded no-op starts)."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.envs.multi_agent_ale import SIZE, STACK, AreaResize, area_weights


def test_area_resize_matches_the_dense_area_average():
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, size=(3, 210, 160), dtype=np.uint8)
    wh, ww = area_weights(210, 84).astype(np.float64), area_weights(160, 84).astype(np.float64)
    assert np.allclose(wh.sum(1), 1) and np.allclose(ww.sum(1), 1)
    dense = np.einsum("ij,njk,lk->nil", wh, images.astype(np.float64), ww)  # [3, 84, 84]
    out = AreaResize((210, 160), (84, 84))(images)
    assert out.shape == (3, 84, 84) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - dense).max() <= 0.5 + 1e-3  # rounding only
    flat = np.full((1, 210, 160), 77, np.uint8)
    assert np.all(AreaResize((210, 160), (84, 84))(flat) == 77)


def test_area_weights_of_an_integer_factor_average_blocks():
    w = area_weights(6, 3)
    assert np.allclose(w, np.kron(np.eye(3), [0.5, 0.5]))


@pytest.fixture(scope="module")
def batch():
    pytest.importorskip("multi_agent_ale_py")
    pytest.importorskip("pettingzoo.atari")
    from stackrl.envs.multi_agent_ale import MultiAgentAtariBatch

    b = MultiAgentAtariBatch(2, seed=1, noop_max=8)
    yield b
    b.close()


def test_players_and_the_minimal_action_set(batch):
    assert batch.players == ("first_0", "second_0") and batch.num_players == 2
    assert batch.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert batch.fire_actions.tolist() == [False, True, False, False, True, True]


def test_reset_fills_the_stack_with_the_first_frame(batch):
    stacks = batch.reset(seed=3)
    assert stacks.shape == (2, STACK, SIZE, SIZE) and stacks.dtype == np.uint8
    assert stacks.max() > 0  # a real screen
    assert all(np.array_equal(stacks[:, k], stacks[:, 0]) for k in range(1, STACK))


def test_step_shifts_the_stack_of_the_stepped_games_only(batch):
    start = batch.reset(seed=3)
    fire = np.array([[1, 1]])
    for _ in range(6):  # game 1 only
        stacks, rewards, over = batch.step(fire, np.array([1]))
        assert stacks.shape == (1, STACK, SIZE, SIZE)
        assert rewards.shape == (1, 2) and rewards.dtype == np.float32 and over.shape == (1,)
    assert not np.array_equal(stacks[0, -1], start[1, -1])  # the screen moved on
    prev, _, _ = batch.step(fire, np.array([0]))
    assert np.array_equal(prev[0, :-1], start[0, 1:])  # game 0 waited: its stack shifted once
    after, _, _ = batch.step(fire, np.array([0]))
    assert np.array_equal(after[0, :-1], prev[0, 1:])


def test_a_seed_replays_the_same_episode(batch):
    actions = np.random.default_rng(0).integers(0, batch.num_actions, size=(20, 2, 2))

    def play(seed):
        frames = [batch.reset(seed=seed)]
        frames += [batch.step(a, np.arange(2))[0] for a in actions]
        return np.stack(frames)

    first = play(5)
    assert np.array_equal(play(5), first)


def test_no_games_is_an_error():
    from stackrl.envs.multi_agent_ale import MultiAgentAtariBatch

    with pytest.raises(ValueError, match="num_games must be >= 1"):
        MultiAgentAtariBatch(0)
