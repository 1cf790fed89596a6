"""`jetfleet simulate`: run policies side by side on the same workloads in the discrete-event simulator.

Commands of this package are merged into the `jetfleet` CLI by `jetfleet.cli`; heavy imports (numpy
workloads, matplotlib, LightGBM) stay inside the command so `jetfleet --help` is instant.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from jetfleet.errors import ConfigError
from jetfleet.links import PREPROCESS_S_PER_FRAME

if TYPE_CHECKING:
    from costmodel.base import CostModel
    from jetfleet.metrics import RunMetrics
    from jetfleet.telemetry import DecisionEvent, EventSink
    from jetfleet.types import Request

app = typer.Typer()


@app.command("simulate")
def simulate_command(
    scenario: list[Path] = typer.Option(
        [], "--scenario", "-s", help="LoudVA scenario CSV (repeatable); results are aggregated over them."
    ),
    fleet: str = typer.Option("agx", "--fleet", "-f", help="Built-in fleet name (agx, loudva-cluster, ...) or YAML."),
    policy: list[str] = typer.Option(
        ["jetfleet"], "--policy", "-p", help="Policy spec (repeatable), e.g. loudva, fixed-batch:32, interval:0.2."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write {'results': [...]} here."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG: frames per joule against % frames within SLO."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the device noise (--noise-cv); seeded policies take theirs in the spec (random:7)."
    ),
    cost_model: str = typer.Option(
        "", "--cost-model", help="What policies consult: lgbm (default), oracle or a saved LightGBM model's directory."
    ),
    events: Path | None = typer.Option(None, "--events", help="Write every decision event as JSON lines."),
    noise_cv: float = typer.Option(0.0, "--noise-cv", help="Run-to-run latency variation of the devices (0: none)."),
    poisson_hz: float = typer.Option(
        0.0, "--poisson-hz", help="Without --scenario: a Poisson workload of this many requests per second."
    ),
    duration_s: float = typer.Option(300.0, "--duration-s", help="Length of the --poisson-hz workload."),
    data_path: bool = typer.Option(
        True,
        "--data-path/--no-data-path",
        help="Charge the data path: controller preprocessing and each device's link (jetfleet.links).",
    ),
    preprocess_ms_per_frame: float = typer.Option(
        PREPROCESS_S_PER_FRAME * 1e3,
        "--preprocess-ms-per-frame",
        min=0.0,
        help="Controller preprocessing per frame with --data-path (default: measured, jetfleet.links).",
    ),
    energy_from_zero: bool = typer.Option(
        False, "--energy-from-zero", help="Integrate energy from time 0 of each workload (as LoudVA measured it)."
    ),
) -> None:
    """Run every --policy on the same workloads and compare energy and SLO attainment."""
    from rich.console import Console
    from rich.progress import Progress

    from cluster.inventory import load_fleet
    from policies.registry import make_policy

    console = Console(stderr=True)
    fleet_obj = load_fleet(fleet)
    for spec in policy:
        make_policy(spec)  # unknown names fail here, before any work
    workloads = _workloads(scenario, poisson_hz, duration_s, seed)
    cost, cost_name = _cost_model(cost_model)
    noise = _noise(noise_cv)
    results: list[RunMetrics] = []
    writer = _event_writer(events)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("simulating", total=len(policy) * len(workloads))
            for spec in policy:
                runs = []
                for label, requests in workloads:
                    progress.update(task, description=f"{spec} on {label}")
                    sink = _labelled(writer, spec, label) if writer is not None else None
                    start_s = 0.0 if energy_from_zero else None
                    path = (data_path, preprocess_ms_per_frame / 1e3)
                    runs.append(_run(requests, fleet_obj, spec, cost, seed, sink, noise, start_s, path))
                    progress.advance(task)
                results.append(_aggregate(runs, spec))
    finally:
        if writer is not None:
            writer.close()
    _print_table(results, fleet_obj.name, cost_name, len(workloads), len(fleet_obj.devices))
    if json_out is not None:
        _write_json(json_out, results, fleet_obj.name, cost_name, seed, [label for label, _ in workloads])
        console.print(f"wrote {json_out}")
    if plot is not None:
        plot_results(results, plot, title=f"{len(workloads)} workload(s) on fleet {fleet_obj.name}")
        console.print(f"wrote {plot}")


def _workloads(
    scenarios: Sequence[Path], poisson_hz: float, duration_s: float, seed: int
) -> list[tuple[str, list[Request]]]:
    from workloads.scenarios import read_scenario

    if scenarios:
        return [(p.name, read_scenario(p)) for p in scenarios]
    if poisson_hz > 0:
        from workloads.arrivals import poisson

        return [(f"poisson-{poisson_hz:g}hz", poisson(poisson_hz, duration_s, seed=seed, frames=(1, 8), slo_s=(1, 10)))]
    raise ConfigError("no workload: give --scenario CSV (LoudVA format, repeatable) or --poisson-hz RATE")


def _cost_model(name: str) -> tuple[CostModel, str]:
    """The cost model policies consult (`costmodel.factory.make_cost_model`; default `lgbm`) and its label."""
    from costmodel.factory import make_cost_model

    name = name or "lgbm"
    return make_cost_model(name, where="--cost-model"), name


def _noise(cv: float) -> Any:
    if cv < 0:
        raise ConfigError(f"--noise-cv must be >= 0, got {cv}")
    if cv == 0:
        return None
    from costmodel.device_models import NoiseModel

    return NoiseModel(cv=cv)


def _run(
    requests: list[Request],
    fleet: Any,
    spec: str,
    cost: CostModel,
    seed: int,
    sink: Any,
    noise: Any,
    start_s: float | None,
    data_path: tuple[bool, float] = (True, PREPROCESS_S_PER_FRAME),
) -> Any:
    from policies.registry import make_policy
    from simulator.engine import simulate

    policy = make_policy(spec)
    return simulate(
        requests,
        fleet,
        policy,
        cost,
        seed=seed,
        sink=sink,
        noise=noise,
        start_s=start_s,
        data_path=data_path[0],
        preprocess_s_per_frame=data_path[1],
    )


def _aggregate(runs: list[Any], spec: str) -> RunMetrics:
    from simulator.engine import aggregate

    return aggregate(runs, spec)


def _event_writer(path: Path | None) -> Any:
    if path is None:
        return None
    from jetfleet.telemetry import JsonlEventWriter

    return JsonlEventWriter(path)


def _labelled(writer: EventSink, policy: str, workload: str) -> Callable[[DecisionEvent], None]:
    """A sink that tags each event with the policy and workload it came from."""

    def sink(event: DecisionEvent) -> None:
        writer(dataclasses.replace(event, detail={**event.detail, "policy": policy, "workload": workload}))

    return sink


def _print_table(results: Sequence[RunMetrics], fleet: str, cost: str, n_workloads: int, fleet_size: int = 1) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{n_workloads} workload(s) on fleet {fleet}; policies consult the {cost} cost model")
    headers = ("policy", "frames", "% within SLO", "energy J", "frames/J", "p50 s", "p95 s", "dropped", "bound")
    for header in (*headers, "sleep bound", "asleep %"):
        table.add_column(header, justify="left" if header == "policy" else "right")
    for m in results:
        table.add_row(
            m.policy,
            str(m.frames),
            f"{m.pct_frames_within_slo:.1f}",
            f"{m.energy_j:,.0f}",
            f"{m.frames_per_joule:.3f}",
            f"{m.p50_latency_s:.2f}",
            f"{m.p95_latency_s:.2f}",
            str(m.dropped_frames),
            f"{m.bound_fraction:.3f}",
            f"{m.sleep_bound_fraction:.3f}",
            f"{100 * m.asleep_s / m.duration_s / max(1, fleet_size):.1f}" if m.duration_s > 0 else "-",
        )
    import shutil

    Console(width=max(120, shutil.get_terminal_size().columns)).print(table)


def _write_json(
    path: Path, results: Sequence[RunMetrics], fleet: str, cost: str, seed: int, workloads: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "results": [m.to_dict() for m in results],
        "fleet": fleet,
        "cost_model": cost,
        "seed": seed,
        "workloads": workloads,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def plot_results(
    results: Sequence[RunMetrics],
    path: Path,
    *,
    title: str = "",
    reference: dict[str, tuple[float, float]] | None = None,
) -> None:
    """Frames per joule against % frames within SLO, one labelled point per policy (Agg backend).

    `reference` adds hollow points, e.g. LoudVA's measured table: {label: (pct_within_slo, frames_per_joule)}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for m in results:
        ax.scatter(m.pct_frames_within_slo, m.frames_per_joule, s=50)
        ax.annotate(m.policy, (m.pct_frames_within_slo, m.frames_per_joule), textcoords="offset points", xytext=(5, 5))
    for label, (pct, fpj) in (reference or {}).items():
        ax.scatter(pct, fpj, s=50, facecolors="none", edgecolors="black")
        ax.annotate(label, (pct, fpj), textcoords="offset points", xytext=(5, -12), fontsize=9, color="dimgray")
    ax.set_xlabel("frames within SLO (%)", fontsize=11)
    ax.set_ylabel("frames per joule (frames/J)", fontsize=11)
    ax.set_title(title or "policies: energy efficiency vs SLO attainment", fontsize=12)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
