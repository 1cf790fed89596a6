"""Placing applications onto a fleet: model-driven (after Ibis) against memory-only knapsack baselines.

Methods (apps are placed one by one, in file order, as they would arrive at a cluster manager):

- ``first-fit``: the first device with enough free memory; every app gets its own container with its own
  copy of the model (engine memory + front-end memory). Memory is the only check.
- ``best-fit``: the same, on the device that has the least memory left after placing it.
- ``model``: apps of the same model on one device share one loaded engine (Ibis's model-as-a-service: its
  `is_memory_feasible` counts no backend memory for a model the node already runs), and a device is
  feasible only if the co-location model (`costmodel.colocation.engine_ps_response_s`: each engine an
  exact dynamic-batching queue, engines sharing the GPU by processor sharing) predicts the mean response
  time of every app on it, those already there and the new one, within its SLO less a safety `margin`.
  The default margin, 6 % (`DEFAULT_MARGIN`), covers the largest error of processor sharing against Ibis's
  Jetson Nano TensorRT measurements (3.7 %) plus the model's largest under-estimate on shared devices
  against the simulation (2.3 %). There is no flat load cap unless
  `max_utilisation` asks for one (Ibis's `SYSTEM_THRESHOLD` is 0.8): the SLO check is the admission test.
  Among feasible devices: the slowest kind that still meets the SLO (fast devices stay free for the apps
  only they can serve), then one already running the model (no new engine; its batches grow), then the
  device with the most memory left (a new model gets a device of its own while there is one, so engines
  batch and are not slowed by co-tenants).

Violations are *not* judged by the model: `check_placement` runs every device's apps in the co-location
event simulation (`costmodel.colocation_sim`, Poisson arrivals, one engine per loaded model, processor
sharing between engines) and flags every app whose simulated mean response time exceeds its SLO (Ibis's
criterion); p95 and the fraction of requests over the SLO are reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cluster.apps import AppsConfig, AppSpec
from cluster.inventory import Fleet
from costmodel.colocation import Tenant, engine_ps_response_s, engine_work
from costmodel.colocation_sim import CoEngine, CoStream, simulate_colocation
from costmodel.device_models import device_model
from costmodel.variants import resolve
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError, UnknownNameError

METHODS = ("model", "first-fit", "best-fit")
# Safety margin of the model method, the sum of two measured errors: processor sharing against Ibis's Jetson
# Nano TensorRT measurements, at most 3.7 % (ResNet50 1.2, YOLOv4-tiny 3.7, EfficientNet-B3 1.3 %;
# `jetfleet colocation`; tests/test_placement.py re-derives it from ../shared/data when present), plus the
# shared-engine approximation's largest under-estimate against the simulation, 2.3 % (54 two-engine Nanos,
# `costmodel.colocation.engine_states`). On the shipped sets any margin from 0 to 9.5 % places the same.
DEFAULT_MARGIN = 0.06

__all__ = [
    "DEFAULT_MARGIN",
    "METHODS",
    "AppOutcome",
    "Host",
    "PlacementResult",
    "check_placement",
    "place",
    "run_placement",
]


@dataclass
class Host:
    """One device as placement sees it: memory budget, apps placed, models loaded."""

    name: str
    kind: str
    usable_mb: float
    shared_engines: bool  # model method: one engine per model; knapsack: one per app
    max_batch: int = 1  # engines batch up to this many waiting requests
    apps: list[AppSpec] = field(default_factory=list)
    used_mb: float = 0.0

    def models(self) -> set[str]:
        return {a.model for a in self.apps}

    def memory_for(self, app: AppSpec, config: AppsConfig) -> float:
        """Memory placing `app` here would add."""
        engine_mb = config.memory.engine_memory_mb(app.model)
        if self.shared_engines and app.model in self.models():
            engine_mb = 0.0
        return engine_mb + config.memory.frontend_mb

    def tenants(self, config: AppsConfig, extra: AppSpec | None = None) -> list[Tenant]:
        """The engines on this device as queueing tenants (rates summed over the apps sharing one)."""
        apps = [*self.apps, extra] if extra is not None else self.apps
        rates: dict[str, float] = {}
        models: dict[str, str] = {}
        for a in apps:
            key = a.model if self.shared_engines else a.name
            rates[key] = rates.get(key, 0.0) + a.rate_hz
            models[key] = a.model
        out = []
        for key, rate in rates.items():
            service_s = config.service_time_s(self.kind, models[key])
            curve = config.batch_curve(self.kind, models[key]) if self.max_batch > 1 else None
            out.append(Tenant(key, service_s, rate, self.max_batch, curve))
        return out


@dataclass
class AppOutcome:
    """One app's placement and how it fared."""

    app: str
    model: str
    rate_hz: float
    slo_ms: float
    device: str | None
    predicted_ms: float | None = None  # the co-location model's mean response time (incl. overhead)
    simulated_mean_ms: float | None = None
    simulated_p95_ms: float | None = None
    over_slo_pct: float | None = None  # % of its simulated requests that finished after the SLO
    violation: bool = False


