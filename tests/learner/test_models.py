"""Network details that results depend on."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from stackrl.learner.models import NatureCNN


def test_nature_cnn_channels_last_matches_the_plain_computation():
    """The NHWC layout is a speed choice only: same features as plain NCHW convolutions, and the
    weights round-trip through numpy (broadcast, checkpoints) unchanged."""
    torch.manual_seed(0)
    net = NatureCNN(4)
    x = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    h = x.float() / 255.0
    convs = [m for m in net.conv if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        h = F.relu(F.conv2d(h, conv.weight.contiguous(), conv.bias, stride=conv.stride))
    expected = F.relu(F.linear(h.flatten(1), net.fc[0].weight, net.fc[0].bias))
    torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    other = NatureCNN(4)
    other.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    torch.testing.assert_close(other(x), net(x))
    assert all(np.array_equal(other.state_dict()[k].numpy(), v) for k, v in state.items())
