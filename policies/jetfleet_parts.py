"""The `jetfleet` policy's parts that need none of its state: its configuration, a decision's working data
(candidates, device groups, the step), the parking guard and small helpers. See `policies.jetfleet`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from cluster.catalogue import get_kind
from costmodel.base import CostModel
from jetfleet.errors import JetfleetError
from jetfleet.types import Decisions, DeviceState, Request
from policies.planning import BatchPlan, GridTables, Margins

if TYPE_CHECKING:
    from policies.jetfleet import JetfleetPolicy

LateMode = Literal["serve", "drop"]


@dataclass(frozen=True)
class JetfleetConfig:
    """Knobs of the jetfleet policy (keyword-only, validated at construction)."""

    max_in_flight: int = 1  # batches committed to one device (running + queued on it)
    margins: Margins = field(default_factory=Margins)  # slack kept against predictor error
    window: int = 192  # EDF candidates looked at per decision (more are looked at in the next one)
    lookahead: int = 64  # candidates behind a device's largest batch that its plan keeps safe
    late: LateMode = "serve"  # what to do with requests no device can finish in time
    late_batch_max_s: float = 1.0  # a batch of late requests may hold a device at most this long
    min_wait_s: float = 0.01  # never hold a batch back for less than this
    wait_gain: float = 0.02  # hold a batch back only for at least this relative saving per frame
    park_after_s: float = 0.5  # down-clock an idle device after this long
    rate_halflife_s: float = 10.0  # memory of the arrival-rate estimate
    quiet_after_s: float = 3.0  # no arrival for this long: stop holding batches back for more
    max_utilisation: float = 0.7  # prefer clocks at which the arrival rate is at most this share of throughput
    clocks_per_kind: int = 3  # plans per device kind and decision step: one per distinct clock of its free devices
    guard_window_s: float = 300.0  # a batch leaves room for the tightest SLO that arrived this recently ...
    guard_slo_s: float | None = 1.5  # ... or for a 1-frame request with this SLO, if tighter (None: no prior)
    late_expire_s: float = 60.0  # a late request this far past its deadline is dropped (DEADLINE_EXPIRED)
    max_late_per_decision: int = 4096  # bounds one decision's work when a huge backlog turns late
    learn_latency: bool = True  # correct the cost model's latency with what finished batches measured

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.late not in ("serve", "drop"):
            raise ValueError(f"late must be 'serve' or 'drop', got {self.late!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")


@dataclass
class _Candidates:
    """Candidate requests of one model family in EDF order, as arrays."""

    requests: list[Request]
    ids: np.ndarray
    frames: np.ndarray
    deadlines_s: np.ndarray
    family: str
    _alive_key: tuple | None = None

    @classmethod
    def of(cls, requests: list[Request], family: str) -> _Candidates:
        n = len(requests)
        return cls(
            requests,
            np.fromiter((r.request_id for r in requests), np.int64, n),
            np.fromiter((r.n_frames for r in requests), np.int64, n),
            np.fromiter((r.deadline_s for r in requests), np.float64, n),
            family,
        )

    def alive_positions(self, alive: np.ndarray) -> np.ndarray:
        """Indices of the alive candidates, computed once per state of `alive` within a decision."""
        hit = self._alive_key
        if hit is not None and hit[0] is alive and hit[1].shape == alive.shape and (hit[1] == alive).all():
            return hit[2]
        pos = alive.nonzero()[0]
        self._alive_key = (alive, alive.copy(), pos)
        return pos


@dataclass
class DeviceGroup:
    """Healthy devices of one (kind, model variant): interchangeable for planning but for their clock and
    free time, which the planner takes from the device it plans for."""

    kind: str
    variant: str
    tables: GridTables
    change_delay_s: float
    free: list[DeviceState] = field(default_factory=list)  # may take a batch: earliest ready, then LRU, first
    ready_by_clock: dict[int, float] = field(default_factory=dict)  # clock index -> earliest ready there
    frames_per_s: float = 0.0  # the group's best sustained throughput, all devices together

    @property
    def fps(self) -> float:
        """One device's best sustained throughput, frames per second."""
        return 1.0 / self.tables.s_per_frame


