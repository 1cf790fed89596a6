"""Reproduce LoudVA's Experiment 1 in the simulator and write the reproduction report with its plots.

    python -m simulator.reproduce --out docs/              # LightGBM (headline) and oracle, both fleets
    python -m simulator.reproduce --out /tmp/r --quick     # two scenarios, oracle only: a smoke run

What it runs (every run seeded and deterministic; the device models are the calibrated truth):

- fleet `agx` (LoudVA's testbed, one AGX Xavier): the six Experiment 1 scenarios, every LoudVA baseline
  and `jetfleet`, once per cost model the policies consult (`lgbm`, what the live system uses, and the
  `oracle`, a perfect predictor), with energy integrated from the first arrival (DESIGN.md); and once more
  with the headline cost model and energy integrated from each scenario's time 0, as LoudVA measured it;
- fleet `loudva-cluster` (1 AGX Xavier, 2 Xavier NX, 2 Nano): the same scenarios, the cluster baselines,
  LoudVA and `jetfleet`, per cost model;
- every run charges the data path (`jetfleet.links`: controller preprocessing, each device's link); the AGX runs
  and the cluster's once more without it, and the AGX's with the link alone, to show what it changes.

It reads LoudVA's measured table (`experiment1_report_aggregated.csv`) from the shared data folder at run
time (never copied into the repository) and writes, under `--out`:
`reproduction-loudva.md` (the report), `reproduction-loudva.json` (every number in it, one record per
run) and `img/reproduction-loudva-{agx,cluster}.png`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import typer

from jetfleet.errors import DataError
from simulator.reproduce_report import AGX_POLICIES, CLUSTER_POLICIES, MeasuredRow, SimRow, render_report

SCENARIOS = ("exp1-id0", "exp1-id1", "exp1-id2", "exp1-id3", "exp1-id4", "exp1-id6")
# LoudVA's row names in experiment1_report_aggregated.csv -> our policy names.
MEASURED_POLICY = {
    "No Scheduler": "transparent",
    "Fixed Batch (8)": "fixed-batch:8",
    "Fixed Batch (16)": "fixed-batch:16",
    "Fixed Batch (32)": "fixed-batch:32",
    "Interval (0.2)": "interval:0.2",
    "Interval (0.5)": "interval:0.5",
    "Interval (1.0)": "interval:1.0",
    "Our Scheduler (pred)": "loudva",  # LoudVA with its XGBoost predictor
    "Our Scheduler (prof)": "loudva",  # LoudVA looking up its profiles
}
WINDOWS = {"first-arrival": None, "from-zero": 0.0}  # energy window -> simulate(start_s=)
DATA_PATHS = ("full", "link", "none")  # what of the data path a run charges (`SimRow.data_path`)
LOAD_FACTORS = (4, 8)  # Experiment 1 compressed in time: its requests arriving 4 and 8 times faster
LOAD_POLICIES = ("transparent", "loudva", "jetfleet:awake", "jetfleet", "jetfleet:drop")  # :awake = power states off
HELD_OUT_POLICIES = ("transparent", "round-robin", "loudva", "jetfleet")  # on LoudVA's 15 extra scenarios


def read_measured(path: Path) -> list[MeasuredRow]:
    """LoudVA's `experiment1_report_aggregated.csv` as rows (the columns this report quotes)."""
    try:
        with path.open(newline="") as fh:
            raw = list(csv.DictReader(fh))
    except OSError as e:
        raise DataError(f"{path}: cannot read LoudVA's measured table: {e}") from None
    rows = []
    for r in raw:
        name = r.get("scheduler", "").strip()
        if name not in MEASURED_POLICY:
            continue
        try:
            rows.append(
                MeasuredRow(
                    name=name,
                    policy=MEASURED_POLICY[name],
                    frames=int(r["num_frames"]),
                    energy_j=float(r["total_energy_j"]),
                    frames_per_joule=float(r["frames_per_joule"]),
                    pct_frames_within_slo=float(r["percent_frames_within_constraint"]),
                    pct_requests_timed_out=float(r["percent_time_out"]),
                )
            )
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}: row {name!r}: missing or bad column: {e}") from None
    if not rows:
        raise DataError(f"{path}: no known scheduler rows; expected some of {sorted(MEASURED_POLICY)}")
    return rows


def cost_models(names: Sequence[str]) -> dict[str, Any]:
    """The cost models by name (`costmodel.factory.make_cost_model`), in the order given."""
    from costmodel.factory import make_cost_model

    return {name: make_cost_model(name, where="--cost-model") for name in names}


