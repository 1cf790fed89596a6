"""Stream configs from files, and arrivals generated from streams.

`load_stream_set(path)` reads a JSON/YAML stream config (see `policies.streams`). `stream_arrivals`
turns streams and an `ArrivalSpec` into requests:

- `lockstep`: every `interval_ms`, one request of each stream, in config order, `frames_per_stream`
  times (InferEdgeOrchestrator's overload scenarios: 20 frames each, one every 10 ms);
- `periodic`: each stream at its own `rate_fps` (times `rate_scale`), `frames_per_stream` requests each;
- `poisson`: each stream a Poisson process of `rate_fps * rate_scale` for `duration_s` (seeded).

Requests get the stream's priority, budget (as `slo_s`), model and frames; ids follow arrival order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jetfleet.config import read_config_file
from jetfleet.errors import ConfigError
from jetfleet.types import Request
from policies.streams import StreamConfig, StreamSet, stream_set_from_dict

PATTERNS = ("lockstep", "periodic", "poisson")
# What an experiment config (`simulator.overload`) adds to a stream config; a stream loader skips them.
EXPERIMENT_KEYS = ("name", "description", "source", "arrivals", "device", "fleet", "policies", "margins")


@dataclass(frozen=True)
class ArrivalSpec:
    """How the requests of a stream experiment arrive; see the module docstring."""

    pattern: str = "lockstep"
    frames_per_stream: int = 20
    interval_ms: float = 10.0  # lockstep
    rate_scale: float = 1.0  # periodic, poisson
    duration_s: float = 10.0  # poisson
    start_s: float = 0.0


def load_stream_set(path: str | Path, *, extra_keys: Sequence[str] = ()) -> StreamSet:
    """Read a stream config file (JSON or YAML); errors name the file, the stream and the field."""
    raw = read_config_file(path, "stream config file")
    return stream_set_from_dict(raw, str(path), extra_keys=extra_keys)


def arrival_spec_from_dict(raw: Any, source: str) -> ArrivalSpec:
    """Validate the `arrivals` section of an experiment config."""
    if raw is None:
        return ArrivalSpec()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: field 'arrivals': must be a mapping, got {raw!r}")
    known = set(ArrivalSpec.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: arrivals: unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
    spec = ArrivalSpec(**raw)
    if spec.pattern not in PATTERNS:
        known = ", ".join(PATTERNS)
        raise ConfigError(f"{source}: arrivals: field 'pattern': unknown {spec.pattern!r}; known: {known}")
    checks = {
        "frames_per_stream": isinstance(spec.frames_per_stream, int) and spec.frames_per_stream >= 1,
        "interval_ms": _num(spec.interval_ms) and spec.interval_ms > 0,
        "rate_scale": _num(spec.rate_scale) and spec.rate_scale > 0,
        "duration_s": _num(spec.duration_s) and spec.duration_s > 0,
        "start_s": _num(spec.start_s) and spec.start_s >= 0,
    }
    for name, ok in checks.items():
        if not ok:
            raise ConfigError(f"{source}: arrivals: field {name!r}: invalid value {getattr(spec, name)!r}")
    return spec


def stream_arrivals(streams: StreamSet, spec: ArrivalSpec, *, seed: int = 0) -> list[Request]:
    """Requests of every configured stream, in arrival order (ties in config order), ids from 0."""
    for s in streams.streams:
        if s.budget_ms is None:
            raise ConfigError(f"stream {s.name!r}: field 'budget_ms': required to generate arrivals")
        if spec.pattern != "lockstep" and s.rate_fps is None:
            raise ConfigError(f"stream {s.name!r}: field 'rate_fps': required by the {spec.pattern!r} pattern")
    rng = np.random.default_rng(seed)
    timed: list[tuple[float, int, StreamConfig]] = []
    for order, s in enumerate(streams.streams):
        for t in _times(s, spec, rng):
            timed.append((t, order, s))
    timed.sort(key=lambda x: (x[0], x[1]))
    return [
        Request(i, t, s.frames, s.budget_ms / 1000.0, s.model, priority=s.priority, stream=s.name)  # type: ignore[operator]
        for i, (t, _, s) in enumerate(timed)
    ]


def _times(s: StreamConfig, spec: ArrivalSpec, rng: np.random.Generator) -> list[float]:
    n = spec.frames_per_stream
    if spec.pattern == "lockstep":
        return [spec.start_s + k * spec.interval_ms / 1000.0 for k in range(n)]
    rate = s.rate_fps * spec.rate_scale  # type: ignore[operator]
    if spec.pattern == "periodic":
        return [spec.start_s + k / rate for k in range(n)]
    count = int(rng.poisson(rate * spec.duration_s))
    return sorted(float(t) for t in rng.uniform(spec.start_s, spec.start_s + spec.duration_s, count))


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)
