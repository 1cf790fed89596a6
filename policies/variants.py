"""Model-variant choice for client streams on changing networks: the stream plan, and jetfleet's planner.

A client (camera stream) uploads each frame at the input resolution of the variant it was told to use;
the upload time comes out of its SLO (`Request.slo_s` is what is left of the budget when the frame reaches
the queue; `Request.upload_s` is what the upload took). Every `REPLAN_S` the serving side re-plans which
variant each stream uses from what it knows then: each client's frame rate, SLO and measured uplink
bandwidth, and the fleet. Plans only ever use information available at their time, so a driver may
compute them before replaying the frames (`simulator.variants_experiment` does).

- `StreamPlan` / `PlanTimeline`: the plans over time; the variant a request was uploaded for is the one
  planned for its stream at its capture time (`arrival_s - upload_s`).
- `VariantProfiles`: per (device kind, variant) latency and energy over the batch ladder at the top clock.
- `JetfleetVariantPlanner`: jetfleet's planner. Start every stream at its cheapest variant that fits its
  budget, then upgrade greedily by accuracy gained per unit of fleet load, while the fleet stays under
  `max_load`. Budgets are robust: the bandwidth estimate is discounted (`bandwidth_safety`) and a frame must
  have room for `service_factor` batch times after its upload. Any variant can run on any device, so
  streams are not tied to one model per GPU (Jellyfish's restriction).
- `JetfleetVariantsPolicy`: the `jetfleet` policy (batching, DVFS, energy) serving each request with the
  variant its stream was planned for. It needs no change to `JetfleetPolicy`: it hands the base policy a
  mirror of the queue whose requests name their planned variant as their model.

No clock, no I/O: `now_s` is given; decision time is measured by the caller.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np

from costmodel.variants import FAMILIES, Variant, family_variants, frame_bits, resolve
from costmodel.view import CostView, RawGrid
from jetfleet.errors import ConfigError, UnknownNameError
from jetfleet.types import Applied, Decisions, DeviceState, Request, SetFrequency
from policies.base import Policy
from policies.context import QueueView, StepContext, device_grid, with_device_facts
from policies.jetfleet import JetfleetConfig, JetfleetPolicy
from policies.planning import Margins
from policies.registry import register

REPLAN_S = 0.5
# Live streams with 75-150 ms SLOs: a frame past its deadline is worth nothing (drop it, do not serve it
# late), the margins are milliseconds, not the default 50 ms meant for LoudVA's second-long SLOs, and
# clocks follow the plan (`_keep_ready`) rather than idleness.
STREAM_CONFIG = JetfleetConfig(late="drop", margins=Margins(abs_s=0.003, rel=0.05), park_after_s=math.inf)

__all__ = [
    "REPLAN_S",
    "ClientInfo",
    "JetfleetVariantPlanner",
    "JetfleetVariantsPolicy",
    "PlanTimeline",
    "StreamPlan",
    "StreamPlanning",
    "VariantProfiles",
    "credited_accuracy",
    "upload_estimate_s",
]


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What the serving side knows of one client stream at a re-plan."""

    stream: str
    family: str
    fps: float
    slo_s: float  # end-to-end budget: upload + queueing + inference
    bandwidth_mbps: float  # uplink estimate (e.g. the mean over the last re-plan interval)


@dataclass
class StreamPlan:
    """One re-plan: the variant of every stream, and (for one-model-per-device planners) its device."""

    time_s: float
    variant: dict[str, str]
    device: dict[str, str] = field(default_factory=dict)  # stream -> device, when the planner pins streams
    batch: dict[str, int] = field(default_factory=dict)  # device -> largest batch it may run
    device_model: dict[str, str] = field(default_factory=dict)  # device -> the one variant it serves
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)  # variant -> device kinds fast enough for it
    objective: float = math.nan  # the planner's own score (fps-weighted accuracy points)


class PlanTimeline:
    """Plans in time order; `at(t)` is the plan in force at time t (the last one made at or before t)."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self.plans: list[StreamPlan] = []

    def add(self, plan: StreamPlan) -> None:
        if self._times and plan.time_s < self._times[-1]:
            raise ConfigError(f"stream plan at {plan.time_s} s is older than the last one at {self._times[-1]} s")
        self._times.append(plan.time_s)
        self.plans.append(plan)

    def at(self, t_s: float) -> StreamPlan | None:
        i = bisect.bisect_right(self._times, t_s + 1e-12) - 1
        return self.plans[i] if i >= 0 else None

    def variant_at(self, stream: str, t_s: float) -> str | None:
        plan = self.at(t_s)
        return plan.variant.get(stream) if plan is not None else None

    def __len__(self) -> int:
        return len(self.plans)


def upload_estimate_s(variant: Variant, bandwidth_mbps: float) -> float:
    """Seconds to upload one frame at `variant`'s input resolution over `bandwidth_mbps`."""
    return frame_bits(variant.input_hw) / (max(bandwidth_mbps, 1e-6) * 1e6)


