"""`jetfleet compare-overload` and `jetfleet report`, merged into the `jetfleet` CLI by `jetfleet.cli`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from jetfleet.errors import ConfigError, DataError

app = typer.Typer()


@app.command("compare-overload")
def compare_overload(
    config: Path = typer.Option(..., "--config", help="Experiment config (JSON/YAML): configs/overload-2task.json"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the per-stream results here"),
    events_dir: Path | None = typer.Option(
        None, "--events-dir", help="Write each policy's decision events as DIR/<label>.jsonl"
    ),
    policy: list[str] = typer.Option(
        [], "--policy", help="LABEL=SPEC to run instead of the config's policies (e.g. jetfleet=overload:edf)"
    ),
    seed: int = typer.Option(0, help="Seed of the arrivals and the device models"),
) -> None:
    """Run FIFO and jetfleet on the same stream arrivals, causally, and compare them per stream."""
    from jetfleet.telemetry import JsonlEventWriter
    from simulator.overload import compare, load_experiment

    experiment = load_experiment(config)
    if policy:
        experiment = _with_policies(experiment, policy)
    console = _console()
    writers: dict[str, JsonlEventWriter] = {}
    if events_dir is not None:
        writers = {label: JsonlEventWriter(events_dir / f"{label}.jsonl") for label in experiment.policies}
    try:
        with console.status(f"simulating {experiment.name}") as status:
            result = compare(experiment, seed=seed, sinks=writers, on_done=lambda label: status.update(f"{label} done"))
    finally:
        for w in writers.values():
            w.close()
    _print_comparison(console, result, list(experiment.policies))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {json_out}")
    for label in writers:
        console.print(f"events of {label}: {events_dir / f'{label}.jsonl'}")


@app.command("report")
def report(
    events: Path = typer.Option(..., "--events", help="Decision events, JSON lines (simulator or live runtime)"),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the per-stream summary here"),
) -> None:
    """Per stream: executed, dropped by reason, p95 latency and budget misses, from a decision-events file."""
    from simulator.overload import events_stream_stats

    stats = events_stream_stats(_read_events(events))
    summary = {stream: st.to_dict() for stream, st in stats.items()}
    console = _console()
    _print_streams(console, f"decision events: {events}", summary)
    unexplained = sum(st.dropped_by_reason.get("unexplained", 0) for st in stats.values())
    if unexplained:
        console.print(f"[red]{unexplained} drop(s) without a reason[/red]")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"events": str(events), "streams": summary}, indent=2) + "\n")
        console.print(f"wrote {json_out}")


def _console() -> Any:
    """A rich console; 120 columns when not writing to a terminal (pipes, logs, tests)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def _read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ConfigError(f"{path}: no such events file")
    events = []
    with path.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n}: not JSON ({e.msg})") from None
            if not isinstance(event, dict) or "event" not in event or "time_s" not in event:
                raise DataError(f"{path}: line {n}: not a decision event (needs 'event' and 'time_s')")
            events.append(event)
    return events


def _with_policies(experiment: Any, specs: list[str]) -> Any:
    from dataclasses import replace

    policies = {}
    for item in specs:
        label, sep, spec = item.partition("=")
        if not sep or not label or not spec:
            raise ConfigError(f"--policy {item!r}: expected LABEL=SPEC, e.g. jetfleet=overload:jetfleet")
        policies[label] = spec
    return replace(experiment, policies=policies)


def _print_comparison(console: Any, result: Mapping[str, Any], labels: list[str]) -> None:
    for label in labels:
        run = result["runs"][label]
        title = f"{label} ({run['policy']}): {run['completed']} completed, {run['dropped']} dropped"
        _print_streams(console, title, result[label])
    target = result.get("target") or {}
    if target:
        verdict = "[green]met[/green]" if target["met"] else "[red]not met[/red]"
        console.print(
            f"target ({target['policy']} {target['stream']}: p95 <= {target['budget_ms']:g} ms, none dropped): "
            f"p95 {target['p95_latency_ms']} ms, dropped {target['dropped']} -> {verdict}"
        )


def _print_streams(console: Any, title: str, streams: Mapping[str, Mapping[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("stream", "offered", "executed", "dropped", "dropped by reason", "p95 ms", "budget misses"):
        left = col in ("stream", "dropped by reason")
        table.add_column(col, justify="left" if left else "right", no_wrap=left)
    for stream, st in streams.items():
        reasons = "\n".join(f"{k} {v}" for k, v in sorted(st["dropped_by_reason"].items())) or "-"
        p95 = "-" if st["p95_latency_ms"] is None else f"{st['p95_latency_ms']:.1f}"
        table.add_row(
            stream, str(st["offered"]), str(st["executed"]), str(st["dropped"]), reasons, p95, str(st["budget_misses"])
        )
    console.print(table)
