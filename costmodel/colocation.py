"""Analytic latency of several DNN models sharing one accelerator (after Ibis, Liang et al., ACM TAAS 2023).

Two sharing disciplines, each in a steady-state form (Poisson arrivals, for placement) and a burst form
(all jobs arrive together, which is how Ibis measured co-location on real hardware):

- **GPU: processor sharing.** Concurrent TensorRT contexts on a Jetson time-slice the GPU; to a good
  approximation every active model gets an equal share. Steady state is the multi-class M/G/1-PS queue,
  whose mean response time is insensitive to the service-time distribution:
  ``R_i = s_i / (1 - rho)`` with ``rho = sum_j lambda_j s_j``.
  Jetfleet runs one engine per loaded model, FCFS with dynamic batching inside, so `engine_ps_response_s`
  refines this to PS *between engines*: each engine is solved exactly as a batching queue (an embedded
  Markov chain), with its batches stretched by the other engines in a mean-field fixed point.
- **Edge TPU: FCFS with a model-switch cost.** The TPU runs one request at a time in arrival order; when
  the next request needs a different model than the last one, its parameters are reloaded into on-chip
  memory, which adds ``switch_s``. Steady state is M/G/1 FCFS solved with Pollaczek-Khinchine, where a
  class-i request pays the switch with probability ``1 - lambda_i / lambda`` (its predecessor, a random
  earlier arrival, ran another model).

`validate_trt_ps` and `validate_edgetpu_fcfs` check the burst forms against Ibis's measurements
(../shared/data/ibis, github.com/umassos/ibis @ ac0f8d7, MIT): the isolated (`Sequential`) medians are the
service times, the `Concurrent` medians are what the model must predict. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from jetfleet.errors import DataError, InvalidRequestError

__all__ = [
    "EngineState",
    "Tenant",
    "batching_engine_s",
    "engine_states",
    "ValidationRow",
    "engine_ps_response_s",
    "engine_work",
    "fcfs_burst_completion_s",
    "fcfs_switch_response_s",
    "mean_abs_error_pct",
    "ps_burst_completion_s",
    "ps_response_s",
    "utilisation",
    "validate_edgetpu_fcfs",
    "validate_trt_ps",
]


@dataclass(frozen=True, slots=True)
class Tenant:
    """One model class sharing an accelerator: its isolated service time and its Poisson arrival rate."""

    name: str
    service_s: float  # isolated service time of one request (batch of one), seconds
    rate_hz: float  # mean arrival rate, requests per second
    max_batch: int = 1  # an engine may batch up to this many waiting requests (1: no batching)
    batch_latency_s: Callable[[int], float] | None = field(default=None, compare=False)  # isolated batch time

    def batch_s(self, batch: float) -> float:
        """Isolated time of a batch of `batch` requests (interpolated; linear without a batch curve)."""
        if batch <= 1 or self.batch_latency_s is None:
            return self.service_s * max(batch, 1.0)
        lo = int(math.floor(batch))
        hi = min(lo + 1, self.max_batch)
        a, b = self.batch_latency_s(lo), self.batch_latency_s(hi)
        return a + (b - a) * (batch - lo)

    def __post_init__(self) -> None:
        if not self.service_s > 0 or not math.isfinite(self.service_s):
            raise InvalidRequestError(f"tenant {self.name!r}: service_s must be > 0 and finite, got {self.service_s}")
        if not self.rate_hz >= 0 or not math.isfinite(self.rate_hz):
            raise InvalidRequestError(f"tenant {self.name!r}: rate_hz must be >= 0 and finite, got {self.rate_hz}")


def utilisation(tenants: Sequence[Tenant]) -> float:
    """Offered load rho = sum of rate x service time (>= 1 means the queue grows without bound)."""
    return sum(t.rate_hz * t.service_s for t in tenants)


def ps_response_s(tenants: Sequence[Tenant]) -> dict[str, float]:
    """Mean response time of each tenant under M/G/1 processor sharing; inf when rho >= 1."""
    rho = utilisation(tenants)
    if rho >= 1.0:
        return {t.name: math.inf for t in tenants}
    return {t.name: t.service_s / (1.0 - rho) for t in tenants}


@dataclass(frozen=True, slots=True)
class EngineState:
    """One engine's steady state as the co-location model sees it."""

    response_s: float  # mean response time (queueing + own batch), inf when the engine saturates
    busy: float  # fraction of time the engine has a batch in progress
    stretch: float  # factor by which the other engines slow its batches (1: alone on the device)
    work: float  # isolated compute it asks of the device per second (busy / stretch)


