"""`jetfleet devices ...`: the device catalogue and the emulated device models.

jetfleet devices list                       the catalogue, one line per kind
jetfleet devices show KIND                  one kind: specs, sources, its default link, its device model at a glance
jetfleet devices calibrate --profiles PATH --json OUT
                                            the committed device models against measured rows (MAPE)
jetfleet devices fit --data DIR --out PATH  refit the coefficients from ../shared/data (LoudVA + Ibis)
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import typer

from jetfleet.errors import ConfigError

devices_app = typer.Typer(no_args_is_help=True)


@devices_app.command("list")
def list_kinds() -> None:
    """List the device kinds of the catalogue."""
    from rich.console import Console
    from rich.table import Table

    from jetfleet.catalogue import CATALOGUE

    table = Table(title="Device catalogue")
    for col in ("kind", "name", "GPU MHz", "idle W", "f-change s", "memory GB", "max batch", "cores", "GB/s"):
        table.add_column(col, justify="left" if col in ("kind", "name") else "right")
    for k in CATALOGUE.values():
        freqs = f"{k.min_freq_hz / 1e6:g}-{k.max_freq_hz / 1e6:g} ({len(k.freqs_hz)})"
        table.add_row(
            k.key,
            k.display_name,
            freqs,
            f"{k.idle_power_w:g}",
            f"{k.freq_change_delay_s:g}",
            f"{k.memory_gb:g}",
            str(k.max_batch),
            str(k.gpu_cores),
            f"{k.mem_bandwidth_gbps:g}",
        )
    Console().print(table)


@devices_app.command("show")
def show(
    kind: str = typer.Argument(..., help="catalogue key, e.g. agx-xavier"),
    model: str = typer.Option("inceptionv3", help="model whose curve to show"),
) -> None:
    """Show one kind: its catalogue entry with sources and its device model at min/max clock."""
    from rich.console import Console
    from rich.table import Table

    from costmodel.device_models import batch_ladder, device_model
    from costmodel.frames import frame_bytes
    from jetfleet.catalogue import get_kind
    from jetfleet.links import LINK_SOURCES, default_link

    k = get_kind(kind)
    dm = device_model(kind)
    console = Console()
    console.print(f"[bold]{k.key}[/bold]  {k.display_name}  (device model: {dm.coefficients.origin})")
    console.print(f"  GPU frequencies (MHz): {', '.join(f'{f / 1e6:g}' for f in k.freqs_hz)}")
    for name, src in k.sources.items():
        console.print(f"  source of {name}: {src}")
    link = default_link(kind)
    per_frame = f"; {link.transfer_s(frame_bytes(model)) * 1e3:.1f} ms a {model} frame" if not link.local else ""
    console.print(f"  default link from the controller: {link.describe()}{per_frame} ({LINK_SOURCES.get(kind, '')})")
    table = Table(title=f"{kind} / {model}")
    for col in ("MHz", "batch", "latency ms", "power W", "energy J", "J/frame"):
        table.add_column(col, justify="right")
    batches = sorted(set(batch_ladder(k.max_batch)[::2]) | {k.max_batch})
    for f in sorted({k.min_freq_hz, k.max_freq_hz}):
        for b in batches:
            lat, power = dm.expected_latency_s(model, b, f), dm.busy_power_w(model, b, f)
            cells = (f / 1e6, b, lat * 1e3, power, lat * power, lat * power / b)
            specs = ("g", "d", ".1f", ".2f", ".3f", ".3f")
            table.add_row(*(f"{v:{spec}}" for v, spec in zip(cells, specs, strict=True)))
    console.print(table)


@devices_app.command("calibrate")
def calibrate(
    profiles: Path = typer.Option(..., "--profiles", help="Profiling.csv, LoudVA energy/ or a profile table"),
    json_out: Path = typer.Option(None, "--json", help="write {'devices': {KIND: {...}}} here"),
) -> None:
    """Compare the committed device model of each kind in PROFILES against its measured rows."""
    from rich.console import Console
    from rich.table import Table

    from costmodel.calibration import calibration_report
    from costmodel.profiles import read_profiles

    report = calibration_report(read_profiles(profiles))
    table = Table(title=f"Device models vs {profiles}")
    for col in ("kind", "rows", "latency MAPE %", "energy MAPE %"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for kind, r in report.items():
        table.add_row(kind, str(r["n_rows"]), f"{r['latency_mape_pct']:.2f}", f"{r['energy_mape_pct']:.2f}")
    Console().print(table)
    if json_out is not None:
        _write_json(json_out, {"devices": report, "profiles": str(profiles)})


@devices_app.command("fit")
def fit(
    data: Path = typer.Option(..., "--data", help="folder holding loudva/ (and optionally ibis/)"),
    out: Path = typer.Option(..., "--out", help="where to write the coefficients JSON"),
) -> None:
    """Refit the device models from LoudVA's measurements and write the coefficients JSON."""
    from rich.console import Console

    from costmodel.calibration import build_coefficients, write_coefficients

    loudva = data / "loudva"
    if not (loudva / "Profiling.csv").exists():
        raise ConfigError(f"{data}: no loudva/Profiling.csv under it")
    ibis = data / "ibis" if (data / "ibis" / "trt_ps_validation.csv").exists() else None
    with Console().status("fitting device models"):
        doc = build_coefficients(loudva, ibis, fit_date=datetime.date.today().isoformat())
    write_coefficients(doc, out)
    for kind, rec in doc["kinds"].items():
        if "fit" in rec:
            fit_ = rec["fit"]
            typer.echo(
                f"{kind}: latency MAPE {fit_['latency_mape_pct']:.2f} %, energy MAPE {fit_['energy_mape_pct']:.2f} %"
                f" over {fit_['n_rows']} rows"
            )
    typer.echo(f"wrote {out}")


def _write_json(path: Path, payload: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as e:
        raise ConfigError(f"{path}: cannot write JSON: {e}") from None