def credited_accuracy(served: str, uploaded: str | None) -> float:
    """Accuracy a served frame earns: the served variant's, capped by what the upload kept.

    A model fed a frame uploaded at a lower resolution than its own input cannot recover the lost
    detail, so it earns at most the uploaded variant's accuracy.
    """
    s = resolve(served)
    if s is None:
        return math.nan
    u = resolve(uploaded) if uploaded else None
    if u is None or s.input_hw <= u.input_hw:
        return s.accuracy_pct
    return min(s.accuracy_pct, u.accuracy_pct)


class VariantProfiles:
    """Latency and energy of each (kind, variant) at the kind's top clock for batches 1..max_batch.

    Read from the core's `CostView` (raw predictions) at the clocks of a device of that kind in `devices`."""

    def __init__(self, cost: CostView, devices: Sequence[DeviceState]) -> None:
        self.cost = cost
        self._device_of: dict[str, DeviceState] = {}
        for d in devices:
            self._device_of.setdefault(d.kind, with_device_facts(d))

    def _grid(self, kind: str, variant: str) -> tuple[DeviceState, RawGrid]:
        try:
            device = self._device_of[kind]
        except KeyError:
            raise UnknownNameError("device kind of this fleet", kind, self._device_of) from None
        return device, device_grid(self.cost, device, variant)

    def arrays(self, kind: str, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(latency_s, energy_j), each indexed by batch - 1."""
        device, grid = self._grid(kind, variant)
        return grid.latency_s[-1, : device.max_batch], grid.energy_j[-1, : device.max_batch]

    def latency_s(self, kind: str, variant: str, batch: int = 1) -> float:
        lat, _ = self.arrays(kind, variant)
        return float(lat[min(batch, len(lat)) - 1])

    def best_batch(self, kind: str, variant: str, max_latency_s: float) -> int:
        """Largest batch whose latency fits `max_latency_s` (0 when not even one frame does)."""
        lat, _ = self.arrays(kind, variant)
        return int(np.searchsorted(lat, max_latency_s, side="right"))

    def throughput_fps(self, kind: str, variant: str, max_latency_s: float) -> float:
        """Frames per second one device sustains with batches no longer than `max_latency_s`."""
        return float(self.throughputs_fps(kind, variant, np.array([max_latency_s]))[0])

    def throughputs_fps(self, kind: str, variant: str, max_latency_s: np.ndarray) -> np.ndarray:
        """`throughput_fps` for many latency caps at once (0 where not even one frame fits)."""
        device, grid = self._grid(kind, variant)

        def best_fps() -> tuple[np.ndarray, np.ndarray]:
            lat = grid.latency_s[-1, : device.max_batch]
            return lat, np.concatenate([[0.0], np.maximum.accumulate(np.arange(1, len(lat) + 1) / lat)])

        key = ("variant-best-fps", kind, variant, device.freqs_hz, device.max_batch)
        lat, best = self.cost.derived(key, grid, best_fps)
        return best[np.searchsorted(lat, max_latency_s, side="right")]


@dataclass
class _Choice:
    client: ClientInfo
    options: list[Variant]  # feasible variants, ascending accuracy
    load: list[float]  # fleet load fraction of each option
    kinds: list[tuple[str, ...]]  # kinds fast enough for each option within this client's budget
    index: int = 0


class JetfleetVariantPlanner:
    """jetfleet's stream planner: cheapest feasible start, then greedy accuracy-per-load upgrades."""

    def __init__(
        self,
        *,
        max_load: float = 0.75,
        bandwidth_safety: float = 0.8,
        service_factor: float = 2.0,
        margin: float = 0.1,
    ) -> None:
        if not (0 < max_load <= 1 and 0 < bandwidth_safety <= 1 and service_factor >= 1 and margin >= 0):
            raise ConfigError(
                "jetfleet variant planner: need 0 < max_load <= 1, 0 < bandwidth_safety <= 1, service_factor >= 1, "
                f"margin >= 0; got "
                f"{max_load}, {bandwidth_safety}, {service_factor}, {margin}"
            )
        self.max_load, self.bandwidth_safety = max_load, bandwidth_safety
        self.service_factor, self.margin = service_factor, margin

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostView
    ) -> StreamPlan:
        """The variant of every client stream from now on (pure: nothing of the planner changes)."""
        profiles = VariantProfiles(cost, devices)
        kinds = Counter(d.kind for d in devices if d.healthy)
        choices: list[_Choice] = []
        for family in dict.fromkeys(c.family for c in clients):
            choices += self._options([c for c in clients if c.family == family], family, kinds, profiles)
        load = sum(ch.load[0] for ch in choices)
        heap: list[tuple[float, int]] = []
        for i, ch in enumerate(choices):
            self._push(heap, i, ch)
        while heap:
            _, i = heapq.heappop(heap)
            ch = choices[i]
            extra = ch.load[ch.index + 1] - ch.load[ch.index]
            if load + extra > self.max_load:
                continue  # this upgrade does not fit; a cheaper one of another stream still may
            load += extra
            ch.index += 1
            self._push(heap, i, ch)
        variant = {ch.client.stream: ch.options[ch.index].name for ch in choices}
        score = sum(ch.client.fps * ch.options[ch.index].accuracy_pct for ch in choices)
        kinds: dict[str, set[str]] = {}
        for ch in choices:  # a kind serves a variant when it is fast enough for every stream planned on it
            fast = set(ch.kinds[ch.index])
            kinds[ch.options[ch.index].name] = kinds.get(ch.options[ch.index].name, fast) & fast
        return StreamPlan(now_s, variant, kinds={v: tuple(sorted(k)) for v, k in kinds.items()}, objective=score)

    def _options(
        self, clients: list[ClientInfo], family: str, kinds: Counter[str], profiles: VariantProfiles
    ) -> list[_Choice]:
        """Each client's feasible variants (ascending accuracy, from its cheapest), their loads and kinds."""
        variants = family_variants(family)
        fps = np.array([c.fps for c in clients])
        slo = np.array([c.slo_s for c in clients])
        bandwidth_bps = np.maximum(np.array([c.bandwidth_mbps for c in clients]) * self.bandwidth_safety, 1e-6) * 1e6
        loads = np.full((len(variants), len(clients)), np.inf)
        fast = np.zeros((len(variants), len(kinds), len(clients)), dtype=bool)
        for vi, v in enumerate(variants):
            batch_s = (slo * (1.0 - self.margin) - frame_bits(v.input_hw) / bandwidth_bps) / self.service_factor
            fleet_fps = np.zeros(len(clients))
            for ki, (kind, n) in enumerate(kinds.items()):
                thr = profiles.throughputs_fps(kind, v.name, batch_s)
                fast[vi, ki] = thr > 0
                fleet_fps += n * thr
            ok = fleet_fps > 0
            loads[vi, ok] = fps[ok] / fleet_fps[ok]
        names = list(kinds)
        by_accuracy = sorted(range(len(variants)), key=lambda vi: variants[vi].accuracy_pct)
        finite = np.isfinite(loads).T.tolist()
        out = []
        for ci, client in enumerate(clients):
            keep: list[int] = []
            for vi in by_accuracy:  # feasible ones that raise accuracy
                if finite[ci][vi] and (not keep or variants[vi].accuracy_pct > variants[keep[-1]].accuracy_pct):
                    keep.append(vi)
            if not keep:  # nothing fits the budget: the cheapest variant, best effort, on any kind
                full = sum(n * profiles.throughput_fps(k, variants[0].name, math.inf) for k, n in kinds.items())
                load = client.fps / full if full > 0 else math.inf
                out.append(_Choice(client, [variants[0]], [load], [tuple(names)]))
                continue
            start = min(range(len(keep)), key=lambda j: loads[keep[j], ci])
            keep = keep[start:]
            options = [variants[vi] for vi in keep]
            option_loads = [float(loads[vi, ci]) for vi in keep]
            option_kinds = [tuple(k for ki, k in enumerate(names) if fast[vi, ki, ci]) for vi in keep]
            out.append(_Choice(client, options, option_loads, option_kinds))
        return out

    @staticmethod
    def _push(heap: list[tuple[float, int]], i: int, ch: _Choice) -> None:
        if ch.index + 1 >= len(ch.options):
            return
        gain = ch.client.fps * (ch.options[ch.index + 1].accuracy_pct - ch.options[ch.index].accuracy_pct)
        extra = max(ch.load[ch.index + 1] - ch.load[ch.index], 1e-9)
        heapq.heappush(heap, (-gain / extra, i))


