"""Overload control: the compare-overload results of the shipped configs, and the overload layer's decision time.

- `configs`: per config, the highest-priority stream's p95 and drops under FIFO and jetfleet, and the wall time
  of the whole comparison (both policies simulated);
- `decision_ms`: one `decide` of `overload:jetfleet` and of plain `jetfleet` on a queue of N requests
  (3 priorities, 5 Jetsons, LoudVA-calibrated oracle cost model), min over repetitions.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _configs(quick: bool) -> dict:
    from simulator.overload import compare, load_experiment

    names = ["overload-2task", "overload-3stream"] + ([] if quick else ["overload-sustained", "overload-fleet"])
    out = {}
    for name in names:
        experiment = load_experiment(CONFIGS / f"{name}.json")
        started = time.perf_counter()
        result = compare(experiment)
        wall_s = time.perf_counter() - started
        target = result["target"]
        top = target["stream"]
        out[name] = {
            "requests": result["runs"]["jetfleet"]["requests"],
            "wall_s": round(wall_s, 3),
            "fifo_p95_ms": result["fifo"][top]["p95_latency_ms"],
            "fifo_dropped": result["fifo"][top]["dropped"],
            "jetfleet_p95_ms": result["jetfleet"][top]["p95_latency_ms"],
            "jetfleet_dropped": result["jetfleet"][top]["dropped"],
            "target_met": target["met"],
        }
    return out


def _decision_ms(quick: bool) -> dict:
    from benchmarks.preloaded import preloaded_core
    from costmodel.device_models import OracleCostModel
    from jetfleet.catalogue import get_kind
    from jetfleet.types import DeviceState, Request
    from policies.registry import make_policy

    cost = OracleCostModel()
    kinds = ["agx-xavier", "xavier-nx", "xavier-nx", "jetson-nano", "jetson-nano"]
    devices = [DeviceState(f"d{i}", k, get_kind(k).max_freq_hz) for i, k in enumerate(kinds)]
    rng = np.random.default_rng(0)
    out = {}
    for n in (100, 1000) if quick else (100, 1000, 10000):
        now_s = n * 1e-4
        requests = [
            Request(
                i,
                i * 1e-4,
                1,
                float(rng.uniform(0.5, 3.0)),
                priority=int(rng.choice([100, 50, 10])),
                stream=f"s{i % 3}",
            )
            for i in range(n)
        ]
        for name in ("jetfleet", "overload:jetfleet"):
            policy = make_policy(name)
            ctx = preloaded_core(policy, cost, devices, requests, announce=50).context(now_s)
            times = []
            for _ in range(3 if quick else 5):
                started = time.perf_counter()
                policy.decide(ctx)
                times.append(1000.0 * (time.perf_counter() - started))
            out[f"{name}@{n}"] = round(min(times), 3)
    return out


def run(quick: bool = False) -> dict:
    """Both parts; `quick` skips the sustained config and the 10,000-request queue."""
    return {"configs": _configs(quick), "decision_ms": _decision_ms(quick)}


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
