"""Live experiments: replay a workload through the HTTP API once per policy and measure each run.

    python -m workloads.experiment --fleet demo --policy jetfleet --policy transparent --time-scale 20 --json out.json
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=~/.jetfleet/ray_token \\
        ray job submit --address http://127.0.0.1:<dashboard> --working-dir . -- python -m workloads.experiment ...

It joins the Ray cluster it runs in (a Ray job's, a `jetfleet up` cluster, or, when there is none, a local one
it starts), uses the running jetfleet service when there is one (else deploys one for the fleet and removes it
afterwards), and for each policy: starts a fresh run on the scheduler (`reset`), replays the workload with
`workloads.loadgen`, and reads the run's metrics from the scheduler — the simulator's own definitions of
frames/J, % frames within SLO and latency, on the scheduler's clock. With `--compare-sim` (default) the same
workload and policy also run in the simulator, side by side.

The workload: `--scenario CSV` (LoudVA format), default LoudVA's `exp1-id0` when ../shared/data is there,
else the seeded generated scenario shipped in `workloads/data/demo-scenario.csv` (same format).
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from jetfleet.types import Request

DATA_DIR = Path(__file__).parent / "data"
DEMO_SCENARIO = DATA_DIR / "demo-scenario.csv"


class Payload(str, enum.Enum):
    """What a replayed request carries: synthetic frame tensors, or JPEG images the ingress decodes."""

    frames = "frames"
    images = "images"


def default_scenario() -> Path:
    """LoudVA's exp1-id0 when the shared data is present, else the shipped generated scenario."""
    from costmodel.profiles import loudva_data_dir

    loudva = loudva_data_dir()
    if loudva is not None and (loudva / "scenarios" / "exp1-id0.csv").exists():
        return loudva / "scenarios" / "exp1-id0.csv"
    return DEMO_SCENARIO


def load_workload(paths: Sequence[str | Path]) -> list[Request]:
    """One workload from one or more scenario files, played one after another."""
    from workloads.scenarios import read_scenario

    requests: list[Request] = []
    offset_s = 0.0
    for p in paths:
        reqs = read_scenario(p, id_offset=len(requests))
        shift = offset_s - min(r.arrival_s for r in reqs) + (1.0 if requests else 0.0)
        requests += [Request(r.request_id, r.arrival_s + shift, r.n_frames, r.slo_s, stream=r.stream) for r in reqs]
        offset_s = max(r.arrival_s for r in requests)
    return requests


def run_policies(
    service: Any,
    requests: Sequence[Request],
    policies: Sequence[str],
    *,
    compare_sim: bool = True,
    progress: bool = True,
    payload: str = "frames",
) -> list[dict[str, Any]]:
    """Replay `requests` through `service` once per policy; one result row per policy."""
    from workloads.loadgen import replay

    rows = []
    for policy in policies:
        name = service.reset(policy)
        load = asyncio.run(
            replay(
                service.url,
                service.token,
                requests,
                time_scale=service.time_scale,
                payload=payload,
                progress=progress,
                description=f"{policy:>12}",
            )
        )
        live = service.run_report()
        row: dict[str, Any] = {
            "policy": name,
            "live": live,
            "client": load.summary(),
        }
        if compare_sim:
            row["sim"] = simulate_policy(requests, service.fleet, policy, service.config.cost)
        rows.append(row)
    return rows


def simulate_policy(requests: Sequence[Request], fleet: Any, policy: str, cost: str = "lgbm") -> dict[str, Any]:
    """The same workload, policy and cost model in the simulator (devices start at their top clock), under the
    live service's default overload protection (`policies.slo_admission.protect`)."""
    from costmodel.factory import make_cost_model
    from policies.registry import make_policy
    from policies.slo_admission import protect
    from simulator.engine import simulate

    cost_model = make_cost_model(cost, where="--cost-model")
    return simulate(list(requests), fleet, protect(make_policy(policy)), cost_model).metrics.to_dict()


def relative_gap(a: float | None, b: float | None) -> float | None:
    """|a - b| / |b|, or None when either is missing."""
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b == 0:
        return None
    return abs(a - b) / abs(b)


def print_table(rows: Sequence[dict[str, Any]], title: str = "measured live") -> None:
    """One line per policy: live frames/J, % frames within SLO, p95 latency, and the simulator's."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("policy", "frames/J", "% in SLO", "p95 s", "dropped", "energy J"):
        table.add_column(col, justify="right", no_wrap=True)
    has_sim = any("sim" in r for r in rows)
    if has_sim:
        for col in ("sim frames/J", "sim % in SLO", "Δ frames/J", "Δ % in SLO"):
            table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        live = r["live"]
        cells = [
            r["policy"],
            _fmt(live.get("frames_per_joule"), 3),
            _fmt(live.get("pct_frames_within_slo"), 1),
            _fmt(live.get("p95_latency_s"), 2),
            str(live.get("dropped_frames")),
            _fmt(live.get("energy_j"), 0),
        ]
        if has_sim and "sim" in r:
            sim = r["sim"]
            gap_f = relative_gap(live.get("frames_per_joule"), sim.get("frames_per_joule"))
            gap_s = relative_gap(live.get("pct_frames_within_slo"), sim.get("pct_frames_within_slo"))
            cells += [
                _fmt(sim.get("frames_per_joule"), 3),
                _fmt(sim.get("pct_frames_within_slo"), 1),
                "" if gap_f is None else f"{100 * gap_f:.1f} %",
                "" if gap_s is None else f"{100 * gap_s:.1f} %",
            ]
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 132))
    console.print(table)


def _fmt(x: Any, digits: int) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__.splitlines()[0])


@app.command()
def main(
    fleet: str = typer.Option("demo", "--fleet", help="built-in fleet name or inventory YAML (new service only)"),
    scenario: list[str] = typer.Option(None, "--scenario", help="LoudVA scenario CSV (repeatable)"),
    policy: list[str] = typer.Option(
        None, "--policy", help="policy to run (repeatable); default jetfleet, transparent"
    ),
    time_scale: float = typer.Option(20.0, "--time-scale", help="time compression of emulated devices"),
    payload: Payload = typer.Option(Payload.frames, "--payload", help="what each request body carries"),
    json_out: Path | None = typer.Option(None, "--json", help="write the results here"),
    no_sim: bool = typer.Option(False, "--no-sim", help="do not run the simulator side by side"),
    port: int = typer.Option(0, "--port", help="HTTP port of a new service (0: a free one)"),
    cost_model: str = typer.Option("lgbm", "--cost-model", help="lgbm, oracle or a saved LightGBM model's directory"),
) -> None:
    """Replay a workload through the HTTP API once per policy and measure each run."""
    from deployments.runner import open_service

    requests = load_workload(scenario or [default_scenario()])
    policies = policy or ["jetfleet", "transparent"]
    json_path = json_out.resolve() if json_out else None  # under `ray job submit` the cwd is the job's copy
    with open_service(fleet, policy=policies[0], time_scale=time_scale, port=port, cost=cost_model) as service:
        print(f"service {service.url}  fleet {service.fleet.name}  time scale {service.time_scale:g}", flush=True)
        rows = run_policies(service, requests, policies, compare_sim=not no_sim, payload=payload.value)
        print_table(rows)
        if json_path:  # before the service (and a job's working directory with it) goes away
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"results": rows}, indent=2, default=_json_default) + "\n")
            print(f"wrote {json_path}")


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


if __name__ == "__main__":
    app()