def batching_engine_s(rate_hz: float, batch_s: Sequence[float], *, max_states: int = 20_000) -> tuple[float, float]:
    """Mean response time and busy fraction of one engine with dynamic batching (exact, Poisson arrivals).

    The engine starts a batch as soon as it is free and requests wait, taking every waiting request up to
    ``B = len(batch_s)``; a batch of b takes ``batch_s[b - 1]``. Watched at batch ends, the number waiting
    is a Markov chain: from n it starts ``b = min(max(n, 1), B)`` (n = 0: idle until the next arrival)
    and ``n' = max(n, 1) - b + A`` with A ~ Poisson(rate x batch time). Its stationary law, with the area
    under the number in system over each batch (``n L + rate L^2 / 2``), gives the time-average number in
    system and, by Little's law, the mean response time. With B = 1 this is the M/D/1 queue.
    Returns ``(inf, 1.0)`` when the engine cannot keep up (``rate x batch_s[-1] >= B``), and also when the
    queue is so long that `max_states` waiting requests still hold probability (seconds of backlog at any
    rate a device serves: no SLO worth placing survives it).
    """
    times = np.asarray(batch_s, float)
    top = len(times)
    if rate_hz <= 0:
        return float(times[0]), 0.0
    load = rate_hz * times[-1] / top  # occupancy when every batch is full
    if load >= 0.999:
        return math.inf, 1.0
    states = min(max_states, top + 40 + int(2 * top * load / (1.0 - load)))
    while True:
        pi = _batch_chain_stationary(rate_hz, times, states)
        if pi[-top:].sum() < 1e-10:
            break
        if states >= max_states:
            return math.inf, 1.0
        states = min(2 * states, max_states)  # the truncation still holds probability: widen it
    n = np.arange(states)
    length = times[np.clip(n, 1, top) - 1]
    cycle_s = pi @ (length + (n == 0) / rate_hz)
    area = pi @ (np.maximum(n, 1) * length + rate_hz * length**2 / 2.0)
    return float(area / cycle_s / rate_hz), float(pi @ length / cycle_s)


def _batch_chain_stationary(rate_hz: float, times: np.ndarray, states: int) -> np.ndarray:
    """Stationary law of the number waiting at batch ends, truncated to `states` states (mass beyond the
    last state is kept in it). Banded solve: from n the chain moves down by at most B and up by the
    arrivals of one batch, whose Poisson tail is cut where it is negligible (< 1e-16)."""
    from scipy.linalg import solve_banded

    top = len(times)
    reach = int(math.ceil(rate_hz * times[-1] + 12.0 * math.sqrt(rate_hz * times[-1]) + 20))
    k = np.arange(reach + 1)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, reach + 1)))])
    pmf = np.array([np.exp(k * math.log(rate_hz * t) - rate_hz * t - log_fact) for t in times])
    # Balance equations pi = pi P for states 0..N-2 (the last, holding the lumped tail, is redundant),
    # unknowns pi_1..pi_{N-1} with pi_0 = 1: column c is state c + 1, row r is state r.
    lower, upper = reach, top - 1
    band = np.zeros((lower + upper + 1, states - 1))
    src = np.arange(1, states)
    size = np.minimum(src, top)
    dst = (src - size)[:, None] + k[None, :]
    rows = np.broadcast_to(src[:, None] - 1, dst.shape)
    keep = dst <= states - 2
    band[(upper + dst - rows)[keep], rows[keep]] = pmf[size - 1][keep]
    band[upper + 1, : states - 2] -= 1.0  # the identity: state c + 1 sits on row c + 1
    rhs = np.zeros(states - 1)
    first = min(reach + 1, states - 1)
    rhs[:first] = -pmf[0][:first]
    rhs[0] += 1.0
    pi = np.concatenate([[1.0], solve_banded((lower, upper), band, rhs)])
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def engine_states(tenants: Sequence[Tenant]) -> list[EngineState]:
    """Steady state of engines (one per tenant, FCFS with dynamic batching inside) sharing a GPU by PS.

    Each engine is the exact batching queue of `batching_engine_s`, its batch times stretched by the
    other engines' busy fractions, ``L'(b) = L(b) (1 + sum_{j != i} u_j)``, solved as a damped fixed point.
    The stretch is the limit where the other engines' batches outlast this one's (each busy one halves
    its speed for the whole batch); when they are shorter the real slow-down is smaller. Against the event
    simulation (`costmodel.colocation_sim`): exact for an engine alone; on 54 two-engine Jetson Nano devices
    (the Ibis-like models, total load 0.5-0.85) from 2.3 % under to 15 % over, mean |error| 3.1 %,
    erring high on the heavier engine at high load (docs/seeds/ibis.md; tests/test_colocation.py).
    """
    key = tuple((t.rate_hz, tuple(t.batch_s(b) for b in range(1, max(t.max_batch, 1) + 1))) for t in tenants)
    return list(_engine_states(key))


