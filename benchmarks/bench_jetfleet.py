"""The `jetfleet` policy's decision cost: `decide` with 10,000 queued requests, and how it grows with the fleet.

- `queue_10k`: LoudVA's cluster (1 AGX Xavier, 2 Xavier NX, 2 Nano) with 10,000 requests queued; p50 / p99
  microseconds of one `decide` when one device has just become free (the common case: a completion) and when
  every device is free. Goal: p99 <= 1,000 us.
- `fleet_scaling`: mixed fleets of 10, 100 and 1000 devices (20 % AGX, 40 % NX, 40 % Nano), 10,000 queued, one
  device free and all free; microseconds per `decide` and per dispatched batch. Goal: no worse than linear.

The policy consults the oracle cost model (its grids are cached after the first call), so the figures are the
planner's own cost. Every call sees the same queue and device states (decisions are not applied).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from costmodel.device_models import OracleCostModel
from jetfleet.catalogue import get_kind
from jetfleet.types import DeviceState, Request
from policies.jetfleet import JetfleetPolicy
from policies.queue import RequestQueue

CLUSTER = ("agx-xavier", "xavier-nx", "xavier-nx", "jetson-nano", "jetson-nano")
MIX = (("agx-xavier", 0.2), ("xavier-nx", 0.4), ("jetson-nano", 0.4))
NOW_S = 100.0


def _queue(n: int, seed: int = 0) -> RequestQueue:
    """`n` requests that arrived over the last 20 s, 1-8 frames, SLOs of 5-60 s: a backlog, a few already late."""
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(NOW_S - 20.0, NOW_S, n))
    return RequestQueue(
        Request(i, float(t), int(rng.integers(1, 9)), float(rng.uniform(5.0, 60.0)), stream=f"cam{i % 8}")
        for i, t in enumerate(arrivals)
    )


def _devices(kinds: list[str], free: int) -> list[DeviceState]:
    """Devices at their top clock; the first `free` idle, the others busy for another 5 s."""
    out = []
    for i, kind in enumerate(kinds):
        busy = i >= free
        out.append(
            DeviceState(
                f"{kind}-{i}",
                kind,
                get_kind(kind).max_freq_hz,
                busy_until_s=NOW_S + 5.0 if busy else NOW_S - 1.0,
                in_flight=1 if busy else 0,
                last_busy_s=NOW_S - 0.1,
            )
        )
    return out


def _mixed(n: int) -> list[str]:
    kinds = [k for k, share in MIX for _ in range(max(1, round(n * share)))]
    return kinds[:n]


def time_decide(kinds: list[str], free: int, queue: RequestQueue, repeats: int) -> dict[str, float]:
    """p50 / p99 / mean microseconds of `decide` on the same state, and batches dispatched per call."""
    cost = OracleCostModel()
    policy = JetfleetPolicy()
    for r in list(queue)[-200:]:  # an arrival-rate history, as the live policy would have
        policy.admit(r.arrival_s, r, queue)
    devices = _devices(kinds, free)
    policy.decide(NOW_S, queue, devices, cost)  # warm the grid caches
    times, batches = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        out = policy.decide(NOW_S, queue, devices, cost)
        times.append(time.perf_counter() - started)
        batches = len(out.dispatches)
    us = np.array(times) * 1e6
    return {
        "devices": len(kinds),
        "free_devices": free,
        "queued": len(queue),
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
        "batches_per_decide": batches,
        "us_per_batch": round(float(us.mean()) / max(batches, 1), 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    repeats = 50 if quick else 300
    queue = _queue(10_000)
    queue_10k = [time_decide(list(CLUSTER), free, queue, repeats) for free in (1, len(CLUSTER))]
    for row in queue_10k:
        free = row["free_devices"]
        print(f"   loudva-cluster, {free} free, 10k queued: p50 {row['p50_us']} us, p99 {row['p99_us']} us")
    scaling = []
    for n in (10, 100) if quick else (10, 100, 1000):
        for free in (1, n):
            row = time_decide(_mixed(n), free, queue, max(5, repeats // (10 if n >= 1000 else 1)))
            scaling.append(row)
            print(
                f"   {n:>5} devices, {free:>5} free: {row['mean_us']:>9.1f} us/decide, "
                f"{row['batches_per_decide']:>4} batches, {row['us_per_batch']:>7.1f} us/batch"
            )
    return {"goal_p99_us": 1000, "queue_10k": queue_10k, "fleet_scaling": scaling}


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
