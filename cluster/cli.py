"""`jetfleet up` / `jetfleet down`: a local Ray cluster for an emulated fleet (see `cluster.local`)."""

from __future__ import annotations

import typer

app = typer.Typer()


@app.command("up")
def up(
    fleet: str = typer.Option("demo", "--fleet", help="built-in fleet name or inventory YAML"),
    nodes: bool = typer.Option(False, "--nodes", help="one Ray node per device (a multi-node cluster on this machine)"),
    num_cpus: int = typer.Option(2, "--num-cpus", min=1, help="CPUs the head node offers"),
    object_store_mb: int = typer.Option(200, "--object-store-mb", min=80, help="object store of the head node"),
    metrics_port: int = typer.Option(8080, "--metrics-port", min=0, help="Prometheus scrape port (0: a free one)"),
    gcs_ft: bool = typer.Option(False, "--gcs-ft", help="GCS fault tolerance: the GCS keeps its state in Redis"),
    redis: str = typer.Option(
        "",
        "--redis",
        help="with --gcs-ft: your Redis, redis://user:password@host:port or host:port (default: jetfleet starts one)",
    ),
) -> None:
    """Start a local Ray cluster for FLEET (each device a `device:<name>` resource), token auth on."""
    from cluster import local
    from cluster.inventory import load_fleet

    spec = load_fleet(fleet)
    shape = f"{len(spec.devices) + 1} nodes (head + one per device)" if nodes else "one node"
    typer.echo(f"starting fleet {spec.name!r}: {len(spec.devices)} devices on {shape} ...")
    state = local.up(
        spec,
        per_device_nodes=nodes,
        num_cpus=num_cpus,
        object_store_mb=object_store_mb,
        metrics_port=metrics_port,
        gcs_ft=gcs_ft,
        redis_url=redis or None,
    )
    info = local.describe(state)
    typer.echo(f"Ray cluster up at {info['address']} (token auth on; token in {state.token_path})")
    typer.echo(f"  nodes:     {', '.join(info['nodes'])}")
    typer.echo(f"  dashboard: {info['dashboard']}")
    typer.echo(f"  GCS FT:    {info['gcs_ft']}")
    typer.echo(f"  metrics:   {info['metrics']}   (Prometheus; Grafana dashboard: docs/grafana/jetfleet.json)")
    typer.echo(f"  serve it:  jetfleet serve --fleet {fleet}")
    typer.echo(f"  a job:     {info['job_submit']}")
    typer.echo("  stop it:   jetfleet down")


@app.command("down")
def down() -> None:
    """Stop the cluster `jetfleet up` started (only its own processes)."""
    from cluster import local

    stopped = local.down()
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "no jetfleet cluster was running")
