"""The `jetfleet` policy: its invariants (property tests) and the behaviours that beat LoudVA."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_harness import arrive, decide
from sim_fakes import FakeCost, fake_models, make_fleet, req

from costmodel.view import CostView
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError
from jetfleet.links import GBE, LOCAL, Link
from jetfleet.types import BatchResult, DeviceState, DropReason, OutcomeStatus
from policies.core import SchedulerCore
from policies.jetfleet import JetfleetConfig, JetfleetPolicy, PowerConfig
from policies.loudva import LoudVA
from policies.planning import Margins
from policies.queue import RequestQueue
from policies.registry import make_policy
from simulator.engine import simulate
from workloads.scenarios import read_scenario

COST = FakeCost()
KINDS = ("agx-xavier", "xavier-nx", "jetson-nano")


def _policy(**config: object) -> JetfleetPolicy:
    """The planner with every device awake: power states have their own tests (test_power_states_policy.py)."""
    config.setdefault("power", PowerConfig(enabled=False))
    return JetfleetPolicy(JetfleetConfig(**config))  # type: ignore[arg-type]


def _dev(name: str, kind: str = "agx-xavier", freq_hz: float | None = None, **kw: object) -> DeviceState:
    return DeviceState(name, kind, freq_hz or get_kind(kind).max_freq_hz, **kw)  # type: ignore[arg-type]


def _frames(queue: RequestQueue, ids: tuple[int, ...]) -> int:
    return sum(queue.get(i).n_frames for i in ids)


# -- invariants ------------------------------------------------------------------------------------
_device = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, 20),  # frequency index (clipped to the kind's list)
    st.floats(0.0, 3.0),  # busy for this long after now
    st.integers(0, 2),  # batches in flight
    st.booleans(),  # healthy
    st.sampled_from([LOCAL, GBE, Link(50e6, 0.002)]),  # its data path
)
_request = st.tuples(st.integers(1, 12), st.floats(0.0, 5.0), st.floats(0.05, 20.0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.lists(_device, min_size=1, max_size=4),
    requests=st.lists(_request, min_size=0, max_size=30),
    late=st.sampled_from(["serve", "drop"]),
    max_in_flight=st.integers(1, 2),
)
def test_decisions_always_apply_cleanly(devices, requests, late, max_in_flight):
    """Healthy devices only, catalogue clocks only, whole queued requests at most once, the in-flight limit (one
    more behind a network link, where the next batch's transfer overlaps the running one)."""
    now_s = 5.0
    states = []
    for i, (kind, fi, busy_s, in_flight, healthy, link) in enumerate(devices):
        freqs = get_kind(kind).freqs_hz
        busy_until = now_s + busy_s if in_flight else now_s - 1.0
        states.append(_dev(f"d{i}", kind, freqs[min(fi, len(freqs) - 1)], busy_until_s=busy_until,
                           in_flight=in_flight, healthy=healthy, link=link))  # fmt: skip
    policy = _policy(late=late, max_in_flight=max_in_flight)
    core = SchedulerCore(policy, COST, states)
    for i, (frames, t, slo) in enumerate(requests):
        core.submit(min(t, now_s), req(i, t=t, frames=frames, slo=slo))
    before = {s.name: (s.healthy, s.in_flight) for s in states}
    decisions = policy.decide(core.context(now_s))
    seen: set[int] = set()
    for d in decisions.dispatches:
        healthy, in_flight = before[d.device]
        device = next(s for s in states if s.name == d.device)
        assert healthy and in_flight < max_in_flight + (0 if device.link.local else 1)
        assert d.request_ids and not seen & set(d.request_ids)
        seen |= set(d.request_ids)
        assert all(i in core.queue for i in d.request_ids)
        assert device.frequency(d.freq_hz) == d.freq_hz
    assert len({d.device for d in decisions.dispatches}) == len(decisions.dispatches)  # one batch per device
    for drop in decisions.drops:
        assert not seen & set(drop.request_ids) and all(i in core.queue for i in drop.request_ids)
        seen |= set(drop.request_ids)
    for change in decisions.frequency_changes:
        assert before[change.device][0] and change.device not in {d.device for d in decisions.dispatches}
    assert decisions.wake_at_s is None or decisions.wake_at_s > now_s
    core.step(now_s)  # the core applies the same decisions without a contract error


def test_every_request_gets_one_outcome_on_a_mixed_fleet():
    """A busy heterogeneous fleet: each request is completed or dropped with a reason, exactly once."""
    fleet = make_fleet("agx-xavier", "xavier-nx", "xavier-nx", "jetson-nano")
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.exponential(0.02, 400))
    requests = [req(i, t=float(t), frames=int(rng.integers(1, 6)), slo=float(rng.uniform(0.1, 3))) for i, t in
                enumerate(times)]  # fmt: skip
    result = simulate(requests, fleet, _policy(), COST, device_models=fake_models(fleet))
    assert len(result.outcomes) == len(requests)
    assert {o.request_id for o in result.outcomes} == {r.request_id for r in requests}
    assert all(o.reason for o in result.outcomes if o.status is OutcomeStatus.DROPPED)


