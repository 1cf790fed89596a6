"""Decision time of one stream re-plan: 16 GPUs x 10 clients each (160 streams), jetfleet and Jellyfish.

Bandwidths change between re-plans (LTE-like traces), as they do every 0.5 s in the variant experiment.
Goal (issue #6): <= 50 ms per re-plan for jetfleet (judged on the median; p95 and max are reported, and
on a shared machine they move with other load).
"""

from __future__ import annotations

import time

import numpy as np


def _setup(n_gpus: int, per_gpu: int):
    from costmodel.device_models import OracleCostModel
    from costmodel.variants import VariantCostModel
    from costmodel.view import CostView
    from jetfleet.catalogue import get_kind
    from jetfleet.types import DeviceState
    from workloads.network import lte_trace

    kinds = ["agx-xavier", "xavier-nx"]
    devices = [DeviceState(f"gpu{i}", kinds[i % 2], get_kind(kinds[i % 2]).max_freq_hz) for i in range(n_gpus)]
    rng = np.random.default_rng(0)
    n = n_gpus * per_gpu
    fps = rng.choice([15.0, 25.0], n)
    slo = rng.choice([0.075, 0.1, 0.15], n)
    traces = [lte_trace(60, seed=i) for i in range(n)]
    return devices, fps, slo, traces, CostView(VariantCostModel(OracleCostModel()))


def _time_planner(make, devices, fps, slo, traces, cost, replans: int) -> dict:
    from policies.variants import REPLAN_S, ClientInfo

    policy = make()
    times = []
    for k in range(replans):
        t = k * REPLAN_S
        clients = [
            ClientInfo(f"c{i}", "mobilenetv2", float(fps[i]), float(slo[i]), tr.mean_over(max(0.0, t - REPLAN_S), t))
            for i, tr in enumerate(traces)
        ]
        started = time.perf_counter()
        policy.replan(t, clients, devices, cost)
        times.append(1000.0 * (time.perf_counter() - started))
    warm = times[1:] or times
    return {
        "replans": replans,
        "first_ms": round(times[0], 2),
        "mean_ms": round(float(np.mean(warm)), 2),
        "median_ms": round(float(np.median(warm)), 2),
        "p95_ms": round(float(np.percentile(warm, 95)), 2),
        "max_ms": round(float(np.max(warm)), 2),
    }


def run(quick: bool = False) -> dict:
    """Decision time per re-plan of both planners on 16 GPUs x 10 clients (fewer re-plans when quick)."""
    from policies.jellyfish import JellyfishPolicy
    from policies.variants import JetfleetVariantsPolicy

    n_gpus, per_gpu = 16, 10
    setup = _setup(n_gpus, per_gpu)
    replans = 5 if quick else 20
    jetfleet = _time_planner(JetfleetVariantsPolicy, *setup, replans)
    jellyfish = _time_planner(JellyfishPolicy, *setup, max(3, replans // 4))
    return {
        "gpus": n_gpus,
        "clients": n_gpus * per_gpu,
        "jetfleet_variants": jetfleet,
        "jellyfish": jellyfish,
        "goal_ms": 50.0,
        "jetfleet_meets_goal": jetfleet["median_ms"] <= 50.0,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
