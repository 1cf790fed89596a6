"""Property tests: whatever the workload and baseline, the simulator's bookkeeping invariants hold."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_fakes import FakeCost, fake_models, make_fleet

from jetfleet.types import OutcomeStatus, Request
from policies.registry import make_policy
from simulator.engine import simulate

POLICIES = [
    "transparent",
    "fixed-batch:4",
    "interval:0.3",
    "round-robin",
    "random:5",
    "loudva",
    "jetfleet",
    "jetfleet:awake",
]
KINDS = ["agx-xavier", "xavier-nx", "jetson-nano"]


@st.composite
def workloads(draw):
    n = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.floats(0.0, 2.0), min_size=n, max_size=n))
    frames = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    slos = draw(st.lists(st.floats(0.05, 8.0), min_size=n, max_size=n))
    t, out = 0.0, []
    for i in range(n):
        t += gaps[i]
        out.append(Request(i, t, frames[i], slos[i], stream=f"cam{i % 2}"))
    return out


fleets = st.lists(st.sampled_from(KINDS), min_size=1, max_size=3).map(lambda ks: make_fleet(*ks))
common = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run(requests, fleet, spec, seed=0):
    return simulate(requests, fleet, make_policy(spec), FakeCost(), device_models=fake_models(fleet), seed=seed)


@common
@given(workloads(), fleets, st.sampled_from(POLICIES))
def test_every_request_gets_exactly_one_outcome(requests, fleet, spec):
    """No request lost or served twice: one outcome each, and each completed request ran in exactly one batch."""
    result = _run(requests, fleet, spec)
    assert [o.request_id for o in result.outcomes] == [r.request_id for r in requests]
    served = [rid for b in result.batches for rid in b.request_ids]
    assert len(served) == len(set(served))
    completed = {o.request_id for o in result.outcomes if o.status is OutcomeStatus.COMPLETED}
    assert completed == set(served)
    assert result.metrics.frames == sum(r.n_frames for r in requests)


@common
@given(workloads(), fleets, st.sampled_from(POLICIES))
def test_answers_come_after_arrival_and_batches_never_overlap_on_a_device(requests, fleet, spec):
    result = _run(requests, fleet, spec)
    arrival = {r.request_id: r.arrival_s for r in requests}
    assert all(o.time_s >= arrival[o.request_id] for o in result.outcomes)
    by_device: dict[str, list] = {}
    for b in result.batches:
        by_device.setdefault(b.device, []).append((b.started_s, b.finished_s))
    for spans in by_device.values():
        spans.sort()
        assert all(end <= nxt + 1e-9 for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))


@common
@given(workloads(), fleets, st.sampled_from(POLICIES))
def test_energy_is_never_below_the_bound(requests, fleet, spec):
    """The sleep-aware bound holds for every run; the awake bound for runs in which no device slept."""
    result = _run(requests, fleet, spec)
    assert result.sleep_energy_bound_j <= result.energy_bound_j + 1e-9
    assert result.sleep_energy_bound_j <= result.energy_j + 1e-9
    if not any(result.device_sleeps.values()):
        assert result.energy_bound_j <= result.energy_j + 1e-9


@settings(max_examples=10, deadline=None)
@given(workloads(), fleets, st.sampled_from(POLICIES))
def test_runs_are_deterministic(requests, fleet, spec):
    a, b = _run(requests, fleet, spec), _run(requests, fleet, spec)
    assert a.outcomes == b.outcomes and a.batches == b.batches and a.energy_j == b.energy_j
