"""The LoudVA reproduction report: the rows `simulator.reproduce` fills, and their tables, checks and plots.

Pure formatting over the rows (plus two PNGs through matplotlib's Agg backend); every number in the text
comes from the rows or from LoudVA's measured table, so regenerating the report keeps it true.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetfleet.catalogue import get_kind

IDLE_FLOOR_W = get_kind("agx-xavier").idle_power_w  # idle board power at the lowest clock (LoudVA's logs)
AGX_PLOT = "reproduction-loudva-agx.png"
CLUSTER_PLOT = "reproduction-loudva-cluster.png"


AGX_POLICIES = (
    "transparent",
    "fixed-batch:8",
    "fixed-batch:16",
    "fixed-batch:32",
    "interval:0.2",
    "interval:0.5",
    "interval:1.0",
    "round-robin",
    "loudva",
    "jetfleet",
    "jetfleet:drop",
)
CLUSTER_POLICIES = ("transparent", "round-robin", "random", "loudva", "jetfleet")


@dataclass(frozen=True)
class SimRow:
    """One policy's aggregate over the scenarios, on one fleet, with one cost model and energy window."""

    fleet: str
    cost_model: str  # what the policy consulted: "lgbm" or "oracle"
    window: str  # "first-arrival" (DESIGN.md) or "from-zero" (LoudVA's measurement window)
    policy: str
    requests: int
    frames: int
    frames_within_slo: int
    pct_frames_within_slo: float
    energy_j: float
    frames_per_joule: float
    p50_latency_s: float
    p95_latency_s: float
    dropped_frames: int
    bound_fraction: float
    energy_bound_j: float
    completed_frames: int
    duration_s: float
    workload: str = "exp1"  # "exp1", "exp1 x4"/"exp1 x8" (compressed in time) or "extra" (LoudVA's 15 others)
    # What of the data path the run charged (`jetfleet.links`): "full" (preprocessing and links, the default),
    # "link" (links only) or "none" (frames moved for free, as every run did before 2026-12-02).
    data_path: str = "full"


@dataclass(frozen=True)
class MeasuredRow:
    """One row of LoudVA's measured Experiment 1 table (one AGX Xavier, the six scenarios aggregated)."""

    name: str  # LoudVA's scheduler name
    policy: str  # ours
    frames: int
    energy_j: float
    frames_per_joule: float
    pct_frames_within_slo: float
    pct_requests_timed_out: float


@dataclass(frozen=True)
class Target:
    """One target of the issue, checked on the simulated numbers."""

    name: str
    required: str  # the target in words, with the number it needs
    achieved: str  # what jetfleet did
    met: bool
    note: str = ""


def _pick(
    rows: Sequence[SimRow], fleet: str, cost: str, window: str = "first-arrival", workload: str = "exp1"
) -> dict[str, SimRow]:
    return {
        r.policy: r
        for r in rows
        if r.fleet == fleet and r.cost_model == cost and r.window == window and r.workload == workload
    }


