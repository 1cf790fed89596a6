"""The `jetfleet loadgen` command, merged into the `jetfleet` CLI by `jetfleet.cli`.

jetfleet loadgen --scenario server|singlestream|multistream|offline --url URL [--token-file F] --out DIR
                 [--model M] [--slo-ms MS] [--qps Q] [--duration-s S] [--min-queries N]
    Drive a running service (`jetfleet serve`) with MLCommons LoadGen as the system under test
    (`workloads.mlperf_loadgen`); write LoadGen's summary and detail logs and jetfleet_loadgen.json
    (VALID/INVALID, latency percentiles, achieved QPS, frames/J over the same window) to DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer()


def _client_token(token_file: Path | None) -> str | None:
    """The token to send: from --token-file, else $JETFLEET_TOKEN, else the file `jetfleet serve` writes. Never a
    command-line argument (`ps` would show it to every user)."""
    from cluster.launcher import ensure_token
    from cluster.local import jetfleet_home

    if token_file is not None:
        if not token_file.exists():
            raise typer.BadParameter(f"{token_file}: no such token file", param_hint="--token-file")
        return ensure_token(token_file)
    if os.environ.get("JETFLEET_TOKEN"):
        return os.environ["JETFLEET_TOKEN"]
    default = jetfleet_home() / "api_token"
    return ensure_token(default) if default.exists() else None


@app.command("loadgen")
def loadgen(
    scenario: str = typer.Option("server", "--scenario", help="server, singlestream, multistream or offline"),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="the service's base URL"),
    token_file: Path = typer.Option(
        None,
        "--token-file",
        help="API bearer token file (default: $JETFLEET_TOKEN, else ~/.jetfleet/api_token when it exists)",
    ),
    out: Path = typer.Option(Path("loadgen-out"), "--out", help="folder for LoadGen's logs and the report"),
    model: str = typer.Option("inceptionv3", "--model", help="model every request names"),
    slo_ms: float = typer.Option(500.0, "--slo-ms", help="request SLO and LoadGen's target latency (ms)"),
    qps: float = typer.Option(10.0, "--qps", help="Server: offered queries/s; Offline: expected throughput"),
    duration_s: float = typer.Option(
        60.0, "--duration-s", help="LoadGen's minimum duration (MLPerf requires 600 s; shorter is not compliant)"
    ),
    min_queries: int = typer.Option(1, "--min-queries", min=1, help="LoadGen's minimum query count"),
) -> None:
    """Run one MLCommons LoadGen test against a running jetfleet service."""
    from workloads.mlperf_loadgen import LoadGenConfig, run_loadgen

    config = LoadGenConfig(
        scenario=scenario.lower(),
        model=model,
        slo_ms=slo_ms,
        target_qps=qps,
        min_duration_s=duration_s,
        min_query_count=min_queries,
    )
    report = run_loadgen(url.rstrip("/"), _client_token(token_file), config, out)
    lg, jf = report["loadgen"], report["jetfleet"]
    typer.echo(f"LoadGen {lg.get('scenario', scenario)}: {lg.get('result', '?')}  ({report['note'] or 'compliant'})")
    for key, value in lg.items():
        if key not in ("scenario", "mode", "result"):
            typer.echo(f"  {key}: {value if isinstance(value, bool) else format(value, 'g')}")
    typer.echo(
        f"jetfleet: {jf['frames_completed']} frames completed in {jf['window_s']:.1f} s, "
        f"{jf['energy_j']:.1f} J, {jf['frames_per_j']} frames/J; answers {jf['answers_by_status']}"
    )
    typer.echo(f"wrote {out / 'jetfleet_loadgen.json'} and LoadGen's logs in {out}")