# -- what LoudVA gets wrong ------------------------------------------------------------------------
def test_a_busy_twin_is_not_treated_as_idle():
    """A request that the busy twin would finish too late goes to the idle twin."""
    q = RequestQueue([req(1, frames=4, slo=1.0)])
    busy = _dev("d0", busy_until_s=3.0, in_flight=1, last_busy_s=0.0)
    out = decide(_policy(max_in_flight=2), 0.0, q, [busy, _dev("d1")], COST)
    assert [d.device for d in out.dispatches] == ["d1"]


def test_completion_time_counts_the_work_already_on_the_device():
    """Queued behind a batch, the plan fits the deadline from busy_until, not from now."""
    q = RequestQueue([req(1, frames=8, slo=3.0)])
    device = _dev("d0", busy_until_s=2.5, in_flight=1)
    (d,) = decide(_policy(max_in_flight=2), 0.0, q, [device], COST).dispatches
    assert 2.5 + d.predicted_latency_s <= 3.0


def test_twins_share_the_load():
    """Two identical devices both serve a steady stream of tight requests (LoudVA keeps picking one)."""
    fleet = make_fleet("xavier-nx", "xavier-nx")
    requests = [req(i, t=0.05 * i, frames=2, slo=0.4) for i in range(200)]
    result = simulate(requests, fleet, _policy(), COST, device_models=fake_models(fleet))
    assert min(result.device_batches.values()) >= 0.3 * sum(result.device_batches.values())
    assert result.metrics.pct_frames_within_slo == 100.0


def test_overload_runs_large_batches_not_batch_one():
    """More work than fits: the batch is the highest-throughput one, not a single request."""
    q = RequestQueue([req(i, frames=1, slo=0.25) for i in range(300)])
    (d,) = decide(_policy(), 0.0, q, [_dev("d0")], COST).dispatches
    assert len(d.request_ids) > 10
    assert d.predicted_latency_s * 1.1 + 0.05 <= 0.25 + 1e-9  # still in time for the requests it takes


def test_the_requests_behind_the_batch_keep_their_deadlines():
    """A slow, cheap batch for the head must not make the next request late."""
    q = RequestQueue([req(1, frames=4, slo=2.0), req(2, frames=40, slo=2.3)])
    device = _dev("d0", freq_hz=get_kind("agx-xavier").min_freq_hz)
    out = decide(_policy(), 0.0, q, [device], COST)
    first = out.dispatches[0]
    behind_s = (
        0.0
        if 2 in first.request_ids
        else COST.predict_grid(
            "agx-xavier", "inceptionv3", np.array([get_kind("agx-xavier").max_freq_hz]), np.array([40])
        ).latency_s[0, 0]
    )
    assert first.predicted_latency_s + behind_s <= 2.3


def test_waits_for_a_bigger_batch_only_while_it_is_safe():
    """With arrivals expected and slack to spare it holds back until the latest safe dispatch."""
    policy = _policy()
    q = RequestQueue()
    for i in range(40):  # a steady 10 frames/s history, all served already
        r = req(i, t=0.1 * i, frames=1, slo=0.05 if i < 39 else 6.0)
        arrive(policy, r.arrival_s, r, RequestQueue())
    q.add(req(100, t=3.9, frames=1, slo=6.0))
    out = decide(policy, 3.9, q, [_dev("d0")], COST)
    assert not out.dispatches
    assert 3.9 < out.wake_at_s < 9.9
    then = decide(policy, out.wake_at_s, q, [_dev("d0")], COST)
    assert [(d.device, d.request_ids) for d in then.dispatches] == [("d0", (100,))]  # then it goes


