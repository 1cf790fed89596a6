"""A large fleet through a compressed day: jetfleet with power states against always-awake jetfleet.

    python -m simulator.diurnal_fleet --devices 1000 --cameras 2000 --compress 288 --out docs/power-diurnal.json

The fleet is a quarter AGX Xavier, three eighths Xavier NX and three eighths Jetson Nano; the workload is
`workloads.diurnal` (see its docstring for the compression); every policy runs the same requests with the
`lgbm` cost model. Reports the `jetfleet simulate` metrics per policy and simulated requests per wall second.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from workloads.diurnal import DiurnalSpec


def fleet_spec(n_devices: int) -> dict[str, Any]:
    """The inventory dict of the mixed fleet (names agx0.., nx0.., nano0..)."""
    n_agx, n_nx = n_devices // 4, 3 * n_devices // 8
    counts = (
        ("agx", "agx-xavier", n_agx),
        ("nx", "xavier-nx", n_nx),
        ("nano", "jetson-nano", n_devices - n_agx - n_nx),
    )
    devices = [{"name": f"{p}{i}", "kind": k} for p, k, n in counts for i in range(n)]
    return {"name": f"diurnal-{n_devices}", "devices": devices}


def run(spec: DiurnalSpec, n_devices: int, policies: list[str], seed: int, cost_model: str) -> dict[str, Any]:
    from cluster.inventory import fleet_from_dict
    from costmodel.factory import make_cost_model
    from policies.registry import make_policy
    from simulator.engine import simulate
    from workloads.diurnal import diurnal

    fleet = fleet_from_dict(fleet_spec(n_devices), "diurnal fleet")
    requests = diurnal(spec, seed=seed)
    cost = make_cost_model(cost_model, where="--cost-model")
    out: dict[str, Any] = {
        "devices": n_devices,
        "requests": len(requests),
        "frames": sum(r.n_frames for r in requests),
        "trace_s": spec.duration_s,
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
        "cost_model": cost_model,
        "seed": seed,
        "results": [],
    }
    for name in policies:
        t0 = time.perf_counter()
        result = simulate(requests, fleet, make_policy(name), cost)
        wall_s = time.perf_counter() - t0
        metrics = result.metrics.to_dict()
        metrics.update(policy=name, wall_s=wall_s, requests_per_wall_s=len(requests) / wall_s)
        out["results"].append(metrics)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--cameras", type=int, default=2000)
    parser.add_argument("--period-s", type=float, default=1.0)
    parser.add_argument("--peak-frames", type=float, default=2.0)
    parser.add_argument("--compress", type=float, default=288.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cost-model", default="lgbm")
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = DiurnalSpec(
        cameras=args.cameras, period_s=args.period_s, peak_frames=args.peak_frames, compress=args.compress
    )
    doc = run(spec, args.devices, args.policy or ["jetfleet:awake", "jetfleet"], args.seed, args.cost_model)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for r in doc["results"]:
        print(
            f"{r['policy']}: {r['frames_per_joule']:.3f} frames/J, {r['pct_frames_within_slo']:.2f} % in SLO, "
            f"{r['requests_per_wall_s']:.0f} requests/wall s"
        )


if __name__ == "__main__":
    main()
