"""The compiled planner decides exactly as the numpy reference (`plan_batch_compiled` vs `plan_batch_reference`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from costmodel.view import RawGrid
from policies import planning
from policies.planning import BatchPlan, GridTables, Margins, derive_tables, plan_batch_compiled, plan_batch_reference

pytestmark = pytest.mark.skipif(planning.KERNEL is None, reason="numba not installed: only the reference runs")


def _random_tables(rng: np.random.Generator) -> GridTables:
    """Tables of 1-6 clocks and 1-16 batch sizes: latency rising with the batch, falling with the clock."""
    n_f, n_b = int(rng.integers(1, 7)), int(rng.integers(1, 17))
    freqs_hz = np.sort(rng.choice(np.arange(100, 1500), n_f, replace=False)).astype(float) * 1e6
    per_batch = np.cumsum(rng.uniform(0.005, 0.1, n_b))
    speed = np.sort(rng.uniform(0.5, 3.0, n_f))
    latency_s = per_batch[None, :] / speed[:, None] + rng.uniform(0.0, 0.05, (n_f, 1))
    power_w = rng.uniform(3.0, 30.0, (n_f, 1)) * np.sort(rng.uniform(0.6, 1.0, n_f))[:, None]
    energy_j = latency_s * power_w * rng.uniform(0.9, 1.1, (n_f, n_b))
    grid = RawGrid("jetson-nano", "m", freqs_hz, latency_s, energy_j, (1, -1))
    margins = Margins(float(rng.choice([0.0, 0.02, 0.05])), float(rng.choice([0.0, 0.15])))
    idle_w = rng.uniform(1.0, 5.0, n_f)
    return derive_tables(grid, idle_w, margins, max_batch=int(rng.integers(1, n_b + 3)))


def _random_call(rng: np.random.Generator, t: GridTables) -> dict:
    """Arguments as the jetfleet policy passes them (and the optional ones left out at random)."""
    n_f = len(t.freqs_hz)
    n = int(rng.integers(0, 40))
    ready_s = float(rng.uniform(0.0, 2.0))
    frames = rng.integers(1, min(t.max_frames, 8) + 1, n).astype(np.int64)
    deadlines_s = np.sort(ready_s + rng.uniform(-0.2, rng.choice([0.3, 1.0, 5.0]), n))
    kw: dict = {
        "ready_s": ready_s,
        "freq_index": int(rng.integers(-1, n_f)),
        "change_delay_s": float(rng.choice([0.0, 0.05, 0.3])),
        "frames": frames,
        "deadlines_s": deadlines_s,
        "positions": np.sort(rng.choice(200, n, replace=False)).astype(np.int64),
        "behind_s_per_frame": rng.uniform(0.001, 0.1, n_f) if rng.random() < 0.8 else float(rng.uniform(0.001, 0.1)),
        "behind_share": float(rng.uniform(0.2, 1.0)),
        "lookahead": int(rng.choice([0, 4, 64])),
    }
    if rng.random() < 0.5:
        kw["behind_overhead_s"] = rng.uniform(0.0, 0.1, n_f) if rng.random() < 0.5 else float(rng.uniform(0.0, 0.1))
    if rng.random() < 0.4:
        kw["finish_limit_s"] = ready_s + rng.uniform(0.0, 1.0, n_f)
    if rng.random() < 0.4:
        kw["clock_ok"] = rng.random(n_f) < 0.5
    if rng.random() < 0.3:
        kw["cap"] = int(rng.integers(1, t.max_frames + 1))
    if rng.random() < 0.3:
        kw["score"] = t.latency_s
    return kw


def _same(a: BatchPlan | None, b: BatchPlan | None) -> bool:
    if a is None or b is None:
        return a is b
    fa, fb = dataclasses.asdict(a), dataclasses.asdict(b)
    return np.array_equal(fa.pop("positions"), fb.pop("positions")) and fa == fb


def test_compiled_planner_decides_as_the_reference_on_random_inputs() -> None:
    """Every field of every plan (or None) is identical, floats bit for bit, over plans of every kind."""
    rng = np.random.default_rng(20261202)
    kinds = {"none": 0, "protected": 0, "overloaded": 0}
    for case in range(3000):
        t = _random_tables(rng)
        kw = _random_call(rng, t)
        ref, fast = plan_batch_reference(t, **kw), plan_batch_compiled(t, **kw)
        assert _same(ref, fast), f"case {case}: {ref} != {fast}"
        kinds["none" if ref is None else "overloaded" if ref.overloaded else "protected"] += 1
    assert min(kinds.values()) >= 100, kinds  # the cases cover every outcome


def test_the_planner_policies_call_is_the_compiled_one_when_numba_is_there() -> None:
    """With numba installed, `plan_batch` is the kernel (the reference stays importable for reading and tests)."""
    assert planning.plan_batch is plan_batch_compiled


def test_a_warm_planner_loads_no_other_signature_in_a_simulation() -> None:
    """`warm_planner` compiles (or loads) the signature the policies use: a jetfleet simulation afterwards, late
    batches included (their look-behind is a strided column of the tables), adds none."""
    from cluster.inventory import fleet_from_dict
    from costmodel.device_models import OracleCostModel
    from policies.registry import make_policy
    from simulator.engine import simulate
    from workloads.arrivals import poisson

    planning.warm_planner()
    before = len(planning.KERNEL.signatures)
    # Overloaded on purpose (a Nano and an NX for 40 requests per second): late work is planned too.
    requests = poisson(40.0, 5.0, seed=3, frames=(1, 4), slo_s=(0.3, 2.0), streams=4)
    devices = [{"name": "nano", "kind": "jetson-nano"}, {"name": "nx", "kind": "xavier-nx"}]
    fleet = fleet_from_dict({"name": "two", "devices": devices}, "test_planning_kernel")
    result = simulate(requests, fleet, make_policy("jetfleet"), OracleCostModel())
    assert result.metrics.pct_frames_within_slo < 100.0  # some work was late: the late path ran
    assert len(planning.KERNEL.signatures) == before