@runtime_checkable
class StreamPlanning(Protocol):
    """A policy that plans each stream's variant from the clients' reports (`replan`) and keeps the plans
    (`timeline`), so a driver that simulates the clients can upload each frame at its planned variant."""

    timeline: PlanTimeline

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostView
    ) -> StreamPlan: ...


class StreamObserver:
    """What the serving side learns of each client stream from its arrivals (for re-planning without reports).

    Per stream over the last `window_s`: the frame rate, the end-to-end SLO (what was left of it at arrival plus
    the upload) and the uplink bandwidth, estimated from each frame's upload time and the size of the variant it
    was uploaded at (a frame that reports no upload time counts as a fast link)."""

    def __init__(self, window_s: float = 2.0, fast_link_mbps: float = 1000.0) -> None:
        self.window_s, self.fast_link_mbps = window_s, fast_link_mbps
        self._seen: dict[str, deque[tuple[float, int, float, float, str]]] = {}  # arrival, frames, slo, mbps, family

    def observe(self, now_s: float, request: Request, uploaded: Variant | None) -> None:
        mbps = self.fast_link_mbps
        if request.upload_s > 0 and uploaded is not None:
            mbps = frame_bits(uploaded.input_hw) / request.upload_s / 1e6
        seen = self._seen.setdefault(request.stream, deque())
        seen.append((now_s, request.n_frames, request.slo_s + request.upload_s, mbps, request.model))
        while seen and seen[0][0] < now_s - self.window_s:
            seen.popleft()

    def clients(self, now_s: float) -> list[ClientInfo]:
        """The streams seen within the window before `now_s`, as the planner's clients (changes nothing)."""
        out = []
        for stream, seen in self._seen.items():
            recent = [s for s in seen if s[0] >= now_s - self.window_s]
            if not recent:
                continue
            fps = sum(s[1] for s in recent) / self.window_s
            mbps = sum(s[3] for s in recent) / len(recent)
            out.append(ClientInfo(stream, recent[-1][4], fps, min(s[2] for s in recent), mbps))
        return out