def check_targets(rows: Sequence[SimRow], cost: str) -> list[Target]:
    """The issue's targets for `jetfleet` with the policies consulting `cost`."""
    agx, cluster = _pick(rows, "agx", cost), _pick(rows, "loudva-cluster", cost)
    out: list[Target] = []
    jf = agx.get("jetfleet")
    ceiling = jf.completed_frames / jf.energy_bound_j if jf else float("nan")
    for base, factor in (("transparent", 1.35), ("loudva", 1.10)):
        if jf is None or base not in agx:
            continue
        b = agx[base]
        need = factor * b.frames_per_joule
        ok_e = jf.frames_per_joule >= need
        ok_s = jf.pct_frames_within_slo >= b.pct_frames_within_slo
        note = ""
        if not ok_e:
            note = (
                f"missed by {need - jf.frames_per_joule:.3f} frames/J "
                f"({100 * (need / jf.frames_per_joule - 1):.1f} % short). "
                f"The energy bound of the same run allows at most {ceiling:.3f} frames/J "
                f"= {ceiling / b.frames_per_joule:.3f} x {base}"
                + (": the target is above what any policy can reach." if ceiling < need else ".")
            )
        out.append(
            Target(
                name=f"agx: frames/J >= {factor:.2f} x {base}, % within SLO >= {base}'s",
                required=f">= {need:.3f} frames/J and >= {b.pct_frames_within_slo:.2f} %",
                achieved=f"{jf.frames_per_joule:.3f} frames/J ({jf.frames_per_joule / b.frames_per_joule:.3f} x), "
                f"{jf.pct_frames_within_slo:.2f} %",
                met=ok_e and ok_s,
                note=note if ok_s else f"{note + ' ' if note else 'frames/J met; '}SLO attainment below the baseline.",
            )
        )
    jc = cluster.get("jetfleet")
    for base in ("loudva", "round-robin"):
        if jc is None or base not in cluster:
            continue
        b = cluster[base]
        ok_e = jc.frames_per_joule > b.frames_per_joule
        ok_s = jc.pct_frames_within_slo >= b.pct_frames_within_slo
        tie = jc.pct_frames_within_slo == b.pct_frames_within_slo
        out.append(
            Target(
                name=f"loudva-cluster: better than {base} on both axes",
                required=f"> {b.frames_per_joule:.3f} frames/J, >= {b.pct_frames_within_slo:.2f} %",
                achieved=f"{jc.frames_per_joule:.3f} frames/J, {jc.pct_frames_within_slo:.2f} %",
                met=ok_e and ok_s,
                note="equal SLO attainment (both at the ceiling)" if tie and ok_e else "",
            )
        )
    return out


def render_report(rows: Sequence[SimRow], measured: Sequence[MeasuredRow], meta: dict[str, Any], img_dir: Path) -> str:
    """The whole markdown report; writes its two plots into `img_dir`."""
    head = meta["headline_cost_model"]
    costs = list(meta["cost_models"])
    every = rows
    rows = [r for r in every if r.data_path == "full"]  # the other paths appear in their own section only
    plot_agx(rows, measured, head, img_dir / AGX_PLOT)
    plot_cluster(rows, costs, img_dir / CLUSTER_PLOT)
    parts = [
        _intro(rows, meta),
        _targets_section(rows, costs),
        _agx_section(rows, measured, costs),
        _window_section(rows, measured, head),
        _cluster_section(rows, costs),
        _more_workloads_section(rows, head),
        _late_section(rows, head),
        _data_path_section(every, measured, head),
        _differences_section(rows, measured, head),
    ]
    return "\n".join(parts)


# -- sections ---------------------------------------------------------------------------------------
def _intro(rows: Sequence[SimRow], meta: dict[str, Any]) -> str:
    any_row = rows[0]
    costs = ", ".join(f"`{c}`" for c in meta["cost_models"])
    return f"""# Reproducing LoudVA's Experiment 1, and beating it

*Generated by `{meta["command"]}`; do not edit by hand (edit `simulator/reproduce_report.py`).*

LoudVA's Experiment 1 ran its six scenarios ({", ".join(meta["scenarios"])}: {any_row.requests:,} requests,
{any_row.frames:,} frames from two cameras) on one Jetson AGX Xavier under every scheduler it has. This
report runs the same scenario files through jetfleet's discrete-event simulator, whose devices are the
analytic models calibrated on LoudVA's own profiling measurements (`costmodel/device_models.py`), with every
baseline as LoudVA's code has it (`policies/baselines.py`, `policies/loudva.py`) and with jetfleet's own
policy (`policies/jetfleet/`). Policies consult a cost model: {costs} (`lgbm` is the LightGBM model the
live system uses and is the headline; `oracle` is a perfect predictor, the noiseless device models).

Measured numbers are quoted from LoudVA's `experiment1_report_aggregated.csv`
(github.com/iloudaros/LoudVA @ 2b4b15e, MIT). Energy is the board energy of every device from the first arrival
to the last answer (DESIGN.md) unless a table says "from time 0"; *bound* is each run's sleep-aware energy bound
(docs/power-states.md) divided by its energy (1.0 = no policy could spend less on the same frames in the same
window).
"""


