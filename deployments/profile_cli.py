"""The `jetfleet profile` command, merged into the `jetfleet` CLI by `jetfleet.cli`.

jetfleet profile --fleet NAME|YAML --out CSV [--devices ...] [--model(s) ...] [--freqs MHz,...]
                 [--batches ...] [--warmup N] [--repetitions N] [--speed-factor K] [--ray/--local]
                 [--repository DIR]
    Sweep GPU frequency × batch on each device with its own engine and power meter; write the profile
    table that `jetfleet costmodel train --profiles` and the profiling notebook read. Locally it builds the
    device runtimes in this process; on a Ray cluster (`--ray`, or when RAY_ADDRESS is set, as under
    `ray job submit --working-dir . -- jetfleet profile ...`) each device is swept by an actor pinned to
    its `device:<name>` resource, or through the running service's deployment of it when there is one.
    A model of a model repository (`jetfleet models add`) is profiled like a built-in one: name the
    repository with `--repository` (or $JETFLEET_MODEL_REPOSITORY, or the inventory's `model_repository`).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import typer

from jetfleet.errors import ConfigError, DeviceError

app = typer.Typer()


def _split(values: list[str] | None, what: str, cast: type = str) -> list:
    """Accept both `--x a --x b` and `--x a,b`."""
    out = []
    for v in values or []:
        for tok in str(v).split(","):
            tok = tok.strip()
            if not tok:
                continue
            try:
                out.append(cast(tok))
            except ValueError:
                raise ConfigError(f"--{what}: {tok!r} is not a valid {cast.__name__}") from None
    return out


@app.command("profile")
def profile(
    fleet: str = typer.Option(..., "--fleet", help="built-in fleet name or inventory YAML"),
    out: Path = typer.Option(..., "--out", help="profile table to write (CSV)"),
    devices: list[str] = typer.Option(None, "--devices", help="devices to sweep (default: all), comma-separated"),
    models: list[str] = typer.Option(
        None, "--models", "--model", help="models (default: the device's, else inceptionv3)"
    ),
    freqs: list[str] = typer.Option(None, "--freqs", help="GPU frequencies in MHz (default: all the device lists)"),
    batches: list[str] = typer.Option(None, "--batches", help="batch sizes (default: 1,2,3,4,6,8,... to max)"),
    warmup: int = typer.Option(1, "--warmup", min=0, help="unmeasured runs before each point"),
    repetitions: int = typer.Option(3, "--repetitions", min=1, help="measured runs per point (mean is kept)"),
    speed_factor: float = typer.Option(
        100.0, "--speed-factor", help="emulated engines only: compress modelled time (latency is reported uncompressed)"
    ),
    use_ray: bool = typer.Option(
        None,
        "--ray/--local",
        help="Ray actors on a running cluster, or runtimes in this process (default: Ray when RAY_ADDRESS is set)",
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster address (default: RAY_ADDRESS or auto)"),
    repository: Path = typer.Option(
        None, "--repository", help="model repository of the models (default: $JETFLEET_MODEL_REPOSITORY)"
    ),
) -> None:
    """Sweep GPU frequency × batch on each device and write the profile table (CSV)."""
    from actors.sweeps import plan_sweeps
    from cluster.inventory import fleet_from_dict, load_fleet
    from costmodel.model_zoo import REPOSITORY_ENV

    if not speed_factor > 0:
        raise ConfigError(f"--speed-factor must be > 0, got {speed_factor}")
    loaded = load_fleet(fleet)
    root = repository or os.environ.get(REPOSITORY_ENV)
    if root:  # the fleet carries it to every device's process (Ray actors included)
        raw = loaded.model_dump(mode="json", exclude_none=True)
        loaded = fleet_from_dict({**raw, "model_repository": str(Path(root).resolve())}, f"fleet {fleet}")
    plans = plan_sweeps(
        loaded,
        devices=_split(devices, "devices"),
        models=_split(models, "models"),
        freqs_mhz=_split(freqs, "freqs", float),
        batches=_split(batches, "batches", int),
        warmup=warmup,
        repetitions=repetitions,
    )
    if use_ray is None:
        use_ray = bool(address or os.environ.get("RAY_ADDRESS"))
    result = _run_with_progress(plans, speed_factor, use_ray, address)
    table = result.table()
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    _summary(table, out)
    if result.failures:
        failed = "; ".join(f"{d}: {why}" for d, why in sorted(result.failures.items()))
        raise DeviceError(f"profiling failed on {len(result.failures)} device(s) ({len(table)} rows written): {failed}")


def _run_with_progress(plans, speed_factor: float, use_ray: bool, address: str | None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from actors.sweeps import sweep_local, sweep_ray
    from deployments.runner import running_device_handle

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {p.device.name: progress.add_task(f"{p.device.name} ({p.device.kind})", total=None) for p in plans}

        def on_start(device: str, total: int) -> None:
            progress.update(tasks[device], total=total)

        def on_point(device: str) -> None:
            progress.advance(tasks[device])

        kw = {"speed_factor": speed_factor, "on_start": on_start, "on_point": on_point}
        if not use_ray:
            return asyncio.run(sweep_local(plans, **kw))
        import ray

        ray.init(address=address or "auto", ignore_reinit_error=True, logging_level="ERROR", log_to_driver=False)
        try:
            return asyncio.run(sweep_ray(plans, device_handle=running_device_handle, **kw))
        finally:
            ray.shutdown()


def _summary(table, out: Path) -> None:
    """Per device and model: points, and the lowest-energy-per-frame configuration."""
    from rich.console import Console
    from rich.table import Table

    view = Table(title=f"Profile written to {out} ({len(table)} rows)")
    for col in ("device", "kind", "model", "points", "best frames/J", "at MHz", "batch", "latency ms"):
        view.add_column(col, justify="left" if col in ("device", "kind", "model") else "right")
    if len(table):
        table = table.assign(frames_per_j=table["batch"] / table["energy_j"])
        for (device, model), grp in table.groupby(["device", "model"], sort=True):
            best = grp.loc[grp["frames_per_j"].idxmax()]
            view.add_row(
                device,
                str(best["kind"]),
                model,
                str(len(grp)),
                f"{best['frames_per_j']:.3f}",
                f"{best['freq_hz'] / 1e6:g}",
                str(int(best["batch"])),
                f"{best['latency_s'] * 1e3:.1f}",
            )
    Console().print(view)
