"""Atari pricing games: conformance, spaces, revenue accounting against the raw emulators, phases,
inactive games, auto-reset and seeding (docs/design.md §4.2)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("envpool")
pytest.importorskip("multi_agent_ale_py")
pytest.importorskip("pettingzoo.atari")

from stackrl.config import EnvConfig  # noqa: E402
from stackrl.envs.atari_pricing import AtariPricingEnv, make_atari_pricing  # noqa: E402
from stackrl.envs.base import LEADER, check_env  # noqa: E402
from stackrl.envs.factory import make_env  # noqa: E402
from stackrl.envs.multi_agent_ale import MultiAgentAtariBatch, make_space_invaders_2p  # noqa: E402

GAMES = ("space_invaders_pricing", "space_invaders_pricing_2p")
SEED = 3


def config(name: str, **kw) -> EnvConfig:
    return EnvConfig(name=name, num_games=2, num_threads=1, **kw)


@pytest.fixture(scope="module", params=GAMES)
def env(request):
    e = make_env(config(request.param), seed=SEED)
    yield e
    e.close()


def random_actions(env: AtariPricingEnv, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {r: rng.integers(0, env.action_spaces[r].n, size=env.num_games) for r in env.roles}


def test_check_env(env):
    check_env(env, steps=20, seed=SEED)


def test_spaces_and_shapes(env):
    followers = ("follower_0",) if env.backend.num_players == 1 else ("follower_0", "follower_1")
    assert env.roles == (LEADER, *followers)
    assert env.observation_spaces[LEADER].n == 5 and env.action_spaces[LEADER].n == 5
    obs = env.reset(seed=SEED)
    assert obs[LEADER].dtype == np.int64 and np.all(obs[LEADER] == 0)  # phase 0 at the start
    for f in followers:
        assert env.observation_spaces[f].shape == (4, 84, 84) and env.action_spaces[f].n == 6
        assert obs[f].shape == (2, 4, 84, 84) and obs[f].dtype == np.uint8
        assert obs[f].max() > 0  # a real screen, not an empty buffer
    # Space Invaders' minimal set: NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE.
    assert env.fire_actions.tolist() == [False, True, False, False, True, True]
    assert np.array_equal(env.leader_query_set(), np.arange(5))
    assert env.query_index(np.array([0, 4, 5, -1])).tolist() == [0, 4, -1, -1]


def test_out_of_range_action_names_the_role(env):
    env.reset(seed=SEED)
    actions = {r: np.zeros(2, np.int64) for r in env.roles}
    actions[LEADER] = np.array([0, 5])
    with pytest.raises(ValueError, match="leader"):
        env.step(actions)


def _check_accounting(env: AtariPricingEnv, res, actions, scale: float) -> None:
    price = env.prices[actions[LEADER]]
    assert np.allclose(res.info["price"], price)
    revenue = np.zeros(env.num_games, np.float32)
    for f in env.roles[1:]:
        fired = env.fire_actions[actions[f]]
        assert np.array_equal(res.info[f"fire_{f}"], fired)
        cost = scale * price * fired
        assert np.allclose(res.rewards[f], res.info[f"points_{f}"] - cost)
        revenue += cost
    assert np.allclose(res.rewards[LEADER], revenue)


def test_revenue_single_player_matches_raw_envpool():
    """Follower reward + its shot cost == the points raw envpool gives for the same actions."""
    import envpool

    scale = 2.0
    env = make_atari_pricing(config(GAMES[0], price_scale=scale), seed=SEED)
    ref = envpool.make("SpaceInvaders-v5", env_type="gymnasium", num_envs=2, num_threads=1, seed=SEED)
    env.reset(seed=SEED)
    ref.reset()
    rng = np.random.default_rng(0)
    total_points = 0.0
    for t in range(300):
        actions = random_actions(env, rng)
        res = env.step(actions)
        _, ref_points, *_ = ref.step(actions["follower_0"].astype(np.int32))
        _check_accounting(env, res, actions, scale)
        cost = scale * env.prices[actions[LEADER]] * env.fire_actions[actions["follower_0"]]
        assert np.allclose(res.rewards["follower_0"] + cost, ref_points)
        total_points += ref_points.sum()
        if t >= 30 and total_points > 0:
            break
    assert total_points > 0, "no points scored: the check above compared only zeros"
    env.close()
    ref.close()


def test_revenue_two_player_matches_raw_pettingzoo():
    """Each follower pays for its own shots; points match raw PettingZoo with 4-frame action repeat."""
    scale = 1.5
    backend = MultiAgentAtariBatch(2, seed=SEED, noop_max=0)
    env = AtariPricingEnv(backend, [0, 250, 500, 1000, 2000], [0.0, 0.25, 0.5, 0.75, 1.0], scale, 2500)
    refs = [make_space_invaders_2p() for _ in range(2)]
    env.reset(seed=SEED)
    for ref in refs:
        ref.reset()
    rng = np.random.default_rng(1)
    total_points = np.zeros(2)
    for t in range(300):
        actions = random_actions(env, rng)
        res = env.step(actions)
        _check_accounting(env, res, actions, scale)
        for i, ref in enumerate(refs):
            act = {"first_0": int(actions["follower_0"][i]), "second_0": int(actions["follower_1"][i])}
            points = np.zeros(2)
            for _ in range(4):
                _, rew, *_ = ref.step(act)
                points += [rew["first_0"], rew["second_0"]]
            for p, f in enumerate(("follower_0", "follower_1")):
                cost = scale * env.prices[actions[LEADER][i]] * env.fire_actions[actions[f][i]]
                assert res.rewards[f][i] + cost == pytest.approx(points[p])
            total_points += points
        assert not res.dones.any()
        if t >= 30 and total_points.sum() > 0:
            break
    assert total_points.sum() > 0, "no points scored: the check above compared only zeros"
    env.close()


@pytest.mark.parametrize("name", GAMES)
def test_phase_advances_and_truncation_resets(name):
    env = make_atari_pricing(config(name, phase_edges=[0, 3, 6], max_episode_steps=8), seed=SEED)
    obs = env.reset(seed=SEED)
    rng = np.random.default_rng(2)
    expected = [0, 0, 0, 1, 1, 1, 2, 2]
    for t, phase in enumerate(expected):
        assert np.all(obs[LEADER] == phase), f"step {t}"
        res = env.step(random_actions(env, rng))
        assert np.all(res.info["phase"] == phase)
        obs = res.obs
        last = t == len(expected) - 1
        assert np.all(res.dones == last) and np.all(res.info["truncated"] == last)
    assert np.all(obs[LEADER] == 0), "a cut episode restarts in phase 0"
    env.close()


@pytest.mark.parametrize("name", GAMES)
def test_inactive_games_do_not_move(name):
    """Game 0 paused for some steps continues exactly as if it had never been paused."""
    paused = make_atari_pricing(config(name), seed=SEED)
    straight = make_atari_pricing(config(name), seed=SEED)
    rng = np.random.default_rng(4)
    seq = [random_actions(paused, rng) for _ in range(12)]
    o_p = paused.reset(seed=SEED)
    o_s = straight.reset(seed=SEED)
    only_1 = np.array([False, True])
    for t, actions in enumerate(seq):
        if t == 4:  # pause game 0 for 5 steps while game 1 plays on
            for _ in range(5):
                before = {r: o_p[r].copy() for r in paused.roles}
                res = paused.step(random_actions(paused, rng), only_1)
                for r in paused.roles:
                    assert np.array_equal(res.obs[r][0], before[r][0]) and res.rewards[r][0] == 0
                assert not res.dones[0] and not any(res.info[f"fire_{f}"][0] for f in paused.roles[1:])
                o_p = res.obs
        o_p = paused.step(actions).obs
        o_s = straight.step(actions).obs
        for r in paused.roles:
            assert np.array_equal(o_p[r][0], o_s[r][0]), f"{r} of game 0 differs after the pause (step {t})"
    paused.close()
    straight.close()


@pytest.mark.parametrize("name", GAMES)
def test_reset_with_a_seed_replays_the_same_episode(name):
    env = make_atari_pricing(config(name), seed=0)
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(5)
        obs = env.reset(seed=SEED)
        for _ in range(10):
            obs = env.step(random_actions(env, rng)).obs
        runs.append(obs)
    for r in env.roles:
        assert np.array_equal(runs[0][r], runs[1][r]), f"{r}: same seed, different episode"
    env.close()


class _EndingBackend:
    """A stub emulator whose game 1 is over after 3 steps: checks the pricing layer's auto-reset."""

    num_games, num_players, num_actions = 2, 1, 6
    fire_actions = np.array([False, True, False, False, True, True])

    def __init__(self):
        self.t = np.zeros(2, np.int64)
        self.resets: list[list[int]] = []

    def _frames(self, ids):
        return np.broadcast_to(self.t[ids, None, None, None], (len(ids), 4, 84, 84)).astype(np.uint8)

    def reset(self, seed=None):
        self.t[:] = 0
        return self._frames(np.arange(2))

    def reset_games(self, ids):
        self.resets.append(ids.tolist())
        self.t[ids] = 0
        return self._frames(ids)

    def step(self, actions, ids):
        self.t[ids] += 1
        return self._frames(ids), np.ones((len(ids), 1), np.float32), (ids == 1) & (self.t[ids] == 3)

    def close(self):
        pass


def test_game_over_auto_resets_only_that_game():
    backend = _EndingBackend()
    env = AtariPricingEnv(backend, [0, 2], [0.0, 1.0], 1.0, 100)
    env.reset()
    acts = {LEADER: np.ones(2, np.int64), "follower_0": np.ones(2, np.int64)}  # price 1, FIRE
    for _ in range(2):
        assert not env.step(acts).dones.any()
    res = env.step(acts)
    assert res.dones.tolist() == [False, True] and not res.info["truncated"].any()
    assert backend.resets == [[1]]
    assert res.obs[LEADER].tolist() == [1, 0]  # game 0 in phase 1 (3 steps), game 1 restarted
    assert np.all(res.obs["follower_0"][1] == 0) and np.all(res.obs["follower_0"][0] == 3)
    assert res.rewards["follower_0"].tolist() == [0.0, 0.0]  # 1 point - price 1 per shot
    assert res.rewards[LEADER].tolist() == [1.0, 1.0]
