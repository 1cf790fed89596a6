"""`jetfleet place`: model-driven placement of applications onto a fleet, checked by simulation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer()

DEFAULT_MARGIN = 0.06  # cluster.placement.DEFAULT_MARGIN (not imported here: `jetfleet --help` stays fast)


@app.command("place")
def place_command(
    apps: Path = typer.Option(..., "--apps", help="Apps YAML (model, rate_hz, slo_ms per app); see cluster/apps.py."),
    fleet: str = typer.Option(..., "--fleet", "-f", help="Built-in fleet name or inventory YAML path."),
    method: list[str] = typer.Option(
        ["model"], "--method", "-m", help="model | first-fit | best-fit (repeatable: compare methods)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result (one method) or {'results': [...]}."),
    margin: float = typer.Option(
        DEFAULT_MARGIN, "--margin", help="model: keep every predicted mean latency this fraction under its SLO."
    ),
    max_utilisation: float | None = typer.Option(
        None, "--max-utilisation", help="model: also cap the fraction of time a device computes (Ibis: 0.8; off)."
    ),
    max_batch: int = typer.Option(8, "--max-batch", help="Engines batch up to this many waiting requests (1: off)."),
    duration_s: float = typer.Option(300.0, "--duration-s", help="Simulated seconds per device for the check."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated arrivals."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG: apps hosted (and violating) per method."),
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
                    max_batch=max_batch,
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
    if plot is not None:
        plot_hosted({f"{config.name} on {inventory.name}": results}, plot)
        typer.echo(f"wrote {plot}", err=True)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = results[0].to_dict() if len(results) == 1 else {"results": [r.to_dict() for r in results]}
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        typer.echo(f"wrote {json_out}", err=True)


def plot_hosted(panels: dict, path: Path) -> None:
    """One panel per setup: apps hosted without violation and with violation, per placement method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, results) in zip(axes[0], panels.items(), strict=True):
        names = [r.method for r in results]
        ok = [r.hosted_without_violation for r in results]
        bad = [r.violations for r in results]
        ax.bar(names, ok, color="tab:green", label="hosted, SLO met (simulated)")
        ax.bar(names, bad, bottom=ok, color="tab:red", label="hosted, SLO violated (simulated)")
        for i, r in enumerate(results):
            ax.text(i, r.hosted + 0.3, f"{r.hosted}", ha="center", fontsize=10)
        ax.axhline(results[0].apps, color="gray", linestyle=":", label=f"apps offered ({results[0].apps})")
        ax.set_ylabel("applications")
        ax.set_xlabel("placement method")
        ax.set_title(title)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command("colocation")
def colocation_command(
    ibis: Path = typer.Option(..., "--ibis", help="Ibis data folder (../shared/data/ibis)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write predicted vs measured per model."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG: predicted against measured response time."),
) -> None:
    """Validate the co-location latency model against Ibis's GPU (PS) and Edge TPU (FCFS) measurements."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from costmodel.colocation import mean_abs_error_pct, validate_edgetpu_fcfs, validate_trt_ps

    sets = {
        "Jetson Nano TensorRT, processor sharing": validate_trt_ps(ibis / "trt_ps_validation.csv"),
        "Edge TPU, FCFS with model switches": validate_edgetpu_fcfs(ibis / "edgetpu_fcfs_validation.csv"),
    }
    console = Console()
    payload = {}
    for title, rows in sets.items():
        table = Table(title=f"{title}: mean error {mean_abs_error_pct(rows):.1f} %")
        for col in ("model", "isolated ms", "measured ms", "predicted ms", "error %"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(
                r.model, f"{r.isolated_ms:.1f}", f"{r.measured_ms:.1f}", f"{r.predicted_ms:.1f}", f"{r.error_pct:.1f}"
            )
        console.print(table)
        payload[title] = {
            "mean_error_pct": mean_abs_error_pct(rows),
            "rows": [{**asdict(r), "error_pct": r.error_pct} for r in rows],
        }
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
    if plot is not None:
        _plot_validation(sets, plot)
        typer.echo(f"wrote {plot}", err=True)


def _plot_validation(sets: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    top = 0.0
    for (title, rows), marker in zip(sets.items(), "os", strict=False):
        ax.scatter([r.measured_ms for r in rows], [r.predicted_ms for r in rows], marker=marker, s=50, label=title)
        ax.scatter(
            [r.measured_ms for r in rows],
            [r.isolated_ms for r in rows],
            marker=marker,
            s=30,
            facecolors="none",
            edgecolors="gray",
        )
        top = max(top, *(r.measured_ms for r in rows), *(r.predicted_ms for r in rows))
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="gray", label="isolated time (no co-location model)")
    ax.plot([0, top * 1.05], [0, top * 1.05], color="gray", linestyle=":", label="prediction = measurement")
    ax.set_xlabel("measured concurrent response time (ms)")
    ax.set_ylabel("predicted response time (ms)")
    ax.set_title("Co-location model against Ibis measurements")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
