"""Overload control in the policy layer, composed with any dispatching policy.

    fifo                 the baseline: first in, first out, batch 1 at maximum frequency on each idle
                         device; bounded stream queues as configured; no shedding
    overload[:INNER]     `OverloadControl` around INNER (default `jetfleet`; `edf` is a plain
                         earliest-deadline-first inner): bounded queues, deadline-aware drops, priority-aware
                         shedding with a floor; INNER chooses device, batch, frequency (and variant)

`OverloadControl` decides in four steps each time it is called:

1. *deadline-aware drops*: a queued request whose earliest possible completion (max(now, busy_until)
   + its batch latency at maximum frequency, by the cost model, on its best device) is past its deadline
   is dropped with `deadline_unreachable` instead of wasting a device;
2. *adaptive shedding*: the virtual schedule of `policies.shedding.plan` serves the queue in priority
   order; a request below the top priority that would be late there and cannot run now without making
   higher-priority work late is shed (`shed`, naming the stream it protects);
3. *the floor*: a stream with `min_share` > 0 that got less than that share of the device time dispatched
   over the last `share_window_s` is served on an idle device, whatever its priority, at the first moment
   that makes no top-priority request late, or after `floor_max_wait_s` anyway (aging): low priority is
   degraded, never starved;
4. *dispatch*: the inner policy sees the top-priority requests (and all devices) and chooses freely; then,
   on devices still idle, it sees the next priority's requests, and each batch it proposes is kept only if
   the higher-priority streams' arrival rates leave the fleet spare capacity and the virtual schedule says
   no higher-priority request — queued, or one of an active stream arriving right now — becomes late
   because of it. When the inner proposes nothing acceptable, the earliest-deadline
   request runs alone at maximum frequency if that is safe.

`OverloadControl.admit` is the same reasoning for a request not yet queued (`policies.admission`): the core
calls it for every arrival in both drivers, and a refusal is a `rejected` outcome (HTTP 429 with Retry-After
live). `decide` changes nothing: the device time charged to each stream and since when a stream is owed its
floor travel in the step's memo and become the policy's memory in `absorb`, once the core applied the step;
the inner policy hears through its own `absorb` of exactly what was applied. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from jetfleet.errors import ConfigError
from jetfleet.types import Admission, Applied, BatchResult, Decisions, DeviceState, Dispatch, Drop, Request
from policies.admission import admission_decision, queue_head
from policies.base import Policy
from policies.context import QueueView, StepContext
from policies.queue import RequestQueue
from policies.registry import register
from policies.shedding import (
    ActiveStream,
    CostOracle,
    bound_victims,
    can_run,
    load_of,
    plan,
    shed_drops,
    unreachable_drops,
)
from policies.streams import StreamSet

__all__ = ["EdfDispatch", "FifoPolicy", "OverloadControl", "make_inner"]

_EPS_S = 1e-9
_MIN_RATE_SPAN_S = 0.1  # a stream's rate is counted over at least this long (its first arrivals)
_MAX_KNOWN_STREAMS = 256  # past this many, streams silent for longer than the active window are forgotten
Check = Callable[[Dispatch, float], bool]  # (dispatch, its latency_s) -> keep it?


# -- simple dispatchers ---------------------------------------------------------------------------------
class _SingleDispatch(Policy):
    """Batch 1 at maximum frequency on every idle device, in the order `_order` gives."""

    def __init__(self, streams: StreamSet | None = None) -> None:
        self.streams = streams or StreamSet()

    def admit(self, ctx: StepContext, request: Request) -> Admission:
        """Bounded queues only: a newcomer that its full queue would drop is rejected; others make room."""
        drops = bound_victims(request, ctx.queue, self.streams)
        own = next((d for d in drops if request.request_id in d.request_ids), None)
        if own is not None:
            return Admission.reject(own.reason, 1.0, own.detail)
        return Admission.accept(tuple(drops))

    def _order(self, queue: QueueView) -> Iterable[Request]:  # pragma: no cover - abstract
        raise NotImplementedError

    skip_late = False  # pass over requests this device would finish after their deadline

    def decide(self, ctx: StepContext) -> Decisions:
        out = Decisions()
        if not ctx.queue:
            return out
        oracle = CostOracle(ctx.cost, ctx.devices)
        taken: set[int] = set()
        for d in ctx.devices:
            if not d.healthy or d.in_flight:
                continue
            order = self._order(ctx.queue)
            r = next((r for r in order if r.request_id not in taken and self._fits(ctx.now_s, d, r, oracle)), None)
            if r is None:
                continue
            taken.add(r.request_id)
            out.dispatches.append(_single(d, r, oracle, self.name))
        return out

    def _fits(self, now_s: float, device: DeviceState, r: Request, oracle: CostOracle) -> bool:
        if not can_run(device, r.model):
            return False
        if not self.skip_late:
            return True
        return now_s + oracle.batch_latency_s(device.kind, r.model, r.n_frames) <= r.deadline_s + _EPS_S


class FifoPolicy(_SingleDispatch):
    """First in, first out across all streams; bounded queues as configured; no shedding."""

    name = "fifo"

    def _order(self, queue: QueueView) -> Iterable[Request]:
        return iter(queue)


class EdfDispatch(_SingleDispatch):
    """Earliest deadline first, batch 1 at maximum frequency, skipping what the device would finish late:
    a plain inner policy for `OverloadControl`."""

    name = "edf"
    skip_late = True

    def _order(self, queue: QueueView) -> Iterable[Request]:
        return queue.by_deadline()


def _single(device: DeviceState, request: Request, oracle: CostOracle, reason: str) -> Dispatch:
    latency_s = oracle.batch_latency_s(device.kind, request.model, request.n_frames)
    return Dispatch(
        device.name,
        (request.request_id,),
        device.max_freq_hz,
        request.model,
        predicted_latency_s=latency_s if math.isfinite(latency_s) else math.nan,
        reason=reason,
    )


# -- the overload layer ---------------------------------------------------------------------------------
class _Step:
    """One `decide` call's working state: what was taken, the devices as the inner should now see them."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        now_s, devices = ctx.now_s, ctx.devices
        self.now_s = now_s
        self.oracle = CostOracle(ctx.cost, devices)
        self.due_since: dict[str, float] = {}  # stream -> since when it is owed its floor, as of this step
        self.inner_memo: object = None  # the memo of the inner decision whose proposals this step kept
        self.devices = [d for d in devices if d.healthy]
        self.views: dict[str, DeviceState] = {d.name: d for d in devices}
        self.free: dict[str, float] = {d.name: d.free_s(now_s) for d in self.devices}
        self.used: set[str] = set()
        self.taken: set[int] = set()
        self.out = Decisions()
        self.wakes: list[float] = []
        self.by_id: dict[int, Request] = {}

    def drop(self, drops: Iterable[Drop]) -> None:
        for d in drops:
            ids = tuple(i for i in d.request_ids if i not in self.taken)
            if ids:
                self.out.drops.append(d if len(ids) == len(d.request_ids) else replace(d, request_ids=ids))
                self.taken.update(ids)

    def accept(self, dispatch: Dispatch, latency_s: float) -> None:
        device = self.views[dispatch.device]
        start_s = self.free[dispatch.device]
        if dispatch.freq_hz != device.freq_hz:
            start_s += device.freq_change_delay_s
        self.free[dispatch.device] = start_s + latency_s
        self.views[dispatch.device] = replace(
            device, busy_until_s=start_s + latency_s, in_flight=device.in_flight + 1, freq_hz=dispatch.freq_hz
        )
        self.out.dispatches.append(dispatch)
        self.taken.update(dispatch.request_ids)
        self.used.add(dispatch.device)

    def idle(self) -> list[DeviceState]:
        """Healthy devices with nothing in flight and nothing dispatched to them in this step."""
        return [self.views[d.name] for d in self.devices if d.in_flight == 0 and d.name not in self.used]

    def all_views(self) -> list[DeviceState]:
        return list(self.views.values())


