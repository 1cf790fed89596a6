"""The pure mechanics of overload control: queue-bound victims, cost look-ups, and the virtual schedule.

- `bound_victims`: which queued requests a full bounded queue drops when one more arrives.
- `CostOracle`: batch latencies at maximum frequency, read from the core's `CostView`.
- `earliest_completion_s` / `plan`: what the cost model predicts if the queue were served now, which
  the overload policy (`policies.overload`) and the HTTP admission check use to drop what cannot make its
  deadline, shed what would only make it by hurting a higher-priority stream, and test whether a
  lower-priority request may run now.

The virtual schedule (`plan`) serves the queue in priority order (earliest deadline first within a
priority), each request on the device group that would finish it first, at the best per-frame time of
that kind (batching assumed perfect), so its completions are optimistic: a request it says is late
really cannot make it when served in priority order. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from costmodel.view import CostView
from jetfleet.errors import JetfleetError
from jetfleet.types import DeviceState, Drop, DropReason, Request
from policies.context import device_grid
from policies.streams import Bound, DropPolicy, StreamSet

INF = math.inf


# -- bounded queues -----------------------------------------------------------------------------------
def bound_victims(request: Request, queue: Iterable[Request], streams: StreamSet) -> list[Drop]:
    """Drops that keep `request`'s bounded queue within its limit once `request` (not in `queue`) joins it.

    drop_oldest drops the request of the bound that arrived first, drop_newest the one that just arrived,
    drop_low_priority the lowest-priority one anywhere in the bound's streams (ties: the oldest first).
    """
    bound = streams.bound_of(request.stream)
    if bound is None:
        return []
    members = [r for r in queue if r.stream in bound.streams and r.request_id != request.request_id]
    members.append(request)  # arrival order
    excess = len(members) - bound.limit
    if excess <= 0:
        return []
    victims = _pick_victims(members, request, bound, excess)
    drops = []
    for v in victims:
        evicted = v.request_id != request.request_id and bound.drop_policy is DropPolicy.DROP_LOW_PRIORITY
        reason = DropReason.EVICTED_LOW_PRIORITY if evicted else DropReason.QUEUE_FULL
        detail = f"{bound.scope} full ({len(members)}/{bound.limit}), {bound.drop_policy.value}"
        drops.append(Drop((v.request_id,), reason, detail, protected_stream=request.stream if evicted else ""))
    return drops


def _pick_victims(members: list[Request], newest: Request, bound: Bound, n: int) -> list[Request]:
    if bound.drop_policy is DropPolicy.DROP_OLDEST:
        return members[:n]
    if bound.drop_policy is DropPolicy.DROP_NEWEST:
        others = [r for r in members if r.request_id != newest.request_id]
        return [newest, *others[len(others) - (n - 1) :]] if n > 1 else [newest]
    order = sorted(range(len(members)), key=lambda i: (members[i].priority, i))  # lowest first, then oldest
    return [members[i] for i in order[:n]]


# -- cost look-ups --------------------------------------------------------------------------------------
class CostOracle:
    """Latency of a batch at a device kind's maximum frequency (raw predictions of the core's `CostView`, at the
    clocks of the first device of that kind in `devices`), with what overload control derives from it.

    A (kind, model) the cost model cannot answer counts as impossible (infinite latency). An oracle belongs to
    one decision (or one admission): build a new one from each `StepContext`.
    """

    def __init__(self, cost: CostView, devices: Iterable[DeviceState]) -> None:
        self.cost = cost
        self._device_of: dict[str, DeviceState] = {}
        for d in devices:
            self._device_of.setdefault(d.kind, d)
        self._lat: dict[tuple[str, str], np.ndarray | None] = {}
        self._frame: dict[tuple[str, str], float] = {}
        self._within: dict[tuple[str, str, float], float] = {}

    def _latencies(self, kind: str, model: str) -> np.ndarray | None:
        key = (kind, model)
        if key not in self._lat:
            device = self._device_of.get(kind)
            lat = None
            if device is not None:
                try:
                    lat = device_grid(self.cost, device, model).latency_s[-1, : device.max_batch]
                except (JetfleetError, KeyError, ValueError):
                    lat = None
            self._lat[key] = lat if lat is not None and np.all(np.isfinite(lat)) and np.all(lat > 0) else None
        return self._lat[key]

    def batch_latency_s(self, kind: str, model: str, n_frames: int) -> float:
        """Latency of `n_frames` at maximum frequency (in max-batch chunks beyond the kind's max batch)."""
        lat = self._latencies(kind, model)
        if lat is None:
            return INF
        full, rest = divmod(n_frames, len(lat))
        return full * float(lat[-1]) + (float(lat[rest - 1]) if rest else 0.0)

    def frame_time_s(self, kind: str, model: str) -> float:
        """Best time per frame at maximum frequency over the batch sizes (throughput-optimal)."""
        key = (kind, model)
        if key not in self._frame:
            lat = self._latencies(kind, model)
            self._frame[key] = INF if lat is None else float(np.min(lat / np.arange(1, len(lat) + 1)))
        return self._frame[key]

    def frame_time_within_s(self, kind: str, model: str, limit_s: float) -> float:
        """Best time per frame over the batches whose latency fits in `limit_s` (batch 1 when none does)."""
        key = (kind, model, round(limit_s, 6))
        hit = self._within.get(key)
        if hit is None:
            lat = self._latencies(kind, model)
            if lat is None:
                hit = INF
            else:
                per_frame = lat / np.arange(1, len(lat) + 1)
                fits = lat <= limit_s
                hit = float(per_frame[fits].min()) if fits.any() else float(lat[0])
            self._within[key] = hit
        return hit

    def latency_at_s(self, kind: str, model: str, n_frames: int, freq_hz: float) -> float:
        """Latency of one batch of `n_frames` at `freq_hz` (for checking another policy's dispatch)."""
        device = self._device_of.get(kind)
        if device is None:
            return INF
        try:
            return self.cost.latency_s(kind, model, device.freqs_hz, freq_hz, n_frames, device.link)
        except (JetfleetError, KeyError, ValueError):
            return INF


def can_run(device: DeviceState, model: str) -> bool:
    """True when the device may run `model` (no resident list means any model)."""
    return device.healthy and (not device.models or model in device.models)


def earliest_completion_s(
    now_s: float,
    request: Request,
    devices: Sequence[DeviceState],
    oracle: CostOracle,
    margin_rel: float = 0.0,
    margin_abs_s: float = 0.0,
) -> float:
    """max(now, busy_until) + latency of the request alone at maximum frequency (padded by the margins), on the
    best device."""
    best = INF
    for d in devices:
        if can_run(d, request.model):
            latency_s = oracle.batch_latency_s(d.kind, request.model, request.n_frames)
            latency_s = latency_s * (1 + margin_rel) + margin_abs_s
            best = min(best, d.free_s(now_s) + latency_s)
    return best


def backlog_completion_s(
    now_s: float,
    request: Request,
    ahead: Iterable[Request],
    devices: Sequence[DeviceState],
    oracle: CostOracle,
    *,
    margin_rel: float = 0.0,
    margin_abs_s: float = 0.0,
) -> float:
    """When `request` would finish if the fleet first served the work `ahead` of it, by the cost model.

    The requests `ahead` (queued work served before it, e.g. those due earlier) go one by one to the device
    group that would finish each first, at the best time per frame of the batches whose padded latency fits in
    half that request's budget (the batching a policy meeting that budget can do, as `load_of` counts it), from
    when each device is free; then `request` runs as one batch at maximum frequency on the group that finishes
    it first, its latency padded by `margin_rel` and `margin_abs_s` (the slack a planner keeps against predictor
    error). An estimate, not a bound: it is what admission refuses by. Infinite when no healthy device can run
    its model.
    """
    healthy = [d for d in devices if d.healthy]
    groups = _Groups(healthy, {d.name: d.free_s(now_s) for d in healthy})
    for r in ahead:

        def job_s(kind: str, r: Request = r) -> float:
            limit_s = (r.slo_s / 2 - margin_abs_s) / (1.0 + margin_rel)
            return oracle.frame_time_within_s(kind, r.model, limit_s) * r.n_frames

        i, c = groups.best(r.model, job_s)
        if i >= 0:
            groups.consume(i, c)

    def own_s(kind: str) -> float:
        return oracle.batch_latency_s(kind, request.model, request.n_frames) * (1.0 + margin_rel) + margin_abs_s

    return groups.best(request.model, own_s)[1]


def unreachable_drops(
    now_s: float,
    requests: Iterable[Request],
    devices: Sequence[DeviceState],
    oracle: CostOracle,
    *,
    margin_rel: float = 0.0,
    margin_abs_s: float = 0.0,
) -> list[Drop]:
    """`deadline_unreachable` drops of the queued requests that could not finish in time even alone, at maximum
    frequency, on the device that frees first (`earliest_completion_s`, its latency padded by the margins):
    hopeless whatever the policy does (or, with margins, late for a planner that keeps them)."""
    drops = []
    best: dict[tuple[str, int], float] = {}
    for r in requests:
        key = (r.model, r.n_frames)
        if key not in best:
            best[key] = earliest_completion_s(now_s, r, devices, oracle, margin_rel, margin_abs_s)
        done_s = best[key]
        if done_s > r.deadline_s + 1e-9 and math.isfinite(done_s):
            detail = f"earliest completion {done_s:.4f} s > deadline {r.deadline_s:.4f} s"
            drops.append(Drop((r.request_id,), DropReason.DEADLINE_UNREACHABLE, detail))
    return drops


# -- the virtual schedule -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActiveStream:
    """A stream that had an arrival recently: a new request of it may come at any moment."""

    name: str
    priority: int
    budget_s: float
    model: str
    last_arrival_s: float
    frames_per_s: float = 0.0  # its recent arrival rate, frames per second


def load_of(streams: Iterable[ActiveStream], devices: Sequence[DeviceState], oracle: CostOracle) -> float:
    """The fraction of the fleet's capacity these streams' arrivals need.

    A stream's frames are counted at the best time per frame of batches that fit in half its budget (what
    a policy meeting that budget can batch), on all healthy devices that run its model together.
    """
    load = 0.0
    for a in streams:
        if a.frames_per_s <= 0:
            continue
        capacity_fps = 0.0
        for d in devices:
            if can_run(d, a.model):
                capacity_fps += 1.0 / oracle.frame_time_within_s(d.kind, a.model, a.budget_s / 2)
        load += a.frames_per_s / capacity_fps if capacity_fps > 0 else INF
    return load


@dataclass
class Plan:
    """The virtual schedule's verdicts."""

    top_priority: int  # requests at or above it are never shed
    completion_s: dict[int, float] = field(default_factory=dict)  # kept requests' virtual completions
    shed: list[tuple[Request, str]] = field(default_factory=list)  # (request, the stream it protects)
    insertable: set[int] = field(default_factory=set)  # late in priority order, but may run now safely
    final_slack_s: float = INF  # the least slack of everything kept (queued and fresh arrivals)


class _Groups:
    """Devices grouped by (kind, resident models), each group a heap of virtual free times."""

    def __init__(self, devices: Iterable[DeviceState], free_s: Mapping[str, float]) -> None:
        groups: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        for d in devices:
            if d.healthy:
                groups.setdefault((d.kind, d.models), []).append(free_s[d.name])
        self.groups = [(kind, models, sorted(times)) for (kind, models), times in groups.items()]

    def best(self, model: str, cost_of: Callable[[str], float], release_s: float = -INF) -> tuple[int, float]:
        """(group index, completion) of the group finishing a job of `model`, available from `release_s`,
        first; (-1, inf) if none can."""
        best_i, best_c = -1, INF
        for i, (kind, models, heap) in enumerate(self.groups):
            if models and model not in models:
                continue
            c = max(heap[0], release_s) + cost_of(kind)
            if c < best_c:
                best_i, best_c = i, c
        return best_i, best_c

    def consume(self, index: int, until_s: float) -> None:
        heapq.heapreplace(self.groups[index][2], until_s)


def plan(
    now_s: float,
    requests: Iterable[Request],
    devices: Sequence[DeviceState],
    free_s: Mapping[str, float],
    oracle: CostOracle,
    active: Iterable[ActiveStream] = (),
    protected: frozenset[str] = frozenset(),
    *,
    pessimistic: bool = False,
    horizon_s: float = 0.0,
) -> Plan:
    """Serve `requests` virtually in priority order; see the module docstring.

    `free_s` is when each device can start new work. A request below the top priority whose virtual
    completion misses its deadline is *insertable* when running it now on a device would delay the work
    above it by no more than that work's slack, and *shed* otherwise (streams in `protected`, e.g. those
    owed their floor, are never shed). `active` streams count as if a request of each had just arrived.

    By default each request takes its frames times the kind's best time per frame (batching assumed
    perfect: completions are lower bounds, so shedding by them is cautious). `pessimistic` runs each request
    as its own batch instead (no batching with others: completions are upper bounds for a policy that batches
    only to save time or energy), which is how a check that *protects* work should count it.

    With `horizon_s` > 0 each active stream also sends a frame every 1 / `frames_per_s` seconds until
    now + `horizon_s`, and these take device time like queued work: what a device busy for that long
    leaves the others to absorb.
    """
    active = list(active)
    by_level: dict[int, list[Request]] = {}
    for r in sorted(requests, key=lambda r: r.deadline_s):
        by_level.setdefault(r.priority, []).append(r)
    fresh: dict[int, list[ActiveStream]] = {}
    for a in active:
        fresh.setdefault(a.priority, []).append(a)
    levels = sorted(set(by_level) | set(fresh), reverse=True)
    result = Plan(top_priority=levels[0] if levels else 0)
    groups = _Groups(devices, free_s)
    slack, binding = INF, ""
    for level in levels:
        level_slack, level_binding = INF, ""
        for r in by_level.get(level, ()):
            i, c = groups.best(r.model, lambda kind, r=r: _job_s(oracle, kind, r, pessimistic))
            if i < 0:
                continue
            if c > r.deadline_s and level < result.top_priority and r.stream not in protected:
                if _insertable(now_s, r, devices, free_s, oracle, slack):
                    result.insertable.add(r.request_id)
                else:
                    result.shed.append((r, binding))
                continue
            groups.consume(i, c)
            result.completion_s[r.request_id] = c
            if r.deadline_s - c < level_slack:
                level_slack, level_binding = r.deadline_s - c, r.stream
        for a in fresh.get(level, ()):
            for t in _fresh_arrivals(now_s, a, horizon_s):
                i, c = groups.best(a.model, lambda kind, a=a: oracle.batch_latency_s(kind, a.model, 1), t)
                if t + a.budget_s - c < level_slack:
                    level_slack, level_binding = t + a.budget_s - c, a.name
                if horizon_s > 0 and i >= 0:
                    groups.consume(i, c)
        if level_slack < slack:
            slack, binding = level_slack, level_binding
    result.final_slack_s = slack
    return result


def _fresh_arrivals(now_s: float, a: ActiveStream, horizon_s: float, most: int = 1000) -> list[float]:
    """When an active stream's next frames arrive: now, then at its rate until now + horizon_s."""
    if horizon_s <= 0 or a.frames_per_s <= 0:
        return [now_s]
    n = min(most, int(horizon_s * a.frames_per_s))
    return [now_s + k / a.frames_per_s for k in range(n + 1)]


def _job_s(oracle: CostOracle, kind: str, r: Request, pessimistic: bool) -> float:
    if pessimistic:
        return oracle.batch_latency_s(kind, r.model, r.n_frames)
    return oracle.frame_time_s(kind, r.model) * r.n_frames


def _insertable(
    now_s: float,
    request: Request,
    devices: Sequence[DeviceState],
    free_s: Mapping[str, float],
    oracle: CostOracle,
    slack_s: float,
) -> bool:
    for d in devices:
        if can_run(d, request.model):
            latency_s = oracle.batch_latency_s(d.kind, request.model, request.n_frames)
            if latency_s <= slack_s and max(now_s, free_s[d.name]) + latency_s <= request.deadline_s:
                return True
    return False


def shed_drops(result: Plan) -> list[Drop]:
    """The plan's shed requests as drops, one per request, each naming the stream it protects."""
    return [
        Drop((r.request_id,), DropReason.SHED, f"late behind higher-priority work; protects {p}", p)
        for r, p in result.shed
    ]
