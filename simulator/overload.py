"""The overload experiment: the same stream arrivals through FIFO and jetfleet, causally, in the simulator.

An experiment config is a stream config (`policies.streams`) plus:

    arrivals: {pattern: lockstep, frames_per_stream: 20, interval_ms: 10}   # workloads.streams.ArrivalSpec
    device:   {kind: cpu, busy_power_w: 15, max_batch: 1}   # the fixed-service device (streams give service_ms)
    fleet:    null                              # null: one such device; else a fleet name or an inventory mapping
    policies: {fifo: fifo, jetfleet: "overload:jetfleet"}   # label -> policy spec (this is the default)
    margins:  {abs_s: 0.0, rel: 0.0}            # jetfleet's safety margins against predictor error (optional)

`max_batch` caps the frames per batch of every policy (InferEdge's workers run one frame at a time); the
fixed-service cost model is exact, so the configs set jetfleet's margins to zero.

When the streams give `service_ms`, every device is a `costmodel.fixed.FixedServiceModel` with those
per-frame service times (batch b takes b times as long, at any frequency); otherwise the fleet's analytic
device models (`costmodel.device_models`) are the truth and the cost model. Requests arrive over time while
others run (the simulator is causal); the policy sees only what has arrived.

Per stream and policy: `executed`, `dropped` (and by reason), `p95_latency_ms` (end-to-end, queueing
included, nearest-rank as InferEdgeOrchestrator computes it), `budget_misses` (executed but completed after
arrival + budget; dropped requests are counted as dropped, not as misses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.inventory import Fleet, fleet_from_dict, load_fleet
from costmodel.base import CostModel, DeviceModel
from costmodel.device_models import OracleCostModel
from costmodel.fixed import FixedServiceCost, FixedServiceModel
from jetfleet.config import read_config_file
from jetfleet.errors import ConfigError
from jetfleet.telemetry import EventSink
from jetfleet.types import Outcome, OutcomeStatus, Request
from policies.base import Policy
from policies.jetfleet import JetfleetConfig, JetfleetPolicy
from policies.overload import FifoPolicy, OverloadControl, make_inner
from policies.planning import Margins
from policies.streams import StreamSet, stream_set_from_dict
from simulator.engine import default_device_models, simulate
from workloads.streams import EXPERIMENT_KEYS, ArrivalSpec, arrival_spec_from_dict, stream_arrivals

DEVICE_KEYS = ("kind", "busy_power_w", "idle_power_w", "max_batch")
DEFAULT_POLICIES = {"fifo": "fifo", "jetfleet": "overload:jetfleet"}
BUDGET_TOLERANCE_S = 1e-9  # float noise of a completion computed to land exactly on the deadline
P95_METHOD = "nearest-rank (ceil(0.95 n)-th smallest), as InferEdgeOrchestrator"


@dataclass(frozen=True)
class OverloadExperiment:
    """A validated experiment config."""

    name: str
    streams: StreamSet
    arrivals: ArrivalSpec
    fleet: Fleet
    device_models: Mapping[str, DeviceModel]
    cost: CostModel
    policies: Mapping[str, str]
    description: str = ""
    source: str = ""
    max_batch: int | None = None  # frames per batch any policy may run
    margins: Mapping[str, float] | None = None  # jetfleet's Margins(abs_s, rel); None: its defaults


def load_experiment(path: str | Path) -> OverloadExperiment:
    """Read and validate an experiment config (JSON or YAML); errors name the file, the stream and the field."""
    return experiment_from_dict(read_config_file(path, "experiment config"), str(path))


def experiment_from_dict(raw: Any, source: str = "<experiment>") -> OverloadExperiment:
    """Validate a parsed experiment config."""
    streams = stream_set_from_dict(raw, source, extra_keys=EXPERIMENT_KEYS)
    arrivals = arrival_spec_from_dict(raw.get("arrivals"), source)
    device = raw.get("device") or {}
    if not isinstance(device, Mapping) or set(device) - set(DEVICE_KEYS):
        bad = sorted(set(device) - set(DEVICE_KEYS)) if isinstance(device, Mapping) else [repr(device)]
        raise ConfigError(f"{source}: device: unknown field {bad[0]!r}; known: {', '.join(DEVICE_KEYS)}")
    fleet = _fleet(raw.get("fleet"), str(device.get("kind", "cpu")), source)
    device_models, cost = _truth(streams, fleet, device, source)
    max_batch = device.get("max_batch")
    if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
        raise ConfigError(f"{source}: device: field 'max_batch': must be an integer >= 1, got {max_batch!r}")
    margins = raw.get("margins")
    if margins is not None and (not isinstance(margins, Mapping) or set(margins) - {"abs_s", "rel"}):
        raise ConfigError(f"{source}: field 'margins': expected {{abs_s: seconds, rel: fraction}}, got {margins!r}")
    policies = raw.get("policies") or DEFAULT_POLICIES
    if not isinstance(policies, Mapping) or not all(isinstance(v, str) for v in policies.values()):
        raise ConfigError(f"{source}: field 'policies': must map labels to policy specs, got {policies!r}")
    return OverloadExperiment(
        name=str(raw.get("name") or Path(source).stem),
        streams=streams,
        arrivals=arrivals,
        fleet=fleet,
        device_models=device_models,
        cost=cost,
        policies=dict(policies),
        description=str(raw.get("description") or ""),
        source=str(raw.get("source") or ""),
        max_batch=max_batch,
        margins=dict(margins) if margins is not None else None,
    )


def _fleet(raw: Any, kind: str, source: str) -> Fleet:
    if raw is None:
        return fleet_from_dict({"name": "single", "devices": [{"name": "dev0", "kind": kind}]}, f"{source}: device")
    if isinstance(raw, str):
        return load_fleet(raw)
    return fleet_from_dict(raw, f"{source}: fleet")


def _truth(
    streams: StreamSet, fleet: Fleet, device: Mapping[str, Any], source: str
) -> tuple[dict[str, DeviceModel], CostModel]:
    fixed = [s for s in streams.streams if s.service_ms is not None]
    if not fixed:
        return default_device_models(fleet), OracleCostModel()
    if len(fixed) != len(streams.streams):
        missing = next(s.name for s in streams.streams if s.service_ms is None)
        raise ConfigError(f"{source}: stream {missing!r}: field 'service_ms': required when another stream has one")
    service: dict[str, float] = {}
    for s in fixed:
        if s.model in service and service[s.model] != s.service_ms / 1000.0:  # type: ignore[operator]
            raise ConfigError(f"{source}: stream {s.name!r}: field 'service_ms': model {s.model!r} has another")
        service[s.model] = s.service_ms / 1000.0  # type: ignore[operator]
    kinds = {d.kind for d in fleet.devices}
    models = {
        k: FixedServiceModel(k, service, float(device.get("busy_power_w", 15.0)), device.get("idle_power_w"))
        for k in kinds
    }
    return dict(models), FixedServiceCost(models)


def build_policy(experiment: OverloadExperiment, spec: str, label: str = "") -> Policy:
    """`fifo` (bounded as configured, no shedding) or `overload:INNER`, each with the experiment's streams."""
    name, _, arg = spec.partition(":")
    if name == "fifo":
        return FifoPolicy(experiment.streams)
    if name == "overload":
        inner_spec = arg or "jetfleet"
        if inner_spec == "jetfleet" and experiment.margins is not None:
            inner: Policy = JetfleetPolicy(JetfleetConfig(margins=Margins(**experiment.margins)))
        else:
            inner = make_inner(inner_spec)
        return OverloadControl(inner, experiment.streams, label=label or None, max_batch=experiment.max_batch)
    raise ConfigError(f"compare-overload: policy spec {spec!r}: expected 'fifo' or 'overload[:INNER]'")


