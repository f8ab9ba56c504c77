"""Markov games behind one batched multi-agent API, the Stackelberg layer, and the exact solver."""

from stackrl.envs.base import BatchedMultiAgentEnv, StepResult, check_env
from stackrl.envs.factory import make_env, make_stackelberg_env
from stackrl.envs.spaces import Box, Discrete

__all__ = [
    "BatchedMultiAgentEnv",
    "Box",
    "Discrete",
    "StepResult",
    "check_env",
    "make_env",
    "make_stackelberg_env",
]