def run_grid(
    loudva_dir: Path,
    costs: dict[str, Any],
    *,
    scenarios: Sequence[str] = SCENARIOS,
    extra: bool = True,
    on_run: Callable[[str], None] | None = None,
) -> list[SimRow]:
    """Every (workload, fleet, cost model, window, policy) this report shows, aggregated over the scenarios."""
    from workloads.scenarios import read_scenario

    exp1 = [read_scenario(loudva_dir / "scenarios" / f"{s}.csv") for s in scenarios]
    workloads = {"exp1": exp1}
    headline = next(iter(costs))
    plan = [("exp1", "agx", c, "first-arrival", AGX_POLICIES) for c in costs]
    plan.append(("exp1", "agx", headline, "from-zero", AGX_POLICIES))
    plan += [("exp1", "loudva-cluster", c, "first-arrival", CLUSTER_POLICIES) for c in costs]
    plan += [(f"exp1@{path}", "agx", headline, "first-arrival", AGX_POLICIES) for path in DATA_PATHS if path != "full"]
    plan.append(("exp1@none", "loudva-cluster", headline, "first-arrival", CLUSTER_POLICIES))
    if extra:
        workloads["extra"] = [read_scenario(p) for p in sorted((loudva_dir / "scenarios" / "extra").glob("*.csv"))]
        for factor in LOAD_FACTORS:
            workloads[f"exp1 x{factor}"] = [_compressed(w, factor) for w in exp1]
            plan.append((f"exp1 x{factor}", "agx", headline, "first-arrival", LOAD_POLICIES))
        plan += [("extra", fleet, headline, "first-arrival", HELD_OUT_POLICIES) for fleet in ("agx", "loudva-cluster")]
    rows = []
    for label, fleet, cost_name, window, policies in plan:
        workload, _, path = label.partition("@")
        path = path or "full"
        for policy in policies:
            if on_run is not None:
                on_run(f"{policy} on {fleet}, {workload} ({cost_name}, {window}, data path: {path})")
            row = _run_policy(workloads[workload], fleet, policy, cost_name, costs[cost_name], window, path)
            rows.append(replace(row, workload=workload, data_path=path))
    return rows


def plan_size(n_costs: int, extra: bool) -> int:
    """How many aggregated runs `run_grid` makes (for the progress bar)."""
    n = (n_costs + 1) * len(AGX_POLICIES) + n_costs * len(CLUSTER_POLICIES)
    n += (len(DATA_PATHS) - 1) * len(AGX_POLICIES) + len(CLUSTER_POLICIES)
    return n + (len(LOAD_FACTORS) * len(LOAD_POLICIES) + 2 * len(HELD_OUT_POLICIES) if extra else 0)


def _compressed(requests: list, factor: int) -> list:
    """The same requests arriving `factor` times faster (same SLOs and frames): `factor` times the load."""
    return [replace(r, arrival_s=r.arrival_s / factor) for r in requests]


def _run_policy(
    workloads: list, fleet: str, policy: str, cost_name: str, cost: Any, window: str, data_path: str = "full"
) -> SimRow:
    from cluster.inventory import load_fleet
    from jetfleet.links import PREPROCESS_S_PER_FRAME
    from policies.registry import make_policy
    from simulator.engine import aggregate, simulate

    fleet_obj = load_fleet(fleet)
    path = {"data_path": data_path != "none", "preprocess_s_per_frame": PREPROCESS_S_PER_FRAME * (data_path == "full")}
    runs = [simulate(w, fleet_obj, make_policy(policy), cost, start_s=WINDOWS[window], **path) for w in workloads]
    m = aggregate(runs, policy)
    return SimRow(
        fleet=fleet,
        cost_model=cost_name,
        window=window,
        policy=policy,
        requests=m.requests,
        frames=m.frames,
        frames_within_slo=m.frames_within_slo,
        pct_frames_within_slo=m.pct_frames_within_slo,
        energy_j=m.energy_j,
        frames_per_joule=m.frames_per_joule,
        p50_latency_s=m.p50_latency_s,
        p95_latency_s=m.p95_latency_s,
        dropped_frames=m.dropped_frames,
        # The sleep-aware bound (every frame at its cheapest configuration, the rest of the time in the deepest
        # state the fleet allows: docs/power-states.md) is the lower of the two, so the only valid ceiling once
        # policies may sleep devices; without sleep states it equals the awake bound.
        bound_fraction=_fraction(_bound(m), m.energy_j),
        energy_bound_j=_bound(m),
        completed_frames=m.completed_frames,
        duration_s=m.duration_s,
    )


