"""Leader restarts (`PhaseConfig.restarts`): where each restart starts, and the best one kept.

Each restart trains a fresh leader network against the same followers; when one ends, its greedy
commitment is evaluated (deterministic, against the learned followers: no solver involved) and kept
if it beats every earlier one. At the end of the run the kept leader is the one reported.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


def fit_commitment(
    net: torch.nn.Module, query_obs: torch.Tensor, table: torch.Tensor, confidence: float, steps: int = 200
) -> None:
    """Fit a fresh leader network to play `table` ([K] answers) on the query observations ([K, ...])
    with probability `confidence` each (the rest spread evenly): a restart's random starting
    commitment. A few hundred Adam steps on K inputs; the network stays a free policy afterwards."""
    logits, _ = net(query_obs)
    n = logits.shape[-1]
    target = torch.full_like(logits, (1.0 - confidence) / max(n - 1, 1))  # [K, A]
    target[torch.arange(len(table)), table] = confidence
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        logits, _ = net(query_obs)
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()


class BestLeader:
    def __init__(self) -> None:
        self.value: float | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.values: list[float] = []  # every restart's evaluated value, in order

    def offer(self, value: float, net: torch.nn.Module) -> bool:
        """Keep `net`'s weights if `value` beats the best so far (ties keep the earlier leader)."""
        self.values.append(float(value))
        if self.value is not None and value <= self.value + 1e-9:
            return False
        self.value = float(value)
        self.state = copy.deepcopy({k: v.detach().clone() for k, v in net.state_dict().items()})
        return True

    def restore(self, net: torch.nn.Module) -> bool:
        """Load the best leader into `net`; False when nothing was offered."""
        if self.state is None:
            return False
        net.load_state_dict(self.state)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "state": self.state, "values": list(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.state, self.values = state["value"], state["state"], list(state["values"])

    @property
    def offers(self) -> int:
        return len(self.values)
