"""Decision fingerprints: one hash per (policy, workload) of every dispatch and every answer a simulation made.

    python -m benchmarks.fingerprint [--quick] [--out FILE]

A speed-up must not change a single decision. This runs the policies that share the jetfleet planner
(`jetfleet`, `jetfleet:drop`, `loudva`, `overload:jetfleet`, `jetfleet-variants`) on LoudVA's Experiment 1
scenarios (one AGX Xavier and LoudVA's 5-device cluster, LightGBM and oracle cost models, also 4x compressed),
the overload configs, a variant-experiment grid point and the 100-device mixed fleet of `bench_simulator`,
and hashes each run's batches (device, request ids, frames, model, frequency, start) and outcomes (request,
status, time, reason). Compare two outputs with `diff`: equal files mean equal decisions.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

SCENARIOS = ("exp1-id0", "exp1-id2", "exp1-id4", "exp1-id6")


def digest(result: Any) -> str:
    """sha256 (16 hex digits) of a `SimResult`'s batches, outcomes and decision count."""
    h = hashlib.sha256()
    for b in result.batches:
        h.update(repr((b.device, b.request_ids, b.n_frames, b.model, round(b.freq_hz), round(b.started_s, 9))).encode())
    for o in result.outcomes:
        h.update(repr((o.request_id, o.status.value, round(o.time_s, 9), o.reason)).encode())
    h.update(repr(result.decisions).encode())
    return h.hexdigest()[:16]


def _exp1_runs(quick: bool) -> Iterator[tuple[str, Callable[[], list[Any]]]]:
    from cluster.inventory import load_fleet
    from costmodel.profiles import loudva_data_dir
    from policies.registry import make_policy
    from simulator.engine import simulate
    from simulator.reproduce import cost_models
    from workloads.scenarios import read_scenario

    data = loudva_data_dir()
    if data is None:
        print("   LoudVA data not found: Experiment 1 skipped", file=sys.stderr)
        return
    scenarios = SCENARIOS[:2] if quick else SCENARIOS
    exp1 = {s: read_scenario(data / "scenarios" / f"{s}.csv") for s in scenarios}
    costs = cost_models(["oracle"] if quick else ["lgbm", "oracle"])
    for cost_name, cost in costs.items():
        for fleet_name in ("agx", "loudva-cluster"):
            fleet = load_fleet(fleet_name)
            for policy in ("jetfleet", "jetfleet:drop", "loudva"):
                for s, w in exp1.items():
                    for factor in (1, 4):
                        reqs = w if factor == 1 else [replace(r, arrival_s=r.arrival_s / factor) for r in w]
                        label = f"exp1 {s} x{factor} {fleet_name} {cost_name} {policy}"
                        yield (
                            label,
                            lambda reqs=reqs, fleet=fleet, policy=policy, cost=cost: [
                                simulate(reqs, fleet, make_policy(policy), cost)
                            ],
                        )


def _overload_runs(quick: bool) -> Iterator[tuple[str, Callable[[], list[Any]]]]:
    from simulator.overload import load_experiment, run_policy

    configs = Path(__file__).resolve().parent.parent / "configs"
    for name in ("overload-2task", "overload-3stream") + (() if quick else ("overload-fleet",)):
        experiment = load_experiment(configs / f"{name}.json")
        for label, spec in experiment.policies.items():
            yield f"{name} {label}", lambda e=experiment, label=label, spec=spec: [run_policy(e, label, spec)[0]]


def _variants_runs(quick: bool) -> Iterator[tuple[str, Callable[[], list[Any]]]]:
    from cluster.inventory import load_fleet
    from simulator import variants_experiment as ve

    fleet = load_fleet("demo")
    points = [ve.GridPoint(4, 25.0, 0.1, "lte")] + ([] if quick else [ve.GridPoint(8, 15.0, 0.075, "step")])
    for p in points:
        yield f"variants {p}", lambda p=p: [_variant_result(ve, p, fleet)]


def _variant_result(ve: Any, point: Any, fleet: Any) -> Any:
    """`run_point`'s simulation, keeping the `SimResult` (run_point only returns its summary)."""
    from costmodel.device_models import OracleCostModel, device_model
    from costmodel.variants import VariantCostModel, wrap_device_models
    from costmodel.view import CostView
    from jetfleet.catalogue import get_kind
    from jetfleet.types import DeviceState
    from simulator.engine import simulate

    cost = VariantCostModel(OracleCostModel())
    truth = wrap_device_models({d.kind: device_model(d.kind) for d in fleet.devices})
    devices = [DeviceState(d.name, d.kind, get_kind(d.kind).max_freq_hz) for d in fleet.devices]
    policy = ve._make_policy("jetfleet-variants", 0)
    traces = ve._traces(point, 10.0, 0)
    ve._plan(policy, point, "mobilenetv2", traces, devices, CostView(cost), 10.0)
    requests, *_ = ve._frames(policy, point, "mobilenetv2", traces, 10.0, 0)
    return simulate(requests, fleet, policy, cost, device_models=truth, seed=0)


def _mixed_runs(quick: bool) -> Iterator[tuple[str, Callable[[], list[Any]]]]:
    from benchmarks.bench_simulator import FRAMES, RATE_PER_DEVICE_HZ, SLO_S, mixed_fleet
    from costmodel.device_models import OracleCostModel
    from policies.registry import make_policy
    from simulator.engine import simulate
    from workloads.arrivals import poisson

    for n, duration_s in ((10, 30.0), (100, 5.0 if quick else 15.0)):
        fleet = mixed_fleet(n)
        reqs = poisson(RATE_PER_DEVICE_HZ * n, duration_s, seed=0, frames=FRAMES, slo_s=SLO_S, streams=8)
        for policy in ("jetfleet", "overload:jetfleet"):
            yield (
                f"mixed-{n} {policy}",
                lambda reqs=reqs, fleet=fleet, policy=policy: [
                    simulate(reqs, fleet, make_policy(policy), OracleCostModel())
                ],
            )


def fingerprints(quick: bool = False) -> dict[str, str]:
    """label -> digest of every run."""
    out: dict[str, str] = {}
    for source in (_exp1_runs, _overload_runs, _variants_runs, _mixed_runs):
        for label, make in source(quick):
            out[label] = ",".join(digest(r) for r in make())
            print(f"   {out[label]}  {label}", file=sys.stderr, flush=True)
    return out


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)


@app.command()
def main(
    quick: bool = typer.Option(False, "--quick", help="fewer workloads, oracle only"),
    out: Path | None = typer.Option(None, "--out", help="write the JSON here (default: stdout)"),
) -> None:
    """Print (or write) one decision hash per (policy, workload)."""
    text = json.dumps(fingerprints(quick), indent=1, sort_keys=True) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


if __name__ == "__main__":
    app()