@dataclass
class PlacementResult:
    """What `jetfleet place` reports."""

    method: str
    apps_file: str
    fleet: str
    apps: int
    hosted: int
    violations: int
    hosted_without_violation: int
    assignment: dict[str, str | None]
    devices: list[dict[str, Any]]
    outcomes: list[AppOutcome]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcomes"] = [_round(asdict(o)) for o in self.outcomes]
        return d


def _hosts(config: AppsConfig, fleet: Fleet, shared: bool, max_batch: int) -> list[Host]:
    return [Host(d.name, d.kind, config.memory.usable_mb(d.kind), shared, max_batch) for d in fleet.devices]


def _predicted_s(host: Host, config: AppsConfig, extra: AppSpec | None = None) -> dict[str, float]:
    """Model-predicted mean response time (overhead included) of every app on `host` (+ `extra`)."""
    response = engine_ps_response_s(host.tenants(config, extra))
    apps = [*host.apps, extra] if extra is not None else host.apps
    return {a.name: response[a.model if host.shared_engines else a.name] + a.overhead_s for a in apps}


def _feasible_by_model(host: Host, app: AppSpec, config: AppsConfig, margin: float, max_util: float | None) -> bool:
    """Every app on `host`, `app` included, predicted within its SLO less `margin` (and under the cap)."""
    if max_util is not None and engine_work(host.tenants(config, app)) > max_util:
        return False
    predicted = _predicted_s(host, config, app)
    slo = {a.name: a.slo_s for a in [*host.apps, app]}
    return all(predicted[name] <= slo[name] * (1.0 - margin) for name in predicted)


def place(
    config: AppsConfig,
    fleet: Fleet,
    method: str,
    *,
    margin: float = DEFAULT_MARGIN,
    max_utilisation: float | None = None,
    max_batch: int = 8,
) -> list[Host]:
    """Place the config's apps on the fleet with `method`, one by one in file order (as they arrive);
    returns the hosts with their apps. `margin` and `max_utilisation` (None: no cap) apply to `model`."""
    if method not in METHODS:
        raise UnknownNameError("placement method", method, METHODS)
    if not 0.0 <= margin < 1.0:
        raise ConfigError(f"placement margin (--margin) must be in [0, 1), got {margin}")
    if max_utilisation is not None and not 0.0 < max_utilisation <= 1.0:
        raise ConfigError(f"placement cap (--max-utilisation) must be in (0, 1], got {max_utilisation}")
    hosts = _hosts(config, fleet, shared=(method == "model"), max_batch=max_batch)
    for app in config.expand():
        fits = [h for h in hosts if h.used_mb + h.memory_for(app, config) <= h.usable_mb + 1e-9]
        if method == "model":
            fits = [h for h in fits if _feasible_by_model(h, app, config, margin, max_utilisation)]
        if not fits:
            continue
        if method == "first-fit":
            host = fits[0]
        elif method == "best-fit":
            host = min(fits, key=lambda h: h.usable_mb - h.used_mb - h.memory_for(app, config))
        else:
            host = min(fits, key=lambda h: _model_score(h, app, config, hosts))
        host.used_mb += host.memory_for(app, config)
        host.apps.append(app)
    return hosts


def _model_score(host: Host, app: AppSpec, config: AppsConfig, hosts: Sequence[Host]) -> tuple:
    """Lower is better. First the slowest kind that still meets the SLO (fast devices stay free for the apps
    only they can serve), then the smallest share of the device's compute and memory the app would take
    (sharing a loaded engine is cheap), then the device with the most memory left (a new engine there
    leaves room for the apps that will share it). Packing choices measured worse on the Ibis-like set
    (docs/seeds/ibis.md): they mix models early, which costs batching and PS slow-down."""
    added = app.rate_hz * config.service_time_s(host.kind, app.model)
    memory = host.memory_for(app, config) / max(host.usable_mb, 1e-9)
    free = (host.usable_mb - host.used_mb) / max(host.usable_mb, 1e-9)
    return (-round(added, 6), round(added + memory, 6), -round(free, 6), hosts.index(host))


