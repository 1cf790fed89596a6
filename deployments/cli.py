"""`jetfleet serve` (the HTTP service, until Ctrl-C) and `jetfleet demo` (the whole system, measured live)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

app = typer.Typer()


def _print_access(service: object, token_file: Path | None) -> None:
    """How to reach the service; the token is printed once (curl examples read it from its file)."""
    url, token = service.url, service.token  # type: ignore[attr-defined]
    auth = ""
    if token:
        auth = (
            f' -H "Authorization: Bearer $(cat {token_file})"' if token_file else ' -H "Authorization: Bearer $TOKEN"'
        )
    typer.echo(f"  URL:   {url}   (OpenAPI docs: {url}/docs; Open Inference Protocol: {url}/v2)")
    typer.echo(f"  metrics: {_metrics_url() or 'not exported by this cluster'}   (Prometheus)")
    if token:
        typer.echo(f"  token: {token}" + (f"   (also in {token_file}, mode 0600)" if token_file else ""))
    else:
        typer.echo("  token: none (auth off)")
    typer.echo(f"  try:   curl -s{auth} {url}/v1/fleet")
    typer.echo(
        f"         curl -s{auth} -H 'Content-Type: application/json' "
        f'-d \'{{"model": "inceptionv3", "slo_ms": 500, "frames": 2}}\' {url}/v1/infer'
    )


def _metrics_url() -> str | None:
    from cluster.local import metrics_url

    try:
        return metrics_url()
    except Exception:  # noqa: BLE001 - a URL to print is not worth failing the command for
        return None


def _api_token(token_file: Path | None, token: str | None) -> tuple[str, Path]:
    """The API token from `token_file` (default $JETFLEET_HOME/api_token), made (mode 0600) when missing."""
    from cluster.launcher import ensure_token
    from cluster.local import jetfleet_home

    if token is not None:
        raise typer.BadParameter(
            "--token is removed: it puts the secret in the process arguments, where `ps` shows it to every user. "
            "Write the token to a file only you can read (chmod 600) and pass --token-file FILE.",
            param_hint="--token",
        )
    path = token_file or jetfleet_home() / "api_token"
    return ensure_token(path), path


def _print_comparison(rows: list[dict]) -> None:
    """One line: our policy against each baseline, on the live figures."""
    live = {r["policy"]: r["live"] for r in rows}
    ours = live.get("jetfleet")
    if ours is None or not ours.get("frames_per_joule"):
        return
    for name, other in live.items():
        if name == "jetfleet" or not other.get("frames_per_joule"):
            continue
        gain = ours["frames_per_joule"] / other["frames_per_joule"] - 1
        typer.echo(
            f"jetfleet vs {name}: {gain:+.1%} frames/J, "
            f"{ours['pct_frames_within_slo']:.1f} % vs {other['pct_frames_within_slo']:.1f} % frames within SLO"
        )


@app.command("serve")
def serve_cmd(
    fleet: str = typer.Option("demo", "--fleet", help="built-in fleet name or inventory YAML"),
    policy: str = typer.Option("jetfleet", "--policy", help="scheduling policy"),
    time_scale: float = typer.Option(1.0, "--time-scale", help="compress emulated devices' time by this factor"),
    port: int = typer.Option(8000, "--port", help="HTTP port (0: a free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP host (0.0.0.0 to listen on every interface)"),
    token_file: Path = typer.Option(
        None, "--token-file", help="API bearer token file, made (mode 0600) if missing [default: ~/.jetfleet/api_token]"
    ),
    token: str = typer.Option(None, "--token", hidden=True, help="removed: use --token-file"),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without a bearer token (trusted networks only)"),
    events: Path = typer.Option(None, "--events", help="write the scheduler's decision telemetry (JSON lines)"),
    streams: Path = typer.Option(
        None, "--streams", help="stream config (JSON/YAML): priorities, budgets, bounded queues; 429 when full"
    ),
    cost_model: str = typer.Option("lgbm", "--cost-model", help="lgbm, oracle or a trained model's directory"),
) -> None:
    """Serve FLEET over HTTP until Ctrl-C (joins a `jetfleet up` cluster when one runs)."""
    import contextlib
    import signal

    from cluster.inventory import load_fleet
    from cluster.local import free_port
    from deployments.app import ServiceConfig, deploy
    from deployments.runner import ray_session, serve_session

    api_token, token_path = (None, None) if no_auth else _api_token(token_file, token)
    spec = load_fleet(fleet)
    config = ServiceConfig(
        spec,
        policy=policy,
        time_scale=time_scale,
        api_token=api_token,
        events_path=str(events.resolve()) if events else None,
        streams=str(streams.resolve()) if streams else None,
        cost=cost_model,
    )
    if streams:
        from deployments.app import build_policy

        build_policy(policy, config.streams)  # a bad stream config fails here, with its file and field

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with ray_session(spec) as started, contextlib.nullcontext() if started else serve_session():
        signal.signal(signal.SIGTERM, stop)  # after ray.init, whose own handler would abort: `kill` = Ctrl-C
        typer.echo(f"deploying fleet {spec.name!r} ({len(spec.devices)} devices), policy {policy} ...")
        service = deploy(config, http_host=host, http_port=port or free_port())
        typer.echo("jetfleet is serving (Ctrl-C to stop):")
        _print_access(service, token_path)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            typer.echo("stopping ...")
        finally:
            service.delete()


def _print_asleep(rows: list[dict]) -> None:
    """One line per policy: the time each device spent asleep (scheduler seconds, as in the simulator)."""
    for r in rows:
        asleep = r["live"].get("asleep_s") or {}
        if asleep:
            per_device = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(asleep.items()))
            typer.echo(f"time asleep per device ({r['policy']}): {per_device}")


@app.command("demo")
def demo(
    fleet: str = typer.Option("demo", "--fleet", help="built-in fleet name or inventory YAML"),
    scenario: list[Path] = typer.Option(None, "--scenario", help="LoudVA scenario CSV (default: exp1-id0 or shipped)"),
    policies: str = typer.Option("jetfleet,transparent,loudva", "--policies", help="comma-separated policies"),
    time_scale: float = typer.Option(10.0, "--time-scale", help="time compression of the emulated fleet"),
    json_out: Path = typer.Option(None, "--json", help="also write the results as JSON"),
    cost_model: str = typer.Option("lgbm", "--cost-model", help="lgbm, oracle or a trained model's directory"),
) -> None:
    """Bring up an emulated fleet, serve HTTP, replay a real workload per policy and print live results."""
    import json

    from cluster.inventory import load_fleet
    from deployments.runner import open_service
    from workloads.experiment import default_scenario, load_workload, print_table, run_policies

    started = time.monotonic()
    spec = load_fleet(fleet)
    paths = scenario or [default_scenario()]
    requests = load_workload(paths)
    names = [p.strip() for p in policies.split(",") if p.strip()]
    typer.echo(
        f"jetfleet demo: fleet {spec.name!r} ({', '.join(f'{d.name}={d.kind}' for d in spec.devices)}), "
        f"workload {', '.join(p.name for p in paths)} ({len(requests)} requests, "
        f"{sum(r.n_frames for r in requests)} frames) replayed {time_scale:g}x faster over HTTP"
    )
    typer.echo("starting a local Ray cluster (token auth on) and the service ...")
    api_token, token_path = _api_token(None, None)
    with open_service(spec, policy=names[0], time_scale=time_scale, cost=cost_model, api_token=api_token) as service:
        typer.echo(f"serving after {time.monotonic() - started:.0f} s; try it by hand while the replay runs:")
        _print_access(service, token_path if service.token == api_token else None)
        rows = run_policies(service, requests, names)
        print_table(rows, title=f"measured live over HTTP on fleet {spec.name!r}, the simulator beside it")
        _print_comparison(rows)
        _print_asleep(rows)
        typer.echo("the service above stops with the demo; `jetfleet serve --fleet demo` keeps one running.")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"results": rows}, indent=2, default=str) + "\n")
        typer.echo(f"wrote {json_out}")
    typer.echo(f"demo done in {time.monotonic() - started:.0f} s; Serve and Ray are shut down.")
