"""The PettingZoo adapter passes the batched-env conformance check and converts spaces correctly."""

from __future__ import annotations

import numpy as np
import pytest
from stackrl.config import ConfigError, EnvConfig, ExperimentConfig, ModelConfig
from stackrl.envs.base import LEADER, check_env
from stackrl.envs.factory import env_spec, make_env, make_stackelberg_env
from stackrl.envs.pettingzoo_adapter import PettingZooBatch, load_factory, parallel_env_maker
from stackrl.envs.registry import allow_factory
from stackrl.envs.spaces import Box, Discrete
from stackrl.learner.models import build_networks

RPS = "pettingzoo.classic.rps_v2:parallel_env"


def rps_cfg(**kw) -> EnvConfig:
    base = dict(
        name="pettingzoo",
        pettingzoo=RPS,
        pettingzoo_kwargs={"max_cycles": 10},
        leader_agent="player_0",
        max_episode_steps=10,
        num_games=4,
    )
    return EnvConfig(**{**base, **kw})


def test_rps_passes_check_env():
    env = make_env(rps_cfg())
    check_env(env, steps=40)
    assert env.roles == ("leader", "follower_0")
    assert env.observation_spaces == {"leader": Discrete(4), "follower_0": Discrete(4)}
    assert env.action_spaces == {"leader": Discrete(3), "follower_0": Discrete(3)}
    np.testing.assert_array_equal(env.leader_query_set(), np.arange(4))
    env.close()


def test_rps_dynamics_match_pettingzoo():
    """Observations are the opponent's last move; rewards are zero-sum; episodes end at 10 and reset."""
    env = make_env(rps_cfg(num_games=2))
    obs = env.reset(seed=3)
    assert (obs[LEADER] == 3).all() and (obs["follower_0"] == 3).all()  # 3 = no move yet
    for t in range(10):
        res = env.step({LEADER: np.array([0, 1]), "follower_0": np.array([1, 1])})
        np.testing.assert_array_equal(res.rewards[LEADER], [-1, 0])  # paper beats rock; tie
        np.testing.assert_array_equal(res.rewards["follower_0"], [1, 0])
        assert res.dones.all() == (t == 9)
        if t < 9:
            np.testing.assert_array_equal(res.obs[LEADER], [1, 1])
            np.testing.assert_array_equal(res.obs["follower_0"], [0, 1])
    np.testing.assert_array_equal(res.obs[LEADER], [3, 3])  # auto-reset
    env.close()


def test_leader_choice_orders_roles():
    env = make_env(rps_cfg(leader_agent="player_1", num_games=1))
    assert env.agents == ("player_1", "player_0")
    env.reset(seed=0)
    res = env.step({LEADER: np.array([2]), "follower_0": np.array([1])})  # scissors beats paper
    assert res.rewards[LEADER][0] == 1 and res.rewards["follower_0"][0] == -1
    env.close()


def test_second_classic_game_passes_check_env():
    """A second game: rock-paper-scissors-lizard-Spock (rps_v2 with 5 actions, episodes cut by the env)."""
    env = make_env(rps_cfg(pettingzoo_kwargs={"num_actions": 5, "max_cycles": 7}, max_episode_steps=20))
    check_env(env, steps=30)
    assert env.action_spaces[LEADER] == Discrete(5) and env.observation_spaces[LEADER] == Discrete(6)
    env.close()


def test_pong_two_player_passes_check_env_and_builds_cnn():
    pytest.importorskip("multi_agent_ale_py")
    cfg = EnvConfig(
        name="pettingzoo",
        pettingzoo="pettingzoo.atari.pong_v3:parallel_env",
        pettingzoo_kwargs={"obs_type": "rgb_image", "max_cycles": 400},
        leader_agent="first_0",
        max_episode_steps=50,
        num_games=2,
        query_set="probe",
        probe_size=4,
        probe_steps=60,
        frame_skip=4,
    )
    env = make_env(cfg)
    check_env(env, steps=20)
    assert env.observation_spaces[LEADER] == Box((4, 84, 84), "uint8", 0, 255)  # RGB -> gray stack
    assert env.leader_query_set().shape == (4, 4, 84, 84)
    env.close()
    senv = make_stackelberg_env(EnvConfig(**{**cfg.__dict__, "num_games": 1}))
    nets = build_networks(env_spec(senv), ModelConfig())
    import torch

    obs = senv.reset(seed=0)
    logits, _ = nets["follower_0"](torch.from_numpy(obs.obs["follower_0"]), torch.from_numpy(obs.context))
    assert logits.shape == (1, 6)
    assert type(nets["follower_0"].encoder.net).__name__ == "NatureCNN"
    senv.close()


