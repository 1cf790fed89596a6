"""`Step`: one jetfleet decision's working state, created and thrown away inside `decide`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jetfleet.types import Decisions, Request
from policies.context import StepContext
from policies.jetfleet.candidates import Candidates

__all__ = ["Step"]


@dataclass
class Step:
    """The context of one decision and what the decision has committed so far."""

    ctx: StepContext
    out: Decisions
    taken: set[str] = field(default_factory=set)  # devices dispatched to in this decision
    held: dict[str, float] = field(default_factory=dict)  # device -> latest start of a plan held back for it
    late: list[Request] = field(default_factory=list)  # requests found unreachable in the window
    window: Candidates | None = None  # the on-time window `candidates` returned, as arrays, once it was asked
    wake_s: float = math.inf
    relook: bool = False  # a family's window ran dry with devices still free: look again at once if work was taken

    @property
    def now_s(self) -> float:
        return self.ctx.now_s

    def wake(self, t_s: float) -> None:
        self.wake_s = min(self.wake_s, t_s)
