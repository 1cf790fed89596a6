"""`Step`: one jetfleet decision's working state, created and thrown away inside `decide`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from jetfleet.types import Decisions, Request
from policies.context import StepContext
from policies.jetfleet.candidates import Candidates

__all__ = ["Step"]


@dataclass(slots=True)
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
    # Work whose only effect is a `wake` no earlier than the time beside it (`defer`), not done yet.
    deferred: list[tuple[float, Callable[[], object]]] = field(default_factory=list)
    now_s: float = field(init=False)  # the context's, read dozens of times a decision

    def __post_init__(self) -> None:
        self.now_s = self.ctx.now_s

    def wake(self, t_s: float) -> None:
        self.wake_s = min(self.wake_s, t_s)

    def defer(self, earliest_s: float, work: Callable[[], object]) -> None:
        """Do `work` at the end of the decision (`run_deferred`), and only if the wake time it may set, no earlier
        than `earliest_s`, could still be the earliest: `work` must depend on nothing the decision changes."""
        self.deferred.append((earliest_s, work))

    def run_deferred(self) -> None:
        """Do the deferred work that may lower the wake time, earliest first; the rest cannot (so it is skipped)."""
        for earliest_s, work in sorted(self.deferred, key=lambda e: e[0]):
            if earliest_s >= self.wake_s:
                break
            work()
        self.deferred.clear()
