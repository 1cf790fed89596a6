"""Seeded synthetic workloads: Poisson and bursty (on/off modulated Poisson) arrivals -> requests.

Both are pure functions of their arguments and `seed` (numpy's PCG64), so a benchmark or a property test
can regenerate exactly the same workload.
"""

from __future__ import annotations

import numpy as np

from jetfleet.errors import ConfigError
from jetfleet.types import DEFAULT_MODEL, Request


def poisson(
    rate_hz: float,
    duration_s: float,
    *,
    seed: int = 0,
    frames: tuple[int, int] = (1, 1),
    slo_s: tuple[float, float] = (1.0, 1.0),
    streams: int = 1,
    model: str = DEFAULT_MODEL,
    start_s: float = 0.0,
    id_offset: int = 0,
) -> list[Request]:
    """Requests arriving as a Poisson process of `rate_hz` over [start_s, start_s + duration_s).

    Frames per request are uniform integers in `frames` (inclusive), SLOs uniform in `slo_s`, streams
    assigned round-robin (`stream0`, `stream1`, ...).
    """
    _check(rate_hz, duration_s, frames, slo_s, streams)
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate_hz * duration_s))
    times = np.sort(rng.uniform(start_s, start_s + duration_s, n))
    return _requests(rng, times, frames, slo_s, streams, model, id_offset)


def bursty(
    rate_hz: float,
    duration_s: float,
    *,
    seed: int = 0,
    burst_factor: float = 5.0,
    on_fraction: float = 0.2,
    period_s: float = 10.0,
    frames: tuple[int, int] = (1, 1),
    slo_s: tuple[float, float] = (1.0, 1.0),
    streams: int = 1,
    model: str = DEFAULT_MODEL,
    start_s: float = 0.0,
    id_offset: int = 0,
) -> list[Request]:
    """On/off modulated Poisson arrivals with mean rate `rate_hz`.

    Time is cut into periods of `period_s`; the first `on_fraction` of each period runs at `burst_factor`
    times the off-rate. The rates are scaled so the long-run mean is `rate_hz`.
    """
    _check(rate_hz, duration_s, frames, slo_s, streams)
    if not (0 < on_fraction < 1 and burst_factor >= 1 and period_s > 0):
        raise ConfigError(
            f"bursty: need 0 < on_fraction < 1, burst_factor >= 1, period_s > 0; "
            f"got {on_fraction}, {burst_factor}, {period_s}"
        )
    rng = np.random.default_rng(seed)
    off_rate = rate_hz / (on_fraction * burst_factor + (1 - on_fraction))
    chunks = []
    t = start_s
    end_s = start_s + duration_s
    while t < end_s:
        on_end = min(t + on_fraction * period_s, end_s)
        off_end = min(t + period_s, end_s)
        for a, b, rate in ((t, on_end, off_rate * burst_factor), (on_end, off_end, off_rate)):
            if b > a:
                chunks.append(np.sort(rng.uniform(a, b, int(rng.poisson(rate * (b - a))))))
        t += period_s
    times = np.concatenate(chunks) if chunks else np.empty(0)
    return _requests(rng, times, frames, slo_s, streams, model, id_offset)


def _check(
    rate_hz: float, duration_s: float, frames: tuple[int, int], slo_s: tuple[float, float], streams: int
) -> None:
    if not (rate_hz > 0 and duration_s > 0):
        raise ConfigError(f"arrivals: rate_hz and duration_s must be > 0, got {rate_hz} and {duration_s}")
    if not (1 <= frames[0] <= frames[1]):
        raise ConfigError(f"arrivals: frames range must be 1 <= lo <= hi, got {frames}")
    if not (0 < slo_s[0] <= slo_s[1]):
        raise ConfigError(f"arrivals: slo_s range must be 0 < lo <= hi, got {slo_s}")
    if streams < 1:
        raise ConfigError(f"arrivals: streams must be >= 1, got {streams}")


def _requests(
    rng: np.random.Generator,
    times: np.ndarray,
    frames: tuple[int, int],
    slo_s: tuple[float, float],
    streams: int,
    model: str,
    id_offset: int,
) -> list[Request]:
    n = len(times)
    n_frames = rng.integers(frames[0], frames[1] + 1, n)
    slos = rng.uniform(slo_s[0], slo_s[1], n) if slo_s[1] > slo_s[0] else np.full(n, slo_s[0])
    return [
        Request(id_offset + i, float(times[i]), int(n_frames[i]), float(slos[i]), model, stream=f"stream{i % streams}")
        for i in range(n)
    ]