# -- per-stream results -------------------------------------------------------------------------------
@dataclass
class StreamStats:
    """What one stream got in one run."""

    offered: int = 0  # requests that arrived
    executed: int = 0
    dropped: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    max_latency_ms: float | None = None
    budget_misses: int = 0  # executed, but completed after arrival + budget (queueing included)
    within_budget: int = 0
    unanswered: int = 0  # arrived, no outcome recorded (only in an events file cut short)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The ceil(q n)-th smallest value (InferEdgeOrchestrator's p95); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def _finish(stats: StreamStats, latencies_s: list[float]) -> StreamStats:
    def ms(x: float | None) -> float | None:
        return None if x is None else round(1000.0 * x, 3)

    stats.p50_latency_ms = ms(nearest_rank(latencies_s, 0.50))
    stats.p95_latency_ms = ms(nearest_rank(latencies_s, 0.95))
    stats.max_latency_ms = ms(max(latencies_s) if latencies_s else None)
    return stats


def stream_stats(requests: Sequence[Request], outcomes: Iterable[Outcome]) -> dict[str, StreamStats]:
    """Per-stream results of a run, from its requests and their outcomes."""
    by_id = {r.request_id: r for r in requests}
    stats: dict[str, StreamStats] = {}
    latencies: dict[str, list[float]] = {}
    for r in requests:
        stats.setdefault(r.stream, StreamStats()).offered += 1
        latencies.setdefault(r.stream, [])
    answered = set()
    for o in outcomes:
        r = by_id[o.request_id]
        answered.add(o.request_id)
        _count(stats[r.stream], latencies[r.stream], o.status is OutcomeStatus.COMPLETED, o.time_s, r, o.reason)
    for r in requests:
        if r.request_id not in answered:
            stats[r.stream].unanswered += 1
    return {s: _finish(st, latencies[s]) for s, st in stats.items()}


