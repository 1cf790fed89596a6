"""The policy contract: pure functions of (now, queue, devices, cost model) -> decisions.

Two phases, as in vLLM's scheduler: `decide` returns `Decisions`; the driver (`SchedulerCore`, used
by both the simulator and the live scheduler actor) applies them, runs the batches, and feeds each
`BatchResult` back through `observe`. `admit` is called once per arriving request, after it was
queued, and may return drops (bounded queues, admission control).

A policy keeps only its own memory (a round-robin pointer, a timer); the queue and device states
belong to the driver. A policy never reads a clock: `now_s` is given.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

from costmodel.base import CostModel
from jetfleet.types import BatchResult, Decisions, DeviceState, Drop, Request
from policies.queue import RequestQueue


class Policy(abc.ABC):
    """Base class of every scheduling policy."""

    name: ClassVar[str] = "policy"

    def admit(self, now_s: float, request: Request, queue: RequestQueue) -> list[Drop]:
        """Called after `request` joined `queue`; return requests to drop (it may be one of them)."""
        return []

    @abc.abstractmethod
    def decide(self, now_s: float, queue: RequestQueue, devices: Sequence[DeviceState], cost: CostModel) -> Decisions:
        """Return what to dispatch, drop or re-clock now, and when to be called again at the latest."""

    def observe(self, result: BatchResult) -> None:
        """Absorb what a device really did (measured latency/energy). Default: nothing."""
        return None