def check_placement(
    hosts: Sequence[Host], config: AppsConfig, *, duration_s: float = 300.0, seed: int = 0
) -> dict[str, AppOutcome]:
    """Simulate every device's apps (not the model) and judge each app against its SLO."""
    out: dict[str, AppOutcome] = {}
    for index, host in enumerate(hosts):
        if not host.apps:
            continue
        engines, streams = [], []
        for t in host.tenants(config):
            engines.append(CoEngine(t.name, t.service_s, t.max_batch, t.batch_latency_s))
        for a in host.apps:
            key = a.model if host.shared_engines else a.name
            streams.append(CoStream(a.name, key, a.rate_hz, a.slo_s, offset_s=a.overhead_s))
        sim = simulate_colocation(engines, streams, duration_s=duration_s, seed=seed * 1009 + index)
        predicted = _predicted_s(host, config)
        for a in host.apps:
            lat = sim[a.name]
            out[a.name] = AppOutcome(
                a.name,
                a.model,
                a.rate_hz,
                a.slo_s * 1000,
                host.name,
                predicted_ms=predicted[a.name] * 1000,
                simulated_mean_ms=lat.mean_s * 1000,
                simulated_p95_ms=lat.p95_s * 1000,
                over_slo_pct=100.0 * lat.miss_rate,
                violation=not (lat.mean_s <= a.slo_s),  # nan (no completions) counts as a violation
            )
    return out


def _device_summary(host: Host, config: AppsConfig) -> dict[str, Any]:
    tenants = host.tenants(config) if host.apps else []
    load = engine_work(tenants) if tenants else 0.0
    return {
        "device": host.name,
        "kind": host.kind,
        "apps": [a.name for a in host.apps],
        "engines": len(tenants),
        "memory_used_mb": round(host.used_mb, 1),
        "memory_usable_mb": round(host.usable_mb, 1),
        "utilisation": round(load, 4),
        "predicted_power_w": round(_power_w(host.kind, load, host.models()), 3) if host.apps else 0.0,
    }


def _power_w(kind: str, load: float, models: set[str]) -> float:
    """Board power at this load: idle at the top clock plus the busy share of (busy - idle) power."""
    dm = device_model(kind)
    f = get_kind(kind).max_freq_hz
    idle = dm.idle_power_w(f)
    bases = [(v.base if (v := resolve(m)) is not None else m) for m in models]
    busy = max(dm.busy_power_w(b, 1, f) for b in bases) if bases else idle
    return idle + min(load, 1.0) * (busy - idle)


def run_placement(
    config: AppsConfig,
    fleet: Fleet,
    method: str,
    *,
    apps_file: str = "",
    margin: float = DEFAULT_MARGIN,
    max_utilisation: float | None = None,
    max_batch: int = 8,
    duration_s: float = 300.0,
    seed: int = 0,
) -> PlacementResult:
    """Place, then check by simulation; the result `jetfleet place --json` writes."""
    hosts = place(config, fleet, method, margin=margin, max_utilisation=max_utilisation, max_batch=max_batch)
    checked = check_placement(hosts, config, duration_s=duration_s, seed=seed)
    apps = config.expand()
    outcomes = [checked.get(a.name) or AppOutcome(a.name, a.model, a.rate_hz, a.slo_s * 1000, None) for a in apps]
    hosted = sum(o.device is not None for o in outcomes)
    violations = sum(o.violation for o in outcomes)
    return PlacementResult(
        method=method,
        apps_file=apps_file,
        fleet=fleet.name,
        apps=len(apps),
        hosted=hosted,
        violations=violations,
        hosted_without_violation=hosted - violations,
        assignment={o.app: o.device for o in outcomes},
        devices=[_device_summary(h, config) for h in hosts],
        outcomes=outcomes,
        settings={
            "margin": margin,
            "max_utilisation": max_utilisation,
            "max_batch": max_batch,
            "duration_s": duration_s,
            "seed": seed,
        },
    )


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v) for k, v in d.items()}