def test_a_held_batch_leaves_a_round_trip_earlier():
    """A device whose batches take 1.5 s more to come back (a measured round trip, live only) is never held past
    the latest dispatch that still finishes in time with it: held until the old latest safe dispatch, the batch
    would come back 1.5 s late (the live soak at 100x time compression dropped most requests so)."""

    def decision(round_trip_s: float):
        policy = _policy()
        for i in range(40):  # a steady 10 frames/s history, all served already
            r = req(i, t=0.1 * i, frames=1, slo=0.05 if i < 39 else 6.0)
            arrive(policy, r.arrival_s, r, RequestQueue())
        q = RequestQueue([req(100, t=3.9, frames=1, slo=2.5)])  # due at 6.4
        return decide(policy, 3.9, q, [_dev("d0", round_trip_s=round_trip_s)], COST)

    alone = decision(0.0)
    assert not alone.dispatches and alone.wake_at_s > 6.0  # no round trip: it waits for company until ~6.3
    far = decision(1.5)
    assert far.dispatches or far.wake_at_s <= alone.wake_at_s - 1.5 + 1e-6, far


def test_no_wait_without_expected_arrivals():
    """One arrival so far (less than a frame expected before the latest safe start): the batch goes at once,
    although on real AGX curves (bigger batches cheaper per frame) it would wait for more if more were coming."""
    from costmodel.device_models import OracleCostModel

    q = RequestQueue()
    policy = _policy()
    arrive(policy, 0.0, req(1, frames=1, slo=6.0), q)
    out = decide(policy, 0.0, q, [_dev("d0")], OracleCostModel())
    assert [(d.device, d.request_ids) for d in out.dispatches] == [("d0", (1,))] and out.wake_at_s is None


def test_leaves_room_for_the_tightest_recent_slo():
    """After a 0.3 s SLO arrived, the only device does not start a batch it could not interrupt in time."""
    policy = _policy()
    q = RequestQueue()
    arrive(policy, 0.0, req(0, t=0.0, frames=1, slo=0.3), RequestQueue())
    for i in range(1, 60):
        q.add(req(i, t=0.5, frames=2, slo=20.0))
    (d,) = decide(policy, 0.5, q, [_dev("d0")], COST).dispatches
    assert d.predicted_latency_s <= 0.3


# -- late work, idle clocks, configuration ---------------------------------------------------------
def test_late_requests_are_dropped_with_a_reason_or_served():
    q = RequestQueue([req(1, t=0.0, frames=2, slo=0.5), req(2, t=0.0, frames=1, slo=30.0)])
    out = decide(_policy(late="drop"), 1.0, q, [_dev("d0")], COST)
    assert [(d.request_ids, d.reason) for d in out.drops] == [((1,), DropReason.DEADLINE_UNREACHABLE)]
    out = decide(_policy(late="serve"), 1.0, q, [_dev("d0"), _dev("d1")], COST)
    assert not out.drops and 1 in {i for d in out.dispatches for i in d.request_ids}


def test_a_late_request_longer_than_a_late_batch_is_served_alone_not_left_to_expire():
    """A late request that takes longer than `late_batch_max_s` even alone at the fastest clock still runs, alone,
    on an idle device; a busy device does not take it (the late batch must not hold on-time work back)."""
    q = RequestQueue([req(1, t=0.0, frames=60, slo=0.5)])
    policy = _policy(late_batch_max_s=0.05)
    out = decide(policy, 1.0, q, [_dev("d0")], COST)
    assert [d.request_ids for d in out.dispatches] == [(1,)] and out.dispatches[0].predicted_latency_s > 0.05
    out = decide(_policy(late_batch_max_s=0.05), 1.0, q, [_dev("d0", in_flight=1, busy_until_s=1.5)], COST)
    assert not out.dispatches


def test_late_requests_expire_eventually():
    q = RequestQueue([req(1, t=0.0, frames=2, slo=0.5)])
    out = decide(_policy(late="serve", late_expire_s=10.0), 20.0, q, [_dev("d0", in_flight=1)], COST)
    assert [(d.request_ids, d.reason) for d in out.drops] == [((1,), DropReason.DEADLINE_EXPIRED)]


def test_idle_device_is_parked_at_its_lowest_idle_power_clock():
    agx = get_kind("agx-xavier")
    out = decide(_policy(park_after_s=0.5), 1.0, RequestQueue(), [_dev("d0", last_busy_s=0.0)], COST)
    assert [(c.device, c.freq_hz) for c in out.frequency_changes] == [("d0", agx.min_freq_hz)]
    out = decide(_policy(park_after_s=0.5), 0.2, RequestQueue(), [_dev("d0", last_busy_s=0.0)], COST)
    assert not out.frequency_changes and out.wake_at_s == pytest.approx(0.5)


