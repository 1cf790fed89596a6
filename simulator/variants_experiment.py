"""The model-variant experiment: client streams on changing uplinks, served by jetfleet and by Jellyfish.

Grid (issue #6): clients {1, 2, 4, 8} x fps {15, 25} x SLO {75, 100, 150} ms x traces {wifi, lte, step}.
One run of one policy at one grid point:

1. Every client gets an uplink trace (`workloads.network`; Wi-Fi and LTE traces seeded per client, the
   step trace shared). Every `REPLAN_S` the policy re-plans each stream's variant from the bandwidth the
   client measured over the last interval (its mean), the fps, the SLO and the fleet (`replan`).
2. Each client captures frames at its fps (random phase). A frame is uploaded at the input resolution of
   the variant planned for its stream at capture time; it reaches the queue after the upload, with what is
   left of its SLO as `slo_s` (deadline = capture + SLO) and the upload time as `upload_s`. A frame whose
   upload alone exceeds the SLO never reaches the server: a client-side drop.
3. The simulator (`simulator.engine.simulate`) runs the policy over the fleet with the variant-aware
   device models; the policy puts the variant it serves in `Dispatch.model`.

Reported per run: miss rate (frames not completed within SLO, drops of either side included, over all
captured frames), fps-weighted accuracy (mean credited accuracy of the frames served within SLO; every
client of a grid point has the same fps), energy (J) and J per on-time frame, and the planner's decision
time per re-plan. `python -m simulator.variants_experiment --help` runs the full grid.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from cluster.inventory import Fleet, load_fleet
from costmodel.variants import VariantCostModel, frame_bits, get_variant, reference_variant, wrap_device_models
from jetfleet.catalogue import get_kind
from jetfleet.types import DeviceState, OutcomeStatus, Request
from policies.variants import REPLAN_S, ClientInfo, StreamPlanning, credited_accuracy
from workloads.network import BandwidthTrace, make_trace, upload_time_s

CLIENTS = (1, 2, 4, 8)
FPS = (15.0, 25.0)
SLOS_S = (0.075, 0.100, 0.150)
TRACES = ("wifi", "lte", "step")
POLICIES = ("jetfleet-variants", "jellyfish")
DEFAULT_FLEET = Path(__file__).resolve().parent.parent / "configs" / "fleet-variants.yaml"

__all__ = ["CLIENTS", "FPS", "POLICIES", "SLOS_S", "TRACES", "GridPoint", "RunRow", "run_grid", "run_point"]


@dataclass(frozen=True)
class GridPoint:
    clients: int
    fps: float
    slo_s: float
    trace: str


@dataclass
class RunRow:
    """One policy at one grid point."""

    policy: str
    clients: int
    fps: float
    slo_ms: float
    trace: str
    frames: int  # captured
    within_slo: int
    client_drops: int  # uploads longer than the SLO
    server_drops: int
    miss_rate: float  # 1 - within_slo / frames
    accuracy_pct: float  # fps-weighted credited accuracy of on-time frames
    energy_j: float
    j_per_frame: float  # energy per on-time frame
    decision_ms_mean: float  # planner time per re-plan (driver's clock)
    decision_ms_max: float
    variants: dict[str, int]  # frames served within SLO per variant


def _make_policy(name: str, seed: int) -> Any:
    from policies.jellyfish import JellyfishPlanner, JellyfishPolicy
    from policies.variants import JetfleetVariantsPolicy

    if name == "jellyfish":
        return JellyfishPolicy(JellyfishPlanner(seed=seed))
    if name == "jetfleet-variants":  # the clients report their bandwidth (`_plan`): no server-side timer
        return JetfleetVariantsPolicy(replan_every_s=None)
    from policies.registry import make_policy

    return make_policy(name)


def _traces(point: GridPoint, duration_s: float, seed: int) -> list[BandwidthTrace]:
    return [make_trace(point.trace, duration_s, seed=seed * 1000 + i) for i in range(point.clients)]


def _plan(policy: Any, point: GridPoint, family: str, traces: Sequence[BandwidthTrace], devices, cost, duration_s):
    """Re-plan every REPLAN_S with what the clients measured; returns planner times in ms."""
    times_ms: list[float] = []
    if not isinstance(policy, StreamPlanning):
        return times_ms
    for t in np.arange(0.0, duration_s, REPLAN_S):
        clients = [
            ClientInfo(f"c{i}", family, point.fps, point.slo_s, tr.mean_over(max(0.0, t - REPLAN_S), t))
            for i, tr in enumerate(traces)
        ]
        started = time.perf_counter()
        policy.replan(float(t), clients, devices, cost)
        times_ms.append(1000.0 * (time.perf_counter() - started))
    return times_ms


def _frames(policy: Any, point: GridPoint, family: str, traces, duration_s: float, seed: int):
    """Requests reaching the server, the variant each was uploaded at, and the client-side drops."""
    rng = np.random.default_rng(seed)
    timeline = policy.timeline if isinstance(policy, StreamPlanning) else None
    requests: list[Request] = []
    uploaded: dict[int, str] = {}
    captured = client_drops = 0
    fallback = reference_variant(family).name
    for i, trace in enumerate(traces):
        stream = f"c{i}"
        for t in np.arange(rng.uniform(0, 1.0 / point.fps), duration_s, 1.0 / point.fps):
            captured += 1
            variant = (timeline.variant_at(stream, float(t)) if timeline is not None else None) or fallback
            up_s = upload_time_s(trace, float(t), frame_bits(get_variant(variant).input_hw))
            left_s = point.slo_s - up_s
            if left_s <= 1e-6:
                client_drops += 1
                continue
            rid = len(requests)
            requests.append(Request(rid, float(t) + up_s, 1, left_s, model=family, stream=stream, upload_s=up_s))
            uploaded[rid] = variant
    return requests, uploaded, captured, client_drops


def run_point(
    point: GridPoint,
    policy_name: str,
    *,
    fleet: Fleet,
    family: str = "mobilenetv2",
    duration_s: float = 30.0,
    seed: int = 0,
) -> RunRow:
    """Run one policy at one grid point (see module docstring)."""
    from costmodel.device_models import OracleCostModel, device_model
    from costmodel.view import CostView
    from policies.context import with_device_facts
    from simulator.engine import simulate

    cost = VariantCostModel(OracleCostModel())
    truth = wrap_device_models({d.kind: device_model(d.kind) for d in fleet.devices})
    devices = [with_device_facts(DeviceState(d.name, d.kind, get_kind(d.kind).max_freq_hz)) for d in fleet.devices]
    policy = _make_policy(policy_name, seed)
    traces = _traces(point, duration_s, seed)
    times_ms = _plan(policy, point, family, traces, devices, CostView(cost), duration_s)
    requests, uploaded, captured, client_drops = _frames(policy, point, family, traces, duration_s, seed)
    # data_path=False: this experiment's network is the clients' uplink, modelled above (`_frames`); as in
    # Jellyfish's setting, frames go from the client straight to the GPU server, with no controller hop between.
    result = simulate(requests, fleet, policy, cost, device_models=truth, seed=seed, data_path=False)
    by_id = {r.request_id: r for r in requests}
    within, acc, served = 0, 0.0, {}
    server_drops = 0
    for o in result.outcomes:
        r = by_id[o.request_id]
        if o.status is not OutcomeStatus.COMPLETED:
            server_drops += 1
        elif o.time_s <= r.deadline_s + 1e-9:
            within += 1
            acc += credited_accuracy(o.model, uploaded[o.request_id])
            served[o.model] = served.get(o.model, 0) + 1
    return RunRow(
        policy=policy_name,
        clients=point.clients,
        fps=point.fps,
        slo_ms=round(point.slo_s * 1000, 3),
        trace=point.trace,
        frames=captured,
        within_slo=within,
        client_drops=client_drops,
        server_drops=server_drops,
        miss_rate=1.0 - within / captured if captured else math.nan,
        accuracy_pct=acc / within if within else math.nan,
        energy_j=result.energy_j,
        j_per_frame=result.energy_j / within if within else math.nan,
        decision_ms_mean=float(np.mean(times_ms)) if times_ms else 0.0,
        decision_ms_max=float(np.max(times_ms)) if times_ms else 0.0,
        variants=dict(sorted(served.items())),
    )


def grid(
    clients: Iterable[int] = CLIENTS,
    fps: Iterable[float] = FPS,
    slos_s: Iterable[float] = SLOS_S,
    traces: Iterable[str] = TRACES,
) -> list[GridPoint]:
    return [GridPoint(c, f, s, t) for t in traces for c in clients for f in fps for s in slos_s]


def run_grid(
    points: Sequence[GridPoint],
    policies: Sequence[str] = POLICIES,
    *,
    fleet: Fleet | None = None,
    family: str = "mobilenetv2",
    duration_s: float = 30.0,
    seed: int = 0,
    progress: bool = False,
    jobs: int = 1,
) -> list[RunRow]:
    """Every policy at every point; rows in (point, policy) order."""
    fleet = fleet or load_fleet(DEFAULT_FLEET)
    tasks = [(point, name) for point in points for name in policies]
    kwargs = {"fleet": fleet, "family": family, "duration_s": duration_s, "seed": seed}
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_point, point, name, **kwargs) for point, name in tasks]
            rows = []
            for f in futures:
                rows.append(f.result())
                _progress(progress, len(rows), len(tasks))
    else:
        rows = []
        for point, name in tasks:
            rows.append(run_point(point, name, **kwargs))
            _progress(progress, len(rows), len(tasks))
    if progress:
        print(file=sys.stderr)
    return rows


def _progress(on: bool, done: int, total: int) -> None:
    if on:
        print(f"\r{done}/{total} runs", end="", file=sys.stderr, flush=True)


def summarize(rows: Sequence[RunRow]) -> dict[str, dict[str, float]]:
    """Per policy over the grid: mean miss rate, fps-weighted accuracy, total energy, decision time."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r.policy for r in rows):
        mine = [r for r in rows if r.policy == name]
        frames = sum(r.frames for r in mine)
        within = sum(r.within_slo for r in mine)
        weighted = sum(r.accuracy_pct * r.within_slo for r in mine if r.within_slo)
        out[name] = {
            "runs": len(mine),
            "miss_rate": 1.0 - within / frames if frames else math.nan,
            "mean_point_miss_rate": float(np.mean([r.miss_rate for r in mine])),
            "accuracy_pct": weighted / within if within else math.nan,
            "energy_j": sum(r.energy_j for r in mine),
            "j_per_frame": sum(r.energy_j for r in mine) / within if within else math.nan,
            "decision_ms_mean": float(np.mean([r.decision_ms_mean for r in mine])),
            "decision_ms_max": float(np.max([r.decision_ms_max for r in mine])),
        }
    return out


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    fleet: str = typer.Option(str(DEFAULT_FLEET), "--fleet", help="fleet name or inventory YAML"),
    family: str = typer.Option("mobilenetv2", "--family", help="model family the clients request"),
    duration_s: float = typer.Option(30.0, "--duration-s", help="seconds of video per run"),
    seed: int = typer.Option(0, "--seed"),
    policy: list[str] = typer.Option(None, "--policy", help="policies (default: jetfleet-variants, jellyfish)"),
    quick: bool = typer.Option(False, "--quick", help="a reduced grid (2 clients x 25 fps x 100 ms x 3 traces)"),
    out: Path = typer.Option(Path("out/variants"), "--out", help="folder for rows.csv, summary.json and plots"),
    jobs: int = typer.Option(1, "--jobs", help="worker processes"),
) -> None:
    """Model-variant grid: jetfleet-variants vs jellyfish."""
    points = grid(clients=(2,), fps=(25.0,), slos_s=(0.1,)) if quick else grid()
    rows = run_grid(
        points,
        tuple(policy or POLICIES),
        fleet=load_fleet(fleet),
        family=family,
        duration_s=duration_s,
        seed=seed,
        progress=True,
        jobs=jobs,
    )
    out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    table = pd.DataFrame([{**asdict(r), "variants": json.dumps(r.variants)} for r in rows])
    table.to_csv(out / "rows.csv", index=False)
    summary = summarize(rows)
    (out / "summary.json").write_text(
        json.dumps({"family": family, "fleet": fleet, "summary": summary}, indent=2) + "\n"
    )
    plot_rows(rows, out / "accuracy_vs_miss.png", family=family)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out / 'rows.csv'}, {out / 'summary.json'} and {out / 'accuracy_vs_miss.png'}", file=sys.stderr)


