"""The best of a run's leader restarts, by evaluated return (`PhaseConfig.restarts`).

Each restart trains a fresh leader network against the same followers; when one ends, its greedy
commitment is evaluated (deterministic, against the learned followers: no solver involved) and kept
if it beats every earlier one. At the end of the run the kept leader is the one reported.
"""

from __future__ import annotations

import copy

import torch


class BestLeader:
    def __init__(self) -> None:
        self.value: float | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.offers = 0

    def offer(self, value: float, net: torch.nn.Module) -> bool:
        """Keep `net`'s weights if `value` beats the best so far (ties keep the earlier leader)."""
        self.offers += 1
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

    def state_dict(self) -> dict:
        return {"value": self.value, "state": self.state, "offers": self.offers}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.state, self.offers = state["value"], state["state"], int(state["offers"])
