"""Sensitivity of jetfleet's power-state gains to the assumed suspend (SC7) figures.

    python -m simulator.power_sensitivity --out docs/power-sensitivity.json [--fleet agx] [--cost-model lgbm]

For each fleet, runs `jetfleet` (power states on) on LoudVA's Experiment 1 with every kind's *suspended* state
changed to each wake (exit) latency of `WAKE_S` and each board power of the catalogue's assumed range (low,
catalogue value, high), the transition energies following the catalogue's rule (idle power during a
transition). `jetfleet:awake` is run once per fleet as the reference. Writes one JSON document and prints the
markdown tables of docs/power-states.md. Nothing here is tuned: the grid is the assumption's range.

A second grid varies the suspend's *entry* latency with its wake latency (`TRANSITION_S`), at the low end of the
power range: no published figure gives either below a second, and this grid shows how fast both transitions
would have to be for a target out of reach with the catalogue's figures (agx, 1.5x) to be met.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer

from jetfleet.catalogue import get_kind
from jetfleet.power_states import PowerState, PowerStateSpec

WAKE_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
TRANSITION_S = (1.0, 0.5, 0.25, 0.1)  # entry and wake latencies of the second grid (the catalogue: 1 s in, 2 s out)
SCENARIOS = ("exp1-id0", "exp1-id1", "exp1-id2", "exp1-id3", "exp1-id4", "exp1-id6")


def suspended_variant(
    kind_key: str, exit_s: float, power: str, entry_s: float | None = None
) -> tuple[PowerStateSpec, ...]:
    """The kind's sleep states with SUSPENDED's wake latency `exit_s`, power at `power` (lo, cat, hi) and, when
    given, entry latency `entry_s`; transitions draw the idle power, as in the catalogue."""
    kind = get_kind(kind_key)
    out = []
    for spec in kind.power_states:
        if spec.state is PowerState.SUSPENDED:
            lo, hi = spec.ranges["board_power_w"]
            watts = {"lo": lo, "cat": spec.board_power_w, "hi": hi}[power]
            paid_w = max(0.0, kind.idle_power_w - watts)
            entry = spec.entry_s if entry_s is None else entry_s
            spec = dataclasses.replace(
                spec,
                board_power_w=watts,
                entry_s=entry,
                exit_s=exit_s,
                entry_energy_j=paid_w * entry,
                exit_energy_j=paid_w * exit_s,
            )
        out.append(spec)
    return tuple(out)


def run_grid(fleet_name: str, cost_model: str, scenario_dir: Path) -> dict[str, Any]:
    """{'awake': metrics, 'grid': [{wake_s, power, watts, metrics}...]} for one fleet."""
    from cluster.inventory import load_fleet
    from costmodel.factory import make_cost_model
    from policies.registry import make_policy
    from simulator.engine import aggregate, simulate
    from workloads.scenarios import read_scenario

    fleet = load_fleet(fleet_name)
    cost = make_cost_model(cost_model, where="--cost-model")
    workloads = [read_scenario(scenario_dir / f"{s}.csv") for s in SCENARIOS]
    kinds = sorted({d.kind for d in fleet.devices})

    def run(spec: str, power_states: dict[str, tuple[PowerStateSpec, ...]] | None) -> dict[str, Any]:
        results = [simulate(w, fleet, make_policy(spec), cost, power_states=power_states) for w in workloads]
        return _summary(aggregate(results, spec).to_dict())

    out: dict[str, Any] = {"fleet": fleet_name, "awake": run("jetfleet:awake", None), "grid": []}
    for wake_s in WAKE_S:
        for power in ("lo", "cat", "hi"):
            states = {k: suspended_variant(k, wake_s, power) for k in kinds}
            watts = {k: next(s.board_power_w for s in v if s.state is PowerState.SUSPENDED) for k, v in states.items()}
            out["grid"].append({"wake_s": wake_s, "power": power, "watts": watts, **run("jetfleet", states)})
    out["transitions"] = []
    for entry_s in TRANSITION_S:
        for wake_s in TRANSITION_S:
            states = {k: suspended_variant(k, wake_s, "lo", entry_s) for k in kinds}
            out["transitions"].append({"entry_s": entry_s, "wake_s": wake_s, **run("jetfleet", states)})
    return out


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("frames_per_joule", "pct_frames_within_slo", "bound_fraction", "sleep_bound_fraction", "asleep_s")
    return {k: m[k] for k in keys}


def markdown(doc: dict[str, Any]) -> str:
    """The fleet's table: rows wake latency, columns sleep power; cells frames/J (x awake) and % in SLO."""
    awake = doc["awake"]["frames_per_joule"]
    lines = [
        f"`{doc['fleet']}` — `jetfleet:awake`: {awake:.3f} frames/J, "
        f"{doc['awake']['pct_frames_within_slo']:.2f} % in SLO",
        "",
        "| SC7 wake s | low power | catalogue power | high power |",
        "|---|---|---|---|",
    ]
    for wake_s in WAKE_S:
        cells = []
        for power in ("lo", "cat", "hi"):
            row = next(g for g in doc["grid"] if g["wake_s"] == wake_s and g["power"] == power)
            fpj = row["frames_per_joule"]
            cells.append(f"{fpj:.3f} ({fpj / awake:.2f}x), {row['pct_frames_within_slo']:.2f} %")
        lines.append(f"| {wake_s:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def transitions_markdown(doc: dict[str, Any]) -> str:
    """The fleet's second table: rows SC7 entry latency, columns its wake latency, at the low end of its power."""
    awake = doc["awake"]["frames_per_joule"]
    lines = [
        f"`{doc['fleet']}`, SC7 at the low end of its power range — entry (rows) and wake (columns) latency, s:",
        "",
        "| entry \\ wake s | " + " | ".join(f"{w:g}" for w in TRANSITION_S) + " |",
        "|---|" + "---|" * len(TRANSITION_S),
    ]
    for entry_s in TRANSITION_S:
        cells = []
        for wake_s in TRANSITION_S:
            row = next(g for g in doc["transitions"] if g["entry_s"] == entry_s and g["wake_s"] == wake_s)
            fpj = row["frames_per_joule"]
            cells.append(f"{fpj:.3f} ({fpj / awake:.2f}x), {row['pct_frames_within_slo']:.2f} %")
        lines.append(f"| {entry_s:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)


@app.command()
def main(
    out: Path = typer.Option(..., "--out", help="write the JSON document here"),
    fleet: list[str] | None = typer.Option(None, "--fleet", help="fleet(s) to run (default: agx and loudva-cluster)"),
    cost_model: str = typer.Option("lgbm", "--cost-model", help="lgbm | oracle | DIR"),
    scenarios: Path | None = typer.Option(None, "--scenarios", help="LoudVA's scenario folder (default: shared)"),
) -> None:
    """Run the sensitivity grid; write the JSON and print the markdown tables."""
    if scenarios is None:
        from costmodel.profiles import loudva_data_dir

        data = loudva_data_dir()
        if data is None:
            raise typer.BadParameter("LoudVA's data folder not found; give --scenarios PATH", param_hint="--scenarios")
        scenarios = data / "scenarios"
    docs = [run_grid(f, cost_model, scenarios) for f in fleet or ["agx", "loudva-cluster"]]
    out.write_text(json.dumps({"cost_model": cost_model, "fleets": docs}, indent=1) + "\n")
    for doc in docs:
        print(markdown(doc) + "\n")
        print(transitions_markdown(doc) + "\n")


if __name__ == "__main__":
    app()
