"""Devices as the jetfleet planner sees them: groups of interchangeable devices, and which of them plans.

Devices of one (kind, model variant, own facts) are interchangeable for planning but for their clock and the
time they are free, which the planner takes from the device it plans for. Within a group the earliest-free,
then least-recently-used device goes first, so no twin starves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jetfleet.links import Link
from jetfleet.types import DeviceState
from policies.planning import BatchPlan, GridTables

__all__ = ["DeviceGroup", "GroupKey", "device_for", "representatives"]

# (kind, model variant, the devices' own frequency list, max batch, clock change delay)
GroupKey = tuple[str, str, tuple[float, ...], int, float, Link]


@dataclass(slots=True)
class DeviceGroup:
    """Healthy devices of one `GroupKey` able to serve one model family in this decision."""

    kind: str
    variant: str
    tables: GridTables
    change_delay_s: float
    free: list[DeviceState] = field(default_factory=list)  # may take a batch: earliest ready, then LRU, first
    ready_by_clock: dict[int, float] = field(default_factory=dict)  # clock index -> earliest ready there
    frames_per_s: float = 0.0  # the group's best sustained throughput, all devices together
    n_clocks: int = 0  # distinct clocks its devices are at (free ones included; 0: not counted)

    def take(self, device: DeviceState) -> None:
        """Remove `device` from `free`, found by identity (comparing dataclasses field by field is slow)."""
        for i, d in enumerate(self.free):
            if d is device:
                del self.free[i]
                return
        raise ValueError(f"device {device.name} is not free in group {self.kind}/{self.variant}")

    @property
    def fps(self) -> float:
        """One device's best sustained throughput, frames per second."""
        return 1.0 / self.tables.s_per_frame


def group_key(device: DeviceState, variant: str) -> GroupKey:
    return (device.kind, variant, device.freqs_hz, device.max_batch, device.freq_change_delay_s, device.link)


def representatives(free: list[DeviceState], n_clocks: int, present: int = 0) -> list[DeviceState]:
    """The first free device (earliest ready, then LRU) at each of the first `n_clocks` distinct clocks. `present`:
    how many distinct clocks the devices are at, when known: the scan stops once it found them all (a group at one
    clock, the common case, takes its first device)."""
    if present:
        n_clocks = min(n_clocks, present)
    reps: list[DeviceState] = []
    clocks: set[float] = set()
    for d in free:
        if d.freq_hz not in clocks:
            reps.append(d)
            clocks.add(d.freq_hz)
            if len(reps) >= n_clocks:
                break
    return reps


def device_for(
    group: DeviceGroup,
    first: DeviceState,
    plan: BatchPlan,
    ready_s: Callable[[float, DeviceState], float],
    now_s: float,
) -> DeviceState:
    """The free device of `group` to run `plan`, made for `first`: one already at the plan's clock when it is free
    no later than `first` would have settled at that clock; else `first`."""
    clock = plan.freq_hz
    if abs(first.freq_hz - clock) < 1.0:
        return first
    settled_s = ready_s(now_s, first) + group.change_delay_s
    for d in group.free:
        if abs(d.freq_hz - clock) < 1.0 and ready_s(now_s, d) <= settled_s:
            return d
    return first