def _targets_section(rows: Sequence[SimRow], costs: list[str]) -> str:
    lines = ["## Targets", ""]
    for cost in costs:
        lines += [f"With the `{cost}` cost model:", "", "| target | needs | jetfleet | met |", "|---|---|---|---|"]
        targets = check_targets(rows, cost)
        lines += [f"| {t.name} | {t.required} | {t.achieved} | {'yes' if t.met else '**no**'} |" for t in targets]
        notes = [f"- {t.name}: {t.note}" for t in targets if t.note]
        lines += [""] + notes + [""]
    return "\n".join(lines)


def _agx_section(rows: Sequence[SimRow], measured: Sequence[MeasuredRow], costs: list[str]) -> str:
    sims = {c: _pick(rows, "agx", c) for c in costs}
    head = costs[0]
    by_policy: dict[str, list[MeasuredRow]] = {}
    for m in measured:
        by_policy.setdefault(m.policy, []).append(m)
    header = ["policy"]
    for c in costs:
        header += [f"frames/J ({c})", f"% in SLO ({c})", f"bound ({c})"]
    header += [f"p95 s ({head})", "measured: LoudVA row", "measured frames/J", "measured % in SLO"]
    lines = [
        "## One AGX Xavier (fleet `agx`): simulated beside measured",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for policy in sims[head]:
        cells = [f"`{policy}`"]
        for c in costs:
            r = sims[c].get(policy)
            cells += (
                [f"{r.frames_per_joule:.3f}", f"{r.pct_frames_within_slo:.2f}", f"{r.bound_fraction:.3f}"]
                if r
                else ["", "", ""]
            )
        cells.append(f"{sims[head][policy].p95_latency_s:.2f}")
        ms = by_policy.get(policy, [])
        cells += [
            "<br>".join(m.name for m in ms),
            "<br>".join(f"{m.frames_per_joule:.3f}" for m in ms),
            "<br>".join(f"{m.pct_frames_within_slo:.1f}" for m in ms),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"![frames per joule against % frames within SLO on one AGX Xavier](img/{AGX_PLOT})",
        "",
        "Filled points: simulated (headline cost model); crosses: simulated with the other cost model; hollow "
        "squares: LoudVA's measurements. The right panel zooms on the simulated points.",
        "",
    ]
    return "\n".join(lines)


def _window_section(rows: Sequence[SimRow], measured: Sequence[MeasuredRow], head: str) -> str:
    first, zero = _pick(rows, "agx", head), _pick(rows, "agx", head, "from-zero")
    meas = {m.policy: m for m in measured if m.name != "Our Scheduler (prof)"}
    lines = [
        "## The energy window: from the first arrival, or from time 0 as LoudVA measured",
        "",
        "LoudVA's scenarios start 3.6 to 70 s before their first request, and its energy counts from time 0. "
        f"The same runs ({head} cost model) with energy integrated from each scenario's time 0:",
        "",
        "| policy | frames/J (first arrival) | frames/J (from time 0) | energy J (from time 0) "
        "| measured frames/J | measured energy J |",
        "|---|---|---|---|---|---|",
    ]
    for policy, r in first.items():
        z, m = zero.get(policy), meas.get(policy)
        lines.append(
            f"| `{policy}` | {r.frames_per_joule:.3f} | {z.frames_per_joule:.3f} | {z.energy_j:,.0f} | "
            f"{f'{m.frames_per_joule:.3f}' if m else ''} | {f'{m.energy_j:,.0f}' if m else ''} |"
            if z
            else ""
        )
    return "\n".join(lines) + "\n"


def _cluster_section(rows: Sequence[SimRow], costs: list[str]) -> str:
    lines = [
        "## LoudVA's cluster (fleet `loudva-cluster`: 1 AGX Xavier, 2 Xavier NX, 2 Nano)",
        "",
        "LoudVA reports no cluster measurement for Experiment 1; these are simulated only.",
        "",
        "| cost model | policy | frames/J | % frames within SLO | energy J | p95 latency s | dropped frames | bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        for policy, r in _pick(rows, "loudva-cluster", c).items():
            lines.append(
                f"| {c} | `{policy}` | {r.frames_per_joule:.3f} | {r.pct_frames_within_slo:.2f} | {r.energy_j:,.0f} | "
                f"{r.p95_latency_s:.2f} | {r.dropped_frames} | {r.bound_fraction:.3f} |"
            )
    lines += ["", f"![frames per joule against % frames within SLO on LoudVA's cluster](img/{CLUSTER_PLOT})", ""]
    return "\n".join(lines)


def _more_workloads_section(rows: Sequence[SimRow], head: str) -> str:
    """LoudVA's 15 other scenarios (held out: jetfleet was tuned on Experiment 1) and Experiment 1 at more load."""
    lines = [
        "## Beyond Experiment 1",
        "",
        "jetfleet's settings were chosen on Experiment 1, so the same comparison on workloads it was not tuned on: "
        "LoudVA's 15 other scenarios (`scenarios/extra/`, made by the same generator), and Experiment 1 with its "
        f"requests arriving 4 and 8 times faster (same frames and SLOs). Policies consult the `{head}` cost model.",
        "",
        "| workload | fleet | policy | frames/J | % frames within SLO | p95 latency s | dropped frames | bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    workloads = sorted(
        {(r.workload, r.fleet) for r in rows if r.workload != "exp1"}, key=lambda wf: (wf[0] != "extra", wf)
    )
    for workload, fleet in workloads:
        for policy, r in _pick(rows, fleet, head, workload=workload).items():
            lines.append(
                f"| {workload} | {fleet} | `{policy}` | {r.frames_per_joule:.3f} | {r.pct_frames_within_slo:.2f} | "
                f"{r.p95_latency_s:.2f} | {r.dropped_frames} | {r.bound_fraction:.3f} |"
            )
    return "\n".join(lines) + "\n" if workloads else ""


def _late_section(rows: Sequence[SimRow], head: str) -> str:
    loaded = sorted({r.workload for r in rows if r.workload.startswith("exp1 x")})
    agx = _pick(rows, "agx", head, workload=loaded[-1]) if loaded else _pick(rows, "agx", head)
    serve, drop = agx.get("jetfleet"), agx.get("jetfleet:drop")
    body = (
        "A request that no device can finish in time any more is either run late in spare capacity "
        "(`jetfleet`, the default) or dropped with `DEADLINE_UNREACHABLE` (`jetfleet:drop`). A late frame "
        "never counts as within SLO, but a completed one counts in frames per joule, and on a Jetson the idle "
        "baseline is paid anyway, so running it late in otherwise idle time raises frames/J; the late batch is "
        "kept short (at most `late_batch_max_s`) and never delays a batch held for on-time work, so SLO "
        "attainment does not suffer. Late requests older than `late_expire_s` are dropped with "
        "`DEADLINE_EXPIRED`, so nothing waits forever. Dropping instead would free capacity only if late work "
        "competed with on-time work, which the planner already prevents; so `serve` is the default: a late "
        "answer is still an answer, at no cost in SLO attainment."
    )
    if serve and drop:
        body += (
            f"\n\nWith Experiment 1 at {loaded[-1].split('x')[-1] if loaded else 1} times its load on `agx` ({head}): "
            f"serve late {serve.frames_per_joule:.3f} frames/J at "
            f"{serve.pct_frames_within_slo:.2f} % within SLO, {serve.dropped_frames} frames dropped; drop late "
            f"{drop.frames_per_joule:.3f} frames/J at {drop.pct_frames_within_slo:.2f} %, "
            f"{drop.dropped_frames} frames dropped. Few requests ever become late on these workloads, so the two "
            "differ by a handful of frames."
        )
    return "## Late requests: run late or drop?\n\n" + body + "\n"


_DIFFERENCES = """## Where simulation and measurement differ, and why

**SLO attainment is much higher in simulation.** Simulated `transparent` meets {tr_slo:.1f} % of frames' SLOs,
measured No Scheduler {m_tr_slo:.1f} %; simulated `loudva` {lv_slo:.1f} %, measured {m_lv_slo:.1f} %. The
simulator charges a request its preprocessing, its queueing, its input's way over the device's link and the
modelled inference time (the data path above closes little of the gap). The real requests also paid Triton's
request handling and its dynamic-batching delay, Python thread scheduling in LoudVA's controller (a polling loop
that sleeps 10 ms, or 0.1 s for Fixed Batch), HTTP encoding of the tensors, and LoudVA's own prediction time;
none of these is in the latency the profiles measured, which excludes client and network time. Short SLOs (1 to
2 s) are where those seconds are lost.

**Batching saves more on the real board than in the model.** Measured, LoudVA's scheduler reaches
{m_lv_ratio:.2f} x No Scheduler's frames per joule; simulated, {lv_ratio:.2f} x. Fixed Batch (32): measured
{m_fb_ratio:.2f} x, simulated {fb_ratio:.2f} x. The device models are fitted on LoudVA's profiles, whose "batch
size" was Triton perf_analyzer *concurrency* with dynamic batching: c requests in flight, which Triton groups into
batches of about c, imperfectly and with per-request overhead. The experiments' schedulers sent real batches (one
inference call with B images), which can run more efficiently than c concurrent single-image requests; the profiles
cannot tell by how much, so the model prices a real batch like a concurrency level and under-rates batching. This is
one reason the issue's energy targets, set with the measured ratios in mind, are out of reach here: in this model
even the energy bound is only {bound_ratio:.2f} x `transparent`'s frames per joule.

**The energy window and the idle baseline.** Energy includes the idle baseline, as LoudVA's does (mean board power
x time). From each scenario's time 0 to its last answer the six runs last {span_s:,.0f} s; at the model's idle
floor of {floor_w} W (the AGX's idle board power at its lowest clock, from LoudVA's logs) that alone is
{floor_j:,.0f} J. Measured, LoudVA's scheduler spent {m_lv_j:,.0f} J in all, {m_lv_w:.2f} W on average over that
span, barely above the floor, and No Scheduler {m_tr_j:,.0f} J ({m_tr_w:.2f} W). Simulated from time 0:
`transparent` {z_tr_j:,.0f} J ({z_tr_w:.2f} W), `loudva` {z_lv_j:,.0f} J ({z_lv_w:.2f} W). So the model matches the
unbatched run within a few percent but over-prices the batched ones (previous point), and the real board may have
idled below the logged {floor_w} W during Experiment 1 (tegrastats' sum of rails, sampled every second, may not
see every rail). The idle power's rise with the clock (10 % at the top clock) is an assumption of the device
model, documented in `costmodel/device_models.py`.

**Interval 0.5 s and 1.0 s collapse only on the real board.** Measured, {m_i5_to:.0f} % and {m_i10_to:.0f} % of
their requests timed out. LoudVA's interval scheduler sends at most the device's cap (64 frames on the AGX) per
interval, which in the simulator clears the offered load (about {load_fps:.1f} frames/s on average, with bursts of
40-frame requests) with room to spare, so the simulated runs stay at {i5_slo:.1f} % and {i10_slo:.1f} % within SLO.
The measured collapse comes from something outside the model (for instance the HTTP client's timeouts while
64-image requests queue at Triton); we have not reproduced it.

**Prediction error.** LoudVA measured its scheduler twice: with its XGBoost predictor ({m_lv_fpj:.3f} frames/J,
{m_lv_slo:.1f} %) and with profile lookups ({m_lp_fpj:.3f} frames/J, {m_lp_slo:.1f} %). Here `loudva` and
`jetfleet` consult the same cost model, the LightGBM model or the oracle, so the gap between those columns of the
AGX table is the price of prediction error in simulation.

**Not modelled.** Temperature (the measured runs went from 39 to 51 °C; leakage power rises with it and the board
may throttle), the default DVFS governor under which LoudVA ran its baselines (here: the top clock, the governor's
target under load), CPU and memory clocks (fixed), Triton's model loading and memory use, and run-to-run
variation unless `jetfleet simulate --noise-cv` asks for it.

## How jetfleet beats LoudVA

`policies/jetfleet/` keeps LoudVA's idea (search (device, clock, batch) with the cost model for the cheapest
energy per frame that meets the deadlines) and fixes what the issue names:

- completion time = max(now, busy_until) + clock-change delay + predicted latency (LoudVA assumes idle devices);
- every request in the batch, and the ones queued behind it, must meet its deadline (LoudVA checks the tightest
  slack only): a linear drain estimate first, then the chosen plan re-checked with the rest run as real batches;
- when no other device is free, a batch leaves room for the tightest request that may arrive meanwhile (the
  tightest SLO seen in the last 5 minutes, or a 1.5 s SLO until a tighter one was seen), and a device is parked
  only while another could still serve that request;
- it minimises joules per frame *above the idle floor*: the board pays its idle baseline anyway, so slow clocks
  and big batches win where LoudVA races at a high clock; it prefers clocks at which the arrival rate stays under
  70 % of the throughput;
- under overload it runs the highest-throughput batch that still meets the head's deadline, not batch 1;
- it waits only while the expected arrivals (a decaying frame-rate estimate) would lower the batch's energy per
  frame, only until the latest safe dispatch time from the cost model (LoudVA: 4 x expected latency), and not
  once the stream has been quiet for 3 s;
- it learns the cost model's latency error per batch size from finished batches;
- it prices each batch's input on its way to the device, and behind a network link ships the next batch while the
  device computes the one before (one more batch in flight), so the link and the GPU work at once;
- twins are taken earliest-free first, then least recently used, so none starves; idle devices are parked at
  their lowest-idle-power clock after 0.5 s.

On `agx` ({head}) jetfleet spends {jf_over:.1f} % more energy than the bound (bound fraction {jf_bound:.3f};
`loudva` {lv_bound:.3f}, `transparent` {tr_bound:.3f}).
"""


_DATA_PATH = """## The data path: preprocessing and the link to the device

Every run above charges the data path (`jetfleet.links`): each request's frames are preprocessed on the controller
({pre_ms:g} ms a frame, jetfleet's own ingress code measured on this project's CPU: a VGA JPEG to 299 x 299 FP32), and
each batch's input, InceptionV3's FP32 3 x 299 x 299 tensor of {frame_b:,} bytes a frame (what LoudVA's controller
sent Triton), crosses the device's link before the batch runs: the AGX Xavier developer kit's Gigabit Ethernet, at
its TCP goodput of {mbps:.0f} Mbit/s (the protocols' header arithmetic, not a fit), plus {lat_ms:g} ms a batch:
{frame_ms:.1f} ms a frame. Nothing here was tuned toward LoudVA's table. The same runs (`{head}`, one AGX Xavier)
without the data path, with the link only, and with both:

| policy | % in SLO: none | link | link + preprocessing | measured | frames/J: none | link + preprocessing | measured |
|---|---|---|---|---|---|---|---|
{table}

{closing}
"""


def _data_path_section(rows: Sequence[SimRow], measured: Sequence[MeasuredRow], head: str) -> str:
    from costmodel.frames import frame_bytes
    from jetfleet.links import GBE, PREPROCESS_S_PER_FRAME

    by = {
        path: {
            r.policy: r
            for r in rows
            if r.fleet == "agx"
            and r.cost_model == head
            and r.window == "first-arrival"
            and r.workload == "exp1"
            and r.data_path == path
        }
        for path in ("none", "link", "full")
    }
    if not by["none"]:
        return ""
    meas: dict[str, list[MeasuredRow]] = {}
    for m in measured:
        meas.setdefault(m.policy, []).append(m)
    lines, gaps = [], []
    for policy, full in by["full"].items():
        none, link = by["none"].get(policy), by["link"].get(policy)
        if none is None or link is None:
            continue
        ms = meas.get(policy, [])
        m_slo = "<br>".join(f"{m.pct_frames_within_slo:.1f}" for m in ms)
        m_fpj = "<br>".join(f"{m.frames_per_joule:.3f}" for m in ms)
        lines.append(
            f"| `{policy}` | {none.pct_frames_within_slo:.2f} | {link.pct_frames_within_slo:.2f} | "
            f"{full.pct_frames_within_slo:.2f} | {m_slo} | {none.frames_per_joule:.3f} | {full.frames_per_joule:.3f} | "
            f"{m_fpj} |"
        )
        for m in ms:
            gap = none.pct_frames_within_slo - m.pct_frames_within_slo
            if gap > 1.0:
                gaps.append((policy, gap, none.pct_frames_within_slo - full.pct_frames_within_slo))
    return _DATA_PATH.format(
        pre_ms=PREPROCESS_S_PER_FRAME * 1e3,
        frame_b=frame_bytes("inceptionv3"),
        mbps=GBE.bandwidth_bps / 1e6,
        lat_ms=GBE.latency_s * 1e3,
        frame_ms=GBE.transfer_s(frame_bytes("inceptionv3")) * 1e3,
        head=head,
        table="\n".join(lines),
        closing=_gap_closed(gaps, by),
    )


def _gap_closed(gaps: list[tuple[str, float, float]], by: dict[str, dict[str, SimRow]]) -> str:
    """How much of the simulated-vs-measured SLO gap the data path closes, and what it costs jetfleet."""
    if not gaps:
        return ""
    total_gap = sum(g for _, g, _ in gaps)
    closed = sum(c for _, _, c in gaps)
    worst = max(gaps, key=lambda g: g[2])
    text = (
        f"**How much of the gap it closes.** Over the {len(gaps)} measured rows where simulation beat measurement by "
        f"more than a point, the gap in % of frames within SLO sums to {total_gap:.1f} points without the data path; "
        f"charging it closes {closed:.1f} of them ({100 * closed / total_gap:.1f} %; at most "
        f"{worst[2]:.2f} points, `{worst[0]}`). Moving 1 MB frames over GbE costs tens to hundreds of milliseconds a "
        "batch against SLOs of 1 to 15 s: the measured shortfall lies elsewhere (next section)."
    )
    jf_none, jf_full = by["none"].get("jetfleet"), by["full"].get("jetfleet")
    if jf_none is not None and jf_full is not None:
        change = 100 * (jf_full.frames_per_joule / jf_none.frames_per_joule - 1)
        text += (
            f" For `jetfleet` the path costs energy, not SLO attainment: {jf_none.frames_per_joule:.3f} -> "
            f"{jf_full.frames_per_joule:.3f} frames/J ({change:+.1f} %), "
            f"{jf_none.pct_frames_within_slo:.2f} -> {jf_full.pct_frames_within_slo:.2f} % within SLO: each batch now "
            "occupies the device for its transfer too, so the gaps it can sleep through shrink."
        )
    return text


def _differences_section(rows: Sequence[SimRow], measured: Sequence[MeasuredRow], head: str) -> str:
    sim, zero = _pick(rows, "agx", head), _pick(rows, "agx", head, "from-zero")
    meas = {m.name: m for m in measured}
    tr, lv, fb, jf = sim["transparent"], sim["loudva"], sim["fixed-batch:32"], sim["jetfleet"]
    m_tr, m_lv, m_lp = meas["No Scheduler"], meas["Our Scheduler (pred)"], meas["Our Scheduler (prof)"]
    span_s = zero["transparent"].duration_s  # time 0 to the last answer, summed; transparent answers at once
    return _DIFFERENCES.format(
        head=head,
        tr_slo=tr.pct_frames_within_slo,
        m_tr_slo=m_tr.pct_frames_within_slo,
        lv_slo=lv.pct_frames_within_slo,
        m_lv_slo=m_lv.pct_frames_within_slo,
        m_lv_ratio=m_lv.frames_per_joule / m_tr.frames_per_joule,
        lv_ratio=lv.frames_per_joule / tr.frames_per_joule,
        m_fb_ratio=meas["Fixed Batch (32)"].frames_per_joule / m_tr.frames_per_joule,
        fb_ratio=fb.frames_per_joule / tr.frames_per_joule,
        span_s=span_s,
        floor_w=IDLE_FLOOR_W,
        floor_j=IDLE_FLOOR_W * span_s,
        m_lv_j=m_lv.energy_j,
        m_lv_w=m_lv.energy_j / span_s,
        m_tr_j=m_tr.energy_j,
        m_tr_w=m_tr.energy_j / span_s,
        z_tr_j=zero["transparent"].energy_j,
        z_tr_w=zero["transparent"].energy_j / span_s,
        z_lv_j=zero["loudva"].energy_j,
        z_lv_w=zero["loudva"].energy_j / span_s,
        m_i5_to=meas["Interval (0.5)"].pct_requests_timed_out,
        m_i10_to=meas["Interval (1.0)"].pct_requests_timed_out,
        load_fps=tr.frames / span_s,
        i5_slo=sim["interval:0.5"].pct_frames_within_slo,
        i10_slo=sim["interval:1.0"].pct_frames_within_slo,
        m_lv_fpj=m_lv.frames_per_joule,
        m_lp_fpj=m_lp.frames_per_joule,
        m_lp_slo=m_lp.pct_frames_within_slo,
        jf_over=100 * (1 / jf.bound_fraction - 1),
        bound_ratio=jf.completed_frames / jf.energy_bound_j / tr.frames_per_joule,
        jf_bound=jf.bound_fraction,
        lv_bound=lv.bound_fraction,
        tr_bound=tr.bound_fraction,
    )


# -- plots ------------------------------------------------------------------------------------------
def _axes(n: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(6.5 * n + 1.5, 5), dpi=100)
    return fig, axes


_ORDER = list(AGX_POLICIES) + [p for p in CLUSTER_POLICIES if p not in AGX_POLICIES]  # one colour per policy
_MARKERS = {"jetfleet": "*", "jetfleet:drop": "D"}
_FIXED_COLOURS = {"jetfleet": "crimson", "jetfleet:drop": "black"}
_SIZES = {"jetfleet": (260, 5), "jetfleet:drop": (30, 6)}  # (marker area, z-order): the star stays visible


def _colour(policy: str, order: list[str]) -> Any:
    import matplotlib

    if policy in _FIXED_COLOURS:
        return _FIXED_COLOURS[policy]
    return matplotlib.colormaps["tab20"](order.index(policy) % 20) if policy in order else "gray"


def _points(ax: Any, rows: dict[str, SimRow], order: list[str], *, filled: bool) -> None:
    for policy, r in rows.items():
        size, zorder = _SIZES.get(policy, (55, 3))
        kw = {"color": _colour(policy, order), "zorder": zorder}
        xy = (r.pct_frames_within_slo, r.frames_per_joule)
        if filled:
            ax.scatter(*xy, s=size, marker=_MARKERS.get(policy, "o"), label=policy, **kw)
        else:
            ax.scatter(*xy, s=60, marker="x", **kw)


def plot_agx(rows: Sequence[SimRow], measured: Sequence[MeasuredRow], head: str, path: Path) -> None:
    """Frames/J against % frames within SLO on `agx`: simulated (both cost models) and measured; full and zoomed."""

    fig, (full, zoom) = _axes(2)
    sims = {c: _pick(rows, "agx", c) for c in sorted({r.cost_model for r in rows})}
    order = _ORDER
    for ax in (full, zoom):
        for c, by_policy in sims.items():
            _points(ax, by_policy, order, filled=c == head)
    for m in measured:
        full.scatter(m.pct_frames_within_slo, m.frames_per_joule, s=60, marker="s", facecolors="none",
                     edgecolors=_colour(m.policy, order), linewidths=1.5, zorder=2)  # fmt: skip
        full.annotate(m.name, (m.pct_frames_within_slo, m.frames_per_joule), xytext=(6, -3),
                      textcoords="offset points", fontsize=7, color="dimgray")  # fmt: skip
    lows = [r.pct_frames_within_slo for by_policy in sims.values() for r in by_policy.values()]
    zoom.set_xlim(min(lows) - 0.5, 100.4)
    full.set_title("LoudVA Experiment 1, one AGX Xavier: simulated (dots)\nand LoudVA's measurements (squares)")
    zoom.set_title(f"simulated, zoomed: dots {head}, x the other cost model")
    zoom.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title="policy", title_fontsize=8)
    _finish(fig, (full, zoom), path)


def plot_cluster(rows: Sequence[SimRow], costs: list[str], path: Path) -> None:
    """Frames/J against % frames within SLO on `loudva-cluster`, one point per policy and cost model."""
    fig, ax = _axes(1)
    order = _ORDER
    for c in costs:
        _points(ax, _pick(rows, "loudva-cluster", c), order, filled=c == costs[0])
    ax.set_title(f"LoudVA's cluster (1 AGX, 2 NX, 2 Nano), simulated\ndots {costs[0]}, x the other cost model")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title="policy", title_fontsize=8)
    _finish(fig, (ax,), path)


def _finish(fig: Any, axes: Sequence[Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.set_xlabel("frames within SLO (%)", fontsize=10)
        ax.set_ylabel("frames per joule (frames/J)", fontsize=10)
        ax.title.set_fontsize(11)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