def test_vector_box_observations_become_float_vectors():
    """A Box observation that is not an image is flattened to a float32 vector (MLP encoder)."""
    from gymnasium import spaces as gs
    from pettingzoo.utils.env import ParallelEnv

    class Toy(ParallelEnv):
        possible_agents = ["a", "b"]
        metadata = {}

        def observation_space(self, agent):
            return gs.Box(-1.0, 1.0, (2, 3), np.float64)

        def action_space(self, agent):
            return gs.Discrete(2, start=1)

        def reset(self, seed=None, options=None):
            self.agents, self.t = list(self.possible_agents), 0
            return {a: np.full((2, 3), 0.5) for a in self.agents}, {}

        def step(self, actions):
            assert set(actions.values()) <= {1, 2}  # the adapter adds Discrete.start back
            self.t += 1
            o = {a: np.full((2, 3), (actions[a] - 1.5)) for a in self.agents}
            r = {"a": float(actions["a"]), "b": 0.0}
            done = {a: self.t >= 3 for a in self.agents}
            return o, r, done, {a: False for a in self.agents}, {a: {} for a in self.agents}

    env = PettingZooBatch(Toy, 3, "b", max_episode_steps=100, query_set="probe", probe_size=2, probe_steps=10)
    assert env.observation_spaces[LEADER] == Box((6,), "float32", -1.0, 1.0)
    check_env(env, steps=10)
    res = env.step({LEADER: np.array([0, 1, 1]), "follower_0": np.array([1, 0, 1])})
    np.testing.assert_array_equal(res.rewards["follower_0"], [2, 1, 2])


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="env.leader_agent"):
        ExperimentConfig.from_dict({"env": {"name": "pettingzoo", "pettingzoo": RPS}})
    with pytest.raises(ConfigError, match="env.pettingzoo"):
        ExperimentConfig.from_dict({"env": {"name": "pettingzoo", "leader_agent": "player_0"}})
    with pytest.raises(ConfigError, match="env.query_set"):
        ExperimentConfig.from_dict({"env": {"query_set": "all"}})
    with pytest.raises(ValueError, match="not an agent"):
        make_env(rps_cfg(leader_agent="nobody"))
    with pytest.raises(ValueError, match="not an allowed factory"):
        load_factory("pettingzoo.classic.nope_v0:parallel_env")
    allow_factory("pettingzoo.classic.nope_v0:parallel_env")
    with pytest.raises(ValueError, match="cannot load"):
        load_factory("pettingzoo.classic.nope_v0:parallel_env")
    with pytest.raises(ValueError, match="Discrete leader observation"):
        PettingZooBatch(parallel_env_maker("pettingzoo.atari.pong_v3:parallel_env", {}), 1, "first_0", 10)


def test_follower_last_action_recalls_the_followers_own_move():
    """rps_v2 shows the follower only the leader's last move; with recall its observation also
    encodes its own previous action: o + 4 * (a + 1), a = -1 (none) at an episode's start."""
    env = make_env(rps_cfg(num_games=2, follower_last_action=True))
    assert env.observation_spaces == {"leader": Discrete(4), "follower_0": Discrete(16)}
    check_env(env, steps=40)
    obs = env.reset(seed=0)
    np.testing.assert_array_equal(obs["follower_0"], [3, 3])  # no move yet, no own move yet
    np.testing.assert_array_equal(obs[LEADER], [3, 3])  # the leader's observation is unchanged
    res = env.step({LEADER: np.array([0, 2]), "follower_0": np.array([1, 2])})
    # follower saw the leader's move (0 / 2) and recalls its own (1 / 2)
    np.testing.assert_array_equal(res.obs["follower_0"], [0 + 4 * 2, 2 + 4 * 3])
    np.testing.assert_array_equal(res.obs[LEADER], [1, 2])
    for _ in range(9):
        res = env.step({LEADER: np.array([0, 0]), "follower_0": np.array([0, 0])})
    assert res.dones.all()
    np.testing.assert_array_equal(res.obs["follower_0"], [3, 3])  # reset: recall cleared
    env.close()


def test_follower_last_action_needs_discrete_observations():
    pytest.importorskip("multi_agent_ale_py")
    cfg = EnvConfig(
        name="pettingzoo",
        pettingzoo="pettingzoo.atari.pong_v3:parallel_env",
        pettingzoo_kwargs={"obs_type": "grayscale_image"},
        leader_agent="first_0",
        num_games=1,
        query_set="probe",
        probe_size=2,
        probe_steps=10,
        follower_last_action=True,
    )
    with pytest.raises(ValueError, match="follower_last_action needs Discrete"):
        make_env(cfg)
