"""Overload protection by default (`slo:INNER`, what the live service runs without a stream config): requests the
backlog makes late are refused with a computed retry-after, hopeless queued ones dropped early, and what is served
under overload is served within its SLO; under a load the fleet carries, the inner policy's decisions are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.inventory import load_fleet
from costmodel.device_models import OracleCostModel
from jetfleet.types import DropReason, OutcomeStatus, Request
from policies.overload import OverloadControl
from policies.registry import make_policy
from policies.slo_admission import SloAdmission, protect
from policies.streams import StreamSet
from simulator.engine import simulate

FLEET = load_fleet("demo")
COST = OracleCostModel()
# 110 ms: inceptionv3 at batch 1 on the AGX is 30 ms, padded by the planner's 15 % + 50 ms, plus its input's 9.6 ms
# over GbE (padded too) and 5 ms of preprocessing: ~101 ms, so 100 ms (this test's SLO before the data path was
# charged) left every request unreachable by a fraction of a millisecond and every retry-after alike.
SLO_S = 0.11


def _poisson(rate_per_s: float, duration_s: float, slo_s: float, seed: int = 0) -> list[Request]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, int(rate_per_s * duration_s)))
    return [Request(i, float(t), 1, slo_s, "inceptionv3") for i, t in enumerate(arrivals)]


def _served_within(result) -> tuple[int, int]:
    pairs = zip(result.outcomes, result.requests, strict=True)
    served = [(o, r) for o, r in pairs if o.status is OutcomeStatus.COMPLETED]
    return len(served), sum(o.time_s <= r.deadline_s + 1e-9 for o, r in served)


@pytest.mark.parametrize("rate_per_s", [300, 600])
def test_an_overloaded_fleet_refuses_with_a_computed_retry_after_and_serves_within_slo(rate_per_s):
    """Many clients asking inceptionv3 within 100 ms: the plain policy accepts all and serves most late; under
    `slo:` the excess is refused (each retry-after the predicted drain time of its excess, not one constant)
    and every request served is served within its SLO."""
    requests = _poisson(rate_per_s, 3.0, SLO_S)
    # Power states off (`jetfleet:awake`): a 3 s scenario starts with a fleet that consolidated onto the AGX before
    # the first arrival, and a 2 s wake is most of the run; admission is what this test is about.
    plain = simulate(requests, FLEET, make_policy("jetfleet:awake"), COST)
    guarded = simulate(requests, FLEET, make_policy("slo:jetfleet:awake"), COST)
    n_plain, within_plain = _served_within(plain)
    assert n_plain == len(requests) and within_plain < 0.2 * n_plain  # the finding: all accepted, most late
    rejected = [o for o in guarded.outcomes if o.status is OutcomeStatus.REJECTED]
    assert len(rejected) > len(requests) / 2
    assert all(o.reason == DropReason.DEADLINE_UNREACHABLE.value for o in rejected)
    retry_s = np.array([o.retry_after_s for o in rejected])
    assert np.all(retry_s > 0) and np.all(retry_s < 1.0) and len(np.unique(retry_s.round(6))) > 10
    n, within = _served_within(guarded)
    assert n > 0 and within == n
    assert within > within_plain


def test_an_slo_no_device_can_meet_with_the_planners_margin_is_refused_not_served_late():
    """50 ms for inceptionv3 on the demo fleet (30 ms on the AGX at batch 1, padded by the planner's 15 % + 50 ms):
    every request is refused at once instead of being accepted and answered seconds late."""
    result = simulate(_poisson(600, 1.0, 0.05), FLEET, make_policy("slo:jetfleet"), COST)
    assert {o.status for o in result.outcomes} == {OutcomeStatus.REJECTED}


def test_a_queued_request_that_became_hopeless_is_dropped_early_with_its_reason():
    """A request accepted while the fleet was free, then held behind a device that stays busy: dropped as
    `deadline_unreachable` when it can no longer finish in time, not served late."""
    from policy_harness import decide

    from jetfleet.catalogue import get_kind
    from jetfleet.types import DeviceState
    from policies.context import with_device_facts
    from policies.queue import RequestQueue

    agx = get_kind("agx-xavier")
    busy = [with_device_facts(DeviceState("agx0", "agx-xavier", agx.max_freq_hz, busy_until_s=1.0, in_flight=1))]
    q = RequestQueue([Request(0, 0.0, 1, 0.5, "inceptionv3"), Request(1, 0.0, 1, 5.0, "inceptionv3")])
    out = decide(make_policy("slo:transparent"), 0.0, q, busy, COST)
    assert [(d.request_ids, d.reason) for d in out.drops] == [((0,), DropReason.DEADLINE_UNREACHABLE)]


def test_under_a_load_the_fleet_carries_the_inner_policys_decisions_are_unchanged():
    requests = _poisson(100, 3.0, 0.5)
    # Power states off: with them, the fleet starts consolidated and a request arriving before the wake completes
    # cannot finish in time, which admission rightly drops early (the plain policy serves it late).
    plain = simulate(requests, FLEET, make_policy("jetfleet:awake"), COST)
    guarded = simulate(requests, FLEET, make_policy("slo:jetfleet:awake"), COST)
    assert [(o.status, o.device, o.time_s) for o in guarded.outcomes] == [
        (o.status, o.device, o.time_s) for o in plain.outcomes
    ]


def test_protect_runs_overload_control_with_streams_and_slo_admission_without():
    assert isinstance(protect(make_policy("jetfleet")), SloAdmission)
    assert protect(make_policy("jetfleet")).name == "slo:jetfleet"
    with_streams = protect(make_policy("slo:loudva"), StreamSet())
    assert isinstance(with_streams, OverloadControl) and with_streams.inner.name == "loudva"
    already = make_policy("overload:edf")
    assert protect(already) is already
