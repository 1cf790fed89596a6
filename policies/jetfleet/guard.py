"""The guard: a batch must leave room for the tightest request that may arrive while it runs.

When no other free device could take it, a batch must end early enough for its device to serve the tightest
request that may arrive meanwhile: the tightest SLO seen in `guard_window_s`, or a 1-frame request with SLO
`guard_slo_s` until something tighter was seen. Parking (a clock change that takes a device away for its
change delay) obeys the same guard (`ParkGuard`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jetfleet.types import DeviceState
from policies.arrivals import ArrivalStats
from policies.jetfleet.groups import DeviceGroup
from policies.planning import GridTables

__all__ = ["Guard", "GuardBudget", "ParkGuard", "capable_devices", "guard_budget", "guard_request"]

Guard = tuple[float, int]  # (slo_s, n_frames) of the request to leave room for
ReadyFn = Callable[[float, DeviceState], float]  # (now_s, device) -> when the device is free and settled
# (budget_s per clock or None, best s/frame per clock, its inverse, its minimum, padded batch-1 time minus best)
GuardBudget = tuple[np.ndarray | None, np.ndarray, np.ndarray, float, np.ndarray]


def guard_request(arrivals: ArrivalStats, guard_slo_s: float | None, family: str, now_s: float) -> Guard | None:
    """(slo_s, n_frames) of the tightest request of `family` that may arrive next: seen lately, or the prior."""
    seen = arrivals.tightest(family, now_s)
    if guard_slo_s is None or (seen is not None and seen[0] <= guard_slo_s):
        return seen
    return (guard_slo_s, 1)


def guard_budget(t: GridTables, change_delay_s: float, guard: Guard | None) -> GuardBudget:
    """What the planner needs of `guard` on tables `t`: the longest batch per clock that leaves room for it, and
    the sustained seconds per frame of the batches behind that respect it. Kept with the tables."""
    key = ("guard", change_delay_s, guard)
    hit = t.memo.get(key)
    if hit is not None:
        return hit
    budget_s = None  # (F,) longest batch that leaves room for the guard request
    per_frame = t.per_frame_s
    if guard is not None:
        slo_s, n = guard
        n = min(n, t.max_frames)
        budget_s = slo_s - np.minimum(t.padded_s[:, n - 1], change_delay_s + t.fastest_padded_s[n - 1])
        # Behind this batch the device runs batches no longer than the guard allows.
        per_frame = np.where(t.padded_s[:, : t.cap] <= budget_s[:, None], per_frame, np.inf)
        per_frame[:, 0] = t.per_frame_s[:, 0]
    best = per_frame.min(axis=1)
    value = t.memo[key] = (budget_s, best, 1.0 / best, float(best.min()), t.padded_s[:, 0] - best)
    return value


def serves_guard(
    t: GridTables, change_delay_s: float, guard: Guard, freq_hz: float, free_s: float, now_s: float
) -> bool:
    """Could a device of tables `t`, free (and settled) at `free_s` at clock `freq_hz`, serve the guard request in
    time if it arrived at `now_s`? It may keep its clock or switch to its fastest, paying the change delay."""
    return free_s + guard_serve_s(t, change_delay_s, guard, freq_hz) <= now_s + guard[0]


def guard_serve_s(t: GridTables, change_delay_s: float, guard: Guard, freq_hz: float) -> float:
    """Seconds a device of tables `t` at clock `freq_hz` takes to serve the guard request once free: at its clock,
    or switching to its fastest and paying the change delay."""
    b = min(guard[1], t.max_frames) - 1
    fi = t.freq_index(freq_hz)
    serve_s = change_delay_s + float(t.fastest_padded_s[b])
    if fi >= 0:
        serve_s = min(serve_s, float(t.padded_s[fi, b]))
    return serve_s


def capable_devices(now_s: float, groups: list[DeviceGroup], guard: Guard | None, ready_s: ReadyFn) -> set[str]:
    """Up to two free devices that could serve the guard request in time if it arrived now (all the planner needs
    to know is whether one other than the device it plans for exists)."""
    out: set[str] = set()
    if guard is None:
        return out
    limit_s = now_s + guard[0]
    for g in groups:
        serve_by_hz: dict[float, float] = {}  # the group's devices at one clock take the same time (most share a few)
        for d in g.free:
            serve_s = serve_by_hz.get(d.freq_hz)
            if serve_s is None:
                serve_s = serve_by_hz[d.freq_hz] = guard_serve_s(g.tables, g.change_delay_s, guard, d.freq_hz)
            if ready_s(now_s, d) + serve_s <= limit_s:
                out.add(d.name)
                if len(out) >= 2:
                    return out
    return out


class ParkGuard:
    """Parking takes a device away for its clock change: allowed only while another idle device could still serve
    the tightest request that may arrive, or the parked device itself could."""

    def __init__(
        self,
        now_s: float,
        guard: Guard | None,
        idle: Sequence[DeviceState],
        tables_for: Callable[[DeviceState], GridTables | None],
        ready_s: ReadyFn,
    ) -> None:
        self._now_s, self._guard, self._idle = now_s, guard, idle
        self._tables_for, self._ready_s = tables_for, ready_s
        self._capable: dict[str, bool] = {}  # device -> could serve the guard request as it is now
        self._parked: set[str] = set()

    def may_park(self, device: DeviceState, park_hz: float) -> bool:
        if self._guard is None:
            return True
        ok = self._serves(device, park_hz, device.freq_change_delay_s) or any(
            d.name != device.name and d.name not in self._parked and self._capable_now(d) for d in self._idle
        )
        if ok:
            self._parked.add(device.name)
        return ok

    def _capable_now(self, device: DeviceState) -> bool:
        hit = self._capable.get(device.name)
        if hit is None:
            hit = self._capable[device.name] = self._serves(device, device.freq_hz, 0.0)
        return hit

    def _serves(self, device: DeviceState, freq_hz: float, settle_s: float) -> bool:
        t = self._tables_for(device)
        if t is None or self._guard is None:
            return False
        free_s = self._ready_s(self._now_s, device) + settle_s
        return serves_guard(t, device.freq_change_delay_s, self._guard, freq_hz, free_s, self._now_s)
