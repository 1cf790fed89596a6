"""A large fleet through a compressed day: jetfleet with power states against always-awake jetfleet.

    python -m simulator.diurnal_fleet --devices 1000 --cameras 2000 --compress 288 --out docs/power-diurnal.json

The fleet is a quarter AGX Xavier, three eighths Xavier NX and three eighths Jetson Nano; the workload is
`workloads.diurnal` (see its docstring for the compression); every policy runs the same requests with the
`lgbm` cost model. Reports the `jetfleet simulate` metrics per policy and simulated requests per wall second.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

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


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)


@app.command()
def main(
    out: Path = typer.Option(..., "--out", help="write the JSON document here"),
    devices: int = typer.Option(1000, "--devices", min=1, help="fleet size (25 % AGX, 37.5 % NX, 37.5 % Nano)"),
    cameras: int = typer.Option(2000, "--cameras", min=1),
    period_s: float = typer.Option(1.0, "--period-s", min=1e-6, help="seconds between a camera's requests"),
    peak_frames: float = typer.Option(2.0, "--peak-frames", min=0.0, help="frames per request at the peak"),
    compress: float = typer.Option(288.0, "--compress", min=1.0, help="how much faster the day's envelope runs"),
    seed: int = typer.Option(1, "--seed"),
    cost_model: str = typer.Option("lgbm", "--cost-model", help="lgbm | oracle | DIR"),
    policy: list[str] | None = typer.Option(None, "--policy", help="policies (default: jetfleet:awake, jetfleet)"),
) -> None:
    """Simulate the fleet through the compressed day; write the JSON and print one line per policy."""
    spec = DiurnalSpec(cameras=cameras, period_s=period_s, peak_frames=peak_frames, compress=compress)
    doc = run(spec, devices, policy or ["jetfleet:awake", "jetfleet"], seed, cost_model)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    for r in doc["results"]:
        print(
            f"{r['policy']}: {r['frames_per_joule']:.3f} frames/J, {r['pct_frames_within_slo']:.2f} % in SLO, "
            f"{r['requests_per_wall_s']:.0f} requests/wall s"
        )


if __name__ == "__main__":
    app()