def plot_rows(rows: Sequence[RunRow], path: Path, *, family: str = "") -> None:
    """Two panels: fps-weighted accuracy against miss rate per grid point, and energy per policy and trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r.policy for r in rows))
    traces = list(dict.fromkeys(r.trace for r in rows))
    markers = dict(zip(traces, "os^Dv", strict=False))
    colors = dict(zip(policies, ["tab:green", "tab:blue", "tab:orange", "tab:red"], strict=False))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8))
    for r in rows:
        ax.scatter(100 * r.miss_rate, r.accuracy_pct, color=colors[r.policy], marker=markers[r.trace], alpha=0.6, s=28)
    for name in policies:
        ax.scatter([], [], color=colors[name], label=name)
    for t in traces:
        ax.scatter([], [], color="gray", marker=markers[t], label=f"trace: {t}")
    ax.set_xlabel("SLO miss rate (% of captured frames, drops included)")
    ax.set_ylabel("fps-weighted accuracy (% top-1)")
    ax.set_title(f"Accuracy against miss rate, every grid point ({family})")
    ax.legend(fontsize=8)
    width = 0.8 / len(policies)
    for i, name in enumerate(policies):
        energy = [sum(r.energy_j for r in rows if r.policy == name and r.trace == t) / 1000 for t in traces]
        bx.bar(np.arange(len(traces)) + i * width, energy, width, color=colors[name], label=name)
    bx.set_xticks(np.arange(len(traces)) + width * (len(policies) - 1) / 2, traces)
    bx.set_ylabel("fleet energy over the grid (kJ)")
    bx.set_xlabel("bandwidth trace")
    bx.set_title("Energy per trace, summed over the grid")
    bx.set_ylim(0, bx.get_ylim()[1] * 1.15)
    bx.legend(fontsize=8, loc="upper center", ncol=len(policies))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    app()
