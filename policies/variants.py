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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from cluster.catalogue import get_kind
from costmodel.base import CostModel
from costmodel.variants import Variant, family_variants, frame_bits, resolve
from jetfleet.types import Decisions, DeviceState, Drop, Request, SetFrequency
from policies.base import Policy
from policies.jetfleet import JetfleetConfig, JetfleetPolicy
from policies.planning import Margins
from policies.queue import RequestQueue
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
            raise ValueError(f"plan at {plan.time_s} s is older than the last one at {self._times[-1]} s")
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
    """Latency and energy of each (kind, variant) at the kind's top clock for batches 1..max_batch."""

    def __init__(self, cost: CostModel) -> None:
        self.cost = cost
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._best: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}  # latency, best fps up to batch b

    def arrays(self, kind: str, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(latency_s, energy_j), each indexed by batch - 1."""
        key = (kind, variant)
        hit = self._cache.get(key)
        if hit is None:
            k = get_kind(kind)
            batches = np.arange(1, k.max_batch + 1)
            grid = self.cost.predict_grid(kind, variant, np.array([k.max_freq_hz]), batches)
            hit = self._cache[key] = (np.asarray(grid.latency_s[0]), np.asarray(grid.energy_j[0]))
        return hit

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
        hit = self._best.get((kind, variant))
        if hit is None:
            lat, _ = self.arrays(kind, variant)
            best = np.maximum.accumulate(np.arange(1, len(lat) + 1) / lat)
            hit = self._best[(kind, variant)] = (lat, np.concatenate([[0.0], best]))
        lat, best = hit
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
            raise ValueError(
                f"need 0 < max_load <= 1, 0 < bandwidth_safety <= 1, service_factor >= 1, margin >= 0; got "
                f"{max_load}, {bandwidth_safety}, {service_factor}, {margin}"
            )
        self.max_load, self.bandwidth_safety = max_load, bandwidth_safety
        self.service_factor, self.margin = service_factor, margin
        self._profiles: VariantProfiles | None = None

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostModel
    ) -> StreamPlan:
        """The variant of every client stream from now on."""
        if self._profiles is None or self._profiles.cost is not cost:
            self._profiles = VariantProfiles(cost)
        kinds = Counter(d.kind for d in devices if d.healthy)
        choices: list[_Choice] = []
        for family in dict.fromkeys(c.family for c in clients):
            choices += self._options([c for c in clients if c.family == family], family, kinds)
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

    def _options(self, clients: list[ClientInfo], family: str, kinds: Counter[str]) -> list[_Choice]:
        """Each client's feasible variants (ascending accuracy, from its cheapest), their loads and kinds."""
        profiles = self._profiles
        assert profiles is not None
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


class JetfleetVariantsPolicy(JetfleetPolicy):
    """The jetfleet policy serving each request with the variant planned for its stream (see module doc)."""

    name = "jetfleet-variants"

    def __init__(
        self, planner: JetfleetVariantPlanner | None = None, config: JetfleetConfig | None = None, **kwargs: object
    ) -> None:
        super().__init__(config or STREAM_CONFIG, **kwargs)  # type: ignore[arg-type]
        self.planner = planner or JetfleetVariantPlanner()
        self.timeline = PlanTimeline()
        self._mirror = RequestQueue()
        self._current: StreamPlan | None = None
        self._now_s = 0.0
        self._settling: dict[str, float] = {}  # device -> when a clock change of `_keep_ready` settles

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostModel
    ) -> StreamPlan:
        """Plan the streams' variants at `now_s` and keep the plan for the requests it will govern."""
        plan = self.planner.replan(now_s, clients, devices, cost)
        self.timeline.add(plan)
        return plan

    def planned_variant(self, request: Request) -> str:
        """The variant the request's stream was planned for when its frame was captured (else its model)."""
        return self.timeline.variant_at(request.stream, request.arrival_s - request.upload_s) or request.model

    def admit(self, now_s: float, request: Request, queue: RequestQueue) -> list[Drop]:
        mirrored = replace(request, model=self.planned_variant(request))
        self._mirror.add(mirrored)
        return super().admit(now_s, mirrored, self._mirror)

    def variant_for(self, family: str, device: DeviceState) -> str | None:
        """`family` is the planned variant here: served only by the kinds the plan found fast enough for it."""
        kinds = self._current.kinds.get(family) if self._current is not None else None
        if kinds is not None and device.kind not in kinds:
            return None
        if self._now_s < self._settling.get(device.name, -math.inf):
            return None  # a clock change this layer asked for has not settled yet
        return super().variant_for(family, device)

    def decide(self, now_s: float, queue: RequestQueue, devices: Sequence[DeviceState], cost: CostModel) -> Decisions:
        self._current = self.timeline.at(now_s)
        self._now_s = now_s
        gone = [r.request_id for r in self._mirror if r.request_id not in queue]
        if gone:
            self._mirror.remove(gone)
        if len(self._mirror) != len(queue):  # requests re-queued after a device failure come back here
            for r in queue:
                if r.request_id not in self._mirror:
                    self._mirror.add(replace(r, model=self.planned_variant(r)))
        out = super().decide(now_s, self._mirror, devices, cost)
        return self._keep_ready(now_s, out, devices)

    def _keep_ready(self, now_s: float, out: Decisions, devices: Sequence[DeviceState]) -> Decisions:
        """The plan, not idleness, decides clocks: a clock change takes 0.5-0.8 s on a Jetson, longer than
        these SLOs, so devices of kinds the plan serves stay at their top clock (parking is off in
        STREAM_CONFIG) and devices of kinds it does not serve rest at their lowest clock."""
        if self._current is None or not self._current.kinds:
            return out
        needed = {k for kinds in self._current.kinds.values() for k in kinds}
        busy = {d.device for d in out.dispatches} | {c.device for c in out.frequency_changes}
        for d in devices:
            kind = get_kind(d.kind)
            target = kind.max_freq_hz if d.kind in needed else kind.min_freq_hz
            if d.healthy and d.name not in busy and d.idle(now_s) and abs(d.freq_hz - target) >= 1.0:
                why = "ready for the plan" if d.kind in needed else "not in the plan: rest"
                out.frequency_changes.append(SetFrequency(d.name, target, f"jetfleet-variants: {why}"))
                self._settling[d.name] = now_s + kind.freq_change_delay_s
        return out


@register("jetfleet-variants")
def _make_jetfleet_variants(arg: str | None) -> Policy:
    """`jetfleet-variants` or `jetfleet-variants:MAX_LOAD` (fleet load cap of the planner, default 0.75)."""
    if arg is None:
        return JetfleetVariantsPolicy()
    return JetfleetVariantsPolicy(JetfleetVariantPlanner(max_load=float(arg)))