def _count(st: StreamStats, lat: list[float], done: bool, time_s: float, r: Request | _Seen, reason: str) -> None:
    if done:
        st.executed += 1
        lat.append(time_s - r.arrival_s)
        if time_s <= r.arrival_s + r.slo_s + BUDGET_TOLERANCE_S:
            st.within_budget += 1
        else:
            st.budget_misses += 1
    else:
        st.dropped += 1
        key = reason or "unexplained"
        st.dropped_by_reason[key] = st.dropped_by_reason.get(key, 0) + 1


@dataclass
class _Seen:
    """What an events file says of one request."""

    stream: str
    arrival_s: float
    slo_s: float


def events_stream_stats(events: Iterable[Mapping[str, Any]]) -> dict[str, StreamStats]:
    """Per-stream results from decision events (dicts as `DecisionEvent.to_json` writes them).

    Latency is the `complete` event's time minus the arrival; the budget is the arrival event's `slo_s`.
    A drop, shed or rejection without a reason counts under `unexplained`.
    """
    seen: dict[int, _Seen] = {}
    stats: dict[str, StreamStats] = {}
    latencies: dict[str, list[float]] = {}
    answered: set[int] = set()
    for e in events:
        kind = e.get("event")
        ids, streams = e.get("request_ids") or [], e.get("streams") or []
        if kind == "arrival":
            detail = e.get("detail") or {}
            for rid, stream in zip(ids, streams, strict=False):
                arrival_s = detail.get("arrival_s", e["time_s"])
                seen[rid] = _Seen(stream, arrival_s, detail.get("slo_s", math.inf))
                stats.setdefault(stream, StreamStats()).offered += 1
                latencies.setdefault(stream, [])
        elif kind in ("complete", "drop", "shed", "reject"):  # a rejection at admission counts as dropped
            for rid in ids:
                r = seen.get(rid)
                if r is None or rid in answered:
                    continue
                answered.add(rid)
                _count(stats[r.stream], latencies[r.stream], kind == "complete", e["time_s"], r, e.get("reason", ""))
    for rid, r in seen.items():
        if rid not in answered:
            stats[r.stream].unanswered += 1
    return {s: _finish(st, latencies[s]) for s, st in stats.items()}


