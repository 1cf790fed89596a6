"""A small discrete-event simulation of applications co-located on one accelerator.

It checks placements by *running* them, independently of the analytic model in `costmodel.colocation`
that chose them. Each device holds engines (a loaded model); each application sends a request stream to
one engine. An engine runs one job at a time (a request, or a batch of queued requests when
`max_batch > 1`), first come first served. Between engines the device is shared by one of two
disciplines:

- ``"ps"`` (GPU): processor sharing; every engine with a job in progress gets an equal share.
- ``"fcfs"`` (Edge TPU): one job at a time in arrival order over all engines; a job whose model differs
  from the one that ran last pays `switch_s` first.

With one engine per request class and bursts of one request each, ``"ps"`` is exactly the processor
sharing of Ibis's TensorRT measurements. Events live in one heap of ``(time, sequence, kind, payload)``;
the sequence number makes ties deterministic, as in SimPy. Completions are re-planned whenever the set
of active jobs changes, and stale completion events are recognised by a version number.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jetfleet.errors import ConfigError

__all__ = ["AppLatency", "CoEngine", "CoStream", "simulate_colocation"]

_ARRIVE, _DONE = 0, 1


@dataclass(frozen=True, slots=True)
class CoEngine:
    """A model loaded on the device. `batch_latency_s(b)` is the isolated time of a batch of b requests."""

    name: str
    service_s: float  # isolated time of one request
    max_batch: int = 1
    batch_latency_s: Callable[[int], float] | None = None

    def work_s(self, batch: int) -> float:
        """Isolated time of a batch of `batch` requests (linear in the batch without a batch curve)."""
        if batch == 1:
            return self.service_s
        return self.batch_latency_s(batch) if self.batch_latency_s is not None else self.service_s * batch


@dataclass(frozen=True, slots=True)
class CoStream:
    """One application's requests into one engine: Poisson (default) or periodic at `rate_hz`."""

    app: str
    engine: str
    rate_hz: float
    slo_s: float = math.inf
    periodic: bool = False
    offset_s: float = 0.0  # extra latency outside the device (network, pre-processing), added to each request


@dataclass(slots=True)
class AppLatency:
    """Simulated latency of one application's requests (warm-up excluded)."""

    app: str
    latencies_s: np.ndarray = field(repr=False)
    slo_s: float = math.inf

    @property
    def mean_s(self) -> float:
        return float(self.latencies_s.mean()) if len(self.latencies_s) else math.nan

    @property
    def p95_s(self) -> float:
        return float(np.percentile(self.latencies_s, 95)) if len(self.latencies_s) else math.nan

    @property
    def miss_rate(self) -> float:
        """Fraction of requests that finished after their SLO."""
        return float(np.mean(self.latencies_s > self.slo_s)) if len(self.latencies_s) else 0.0


@dataclass(slots=True)
class _Job:
    engine: str
    arrivals: list[tuple[float, int]]  # (arrival_s, stream index) of the requests it serves
    remaining_s: float


class _Device:
    """Engine queues plus the jobs in progress; applies the sharing discipline."""

    def __init__(self, engines: Sequence[CoEngine], discipline: str, switch_s: float) -> None:
        self.engines = {e.name: e for e in engines}
        self.queues: dict[str, deque[tuple[float, int]]] = {e.name: deque() for e in engines}
        self.fifo: deque[str] = deque()  # FCFS: engines in the order their requests arrived
        self.active: dict[str, _Job] = {}
        self.discipline = discipline
        self.switch_s = switch_s
        self.last_model: str | None = None

    def arrive(self, engine: str, arrival_s: float, stream: int) -> None:
        self.queues[engine].append((arrival_s, stream))
        if self.discipline == "fcfs":
            self.fifo.append(engine)

    def start_jobs(self) -> None:
        if self.discipline == "ps":
            for name, queue in self.queues.items():
                if queue and name not in self.active:
                    self._start(name)
        elif not self.active and self.fifo:
            name = self.fifo[0]
            job = self._start(name)
            for _ in job.arrivals:
                self.fifo.popleft()
            if self.last_model is not None and self.last_model != name:
                job.remaining_s += self.switch_s
            self.last_model = name

    def _start(self, name: str) -> _Job:
        engine, queue = self.engines[name], self.queues[name]
        take = 1 if self.discipline == "fcfs" else min(len(queue), engine.max_batch)
        arrivals = [queue.popleft() for _ in range(take)]
        job = _Job(name, arrivals, engine.work_s(take))
        self.active[name] = job
        return job

    def advance(self, dt_s: float) -> None:
        if not self.active or dt_s <= 0:
            return
        share = dt_s / len(self.active)
        for job in self.active.values():
            job.remaining_s -= share

    def next_done(self) -> tuple[float, str] | None:
        if not self.active:
            return None
        name, job = min(self.active.items(), key=lambda kv: (kv[1].remaining_s, kv[0]))
        return max(job.remaining_s, 0.0) * len(self.active), name


