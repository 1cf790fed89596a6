"""What a jetfleet plan minimises: the `Objective` seam.

The planner (`policies.planning.plan_batch`) picks, for one device, the cheapest (frequency, batch) by a
(frequency x batch) score table; the policy compares the plans of different devices by the same score
(`plan_key`), prunes device groups whose best possible score cannot win (`floor`), holds a batch back only
while waiting lowers its score (`should_wait`), and says why in telemetry (`describe`). All of these read
the one table an `Objective` gives, so changing what jetfleet optimises is writing one small class.

- `EnergyPerFrame` (the default): joules per frame above the device's lowest idle power. The board draws
  its idle floor whether or not a batch runs, so only the energy above it is the batch's to answer for.
- `LatencyFirst`: the batch's own latency; races at the top clock, never waits. A second objective that
  shows the seam (and a baseline for latency-critical fleets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from policies.planning import BatchPlan, GridTables

__all__ = ["EnergyPerFrame", "LatencyFirst", "Objective", "floor", "plan_key"]


class Objective(Protocol):
    """Scores every (frequency, batch) of one device's tables; lower is better."""

    name: str

    def table(self, tables: GridTables) -> np.ndarray:
        """(F, B) score of running a batch of b + 1 frames at frequency index f (read-only)."""
        ...

    def describe(self, plan: BatchPlan) -> str:
        """The plan's score in words, for the dispatch's telemetry reason."""
        ...


@dataclass(frozen=True)
class EnergyPerFrame:
    """Joules per frame above the device's lowest idle power (see the module docstring)."""

    name: str = "energy per frame"

    def table(self, tables: GridTables) -> np.ndarray:
        return tables.marginal_epf_j

    def describe(self, plan: BatchPlan) -> str:
        return f"{plan.marginal_epf_j:.3f} J/frame above idle"


@dataclass(frozen=True)
class LatencyFirst:
    """The batch's predicted latency: the fastest configuration that keeps every deadline wins."""

    name: str = "latency first"

    def table(self, tables: GridTables) -> np.ndarray:
        return tables.latency_s

    def describe(self, plan: BatchPlan) -> str:
        return f"{plan.latency_s * 1000.0:.1f} ms latency"


def plan_key(plan: BatchPlan, last_use: int) -> tuple:
    """Order plans: protecting the requests behind beats not; then the lowest score (or, overloaded, most frames
    per second); then the least recently used device, so twins share the load."""
    if plan.overloaded:
        return (1, -round(plan.n_frames / plan.latency_s, 6), last_use)
    return (0, round(plan.score, 6), last_use)


def floor(objective: Objective, tables: GridTables, n_frames: int) -> float:
    """round(lowest score of `tables` over batches of at most `n_frames` frames, 6): no plan of at most that many
    frames scores less, so a group whose floor exceeds the best plan's `plan_key` score cannot win."""
    # Kept with the tables for the last objective asked (compared by identity first: hashing a dataclass is slow).
    hit = tables.memo.get("objective-floor")
    if hit is None or (hit[0] is not objective and hit[0] != objective):
        best = np.minimum.accumulate(objective.table(tables).min(axis=0))
        hit = tables.memo["objective-floor"] = (objective, [round(float(x), 6) for x in best])
    floors = hit[1]
    return floors[min(max(n_frames, 1), len(floors)) - 1]
