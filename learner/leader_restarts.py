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
        self.consistent = True
        """Whether the kept leader's value was earned against the run's own follower (no judge
        overruled it, learner/candidate_judge.py)."""
        self.state: dict[str, torch.Tensor] | None = None
        self.values: list[float] = []  # every restart's evaluated value, in order
        self.kept_index: int | None = None  # which of `values` the kept leader's is

    def beats(self, value: float, consistent: bool = True) -> bool:
        """`value` beats the kept leader: higher, or equal and consistent where the kept one was not
        (its follower then plays the best response it is reported against). Ties otherwise keep the
        earlier leader."""
        if self.value is None or value > self.value + 1e-9:
            return True
        return value >= self.value - 1e-9 and consistent and not self.consistent

    def offer(self, value: float, net: torch.nn.Module, consistent: bool = True) -> bool:
        """Keep `net`'s weights if `value` (with `consistent`) beats the kept leader."""
        self.values.append(float(value))
        if not self.beats(value, consistent):
            return False
        self.value, self.consistent, self.kept_index = float(value), consistent, len(self.values) - 1
        self.state = copy.deepcopy({k: v.detach().clone() for k, v in net.state_dict().items()})
        return True

    def restore(self, net: torch.nn.Module) -> bool:
        """Load the best leader into `net`; False when nothing was offered."""
        if self.state is None:
            return False
        net.load_state_dict(self.state)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "consistent": self.consistent,
            "kept_index": self.kept_index,
            "state": self.state,
            "values": list(self.values),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value, self.state, self.values = state["value"], state["state"], list(state["values"])
        self.consistent = bool(state.get("consistent", True))
        self.kept_index = state.get("kept_index")

    @property
    def offers(self) -> int:
        return len(self.values)