def _bound(m: Any) -> float:
    """The run's lowest valid energy bound: the sleep-aware one where computed, else the awake one."""
    sleep = getattr(m, "sleep_energy_bound_j", math.nan)
    return min(m.energy_bound_j, sleep) if math.isfinite(sleep) else m.energy_bound_j


def _fraction(bound_j: float, energy_j: float) -> float:
    return bound_j / energy_j if energy_j > 0 else math.nan


def write_json(path: Path, rows: Sequence[SimRow], measured: Sequence[MeasuredRow], meta: dict[str, Any]) -> None:
    """Every number of the report: simulated rows, LoudVA's measured rows (quoted), and how they were made."""
    doc = {"meta": meta, "simulated": [asdict(r) for r in rows], "measured": [asdict(r) for r in measured]}
    path.write_text(json.dumps(doc, indent=1, allow_nan=False, default=float) + "\n")


def read_json(path: Path) -> tuple[list[SimRow], list[MeasuredRow], dict[str, Any]]:
    """The rows and metadata `write_json` wrote."""
    try:
        doc = json.loads(path.read_text())
        return [SimRow(**r) for r in doc["simulated"]], [MeasuredRow(**r) for r in doc["measured"]], doc["meta"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a reproduction JSON: {e}") from None


app = typer.Typer(add_completion=False)


@app.command()
def main(
    out: Path = typer.Option(Path("docs"), "--out", help="Folder for the report, its JSON and img/ plots."),
    cost_model: list[str] = typer.Option(
        ["lgbm", "oracle"], "--cost-model", help="Cost models the policies consult (repeatable); first = headline."
    ),
    quick: bool = typer.Option(False, "--quick", help="Two scenarios and the oracle only: a smoke run."),
    data: Path | None = typer.Option(None, "--data", help="LoudVA's data folder (default: ../shared/data/loudva)."),
    from_json: Path | None = typer.Option(
        None, "--from-json", help="Re-render the report from a reproduction JSON instead of simulating again."
    ),
) -> None:
    """Run LoudVA's Experiment 1 in the simulator and write the reproduction report."""
    from rich.console import Console
    from rich.progress import Progress

    from costmodel.profiles import loudva_data_dir

    console = Console(stderr=True)
    if from_json is not None:
        rows, measured, meta = read_json(from_json)
        (out / "img").mkdir(parents=True, exist_ok=True)
        (out / "reproduction-loudva.md").write_text(render_report(rows, measured, meta, img_dir=out / "img"))
        console.print(f"re-rendered {out / 'reproduction-loudva.md'} from {from_json}")
        return
    loudva_dir = data or loudva_data_dir()
    if loudva_dir is None or not (loudva_dir / "scenarios").is_dir():
        raise typer.BadParameter("LoudVA's data folder not found; give --data PATH (…/shared/data/loudva)")
    measured = read_measured(loudva_dir / "experiment1_report_aggregated.csv")
    names = ["oracle"] if quick else cost_model
    costs = cost_models(names)
    scenarios = SCENARIOS[:2] if quick else SCENARIOS
    n_runs = plan_size(len(costs), not quick)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=n_runs)

        def step(label: str) -> None:
            progress.update(task, description=label, advance=1)

        rows = run_grid(loudva_dir, costs, scenarios=scenarios, extra=not quick, on_run=step)
    meta = {
        "scenarios": list(scenarios),
        "cost_models": list(costs),
        "headline_cost_model": next(iter(costs)),
        "measured_source": "LoudVA experiment1_report_aggregated.csv (github.com/iloudaros/LoudVA @ 2b4b15e, MIT)",
        "command": "python -m simulator.reproduce --out " + str(out) + (" --quick" if quick else ""),
    }
    (out / "img").mkdir(parents=True, exist_ok=True)
    write_json(out / "reproduction-loudva.json", rows, measured, meta)
    report = render_report(rows, measured, meta, img_dir=out / "img")
    (out / "reproduction-loudva.md").write_text(report)
    console.print(f"wrote {out / 'reproduction-loudva.md'}, {out / 'reproduction-loudva.json'} and {out / 'img'}/")


if __name__ == "__main__":
    app()
