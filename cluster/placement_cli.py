"""`jetfleet place`: model-driven placement of applications onto a fleet, checked by simulation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer()


@app.command("place")
def place_command(
    apps: Path = typer.Option(..., "--apps", help="Apps YAML (model, rate_hz, slo_ms per app); see cluster/apps.py."),
    fleet: str = typer.Option(..., "--fleet", "-f", help="Built-in fleet name or inventory YAML path."),
    method: list[str] = typer.Option(
        ["model"], "--method", "-m", help="model | first-fit | best-fit (repeatable: compare methods)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result (one method) or {'results': [...]}."),
    margin: float = typer.Option(0.1, "--margin", help="model: keep predicted latency this fraction under the SLO."),
    max_utilisation: float = typer.Option(0.8, "--max-utilisation", help="model: cap on a device's offered load."),
    duration_s: float = typer.Option(300.0, "--duration-s", help="Simulated seconds per device for the check."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated arrivals."),
) -> None:
    """Place apps with each --method; report apps hosted and SLO violations found by simulating the placement."""
    from rich.console import Console
    from rich.table import Table

    from cluster.apps import load_apps
    from cluster.inventory import load_fleet
    from cluster.placement import METHODS, run_placement
    from jetfleet.errors import UnknownNameError

    for m in method:
        if m not in METHODS:
            raise UnknownNameError("placement method", m, METHODS)
    config = load_apps(apps)
    inventory = load_fleet(fleet)
    results = []
    console = Console(stderr=True)
    with console.status("placing and simulating..."):
        for m in method:
            results.append(
                run_placement(
                    config,
                    inventory,
                    m,
                    apps_file=str(apps),
                    margin=margin,
                    max_utilisation=max_utilisation,
                    duration_s=duration_s,
                    seed=seed,
                )
            )
    table = Table(title=f"{config.name} on {inventory.name}: {results[0].apps} apps")
    for col in ("method", "hosted", "violations", "hosted w/o violation", "devices used", "power (W)"):
        table.add_column(col, justify="right")
    for r in results:
        used = [d for d in r.devices if d["apps"]]
        power = sum(d["predicted_power_w"] for d in used)
        table.add_row(
            r.method, str(r.hosted), str(r.violations), str(r.hosted_without_violation), str(len(used)), f"{power:.1f}"
        )
    Console().print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = results[0].to_dict() if len(results) == 1 else {"results": [r.to_dict() for r in results]}
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        typer.echo(f"wrote {json_out}", err=True)
