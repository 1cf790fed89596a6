"""Parking: an idle device clocked above its lowest-idle-power frequency is down-clocked after `park_after_s`.

The idle baseline is most of a Jetson's energy, so an idle device should sit at the clock where it draws
least — unless it is the only device able to serve the tightest request that may arrive (`ParkGuard`).

The scan over devices runs only when it can find something: after a completion, when the set of devices held
for a batch changed, or when a device's parking time comes. What one scan found (`ParkScan`) becomes the
policy's memory only once the core applied the step (`absorb`), so a discarded decision leaves none behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from costmodel.view import CostView
from jetfleet.types import DeviceState, SetFrequency
from policies.jetfleet.guard import ParkGuard

__all__ = ["ParkScan", "Parking"]


@dataclass(frozen=True)
class ParkScan:
    """What a parking scan found: when the next idle device reaches `park_after_s`, and the devices held then."""

    next_s: float
    held: frozenset[str]


class Parking:
    """The parking rule and its scan bookkeeping."""

    def __init__(self, park_after_s: float) -> None:
        self.park_after_s = park_after_s
        self._dirty = True  # a device may have become idle since the last applied scan
        self._next_s = -math.inf  # when the next idle device reaches park_after_s (as of the last applied scan)
        self._held: frozenset[str] = frozenset()
        self._points: dict[tuple[str, tuple[float, ...]], tuple[float, dict[float, float]]] = {}
        self._of_device: dict[str, tuple[tuple[float, ...], str, tuple[float, dict[float, float]]]] = {}
        self._points_of: CostView | None = None  # the view `_points` were read from (held, so never reused)

    def must_scan(self, now_s: float, held: frozenset[str]) -> bool:
        return self._dirty or held != self._held or now_s >= self._next_s

    @property
    def next_s(self) -> float:
        return self._next_s

    def scan(
        self,
        now_s: float,
        idle: Sequence[DeviceState],
        cost: CostView,
        guard: ParkGuard,
    ) -> tuple[list[SetFrequency], float]:
        """(clock changes that park idle devices now, when the next one is due); changes nothing."""
        changes: list[SetFrequency] = []
        next_s = math.inf
        of_device = self._memo_for(cost)
        for d in idle:
            mine = of_device.get(d.name)  # park_point's fast path, inlined: this scans the whole fleet
            if mine is not None and mine[0] is d.freqs_hz and mine[1] == d.kind:
                park_hz, idle_w = mine[2]
            else:
                park_hz, idle_w = self.park_point(cost, d)
            if abs(d.freq_hz - park_hz) < 1.0 or idle_w.get(d.freq_hz, math.inf) - idle_w[park_hz] < 1e-3:
                continue
            idle_since_s = max(d.last_busy_s, d.busy_until_s)
            if now_s - idle_since_s < self.park_after_s:
                next_s = min(next_s, idle_since_s + self.park_after_s)
            elif guard.may_park(d, park_hz):
                changes.append(SetFrequency(d.name, park_hz, "jetfleet: park idle device"))
        return changes, next_s

    def park_point(self, cost: CostView, device: DeviceState) -> tuple[float, dict[float, float]]:
        """(the device's clock of lowest idle power, idle watts per listed clock)."""
        self._memo_for(cost)
        # Per device first, while it keeps the same frequency list object: no hashing of the list.
        mine = self._of_device.get(device.name)
        if mine is not None and mine[0] is device.freqs_hz and mine[1] == device.kind:
            return mine[2]
        key = (device.kind, device.freqs_hz)
        hit = self._points.get(key)
        if hit is None:
            watts = cost.idle_w(device.kind, device.freqs_hz)
            idle_w = {f: float(w) for f, w in zip(device.freqs_hz, watts, strict=True)}
            hit = self._points[key] = (min(idle_w, key=lambda f: (idle_w[f], f)), idle_w)
        self._of_device[device.name] = (device.freqs_hz, device.kind, hit)
        return hit

    def _memo_for(self, cost: CostView) -> dict[str, tuple[tuple[float, ...], str, tuple[float, dict[float, float]]]]:
        """The per-device park points read from `cost` (emptied when the view is another one)."""
        if self._points_of is not cost:
            self._points, self._of_device, self._points_of = {}, {}, cost
        return self._of_device

    # -- memory, changed only by what the core applied ----------------------------------------------------
    def absorb(self, scan: ParkScan | None) -> None:
        if scan is not None:
            self._dirty, self._next_s, self._held = False, scan.next_s, scan.held

    def invalidate(self) -> None:
        """Something changed that a scan must see: a batch finished."""
        self._dirty = True
