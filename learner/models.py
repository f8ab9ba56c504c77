"""Leader and follower networks. Actors import these to act on CPU with local weight copies.

One class, `PolicyNet`, serves every role: an observation encoder chosen from the observation space
(one-hot for discrete, identity for vectors, Nature CNN for stacked image frames), an optional
context embedding (the leader's K query answers, one-hot), joined by concatenation or FiLM, and
policy and value heads. The leader's network has no context (K = 0).

The value head also reads the episode clock (fraction of the horizon remaining). In finite-horizon
games the return from a state depends strongly on how many steps are left; a clock-blind critic
turns that into advantage noise that swamps the action signal. The policy head never sees the
clock, so policies stay stationary, as the exact solver assumes; a baseline may depend on anything
but the action, so the policy gradient stays unbiased.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from stackrl.config import PRECISIONS, ConfigError, ModelConfig
from stackrl.envs.base import EnvSpec
from stackrl.envs.spaces import Box, Discrete, Space
from torch import nn


def bf16_supported(device: torch.device) -> bool:
    """CUDA always; a CPU only with bf16 instructions (AVX512-BF16 or AMX), where oneDNN runs bf16
    matmuls and convolutions natively instead of emulating them slower than fp32."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_precision(setting: str, device: torch.device, key: str) -> str:
    """`fp32` | `bf16` | `auto` -> what a network runs in on `device`: `auto` is bf16 where the
    hardware runs it natively, else fp32 (each process decides for its own device, so an actor on an
    older CPU than the learner's still runs). An explicit `bf16` on hardware without it is an error:
    emulated bf16 is slower than fp32, never what a user asking for speed wants.

    Raises:
        ConfigError: `setting` is not one of PRECISIONS, or bf16 is asked for where it is emulated.
    """
    if setting not in PRECISIONS:
        raise ConfigError(f"{key}: must be one of {', '.join(PRECISIONS)}, got {setting!r}")
    supported = bf16_supported(device)
    if setting == "bf16" and not supported:
        raise ConfigError(
            f"{key}: bf16 needs CUDA or a CPU with bf16 instructions (AVX512-BF16, AMX); "
            "this one has neither: use fp32 or auto"
        )
    return "bf16" if setting == "bf16" or (setting == "auto" and supported) else "fp32"


def precision_autocast(device_type: str, precision: str) -> torch.autocast:
    """The autocast context every network pass runs in: bf16 when `precision` (already resolved)
    is bf16, a no-op context for fp32."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


class NatureCNN(nn.Module):
    """Mnih et al. (2015) trunk: uint8 frames [N, C, 84, 84] -> [N, 512] features.

    The convolutions run in channels-last (NHWC) memory layout: oneDNN's NHWC kernels made a
    learner update 20-35% cheaper on the 2-core CPU machine (same results up to float rounding).
    """

    def __init__(self, in_channels: int, out_features: int = 512):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.conv.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
        self.fc = nn.Sequential(nn.Linear(64 * 7 * 7, out_features), nn.ReLU())
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Layout first, on the 4x smaller uint8 frames; the float copy keeps it; scale in place:
        # one float pass over the batch instead of three. [N, C, 84, 84] in NHWC memory.
        x = x.contiguous(memory_format=torch.channels_last)
        if x.dtype == torch.uint8:
            # Under bf16 autocast the first convolution would cast a float copy again: go to bf16
            # directly (0..255 are exact in bf16), one pass fewer over the batch.
            kind = x.device.type
            bf16 = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
            x = x.to(torch.bfloat16 if bf16 else torch.float32).mul_(1.0 / 255.0)
        else:
            x = x / 255.0
        features: torch.Tensor = self.fc(self.conv(x))
        return features


class ObservationEncoder(nn.Module):
    """Maps a batch of observations of one space to feature vectors."""

    def __init__(self, space: Space, hidden: int):
        super().__init__()
        self.space = space
        self.net: nn.Module
        if isinstance(space, Discrete):
            self.net = nn.Sequential(nn.Linear(space.n, hidden), nn.ReLU())
            self.out_features = hidden
        elif isinstance(space, Box) and len(space.shape) == 3:
            cnn = NatureCNN(space.shape[0])
            self.net = cnn
            self.out_features = cnn.out_features
        elif isinstance(space, Box) and len(space.shape) == 1:
            self.net = nn.Sequential(nn.Linear(space.shape[0], hidden), nn.ReLU())
            self.out_features = hidden
        else:
            raise ValueError(f"no encoder for observation space {space}")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if isinstance(self.space, Discrete):
            obs = F.one_hot(obs.long(), self.space.n).float()
        features: torch.Tensor = self.net(obs if obs.dtype == torch.uint8 else obs.float())
        return features


class PolicyNet(nn.Module):
    """pi(a | o, c) and V(o, c) for one role; c is absent for the leader."""

    def __init__(
        self,
        obs_space: Space,
        num_actions: int,
        context_size: int = 0,
        context_actions: int = 0,
        hidden: int = 64,
        context_join: str = "concat",
        horizon: int = 0,
    ):
        super().__init__()
        self.horizon = horizon
        self.obs_space = obs_space
        self.num_actions = num_actions
        self.context_size = context_size
        self.context_actions = context_actions
        self.context_join = context_join
        self.encoder = ObservationEncoder(obs_space, hidden)
        feat = self.encoder.out_features
        if context_size:
            self.context_net = nn.Sequential(nn.Linear(context_size * context_actions, hidden), nn.ReLU())
            if context_join == "film":
                self.film = nn.Linear(hidden, 2 * feat)
            else:
                feat = feat + hidden
        self.torso = nn.Sequential(nn.Linear(feat, hidden), nn.ReLU())
        self.policy = nn.Linear(hidden, num_actions)
        self.value: nn.Module
        if horizon:
            self.value = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        else:
            self.value = nn.Linear(hidden, 1)

    def forward(
        self, obs: torch.Tensor, context: torch.Tensor | None = None, elapsed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [N, *obs_shape], context [N, K] int64, elapsed [N] int -> logits [N, A], value [N].

        Without `elapsed` the value is computed as at the start of an episode (acting needs only logits).
        """
        x = self.encoder(obs)
        if self.context_size:
            context = cast(torch.Tensor, context)  # a network with a context is called with one
            c = F.one_hot(context.long().clamp(min=0), self.context_actions).float().flatten(1)  # [N, K*A_L]
            e = self.context_net(c)
            if self.context_join == "film":
                gamma, beta = self.film(e).chunk(2, dim=-1)
                x = x * (1 + gamma) + beta
            else:
                x = torch.cat([x, e], dim=-1)
        h = self.torso(x)
        if self.horizon:
            if elapsed is None:
                elapsed = torch.zeros(h.shape[0], device=h.device)
            remaining = (1.0 - elapsed.float() / self.horizon).clamp(0.0, 1.0).unsqueeze(-1)  # [N, 1]
            h_value = torch.cat([h, remaining], dim=-1)
        else:
            h_value = h
        return self.policy(h), self.value(h_value).squeeze(-1)


def build_networks(spec: EnvSpec, cfg: ModelConfig) -> dict[str, PolicyNet]:
    """One network per role, shaped by the env spec."""
    return {
        role: PolicyNet(
            spec.observation_spaces[role],
            spec.action_spaces[role].n,
            context_size=spec.context_size(role),
            context_actions=spec.leader_actions,
            hidden=cfg.hidden,
            context_join=cfg.context_join,
            horizon=spec.horizon,
        )
        for role in spec.roles
    }