def test_unhealthy_devices_get_nothing():
    q = RequestQueue([req(1, frames=1, slo=2.0)])
    out = decide(_policy(), 0.0, q, [_dev("d0", healthy=False), _dev("d1")], COST)
    assert [d.device for d in out.dispatches] == ["d1"]
    assert not decide(_policy(), 0.0, q, [_dev("d0", healthy=False)], COST)


def test_registry_names_and_bad_options():
    assert isinstance(make_policy("jetfleet"), JetfleetPolicy)
    assert make_policy("jetfleet:drop").config.late == "drop"
    with pytest.raises(ConfigError, match="jetfleet"):
        make_policy("jetfleet:sometimes")
    with pytest.raises(ValueError, match="max_in_flight"):
        JetfleetConfig(max_in_flight=0)


def test_same_inputs_same_run():
    fleet = make_fleet("agx-xavier", "xavier-nx", "jetson-nano")
    rng = np.random.default_rng(7)
    requests = [req(i, t=float(t), frames=int(rng.integers(1, 9)), slo=float(rng.uniform(0.3, 8))) for i, t in
                enumerate(np.cumsum(rng.exponential(0.1, 300)))]  # fmt: skip
    runs = [simulate(requests, fleet, _policy(), COST, device_models=fake_models(fleet)) for _ in range(2)]
    assert runs[0].outcomes == runs[1].outcomes and runs[0].energy_j == runs[1].energy_j


def test_margins_are_configurable():
    policy = JetfleetPolicy(JetfleetConfig(margins=Margins(0.0, 0.0)))
    q = RequestQueue([req(1, frames=1, slo=0.05)])
    (d,) = decide(policy, 0.0, q, [_dev("d0")], COST).dispatches
    assert d.request_ids == (1,) and d.predicted_latency_s <= 0.05  # on time: fits only without the margins
    dropped = decide(_policy(late="drop"), 0.0, q, [_dev("d0")], COST).drops
    assert [x.request_ids for x in dropped] == [(1,)]  # the default margins leave it no room


def test_beats_loudva_on_a_measured_workload(loudva_dir):
    """LoudVA's scenario exp1-id6 on one AGX Xavier (calibrated device model, oracle predictions)."""
    from cluster.inventory import load_fleet
    from costmodel.device_models import OracleCostModel

    requests = read_scenario(loudva_dir / "scenarios" / "exp1-id6.csv")
    fleet, cost = load_fleet("agx"), OracleCostModel()
    ours = simulate(requests, fleet, make_policy("jetfleet"), cost).metrics
    theirs = simulate(requests, fleet, LoudVA(), cost).metrics
    assert ours.frames_per_joule > theirs.frames_per_joule
    assert ours.pct_frames_within_slo >= theirs.pct_frames_within_slo


def test_stops_holding_back_when_the_stream_goes_quiet():
    """With slack left but no arrival for `quiet_after_s`, a held batch goes."""
    policy = _policy(quiet_after_s=1.0)
    q = RequestQueue()
    for i in range(40):  # a steady 10 frames/s history, as in the waiting test
        r = req(i, t=0.1 * i, frames=1, slo=0.05 if i < 39 else 6.0)
        arrive(policy, r.arrival_s, r, RequestQueue())
    q.add(req(100, t=3.9, frames=1, slo=6.0))
    held = decide(policy, 3.9, q, [_dev("d0")], COST)
    assert not held.dispatches and held.wake_at_s == pytest.approx(3.9 + 1.0)
    then = decide(policy, 4.9, q, [_dev("d0")], COST)
    assert [(d.device, d.request_ids) for d in then.dispatches] == [("d0", (100,))]


@pytest.mark.parametrize(("learn", "factor"), [(True, 1.4), (False, 1.0)])
def test_learns_the_cost_models_latency_error_from_finished_batches(learn, factor):
    """Batches that ran 40 % slower than predicted make the planner predict 40 % more for that batch size (through
    the core's cost view); with `learn_latency=False` it keeps the model's prediction."""
    core = SchedulerCore(_policy(learn_latency=learn), FakeCost(), [_dev("d0")])
    core.submit(0.0, req(1, frames=4, slo=5.0))
    (batch,) = core.step(0.0).batches
    d = batch.dispatch
    slow = d.predicted_latency_s * 1.4
    core.complete(slow, BatchResult("d0", d.request_ids, 4, d.model, d.freq_hz, 0.0, slow, slow, 1.0), batch.batch_id)
    core.submit(1.0, req(2, t=1.0, frames=4, slo=5.0))
    out = core.step(1.0)
    if not out.batches:  # held back for more arrivals: it goes at the latest safe dispatch
        out = core.step(out.wake_at_s)
    (again,) = out.batches
    hz = np.array([again.dispatch.freq_hz])
    model_s = FakeCost().predict_grid("agx-xavier", "inceptionv3", hz, np.array([4])).latency_s[0, 0]
    assert again.dispatch.predicted_latency_s == pytest.approx(factor * model_s)  # at whichever clock it picked


