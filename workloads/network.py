"""Client uplink bandwidth traces and the upload time of a frame, for network-aware SLO budgets.

A client (camera stream) uploads each frame before the server can queue it; the frame is resized to the
input resolution of the model variant the client was told to use, so a smaller variant also uploads
faster (`costmodel.variants.frame_bits`). The upload time comes out of the request's SLO budget.

Traces are piecewise-constant bandwidth in Mbit/s, one value per `step_s` seconds, repeating when a
run outlasts them. Generators are seeded and pure:

- `wifi_trace`: Wi-Fi-like, about 13-91 Mbit/s, mean about 52 (a mean-reverting AR(1) walk, clipped);
- `lte_trace`: LTE-uplink-like, about 3-26 Mbit/s, mean about 15 (more volatile);
- `step_trace`: the synthetic 20, 15, 10, 7.5, 10, 15, 20 Mbit/s staircase, each level held `hold_s`.

The Wi-Fi and LTE ranges are those of the traces Jellyfish (Nguyen et al., Middleware 2022) evaluated
with; the generators reproduce their range and mean, not their exact samples. `load_trace` reads a
measured trace: one value (Mbit/s) per line, `#` comments and blank lines skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jetfleet.errors import ConfigError, DataError

__all__ = [
    "STEP_LEVELS_MBPS",
    "TRACE_NAMES",
    "BandwidthTrace",
    "load_trace",
    "lte_trace",
    "make_trace",
    "step_trace",
    "upload_time_s",
    "wifi_trace",
]

STEP_LEVELS_MBPS = (20.0, 15.0, 10.0, 7.5, 10.0, 15.0, 20.0)


@dataclass(frozen=True)
class BandwidthTrace:
    """Piecewise-constant uplink bandwidth: `values_mbps[i]` holds over [i*step_s, (i+1)*step_s), cyclically."""

    name: str
    values_mbps: np.ndarray = field(repr=False)
    step_s: float = 1.0

    def __post_init__(self) -> None:
        v = np.asarray(self.values_mbps, dtype=float)
        if v.ndim != 1 or v.size == 0:
            raise DataError(f"trace {self.name!r}: needs at least one bandwidth value")
        if not np.all(np.isfinite(v) & (v > 0)):
            bad = int(np.flatnonzero(~(np.isfinite(v) & (v > 0)))[0])
            raise DataError(f"trace {self.name!r}: value #{bad + 1} must be a positive Mbit/s, got {v[bad]}")
        if not self.step_s > 0:
            raise ConfigError(f"trace {self.name!r}: step_s must be > 0, got {self.step_s}")
        object.__setattr__(self, "values_mbps", v)

    @property
    def duration_s(self) -> float:
        """Length of one cycle of the trace."""
        return self.step_s * len(self.values_mbps)

    @property
    def mean_mbps(self) -> float:
        return float(self.values_mbps.mean())

    def at(self, t_s: float) -> float:
        """Bandwidth (Mbit/s) at time `t_s` (the trace repeats)."""
        return float(self.values_mbps[int(math.floor(t_s / self.step_s)) % len(self.values_mbps)])

    def mean_over(self, start_s: float, end_s: float) -> float:
        """Time-averaged bandwidth over [start_s, end_s] (what a client-side estimator would report)."""
        if end_s <= start_s:
            return self.at(start_s)
        bits = 0.0
        t = start_s
        while t < end_s:
            edge = min(end_s, (math.floor(t / self.step_s) + 1) * self.step_s)
            bits += self.at(t) * (edge - t)
            t = edge
        return bits / (end_s - start_s)


def upload_time_s(trace: BandwidthTrace, start_s: float, bits: float) -> float:
    """Seconds to push `bits` through the trace starting at `start_s`, across bandwidth changes."""
    if bits <= 0:
        return 0.0
    t, left = start_s, float(bits)
    for _ in range(1_000_000):
        rate_bps = trace.at(t) * 1e6
        edge = (math.floor(t / trace.step_s) + 1) * trace.step_s
        if rate_bps * (edge - t) >= left:
            return t + left / rate_bps - start_s
        left -= rate_bps * (edge - t)
        t = edge
    raise DataError(f"trace {trace.name!r}: {bits:.0f} bits do not finish uploading")  # pragma: no cover


def _ar1(rng: np.random.Generator, n: int, mean: float, std: float, phi: float, lo: float, hi: float) -> np.ndarray:
    noise = rng.normal(0.0, std * math.sqrt(1.0 - phi * phi), n)
    out = np.empty(n)
    x = mean + rng.normal(0.0, std)
    for i in range(n):
        x = mean + phi * (x - mean) + noise[i]
        x = min(max(x, lo), hi)
        out[i] = x
    return out


def wifi_trace(duration_s: float = 300.0, *, seed: int = 0, step_s: float = 1.0) -> BandwidthTrace:
    """Wi-Fi-like uplink: mean about 52 Mbit/s within 13-91."""
    n = _steps(duration_s, step_s)
    values = _ar1(np.random.default_rng(seed), n, 52.0, 16.0, 0.9, 13.0, 91.0)
    return BandwidthTrace(f"wifi-s{seed}", values, step_s)


def lte_trace(duration_s: float = 300.0, *, seed: int = 0, step_s: float = 1.0) -> BandwidthTrace:
    """LTE-uplink-like: mean about 15 Mbit/s within 3-26, faster swings than Wi-Fi."""
    n = _steps(duration_s, step_s)
    values = _ar1(np.random.default_rng(seed + 7919), n, 14.5, 5.5, 0.8, 3.0, 26.0)
    return BandwidthTrace(f"lte-s{seed}", values, step_s)


def step_trace(hold_s: float = 10.0, levels_mbps: Sequence[float] = STEP_LEVELS_MBPS) -> BandwidthTrace:
    """The synthetic staircase 20, 15, 10, 7.5, 10, 15, 20 Mbit/s, each level held for `hold_s` seconds."""
    return BandwidthTrace("step", np.asarray(levels_mbps, dtype=float), hold_s)


TRACE_NAMES = ("wifi", "lte", "step")


def make_trace(name: str, duration_s: float = 300.0, *, seed: int = 0) -> BandwidthTrace:
    """A trace by name: `wifi`, `lte`, `step`, or a path to a one-value-per-line file."""
    if name == "wifi":
        return wifi_trace(duration_s, seed=seed)
    if name == "lte":
        return lte_trace(duration_s, seed=seed)
    if name == "step":
        return step_trace(hold_s=max(duration_s / len(STEP_LEVELS_MBPS), 1e-3))
    if Path(name).suffix or Path(name).exists():
        return load_trace(name)
    raise ConfigError(f"unknown bandwidth trace {name!r}; known: {', '.join(TRACE_NAMES)} or a file path")


def load_trace(path: str | Path, *, step_s: float = 1.0) -> BandwidthTrace:
    """Read a trace file: one bandwidth value in Mbit/s per line; `#` comments and blank lines skipped."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read bandwidth trace: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    values = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{path}:{number}: expected one bandwidth value in Mbit/s, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"{path}:{number}: bandwidth must be a positive finite Mbit/s, got {text!r}")
        values.append(value)
    if not values:
        raise DataError(f"{path}: no bandwidth values (one Mbit/s value per line expected)")
    return BandwidthTrace(path.stem, np.asarray(values), step_s)


def _steps(duration_s: float, step_s: float) -> int:
    if not (duration_s > 0 and step_s > 0):
        raise ConfigError(f"trace needs duration_s > 0 and step_s > 0, got {duration_s}, {step_s}")
    return max(1, int(math.ceil(duration_s / step_s)))