def _arrival_times(stream: CoStream, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    if stream.rate_hz <= 0:
        return np.empty(0)
    if stream.periodic:
        phase = rng.uniform(0, 1.0 / stream.rate_hz)
        return np.arange(phase, duration_s, 1.0 / stream.rate_hz)
    n = int(stream.rate_hz * duration_s * 1.3) + 20
    times = np.cumsum(rng.exponential(1.0 / stream.rate_hz, n))
    return times[times < duration_s]


def simulate_colocation(
    engines: Sequence[CoEngine],
    streams: Sequence[CoStream],
    *,
    discipline: str = "ps",
    switch_s: float = 0.0,
    duration_s: float = 120.0,
    warmup_s: float = 10.0,
    seed: int = 0,
    burst: bool = False,
) -> dict[str, AppLatency]:
    """Run the streams on one device; return each application's latencies (arrivals after `warmup_s`).

    `burst=True` replaces the arrival processes by one request per stream at t=0 (Ibis's measurement).
    """
    if discipline not in ("ps", "fcfs"):
        raise ConfigError(f"co-location discipline must be 'ps' or 'fcfs', got {discipline!r}")
    names = {e.name for e in engines}
    for s in streams:
        if s.engine not in names:
            raise ConfigError(f"stream of app {s.app!r} targets unknown engine {s.engine!r}; known: {sorted(names)}")
    rng = np.random.default_rng(seed)
    heap: list[tuple[float, int, int, object]] = []
    seq = 0
    for i, s in enumerate(streams):
        times = np.zeros(1) if burst else _arrival_times(s, duration_s, rng)
        for t in times:
            heap.append((float(t), seq, _ARRIVE, i))
            seq += 1
    heapq.heapify(heap)
    device = _Device(engines, discipline, switch_s)
    done: list[list[float]] = [[] for _ in streams]
    now_s, version = 0.0, 0
    while heap:
        t, _, kind, payload = heapq.heappop(heap)
        if kind == _DONE:
            stamp, name = payload  # type: ignore[misc]
            if stamp != version:
                continue  # superseded: the active set changed since it was planned
        device.advance(t - now_s)
        now_s = t
        if kind == _ARRIVE:
            s = streams[payload]  # type: ignore[index]
            device.arrive(s.engine, now_s, payload)  # type: ignore[arg-type]
        else:
            job = device.active.pop(name)
            for arrival_s, i in job.arrivals:
                if burst or arrival_s >= warmup_s:
                    done[i].append(now_s - arrival_s + streams[i].offset_s)
        device.start_jobs()
        version += 1
        nxt = device.next_done()
        if nxt is not None:
            heapq.heappush(heap, (now_s + nxt[0], seq, _DONE, (version, nxt[1])))
            seq += 1
    return _per_app(streams, done)


def _per_app(streams: Sequence[CoStream], done: list[list[float]]) -> dict[str, AppLatency]:
    out: dict[str, AppLatency] = {}
    for s, lat in zip(streams, done, strict=True):
        prev = out.get(s.app)
        arr = np.asarray(lat, float)
        if prev is not None:
            arr = np.concatenate([prev.latencies_s, arr])
        out[s.app] = AppLatency(s.app, arr, s.slo_s)
    return out