class JetfleetVariantsPolicy(JetfleetPolicy):
    """The jetfleet policy serving each request with the variant planned for its stream (see module doc).

    Plans come from one of two inputs, through the same planner: the clients' own reports (a driver calls
    `replan` with each client's measured bandwidth, as Jellyfish's clients report theirs: the variant
    experiment does), or, every `replan_every_s` (the default, and what the live service does), the
    streams as observed from their arrivals (`StreamObserver`): `decide` asks to be woken then, plans, and
    hands the plan to `absorb` in its memo. `replan_every_s=None` turns the timer off.
    """

    name = "jetfleet-variants"

    def __init__(
        self,
        planner: JetfleetVariantPlanner | None = None,
        config: JetfleetConfig | None = None,
        *,
        replan_every_s: float | None = REPLAN_S,
    ) -> None:
        super().__init__(config or STREAM_CONFIG)
        if replan_every_s is not None and not replan_every_s > 0:
            raise ConfigError(f"jetfleet-variants: replan_every_s must be > 0 or None, got {replan_every_s}")
        self.planner = planner or JetfleetVariantPlanner()
        self.replan_every_s = replan_every_s
        self.timeline = PlanTimeline()
        self.streams_seen = StreamObserver()
        self._planned: dict[int, Request] = {}  # request id -> the request as its planned variant (a memo)

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostView
    ) -> StreamPlan:
        """Plan the streams' variants at `now_s` from the clients' reports and keep the plan."""
        plan = self.planner.replan(now_s, clients, devices, cost)
        self.timeline.add(plan)
        return plan

    def planned_variant(self, request: Request) -> str:
        """The variant the request's stream was planned for when its frame was captured (else its model)."""
        return self.timeline.variant_at(request.stream, request.arrival_s - request.upload_s) or request.model

    def variant_for(self, family: str, device: DeviceState, now_s: float) -> str | None:
        """`family` is the planned variant here: served only by the kinds the plan found fast enough for it."""
        plan = self.timeline.at(now_s)
        kinds = plan.kinds.get(family) if plan is not None else None
        if kinds is not None and device.kind not in kinds:
            return None
        settling = self._settle.get(device.name)
        if settling is not None and now_s < settling[0]:
            return None  # a clock change has not settled yet
        return super().variant_for(family, device, now_s)

    def absorb(self, applied: Applied) -> None:
        for r in applied.admitted:
            self.streams_seen.observe(applied.now_s, r, resolve(self.planned_variant(r)))
        if isinstance(applied.memo, StreamPlan):
            self.timeline.add(applied.memo)
        gone = [i for d in (*applied.dispatches, *applied.drops) for i in d.request_ids]
        for i in gone:
            self._planned.pop(i, None)
        planned = tuple(self._as_planned(r) for r in applied.admitted)
        memo = applied.memo if not isinstance(applied.memo, StreamPlan) else None
        super().absorb(replace(applied, admitted=planned, memo=memo))

    def decide(self, ctx: StepContext) -> Decisions:
        if len(self._planned) > 4 * len(ctx.queue) + 1024:  # requests answered outside a step (shutdown)
            self._planned = {i: r for i, r in self._planned.items() if i in ctx.queue}
        out = super().decide(ctx.replace(queue=_PlannedQueue(ctx.queue, self._as_planned)))
        out = self._keep_ready(ctx, out)
        plan, next_s = self._plan_timer(ctx)
        if plan is not None:
            out.memo = plan
        if next_s is not None:
            out.wake_at_s = min(out.wake_at_s if out.wake_at_s is not None else math.inf, next_s)
        return out

    def _as_planned(self, request: Request) -> Request:
        hit = self._planned.get(request.request_id)
        if hit is None:
            hit = self._planned[request.request_id] = replace(request, model=self.planned_variant(request))
        return hit

    def _plan_timer(self, ctx: StepContext) -> tuple[StreamPlan | None, float | None]:
        """(a new plan from the streams observed when one is due, when the next one is due); (None, None) when
        the timer is off or no stream was seen lately (an arrival wakes the policy anyway)."""
        if self.replan_every_s is None:
            return None, None
        clients = [c for c in self.streams_seen.clients(ctx.now_s) if c.family in FAMILIES]  # others: as they are
        if not clients:
            return None, None
        last_s = self.timeline.plans[-1].time_s if len(self.timeline) else -math.inf
        if ctx.now_s + 1e-9 < last_s + self.replan_every_s:
            return None, last_s + self.replan_every_s
        return self.planner.replan(ctx.now_s, clients, ctx.devices, ctx.cost), ctx.now_s + self.replan_every_s

    def _keep_ready(self, ctx: StepContext, out: Decisions) -> Decisions:
        """The plan, not idleness, decides clocks: a clock change takes 0.5-0.8 s on a Jetson, longer than
        these SLOs, so devices of kinds the plan serves stay at their top clock (parking is off in
        STREAM_CONFIG) and devices of kinds it does not serve rest at their lowest clock."""
        current = self.timeline.at(ctx.now_s)
        if current is None or not current.kinds:
            return out
        needed = {k for kinds in current.kinds.values() for k in kinds}
        busy = {d.device for d in out.dispatches} | {c.device for c in out.frequency_changes}
        for d in ctx.devices:
            target = d.max_freq_hz if d.kind in needed else d.min_freq_hz
            if d.healthy and d.name not in busy and d.idle(ctx.now_s) and abs(d.freq_hz - target) >= 1.0:
                why = "ready for the plan" if d.kind in needed else "not in the plan: rest"
                out.frequency_changes.append(SetFrequency(d.name, target, f"jetfleet-variants: {why}"))
        return out


