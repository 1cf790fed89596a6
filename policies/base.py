"""The policy contract: what `SchedulerCore` asks a policy, and what it tells it back.

Two phases, as in vLLM's scheduler (`schedule()` then `update_from_output()`):

    admit(ctx, request) -> Admission   an arriving request, not yet queued: accept it (maybe dropping
                                       others to make room), or reject it with a reason and a retry-after
    decide(ctx) -> Decisions           what to dispatch, drop and re-clock now; when to be asked again
    absorb(applied)                    what the core really applied: the admitted request and its drops,
                                       or the dispatches, clock changes and drops of a step
    observe(result)                    what a device measured for one finished batch

`admit` and `decide` have **no side effects**: a policy's memory (arrival rates, a round-robin pointer, the
devices it last used, a re-plan) changes only in `absorb` and `observe`. A wrapper (overload control) may run
its inner policy's `decide` on a narrower context and keep only some of its proposals; the inner policy then
hears, through `absorb`, of exactly those — so it never keeps state for work that never ran. Timers go
through `Decisions.wake_at_s`. Both drivers — the simulator in virtual time and the live scheduler actor in
real time — call these four methods through the same core, so a policy object runs unchanged in both.
A policy never reads a clock, does no I/O and imports nothing of Ray.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from jetfleet.types import Admission, Applied, BatchResult, Decisions, Request
from policies.context import StepContext

__all__ = ["Policy"]


class Policy(abc.ABC):
    """Base class of every scheduling policy (see the module docstring)."""

    name: ClassVar[str] = "policy"

    def admit(self, ctx: StepContext, request: Request) -> Admission:
        """Take `request` (not yet in `ctx.queue`) or refuse it. Default: accept everything."""
        return Admission.accept()

    @abc.abstractmethod
    def decide(self, ctx: StepContext) -> Decisions:
        """Return what to dispatch, drop or re-clock now, and when to be called again at the latest."""

    def absorb(self, applied: Applied) -> None:
        """Learn what the core applied (admissions, dispatches, clock changes, drops). Default: nothing."""
        return None

    def observe(self, result: BatchResult) -> None:
        """Absorb what a device really did (measured latency/energy). Default: nothing."""
        return None