class OverloadControl(Policy):
    """Bounded queues, deadline-aware drops, priority-aware shedding and a floor around an inner policy.

    See the module docstring for the four steps. `streams` configures the queue bounds and floors; every
    other input (priority, budget) is each request's own. `max_batch` caps the frames of a dispatch
    (devices that run one frame at a time): a larger batch of the inner policy is cut to its first
    requests. One decision looks at the `window` earliest-deadline requests of each priority, so its cost
    does not grow with a huge backlog; the rest is looked at as the head drains. Keeps only its own
    memory: the last arrival of each stream, the device time dispatched per stream over the share window,
    and since when each stream is owed its floor.
    """

    name = "overload"

    def __init__(
        self,
        inner: Policy,
        streams: StreamSet | None = None,
        *,
        label: str | None = None,
        max_batch: int | None = None,
        window: int = 512,
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise ConfigError(f"overload control: max_batch must be >= 1, got {max_batch}")
        if window < 1:
            raise ConfigError(f"overload control: window must be >= 1, got {window}")
        self.window = window  # requests per priority (earliest deadlines first) one decision looks at
        self.inner = inner
        self.streams = streams or StreamSet()
        self.name = label or f"overload:{inner.name}"
        self.max_batch = max_batch  # frames per batch the devices can run (None: the inner's choice)
        self._due_since: dict[str, float] = {}  # stream -> since when it is owed its floor
        self._last: dict[str, ActiveStream] = {}
        self._arrivals: dict[str, deque[tuple[float, int]]] = {}  # stream -> (arrival_s, frames) in the window
        self._first_seen: dict[str, float] = {}
        self._served: deque[tuple[float, str, float]] = deque()  # (dispatched_s, stream, device seconds)
        self._served_by: dict[str, float] = {}

    # -- arrivals -----------------------------------------------------------------------------------
    def admit(self, ctx: StepContext, request: Request) -> Admission:
        """`policies.admission.admission_decision` with this policy's streams and active streams (a stream owed its
        floor is not shed, as in `decide`), then the inner policy's own admission; the drops of both (bounded
        queues) when accepted."""
        oracle = CostOracle(ctx.cost, ctx.devices)
        active = self.active_streams(ctx.now_s)
        owed, _ = self._floor_due(ctx.now_s, [request])
        verdict = admission_decision(
            ctx.now_s,
            request,
            ctx.queue,
            self.streams,
            ctx.devices,
            oracle,
            active=active,
            protected=frozenset(owed),
            window=self.window,
        )
        if not verdict.accepted:
            return verdict
        inner = self.inner.admit(ctx, request)
        if not inner.accepted:
            return inner
        dropped = {i for d in verdict.drops for i in d.request_ids}
        extra = []
        for d in inner.drops:
            ids = tuple(i for i in d.request_ids if i not in dropped)
            if ids:
                extra.append(replace(d, request_ids=ids))
                dropped.update(ids)
        return Admission.accept(verdict.drops + tuple(extra))

    def absorb(self, applied: Applied) -> None:
        """Remember the arrivals and what the applied step charged and owed; tell the inner what was applied."""
        for request in applied.admitted:
            self._note_arrival(applied.now_s, request)
        memo = applied.memo if isinstance(applied.memo, _Memo) else None
        if memo is not None:
            for charge in memo.charges:
                self._served.append(charge)
                self._served_by[charge[1]] = self._served_by.get(charge[1], 0.0) + charge[2]
            self._due_since = dict(memo.due_since)
        self._trim(applied.now_s)
        if len(self._last) > _MAX_KNOWN_STREAMS:
            self._forget_silent(applied.now_s)
        self.inner.absorb(replace(applied, memo=memo.inner if memo is not None else None))

    def _forget_silent(self, now_s: float) -> None:
        """Bounded memory whatever stream names clients send: drop what is remembered of streams silent for longer
        than the active window, with no device time in the share window and no floor owed."""
        horizon_s = now_s - self.streams.active_window_s
        for name in [n for n, a in self._last.items() if a.last_arrival_s < horizon_s]:
            if self._served_by.get(name, 0.0) > 0.0 or name in self._due_since:
                continue
            for memory in (self._last, self._arrivals, self._first_seen, self._served_by):
                memory.pop(name, None)

    def _note_arrival(self, now_s: float, request: Request) -> None:
        recent = self._arrivals.setdefault(request.stream, deque())
        recent.append((now_s, request.n_frames))
        while recent and recent[0][0] < now_s - self.streams.active_window_s:
            recent.popleft()
        first_s = self._first_seen.setdefault(request.stream, now_s)
        span_s = min(self.streams.active_window_s, max(now_s - first_s, _MIN_RATE_SPAN_S))
        fps = sum(n for _, n in recent) / span_s
        self._last[request.stream] = ActiveStream(
            request.stream, request.priority, request.slo_s, request.model, now_s, fps
        )

    def active_streams(self, now_s: float) -> list[ActiveStream]:
        """Streams with an arrival within the last `active_window_s`, with their arrival rate over it."""
        window_s = self.streams.active_window_s
        return [a for a in self._last.values() if now_s - a.last_arrival_s <= window_s]

    def observe(self, result: BatchResult) -> None:
        self.inner.observe(result)

    # -- decisions ----------------------------------------------------------------------------------
    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue = ctx.now_s, ctx.queue
        if not queue:
            out = self.inner.decide(ctx.replace(power_control=False))
            out.power_changes = []  # overload control plans on every device: its inner keeps them awake
            out.memo = _Memo((), dict(self._due_since), out.memo)
            return out
        step = _Step(ctx)
        oracle = step.oracle
        head = queue_head(queue, self.window)
        step.by_id = {r.request_id: r for r in head}
        step.drop(self._unreachable(now_s, head, step, oracle))
        pending = [r for r in head if r.request_id not in step.taken]
        active = self.active_streams(now_s)
        due, step.due_since = self._floor_due(now_s, pending)
        verdict = plan(now_s, pending, step.devices, step.free, oracle, active, frozenset(due))
        step.drop(shed_drops(verdict))
        pending = [r for r in pending if r.request_id not in step.taken]
        for stream in due:
            self._serve_floor(stream, pending, step, oracle, verdict.top_priority, active)
        self._serve(
            [r for r in pending if r.priority >= verdict.top_priority and r.request_id not in step.taken],
            step.all_views(),
            step,
            check=None,
        )
        self._serve_lower(verdict.top_priority, pending, step, oracle, active, frozenset(due))
        charges = tuple(c for d in step.out.dispatches for c in self._charges(now_s, d, step))
        if queue and len(step.taken) < len(queue) and step.idle():
            step.wakes.append(self._next_change_s(now_s))
        wakes = [w for w in step.wakes if w is not None and w > now_s]
        step.out.wake_at_s = min(wakes) if wakes else None
        step.out.memo = _Memo(charges, step.due_since, step.inner_memo)
        return step.out

    def _unreachable(self, now_s: float, head: list[Request], step: _Step, oracle: CostOracle) -> list[Drop]:
        return unreachable_drops(now_s, head, step.devices, oracle)

    def _serve(
        self,
        requests: list[Request],
        devices: list[DeviceState],
        step: _Step,
        check: Check | None,
        tag: str = "",
    ) -> int:
        """Ask the inner policy about `requests` on `devices`; keep what `check` allows. Returns dispatches kept."""
        if not requests or not devices:
            return 0
        ids = {r.request_id for r in requests}
        decisions = self.inner.decide(
            step.ctx.replace(queue=RequestQueue(requests), devices=devices, power_control=False)
        )
        step.drop(d for d in decisions.drops if set(d.request_ids) <= ids)
        changes = [c for c in decisions.frequency_changes if c.device not in step.used]
        step.out.frequency_changes.extend(changes)
        if decisions.wake_at_s is not None:
            step.wakes.append(decisions.wake_at_s)
        kept = 0
        for d in decisions.dispatches:
            if not set(d.request_ids) <= ids or step.taken.intersection(d.request_ids):
                continue
            d = self._cap(d, step)
            latency_s = self._latency(d, step)
            if check is not None and not check(d, latency_s):
                continue
            step.accept(replace(d, reason=f"{tag}{d.reason}") if tag else d, latency_s)
            kept += 1
        if kept or changes:
            step.inner_memo = decisions.memo
        return kept

    def _serve_floor(
        self,
        stream: str,
        pending: list[Request],
        step: _Step,
        oracle: CostOracle,
        top_priority: int,
        active: list[ActiveStream],
    ) -> None:
        """Serve a stream owed its floor on an idle device: at a moment that makes no top-priority request
        late, or after `floor_max_wait_s` of waiting for one, at once (then only its own deadlines count)."""
        idle = step.idle()
        requests = [r for r in pending if r.stream == stream and r.request_id not in step.taken]
        if not idle or not requests:
            return
        aged = step.now_s - step.due_since.get(stream, step.now_s) >= self.streams.floor_max_wait_s

        def check(d: Dispatch, latency_s: float) -> bool:
            if self._end_s(d, latency_s, step) > min(step.by_id[i].deadline_s for i in d.request_ids) + _EPS_S:
                return False
            return aged or self._safe(d, latency_s, top_priority - 1, pending, step, oracle, active, frozenset())

        tag = f"floor({stream}{', aged' if aged else ''}): "
        if not self._serve(requests, idle, step, check, tag):
            self._fallback(requests, step, oracle, check, tag)
        if not aged:
            step.wakes.append(step.due_since.get(stream, step.now_s) + self.streams.floor_max_wait_s)

    def _serve_lower(
        self,
        top_priority: int,
        pending: list[Request],
        step: _Step,
        oracle: CostOracle,
        active: list[ActiveStream],
        protected: frozenset[str],
    ) -> None:
        """On devices still idle, run lower-priority work the virtual schedule says is safe, highest first."""
        for level in sorted({r.priority for r in pending if r.priority < top_priority}, reverse=True):
            idle = step.idle()
            if not idle:
                return
            requests = [r for r in pending if r.priority == level and r.request_id not in step.taken]

            def safe(d: Dispatch, latency_s: float, level: int = level) -> bool:
                return self._safe(d, latency_s, level, pending, step, oracle, active, protected)

            if not self._serve(requests, idle, step, safe, "insert: "):
                self._fallback(requests, step, oracle, safe, "insert: ")

    def _safe(
        self,
        d: Dispatch,
        latency_s: float,
        level: int,
        pending: list[Request],
        step: _Step,
        oracle: CostOracle,
        active: list[ActiveStream],
        protected: frozenset[str],
    ) -> bool:
        """True when `d` itself finishes in time, the active streams above `level` leave the fleet spare
        capacity at their arrival rates, and running `d` now leaves every request above `level` on time in
        the (pessimistic) virtual schedule: those queued, and those the active streams above send while `d` runs."""
        end_s = self._end_s(d, latency_s, step)
        if end_s > min(step.by_id[i].deadline_s for i in d.request_ids) + _EPS_S:
            return False
        free = dict(step.free)
        free[d.device] = end_s
        above = [r for r in pending if r.priority > level and r.request_id not in step.taken]
        higher = [a for a in active if a.priority > level]
        if load_of(higher, step.devices, oracle) >= 1.0 - _EPS_S:
            return False  # the streams above need the whole fleet: a lower batch now takes from their next frames
        verdict = plan(
            step.now_s,
            above,
            step.devices,
            free,
            oracle,
            higher,
            protected,
            pessimistic=True,
            horizon_s=end_s - step.now_s,
        )
        return verdict.final_slack_s >= -_EPS_S

    def _fallback(self, requests: list[Request], step: _Step, oracle: CostOracle, check: Check, tag: str) -> None:
        """Run requests alone at maximum frequency, earliest deadline first, where `check` allows."""
        failed: set[tuple[str, int]] = set()
        for r in requests:
            idle = step.idle()
            if not idle:
                return
            key = (r.model, r.n_frames)
            if r.request_id in step.taken or key in failed:
                continue
            options = [d for d in idle if can_run(d, r.model)]
            options.sort(key=lambda d: step.free[d.name] + oracle.batch_latency_s(d.kind, r.model, r.n_frames))
            for device in options:
                dispatch = _single(device, r, oracle, f"{tag}batch 1 at max frequency")
                latency_s = dispatch.predicted_latency_s
                if math.isfinite(latency_s) and check(dispatch, latency_s):
                    step.accept(dispatch, latency_s)
                    break
            else:
                failed.add(key)

    def _cap(self, d: Dispatch, step: _Step) -> Dispatch:
        """The dispatch cut to its first requests holding at most `max_batch` frames (at least one request)."""
        if self.max_batch is None:
            return d
        kept, frames = [], 0
        for i in d.request_ids:
            n = step.by_id[i].n_frames
            if kept and frames + n > self.max_batch:
                break
            kept.append(i)
            frames += n
        if len(kept) == len(d.request_ids):
            return d
        reason = f"{d.reason} (cut to {frames} frames)"
        nan = math.nan
        return replace(d, request_ids=tuple(kept), predicted_latency_s=nan, predicted_energy_j=nan, reason=reason)

    def _end_s(self, d: Dispatch, latency_s: float, step: _Step) -> float:
        device = step.views[d.device]
        start_s = step.free[d.device]
        if d.freq_hz != device.freq_hz:
            start_s += device.freq_change_delay_s
        return start_s + latency_s

    def _latency(self, d: Dispatch, step: _Step) -> float:
        if math.isfinite(d.predicted_latency_s):
            return d.predicted_latency_s
        n_frames = sum(step.by_id[i].n_frames for i in d.request_ids)
        return step.oracle.latency_at_s(step.views[d.device].kind, d.model, n_frames, d.freq_hz)

    # -- the floor's bookkeeping --------------------------------------------------------------------
    def _charges(self, now_s: float, d: Dispatch, step: _Step) -> list[tuple[float, str, float]]:
        """(dispatched_s, stream, device seconds): the dispatch's device time charged to its streams, by frames."""
        latency_s = self._latency(d, step)
        if not math.isfinite(latency_s):
            return []
        requests = [step.by_id[i] for i in d.request_ids]
        frames = sum(r.n_frames for r in requests)
        return [(now_s, r.stream, latency_s * r.n_frames / frames) for r in requests]

    def _trim(self, now_s: float) -> None:
        horizon_s = now_s - self.streams.share_window_s
        while self._served and self._served[0][0] < horizon_s:
            _, stream, share_s = self._served.popleft()
            self._served_by[stream] = max(0.0, self._served_by[stream] - share_s)

    def _shares_at(self, now_s: float) -> dict[str, float]:
        """Device seconds per stream dispatched within the share window before `now_s` (changes nothing)."""
        horizon_s = now_s - self.streams.share_window_s
        served = dict(self._served_by)
        for dispatched_s, stream, share_s in self._served:
            if dispatched_s >= horizon_s:
                break
            served[stream] = max(0.0, served[stream] - share_s)
        return served

    def _floor_due(self, now_s: float, pending: list[Request]) -> tuple[list[str], dict[str, float]]:
        """(streams with work queued that got less than their `min_share` of recent device time, neediest first;
        since when each stream is owed its floor, as of `now_s`)."""
        due_since = dict(self._due_since)
        floors = {s.name: s.min_share for s in self.streams.streams if s.min_share > 0}
        if not floors:
            return [], due_since
        served = self._shares_at(now_s)
        total_s = sum(served.values())
        if total_s <= 0:
            return [], due_since
        queued = {r.stream for r in pending}
        due = []
        for stream, share in floors.items():
            got = served.get(stream, 0.0) / total_s
            if got >= share:
                due_since.pop(stream, None)
                continue
            due_since.setdefault(stream, now_s)  # owed its floor since then, queued work or not
            if stream in queued:
                due.append((got - share, stream))
        return [s for _, s in sorted(due)], due_since

    def _next_change_s(self, now_s: float) -> float | None:
        """When waiting alone can unblock queued work: an active stream expires, or a share leaves the window."""
        times = [a.last_arrival_s + self.streams.active_window_s for a in self._last.values()]
        if self._served and any(s.min_share > 0 for s in self.streams.streams):
            times.append(self._served[0][0] + self.streams.share_window_s)
        later = [t for t in times if t > now_s]
        return min(later) if later else None


@dataclass(frozen=True)
class _Memo:
    """What one overload decision would change in the policy's memory, applied in `absorb`."""

    charges: tuple[tuple[float, str, float], ...] = ()  # (dispatched_s, stream, device seconds)
    due_since: dict[str, float] = field(default_factory=dict)  # stream -> since when it is owed its floor
    inner: object = None  # the inner policy's memo of the decision whose proposals were kept


# -- registry -------------------------------------------------------------------------------------------
def make_inner(spec: str) -> Policy:
    """The dispatching policy `OverloadControl` wraps: `edf`, `fifo`, or any registered policy name."""
    if spec == "edf":
        return EdfDispatch()
    from policies.registry import make_policy

    return make_policy(spec)


@register("fifo")
def _fifo(arg: str | None) -> Policy:
    if arg:
        raise ConfigError(f"fifo takes no argument, got {arg!r}")
    return FifoPolicy()


@register("overload")
def _overload(arg: str | None) -> Policy:
    return OverloadControl(make_inner(arg or "jetfleet"))
