"""Property tests of overload control over random stream workloads, run causally in the simulator.

- every request gets exactly one outcome, so none is both executed and dropped;
- bounded queues hold their limits at every moment the scheduler acts (after each admission, at each decision);
- under drop_low_priority, a request is dropped (or refused at admission) for overflow only when nothing of lower
  priority in its stream group stays queued;
- with a floor (`min_share` > 0), a low-priority stream keeps being served even when a higher-priority stream
  alone overloads the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from policy_harness import arrive

from cluster.inventory import fleet_from_dict
from costmodel.fixed import FixedServiceCost, FixedServiceModel
from jetfleet.telemetry import EventList
from jetfleet.types import Admission, Applied, DropReason, OutcomeStatus, Request
from policies.base import Policy
from policies.context import StepContext
from policies.jetfleet import JetfleetConfig, JetfleetPolicy
from policies.overload import EdfDispatch, FifoPolicy, OverloadControl
from policies.planning import Margins
from policies.queue import RequestQueue
from policies.streams import DropPolicy, StreamSet, stream_set_from_dict
from simulator.engine import simulate
from workloads.streams import ArrivalSpec, stream_arrivals

POLICIES = ("fifo", "overload:edf", "overload:edf:batch1", "overload:jetfleet")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Checked(Policy):
    """Wraps a policy and asserts the queue-bound invariants each time the driver hands it the queue."""

    def __init__(self, inner: Policy, streams: StreamSet) -> None:
        self.inner, self.streams = inner, streams
        self.name = inner.name
        self.overflow_drops = 0

    def admit(self, ctx: StepContext, request: Request) -> Admission:
        admission = self.inner.admit(ctx, request)
        if not admission.accepted:  # the queue stays as it is; a newcomer refused for overflow is a victim too
            self._check_bounds(ctx.queue)
            if admission.reason is DropReason.QUEUE_FULL:
                self.overflow_drops += 1
                self._check_lowest(request, list(ctx.queue))
            return admission
        gone = {i for d in admission.drops for i in d.request_ids}
        after = [r for r in [*ctx.queue, request] if r.request_id not in gone]
        self._check_bounds(after)
        by_id = {r.request_id: r for r in [*ctx.queue, request]}
        for d in admission.drops:
            if d.reason in (DropReason.QUEUE_FULL, DropReason.EVICTED_LOW_PRIORITY):
                self.overflow_drops += len(d.request_ids)
                for rid in d.request_ids:
                    self._check_lowest(by_id[rid], after)
        return admission

    def decide(self, ctx: StepContext):
        self._check_bounds(ctx.queue)
        return self.inner.decide(ctx)

    def absorb(self, applied: Applied) -> None:
        self.inner.absorb(applied)

    def observe(self, result) -> None:
        self.inner.observe(result)

    def _check_bounds(self, queued: Iterable[Request]) -> None:
        counts: dict[str, int] = {}
        for r in queued:
            counts[r.stream] = counts.get(r.stream, 0) + 1
        for s in self.streams.streams:
            bound = self.streams.bound_of(s.name)
            if bound is not None:
                held = sum(counts.get(m, 0) for m in bound.streams)
                assert held <= bound.limit, f"{bound.scope} holds {held} > {bound.limit}"

    def _check_lowest(self, victim: Request, kept_queue: Sequence[Request]) -> None:
        bound = self.streams.bound_of(victim.stream)
        assert bound is not None, f"request {victim.request_id} dropped for overflow of an unbounded stream"
        if bound.drop_policy is not DropPolicy.DROP_LOW_PRIORITY:
            return
        kept = [r for r in kept_queue if r.stream in bound.streams]
        lower = [r.request_id for r in kept if r.priority < victim.priority]
        assert not lower, f"dropped {victim.request_id} (priority {victim.priority}) but kept lower {lower}"


def _policy(spec: str, streams: StreamSet) -> Policy:
    if spec == "fifo":
        return FifoPolicy(streams)
    if spec == "overload:jetfleet":
        return OverloadControl(JetfleetPolicy(JetfleetConfig(margins=Margins(0.0, 0.0))), streams)
    return OverloadControl(EdfDispatch(), streams, max_batch=1 if spec.endswith("batch1") else None)


def _run(requests: Sequence[Request], streams: StreamSet, spec: str, service_s: dict[str, float], devices: int):
    truth = FixedServiceModel("cpu", service_s)
    fleet = fleet_from_dict({"devices": [{"name": f"d{i}", "kind": "cpu"} for i in range(devices)]})
    policy = Checked(_policy(spec, streams), streams)
    events = EventList()
    cost = FixedServiceCost({"cpu": truth})
    result = simulate(requests, fleet, policy, cost, device_models={"cpu": truth}, sink=events)
    return result, events, policy


@st.composite
def workloads(draw):
    """Random streams (priorities, service times, budgets, bounds) and their requests."""
    n = draw(st.integers(1, 4))
    shared = draw(st.booleans())
    raw_streams, service_s = [], {}
    for i in range(n):
        s = {"name": f"s{i}", "priority": draw(st.sampled_from([0, 10, 50, 100])), "model": f"m{i}"}
        s["budget_ms"] = draw(st.floats(5, 400))
        if shared:
            s["group"] = "g"
        elif draw(st.booleans()):
            s["queue_limit"] = draw(st.integers(1, 6))
            s["drop_policy"] = draw(st.sampled_from([p.value for p in DropPolicy]))
        raw_streams.append(s)
        service_s[f"m{i}"] = draw(st.floats(0.002, 0.05))
    raw = {"streams": raw_streams}
    if shared:
        policy = draw(st.sampled_from([p.value for p in DropPolicy]))
        raw["groups"] = [{"name": "g", "queue_limit": draw(st.integers(1, 8)), "drop_policy": policy}]
    streams = stream_set_from_dict(raw)
    requests = []
    for i, s in enumerate(streams.streams):
        n_requests = draw(st.integers(0, 30))
        times = draw(st.lists(st.floats(0.0, 0.1), min_size=n_requests, max_size=n_requests))
        for t in times:
            prio = s.priority + draw(st.sampled_from([0, 0, -5, 5]))  # requests may carry their own priority
            requests.append((t, i, prio))
    requests.sort()
    reqs = [
        Request(k, t, 1, streams.streams[i].budget_s, f"m{i}", priority=p, stream=f"s{i}")
        for k, (t, i, p) in enumerate(requests)
    ]
    return streams, service_s, reqs


@SETTINGS
@given(workloads(), st.sampled_from(POLICIES), st.integers(1, 2))
def test_every_request_has_exactly_one_outcome_and_queue_bounds_hold(work, spec, devices):
    """No request is both executed and dropped (or rejected); bounds and drop_low_priority hold at every admission."""
    streams, service_s, requests = work
    result, events, checked = _run(requests, streams, spec, service_s, devices)
    low = any(g.drop_policy is DropPolicy.DROP_LOW_PRIORITY for g in streams.groups)
    event(f"overflow drops: {'some' if checked.overflow_drops else 'none'}{', drop_low_priority group' if low else ''}")
    assert sorted(o.request_id for o in result.outcomes) == [r.request_id for r in requests]
    answered: dict[int, str] = {}
    for e in events:
        if e.event in ("complete", "drop", "shed", "reject"):
            for rid in e.request_ids:
                assert rid not in answered, f"request {rid} answered by {answered[rid]} and {e.event}"
                answered[rid] = e.event
            if e.event != "complete":
                assert e.reason, "a drop without a reason"
    assert set(answered) == {r.request_id for r in requests}
    done = {o.request_id for o in result.outcomes if o.status is OutcomeStatus.COMPLETED}
    assert done == {rid for rid, how in answered.items() if how == "complete"}


@SETTINGS
@given(workloads(), st.integers(1, 2))
def test_fifo_sheds_nothing_beyond_its_queue_bounds(work, devices):
    """The baseline drops or refuses only for overflow, never by deadline or shedding."""
    streams, service_s, requests = work
    result, _, _ = _run(requests, streams, "fifo", service_s, devices)
    reasons = {o.reason for o in result.outcomes if o.status is not OutcomeStatus.COMPLETED}
    assert reasons <= {DropReason.QUEUE_FULL.value, DropReason.EVICTED_LOW_PRIORITY.value}


def _low_priority_completions(
    hi_service_ms: float, hi_load: float, lo: dict, lo_service_ms: float, inner: str, duration_s: float = 2.5
) -> list[float]:
    """Run a high-priority stream alone loading the device `hi_load` times over, plus stream `lo`
    (periodic, `rate_fps`); return when low-priority requests completed."""
    hi_rate_fps = hi_load * 1000.0 / hi_service_ms
    raw = {
        "streams": [
            {"name": "hi", "priority": 100, "budget_ms": 4 * hi_service_ms, "rate_fps": hi_rate_fps, "model": "hi"},
            {"name": "lo", "priority": 1, "model": "lo", **lo},
        ]
    }
    raw["streams"][0]["queue_limit"] = 16
    streams = stream_set_from_dict(raw)
    most = int(duration_s * max(hi_rate_fps, lo["rate_fps"])) + 1
    requests = [r for r in stream_arrivals(streams, ArrivalSpec("periodic", most)) if r.arrival_s < duration_s]
    requests = [replace(r, request_id=i) for i, r in enumerate(requests)]
    service_s = {"hi": hi_service_ms / 1000.0, "lo": lo_service_ms / 1000.0}
    result, _, _ = _run(requests, streams, inner, service_s, 1)
    lo_ids = {r.request_id for r in requests if r.stream == "lo"}
    return [o.time_s for o in result.outcomes if o.status is OutcomeStatus.COMPLETED and o.request_id in lo_ids]


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hi_service_ms=st.floats(6, 20),
    hi_load=st.floats(1.0, 2.0),
    lo_service_ms=st.floats(5, 60),
    lo_rate_fps=st.floats(10, 50),
    lo_extra_ms=st.floats(0, 200),
    min_share=st.floats(0.05, 0.3),
    inner=st.sampled_from(["overload:edf:batch1", "overload:jetfleet"]),
)
def test_a_floor_keeps_low_priority_served_while_high_priority_alone_overloads_the_device(
    hi_service_ms, hi_load, lo_service_ms, lo_rate_fps, lo_extra_ms, min_share, inner
):
    """Low-priority service never stops for a whole second when a min_share floor is configured.

    The low-priority budget leaves room for one high-priority frame ahead of it, so its requests are
    reachable when they arrive; [0, 1) s warms the share window up."""
    budget_ms = hi_service_ms + lo_service_ms + lo_extra_ms + 1.0
    lo = {"budget_ms": budget_ms, "rate_fps": lo_rate_fps, "min_share": min_share}
    done = _low_priority_completions(hi_service_ms, hi_load, lo, lo_service_ms, inner)
    assert any(1.0 <= t < 2.0 for t in done), f"no low-priority completion in [1, 2) s; all: {done}"


def test_without_a_floor_low_priority_starves_under_the_same_overload():
    """The contrast: the same kind of overload with min_share 0 leaves the low-priority stream almost nothing."""
    lo = {"budget_ms": 200.0, "rate_fps": 20.0}
    assert len(_low_priority_completions(10.0, 1.25, lo, 30.0, "overload:edf:batch1")) <= 2
    lo["min_share"] = 0.1
    assert len(_low_priority_completions(10.0, 1.25, lo, 30.0, "overload:edf:batch1")) >= 5


def test_checked_wrapper_catches_a_broken_bound():
    """The invariant checker itself fails when a policy lets a bounded queue overflow."""
    streams = stream_set_from_dict({"streams": [{"name": "a", "queue_limit": 1}]})

    class Leaky(EdfDispatch):
        def admit(self, ctx, request):
            return Admission.accept()

    checked = Checked(Leaky(), streams)
    q = RequestQueue([Request(0, 0.0, 1, 1.0, "m", stream="a")])
    with pytest.raises(AssertionError, match="stream:a holds 2 > 1"):
        arrive(checked, 0.0, Request(1, 0.0, 1, 1.0, "m", stream="a"), q)
