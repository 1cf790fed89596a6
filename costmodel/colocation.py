"""Analytic latency of several DNN models sharing one accelerator (after Ibis, Liang et al., ACM TAAS 2023).

Two sharing disciplines, each in a steady-state form (Poisson arrivals, for placement) and a burst form
(all jobs arrive together, which is how Ibis measured co-location on real hardware):

- **GPU: processor sharing.** Concurrent TensorRT contexts on a Jetson time-slice the GPU; to a good
  approximation every active model gets an equal share. Steady state is the multi-class M/G/1-PS queue,
  whose mean response time is insensitive to the service-time distribution:
  ``R_i = s_i / (1 - rho)`` with ``rho = sum_j lambda_j s_j``.
  Jetfleet runs one engine per loaded model, FCFS inside, so `engine_ps_response_s` refines this to
  PS *between engines* (a mean-field fixed point of M/D/1 queues stretched by the other engines).
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
from pathlib import Path

import pandas as pd

from jetfleet.errors import DataError, InvalidRequestError

__all__ = [
    "Tenant",
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


def engine_ps_response_s(tenants: Sequence[Tenant], *, iterations: int = 300) -> dict[str, float]:
    """Mean response time when each tenant is one engine (FCFS inside) and engines share the GPU by PS.

    This is how a Jetson runs co-located TensorRT engines: one batch at a time per engine, time-sliced
    between engines. A mean-field fixed point (damped iteration) over the engines' busy probabilities u:

    - engine i's batches are stretched by the others busy while it runs: ``L'(b) = L(b) (1 + sum_{j!=i} u_j)``;
    - with dynamic batching (take every waiting request, up to `max_batch`), requests arriving while the
      engine is busy join the next batch: ``b = 1 + lambda L'(b) u`` with ``u = lambda L'(b) / b``;
    - the response is the own batch plus, when busy, the wait for the batch in progress (M/D/1 form):
      ``R = L'(b) + u L'(b) / (2 (1 - u))``.

    With `max_batch` = 1 this is M/D/1 per engine with stretched service. inf when an engine saturates.
    `simulator.colocation` checks it: within ~5 % without batching below rho = 0.85, and an over-estimate
    (conservative) with batching.
    """
    busy, batch = _engine_fixed_point(tenants, iterations)
    total = sum(busy)
    out: dict[str, float] = {}
    for t, u_i, b_i in zip(tenants, busy, batch, strict=True):
        stretched = t.batch_s(b_i) * (1.0 + total - u_i)
        u = t.rate_hz * stretched / b_i
        wait = u * stretched / (2.0 * (1.0 - u)) if t.max_batch <= 1 else u * stretched / 2.0
        out[t.name] = math.inf if u >= 0.99 else stretched + wait
    return out


def engine_work(tenants: Sequence[Tenant], *, iterations: int = 300) -> float:
    """Fraction of time the accelerator computes (isolated batch time per second, batching included)."""
    _, batch = _engine_fixed_point(tenants, iterations)
    return sum(t.rate_hz * t.batch_s(b) / b for t, b in zip(tenants, batch, strict=True))


def _engine_fixed_point(tenants: Sequence[Tenant], iterations: int) -> tuple[list[float], list[float]]:
    busy = [min(t.rate_hz * t.service_s, 0.999) for t in tenants]
    batch = [1.0] * len(tenants)
    for _ in range(iterations):
        total = sum(busy)
        for i, t in enumerate(tenants):
            stretched = t.batch_s(batch[i]) * (1.0 + total - busy[i])
            u = min(t.rate_hz * stretched / batch[i], 0.999)
            b = min(float(t.max_batch), 1.0 + t.rate_hz * stretched * u)
            busy[i], batch[i] = 0.5 * (busy[i] + u), 0.5 * (batch[i] + b)
    return busy, batch


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