@lru_cache(maxsize=8192)
def _engine_states(key: tuple[tuple[float, tuple[float, ...]], ...]) -> tuple[EngineState, ...]:
    busy = [min(rate * curve[0], 0.999) for rate, curve in key]
    out: list[EngineState] = []
    for _ in range(60 if len(key) > 1 else 1):
        total = sum(busy)
        out = []
        for (rate, curve), u_i in zip(key, busy, strict=True):
            stretch = 1.0 + total - u_i
            response, u = batching_engine_s(rate, [x * stretch for x in curve])
            out.append(EngineState(response, u, stretch, u / stretch))
        moved = max(abs(s.busy - u) for s, u in zip(out, busy, strict=True))
        busy = [0.5 * (u + s.busy) for s, u in zip(out, busy, strict=True)]
        if moved < 1e-5:
            break
    return tuple(out)


def engine_ps_response_s(tenants: Sequence[Tenant]) -> dict[str, float]:
    """Mean response time of each tenant when each is one engine sharing the GPU (see `engine_states`).

    This is how a Jetson runs co-located TensorRT engines: one batch at a time per engine, time-sliced
    between engines. inf when an engine cannot keep up.
    """
    return {t.name: s.response_s for t, s in zip(tenants, engine_states(tenants), strict=True)}


def engine_work(tenants: Sequence[Tenant]) -> float:
    """Fraction of time the accelerator computes (isolated batch time per second, batching included)."""
    return sum(s.work for s in engine_states(tenants))


def fcfs_switch_response_s(tenants: Sequence[Tenant], switch_s: float = 0.0) -> dict[str, float]:
    """Mean response time of each tenant under M/G/1 FCFS with a model-switch cost (Pollaczek-Khinchine).

    Service times are deterministic per model; a class-i request costs ``s_i + switch_s`` when the request
    before it ran another model (probability ``1 - p_i``, ``p_i = lambda_i / lambda``), else ``s_i``.
    Mean wait ``W = lambda E[S^2] / (2 (1 - rho))``; response ``R_i = W + E[S_i]``. inf when rho >= 1.
    """
    if switch_s < 0:
        raise InvalidRequestError(f"switch_s must be >= 0, got {switch_s}")
    total_hz = sum(t.rate_hz for t in tenants)
    if total_hz == 0:
        return {t.name: t.service_s for t in tenants}
    mean_s = second_s2 = 0.0
    own_s: dict[str, float] = {}
    for t in tenants:
        p = t.rate_hz / total_hz
        q = (1.0 - p) if len(tenants) > 1 else 0.0
        own_s[t.name] = t.service_s + q * switch_s
        mean_s += p * own_s[t.name]
        second_s2 += p * (q * (t.service_s + switch_s) ** 2 + (1.0 - q) * t.service_s**2)
    rho = total_hz * mean_s
    if rho >= 1.0:
        return {t.name: math.inf for t in tenants}
    wait_s = total_hz * second_s2 / (2.0 * (1.0 - rho))
    return {name: wait_s + s for name, s in own_s.items()}