def test_latency_correction_uses_the_cell_then_the_batch_size_then_the_model():
    freqs = tuple(float(f) for f in get_kind("agx-xavier").freqs_hz)
    view = CostView(FakeCost())
    base = view.grid("agx-xavier", "inceptionv3", freqs, 8)
    f0, f1 = freqs[0], freqs[1]
    view.observe("agx-xavier", "inceptionv3", freqs, f0, 4, 1.5 * base.latency_s[0, 3])
    learned = view.grid("agx-xavier", "inceptionv3", freqs, 8, corrected=True)
    assert learned.latency_s[0, 3] == pytest.approx(1.5 * base.latency_s[0, 3])  # the cell seen
    assert learned.latency_s[1, 3] == pytest.approx(1.5 * base.latency_s[1, 3])  # same batch size, other clock
    assert learned.latency_s[1, 4] == pytest.approx(base.latency_s[1, 4])  # unseen batch size: the model
    view.observe("agx-xavier", "inceptionv3", freqs, f1, 4, 0.9 * base.latency_s[1, 3])
    again = view.grid("agx-xavier", "inceptionv3", freqs, 8, corrected=True)
    assert again.latency_s[1, 3] == pytest.approx(0.9 * base.latency_s[1, 3])
    assert view.grid("agx-xavier", "inceptionv3", freqs, 8).latency_s[0, 3] == base.latency_s[0, 3]  # raw stays
    frozen = CostView(FakeCost(), learn=False)
    frozen.grid("agx-xavier", "inceptionv3", freqs, 8)
    frozen.observe("agx-xavier", "inceptionv3", freqs, f0, 4, 9.0)
    assert frozen.grid("agx-xavier", "inceptionv3", freqs, 8, corrected=True).latency_s[0, 3] == base.latency_s[0, 3]


def test_a_batch_that_leaves_work_behind_goes_at_once():
    """Waiting cannot grow a batch that was cut short (here by the guard): with a backlog it dispatches now."""
    policy = _policy()
    q = RequestQueue()
    for i in range(200):  # a busy stream: 20 frames/s, long SLOs
        arrive(policy, 0.05 * i, req(i, t=0.05 * i, frames=2, slo=30.0), q)
    from costmodel.device_models import OracleCostModel  # real AGX curves: bigger batches are cheaper per frame

    out = decide(policy, 10.0, q, [_dev("d0")], OracleCostModel())
    assert out.dispatches and len(out.dispatches[0].request_ids) < 200


def test_the_guard_counts_a_wake_under_way_against_the_room_it_keeps():
    """A tight request may arrive while the device wakes: the batch that follows the wake must leave room for it
    counted from now, so the longer the wake, the shorter the batch, and every batch ends as early as on an awake
    device. (The room was once counted from the end of the wake: the batch stayed 18 frames whatever the wake.)"""

    def plan(awake_at_s: float) -> tuple[int, float]:
        policy = _policy(guard_slo_s=2.0)
        q = RequestQueue()
        for i in range(60):
            arrive(policy, 0.0, req(i, t=0.0, frames=2, slo=60.0), q)
        low = get_kind("agx-xavier").min_freq_hz  # no clock change to weigh: the device is at its cheapest clock
        (d,) = decide(policy, 0.0, q, [_dev("d0", freq_hz=low, awake_at_s=awake_at_s)], COST).dispatches
        return _frames(q, d.request_ids), awake_at_s + Margins().padded(d.predicted_latency_s)

    plans = [plan(wake_s) for wake_s in (0.0, 0.3, 0.6, 0.9)]
    frames = [n for n, _ in plans]
    assert frames == sorted(frames, reverse=True) and frames[-1] < frames[0]
    awake_end_s = plans[0][1]
    assert all(end_s <= awake_end_s + 0.05 for _, end_s in plans)