class _PlannedQueue:
    """A read-only view of the queue whose requests name their planned variant as their model."""

    def __init__(self, queue: QueueView, as_planned: Callable[[Request], Request]) -> None:
        self._queue, self._as = queue, as_planned

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __iter__(self) -> Iterator[Request]:
        return map(self._as, self._queue)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._queue

    def get(self, request_id: int) -> Request:
        return self._as(self._queue.get(request_id))

    def by_deadline(self, not_before_s: float | None = None) -> Iterator[Request]:
        return map(self._as, self._queue.by_deadline(not_before_s))

    def count_due_before(self, t_s: float) -> int:
        return self._queue.count_due_before(t_s)

    def earliest(self) -> Request | None:
        r = self._queue.earliest()
        return None if r is None else self._as(r)

    def stream_counts(self) -> dict[str, int]:
        return self._queue.stream_counts()

    @property
    def frames(self) -> int:
        return self._queue.frames


@register("jetfleet-variants")
def _make_jetfleet_variants(arg: str | None) -> Policy:
    """`jetfleet-variants` or `jetfleet-variants:MAX_LOAD` (fleet load cap of the planner, default 0.75)."""
    if arg is None:
        return JetfleetVariantsPolicy()
    try:
        max_load = float(arg)
    except ValueError:
        raise ConfigError(f"jetfleet-variants: MAX_LOAD must be a number, got {arg!r}") from None
    return JetfleetVariantsPolicy(JetfleetVariantPlanner(max_load=max_load))