def ps_burst_completion_s(service_s: Sequence[float]) -> list[float]:
    """Completion time of each job when all arrive at t=0 on a processor-sharing server (exact).

    With n jobs active each progresses at rate 1/n; sorting by size, the k-th smallest finishes after the
    smaller ones have, having shared the server with every job still active along the way.
    """
    order = sorted(range(len(service_s)), key=lambda i: service_s[i])
    done = [0.0] * len(service_s)
    now_s = prev_s = 0.0
    for rank, i in enumerate(order):
        active = len(service_s) - rank
        now_s += (service_s[i] - prev_s) * active
        prev_s = service_s[i]
        done[i] = now_s
    return done


def fcfs_burst_completion_s(
    service_s: Sequence[float], switch_s: float = 0.0, models: Sequence[str] | None = None
) -> list[float]:
    """Completion time of each job when all arrive at t=0, in the given order, on an FCFS server.

    A job whose model differs from the previous job's (`models`; default: all different) pays `switch_s`.
    """
    models = list(models) if models is not None else [str(i) for i in range(len(service_s))]
    out, now_s, last = [], 0.0, None
    for s, m in zip(service_s, models, strict=True):
        now_s += s + (switch_s if last is not None and m != last else 0.0)
        last = m
        out.append(now_s)
    return out


@dataclass(frozen=True, slots=True)
class ValidationRow:
    """Predicted against measured concurrent response time of one model."""

    model: str
    isolated_ms: float  # median isolated (Sequential) response time
    measured_ms: float  # median concurrent response time
    predicted_ms: float

    @property
    def error_pct(self) -> float:
        return 100.0 * abs(self.predicted_ms - self.measured_ms) / self.measured_ms


def _read_ibis(path: str | Path) -> tuple[list[str], dict[str, float], dict[str, float]]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    df = pd.read_csv(path, skipinitialspace=True)
    missing = sorted({"model", "process_type", "response_time"} - set(df.columns))
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    kinds = set(df["process_type"])
    if not {"Sequential", "Concurrent"} <= kinds:
        raise DataError(f"{path}: process_type must hold 'Sequential' and 'Concurrent', got {sorted(kinds)}")
    order = list(dict.fromkeys(df.loc[df["process_type"] == "Concurrent", "model"]))
    med = df.groupby(["process_type", "model"])["response_time"].median()
    isolated = {m: float(med[("Sequential", m)]) for m in order}
    concurrent = {m: float(med[("Concurrent", m)]) for m in order}
    return order, isolated, concurrent


def validate_trt_ps(path: str | Path) -> list[ValidationRow]:
    """Ibis `trt_ps_validation.csv` (Jetson Nano, TensorRT): burst processor sharing against measurement."""
    order, isolated, concurrent = _read_ibis(path)
    predicted = ps_burst_completion_s([isolated[m] for m in order])
    return [ValidationRow(m, isolated[m], concurrent[m], p) for m, p in zip(order, predicted, strict=True)]


def validate_edgetpu_fcfs(path: str | Path, switch_ms: float = 0.0) -> list[ValidationRow]:
    """Ibis `edgetpu_fcfs_validation.csv` (Edge TPU): burst FCFS with model switches against measurement.

    The isolated runs cycled through the five models, so every isolated time already includes one
    model switch, and so does every job of the concurrent burst (consecutive jobs run different models):
    the default extra `switch_ms` is therefore 0. Jobs are served in the order the file lists them.
    """
    order, isolated, concurrent = _read_ibis(path)
    predicted = fcfs_burst_completion_s([isolated[m] for m in order], switch_ms, order)
    return [ValidationRow(m, isolated[m], concurrent[m], p) for m, p in zip(order, predicted, strict=True)]


def mean_abs_error_pct(rows: Sequence[ValidationRow]) -> float:
    """Mean absolute percentage error of the predictions."""
    return sum(r.error_pct for r in rows) / len(rows)