class _PlansEveryDevice(JetfleetPolicy):
    """jetfleet with its own `choose_batch` (the same one): the policy then plans every representative of every
    group, pruning none (`_best_plan` prunes only its own planner's plans)."""

    def choose_batch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return super().choose_batch(*args, **kwargs)


@pytest.mark.parametrize("power", [True, False])
def test_pruning_plans_that_cannot_win_changes_no_decision(power):
    """Skipping the groups and devices whose best possible plan already loses picks what planning all of them picks,
    on a mixed fleet with twins at different clocks, links, power states on and off."""
    from benchmarks.bench_simulator import mixed_fleet
    from costmodel.device_models import OracleCostModel
    from workloads.arrivals import poisson

    fleet = mixed_fleet(20)
    requests = poisson(40.0, 20.0, seed=5, frames=(1, 4), slo_s=(0.5, 5.0), streams=4)
    config = JetfleetConfig(power=PowerConfig(enabled=power))
    runs = [simulate(requests, fleet, cls(config), OracleCostModel()) for cls in (JetfleetPolicy, _PlansEveryDevice)]
    pruned, every = ([(b.device, b.request_ids, b.freq_hz, b.started_s) for b in r.batches] for r in runs)
    assert len(pruned) > 100
    assert pruned == every
    assert runs[0].outcomes == runs[1].outcomes


class _WithoutIndexes(JetfleetPolicy):
    """jetfleet told nothing of which devices are busy or whether device states changed (`StepContext.busy` and
    `state_version` None, as a wrapper's context is), or only one of the two."""

    def __init__(self, dropped: tuple[str, ...]) -> None:
        super().__init__()
        self.dropped = dropped

    def decide(self, ctx):  # type: ignore[no-untyped-def]
        return super().decide(ctx.replace(**dict.fromkeys(self.dropped)))


@pytest.mark.parametrize("dropped", [("busy",), ("state_version",), ("busy", "state_version")])
def test_the_context_indexes_change_no_decision(dropped):
    """What jetfleet keeps per busy set (its idle devices, for grouping, parking and the power rules) and per state
    version (the busy devices' ready times) decides what reading every device's state at every decision decides."""
    from benchmarks.bench_simulator import mixed_fleet
    from costmodel.device_models import OracleCostModel
    from workloads.arrivals import poisson

    fleet = mixed_fleet(20)
    requests = poisson(40.0, 20.0, seed=9, frames=(1, 4), slo_s=(0.5, 5.0), streams=4)
    policies = (JetfleetPolicy(), _WithoutIndexes(dropped))
    runs = [simulate(requests, fleet, policy, OracleCostModel()) for policy in policies]
    indexed, read = ([(b.device, b.request_ids, b.freq_hz, b.started_s) for b in r.batches] for r in runs)
    assert len(indexed) > 100
    assert indexed == read
    assert runs[0].outcomes == runs[1].outcomes


class _ChecksGroups(JetfleetPolicy):
    """jetfleet that, at every grouping, works the groups out again without what it keeps between decisions
    (`StepContext.state_version` None) and checks both agree."""

    checked = 0

    def _groups(self, step, family, devices, min_frames):  # type: ignore[no-untyped-def]
        from jetfleet.types import Decisions
        from policies.jetfleet.step import Step

        got = super()._groups(step, family, devices, min_frames)
        fresh = Step(step.ctx.replace(state_version=None), Decisions(), taken=set(step.taken))
        want = super()._groups(fresh, family, devices, min_frames)

        def seen(groups):  # type: ignore[no-untyped-def]
            return [([d.name for d in g.free], g.ready_by_clock, g.n_clocks) for g in groups]

        assert seen(got) == seen(want), step.now_s
        self.checked += 1
        return got


def test_the_groups_kept_between_decisions_are_the_groups_worked_out_afresh():
    """At every decision of a loaded mixed fleet, what `_groups` keeps per state version (free order, earliest
    ready per clock, clock count) equals what reading every device gives: as time passes busy devices' ends, as
    they finish, wake and change clocks."""
    from benchmarks.bench_simulator import mixed_fleet
    from costmodel.device_models import OracleCostModel
    from workloads.arrivals import poisson

    policy = _ChecksGroups()
    requests = poisson(40.0, 20.0, seed=11, frames=(1, 4), slo_s=(0.5, 5.0), streams=4)
    simulate(requests, mixed_fleet(20), policy, OracleCostModel())
    assert policy.checked > 500
    assert policy._group_orders  # something was kept