@dataclass
class _Step:
    """One decision's working state."""

    now_s: float
    cost: CostModel
    out: Decisions
    taken: set[str] = field(default_factory=set)  # devices dispatched to in this decision
    held: dict[str, float] = field(default_factory=dict)  # device -> latest start of a plan held back for it
    late: list[Request] = field(default_factory=list)  # requests found unreachable in the window
    wake_s: float = math.inf

    def wake(self, t_s: float) -> None:
        self.wake_s = min(self.wake_s, t_s)


class _ParkGuard:
    """Parking takes a device away for its clock change: allowed only while another idle device could still serve
    the tightest request that may arrive (the guard of `_serve_family`), or the parked device itself could."""

    def __init__(self, policy: JetfleetPolicy, step: _Step, idle: list[DeviceState]) -> None:
        self._policy, self._step, self._idle = policy, step, idle
        guards = [(g, f) for f in policy.arrivals.families if (g := policy._guard(f, step.now_s)) is not None]
        self._guard, self._family = min(guards, key=lambda gf: gf[0][0]) if guards else (None, "")
        self._capable: dict[str, bool] = {}  # device -> could serve the guard request as it is now
        self._parked: set[str] = set()

    def may_park(self, device: DeviceState, park_hz: float) -> bool:
        if self._guard is None:
            return True
        delay_s = get_kind(device.kind).freq_change_delay_s
        ok = self._serves(device, park_hz, delay_s) or any(
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
        """Could `device`, at `freq_hz` after `settle_s`, serve the guard request in time if it arrived now?"""
        policy, now_s = self._policy, self._step.now_s
        variant = policy.variant_for(self._family, device)
        if variant is None or self._guard is None:
            return False
        try:
            t = policy._grid_cache(self._step.cost).get(self._step.cost, device.kind, variant)
        except JetfleetError:
            return False
        slo_s, n = self._guard
        b = min(n, t.max_frames) - 1
        fi = t.freq_index(freq_hz)
        serve_s = get_kind(device.kind).freq_change_delay_s + float(t.fastest_padded_s[b])
        if fi >= 0:
            serve_s = min(serve_s, float(t.padded_s[fi, b]))
        return policy._ready_s(now_s, device) + settle_s + serve_s <= now_s + slo_s


def _representatives(free: list[DeviceState], n_clocks: int) -> list[DeviceState]:
    """The first free device (earliest ready, then LRU) at each of the first `n_clocks` distinct clocks."""
    reps: list[DeviceState] = []
    clocks: set[float] = set()
    for d in free:
        if d.freq_hz not in clocks:
            reps.append(d)
            clocks.add(d.freq_hz)
            if len(reps) >= n_clocks:
                break
    return reps


def _device_for(
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


def _wake_before(plan: BatchPlan) -> float:
    """When to look again at a held plan: a little before its latest safe dispatch, so that a prediction that grew
    in the meantime (a learned correction, a clock change) still finds it feasible."""
    return plan.latest_dispatch_s - max(0.02, 0.1 * plan.latency_s)


def _plan_key(plan: BatchPlan, last_use: int) -> tuple:
    """Order plans: protecting the requests behind beats not; then fewest marginal J/frame (or, overloaded,
    most frames per second); then the least recently used device, so twins share the load."""
    if plan.overloaded:
        return (1, -round(plan.n_frames / plan.latency_s, 6), last_use)
    return (0, round(plan.marginal_epf_j, 6), last_use)


def _by_family(requests: list[Request]) -> dict[str, list[Request]]:
    out: dict[str, list[Request]] = {}
    for r in requests:
        out.setdefault(r.model, []).append(r)
    return out