# -- the comparison -----------------------------------------------------------------------------------
def run_policy(
    experiment: OverloadExperiment, label: str, spec: str, *, seed: int = 0, sink: EventSink | None = None
) -> tuple[Any, dict[str, StreamStats]]:
    """Simulate one policy on the experiment's arrivals; returns the SimResult and per-stream stats."""
    requests = stream_arrivals(experiment.streams, experiment.arrivals, seed=seed)
    policy = build_policy(experiment, spec, label)
    fleet, truth = experiment.fleet, experiment.device_models
    # data_path=False: the published service times are per frame on the device, whose streams are its own cameras
    result = simulate(
        requests, fleet, policy, experiment.cost, device_models=truth, seed=seed, sink=sink, data_path=False
    )
    return result, stream_stats(result.requests, result.outcomes)


def compare(
    experiment: OverloadExperiment,
    *,
    seed: int = 0,
    sinks: Mapping[str, EventSink] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every policy of the experiment; the JSON of `jetfleet compare-overload`."""
    out: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    for label, spec in experiment.policies.items():
        result, stats = run_policy(experiment, label, spec, seed=seed, sink=(sinks or {}).get(label))
        ordered = {s: stats[s].to_dict() for s in _stream_order(experiment, stats)}
        out[label] = ordered
        m = result.metrics
        runs[label] = {
            "policy": spec,
            "requests": m.requests,
            "completed": sum(st.executed for st in stats.values()),
            "dropped": sum(st.dropped for st in stats.values()),
            "energy_j": round(result.energy_j, 4),
            "frames_per_joule": round(m.frames_per_joule, 4) if math.isfinite(m.frames_per_joule) else None,
            "duration_s": round(result.end_s - result.start_s, 6),
            "decisions": result.decisions,
        }
        if on_done is not None:
            on_done(label)
    out["runs"] = runs
    out["experiment"] = _describe(experiment, seed)
    out["target"] = target_check(experiment, out)
    return out


def _stream_order(experiment: OverloadExperiment, stats: Mapping[str, StreamStats]) -> list[str]:
    names = [n for n in experiment.streams.names() if n in stats]
    return names + sorted(set(stats) - set(names))


def _describe(experiment: OverloadExperiment, seed: int) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "description": experiment.description,
        "source": experiment.source,
        "arrivals": asdict(experiment.arrivals),
        "fleet": [f"{d.name}:{d.kind}" for d in experiment.fleet.devices],
        "streams": {
            s.name: {k: v for k, v in asdict(s).items() if k != "name" and v is not None}
            for s in experiment.streams.streams
        },
        "max_batch": experiment.max_batch,
        "jetfleet_margins": experiment.margins,
        "seed": seed,
        "p95_method": P95_METHOD,
        "budget_miss": "executed and completed after arrival + budget_ms (queueing included)",
    }


def target_check(experiment: OverloadExperiment, out: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's target for the highest-priority stream: jetfleet p95 within budget and none dropped."""
    top = max(experiment.streams.streams, key=lambda s: s.priority)
    label = "jetfleet" if "jetfleet" in out else next((k for k in experiment.policies if k != "fifo"), None)
    if label is None or top.name not in out.get(label, {}):
        return {}
    st = out[label][top.name]
    p95 = st["p95_latency_ms"]
    ok = p95 is not None and top.budget_ms is not None and p95 <= top.budget_ms and st["dropped"] == 0
    return {
        "stream": top.name,
        "policy": label,
        "budget_ms": top.budget_ms,
        "p95_latency_ms": p95,
        "dropped": st["dropped"],
        "met": bool(ok),
    }
