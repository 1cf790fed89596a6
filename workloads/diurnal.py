"""A day of camera load: many cameras, a diurnal cycle, bursts; seeded and time-compressible.

Each camera sends a request every `period_s` carrying the frames that passed its motion filter (LoudVA's
cameras do the same: one request per second with "Frames After Filter"); an empty interval sends nothing.
The frames of one interval are Poisson with mean `peak_frames * activity(t)`, where

    activity(t) = trough + (1 - trough) * (1 - cos(2 pi (t_day - peak_at_h + 12 h) / 24 h)) / 2

is 1 at `peak_at_h` and `trough` twelve hours away, times a burst factor while the camera is in a burst (bursts
start as a Poisson process of `bursts_per_h` per camera and last `burst_s`). Every camera has one SLO class,
drawn once from `slo_classes` with their weights.

Time compression: `compress` = c squeezes the day's *shape* (the diurnal envelope and the burst clock) into
24 h / c of trace time, while every request keeps its real meaning (a camera's `period_s`, its frames per
interval, its SLO). A compressed day is a day whose hours pass c times faster; the load at each moment is that
of the hour it stands for. Pure function of its arguments and `seed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jetfleet.errors import ConfigError
from jetfleet.types import DEFAULT_MODEL, Request

__all__ = ["DiurnalSpec", "activity", "diurnal"]

DAY_S = 24 * 3600.0


@dataclass(frozen=True)
class DiurnalSpec:
    """The shape of the day (see the module docstring)."""

    cameras: int = 1000
    period_s: float = 1.0  # one request per camera per period (when frames passed the filter)
    peak_frames: float = 2.0  # mean frames per interval at the daily peak
    trough: float = 0.05  # activity at the quietest hour, relative to the peak
    peak_at_h: float = 15.0  # hour of the peak
    bursts_per_h: float = 0.5  # per camera, in (uncompressed) day hours
    burst_s: float = 120.0  # burst length in (uncompressed) day seconds
    burst_factor: float = 4.0  # activity multiplier during a burst
    slo_classes: tuple[tuple[float, float], ...] = ((2.0, 0.1), (6.0, 0.6), (15.0, 0.3))  # (slo_s, weight)
    hours: float = 24.0  # length of the trace in day hours
    start_h: float = 0.0  # the day hour the trace starts at
    compress: float = 1.0  # day hours pass this many times faster in the trace

    def __post_init__(self) -> None:
        positive = ("cameras", "period_s", "peak_frames", "hours", "compress", "burst_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"diurnal: {name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.trough <= 1 or self.burst_factor < 1 or self.bursts_per_h < 0:
            raise ConfigError("diurnal: need 0 <= trough <= 1, burst_factor >= 1, bursts_per_h >= 0")
        if not self.slo_classes or any(s <= 0 or w < 0 for s, w in self.slo_classes):
            raise ConfigError(f"diurnal: slo_classes need positive SLOs and weights, got {self.slo_classes}")

    @property
    def duration_s(self) -> float:
        """Trace length in trace seconds."""
        return self.hours * 3600.0 / self.compress


def activity(day_s: np.ndarray | float, trough: float, peak_at_h: float) -> np.ndarray:
    """The diurnal envelope at day time `day_s` (seconds since midnight): 1 at the peak, `trough` 12 h away."""
    phase = 2 * math.pi * (np.asarray(day_s, dtype=float) / 3600.0 - peak_at_h + 12.0) / 24.0
    return trough + (1.0 - trough) * (1.0 - np.cos(phase)) / 2.0


def diurnal(spec: DiurnalSpec, *, seed: int = 0, model: str = DEFAULT_MODEL, id_offset: int = 0) -> list[Request]:
    """The requests of `spec`'s cameras, sorted by arrival (ties by camera)."""
    rng = np.random.default_rng(seed)
    ticks = np.arange(0.0, spec.duration_s, spec.period_s)  # trace time of each interval
    day_s = spec.start_h * 3600.0 + ticks * spec.compress  # the day time each stands for
    base = spec.peak_frames * activity(day_s, spec.trough, spec.peak_at_h)
    slos = np.array([s for s, _ in spec.slo_classes])
    weights = np.array([w for _, w in spec.slo_classes], dtype=float)
    camera_slo = rng.choice(slos, size=spec.cameras, p=weights / weights.sum())
    phase = rng.uniform(0.0, spec.period_s, size=spec.cameras)  # cameras are not in lock-step
    times, cams, frames = [], [], []
    for cam in range(spec.cameras):
        mean = base * _burst_multiplier(rng, day_s, spec)
        n = rng.poisson(mean)
        sent = n > 0
        times.append(ticks[sent] + phase[cam])
        cams.append(np.full(int(sent.sum()), cam))
        frames.append(n[sent])
    t, c, f = np.concatenate(times), np.concatenate(cams), np.concatenate(frames)
    order = np.lexsort((c, t))
    return [
        Request(
            id_offset + i,
            float(t[j]),
            int(f[j]),
            float(camera_slo[c[j]]),
            model=model,
            stream=f"camera{int(c[j])}",
        )
        for i, j in enumerate(order.tolist())
    ]


def _burst_multiplier(rng: np.random.Generator, day_s: np.ndarray, spec: DiurnalSpec) -> np.ndarray:
    """`burst_factor` while one of this camera's bursts runs, else 1 (bursts on the day clock)."""
    span_s = spec.hours * 3600.0
    n = rng.poisson(spec.bursts_per_h * spec.hours)
    out = np.ones_like(day_s)
    if n:
        starts = spec.start_h * 3600.0 + rng.uniform(0.0, span_s, n)
        for s in starts:
            out[(day_s >= s) & (day_s < s + spec.burst_s)] = spec.burst_factor
    return out
