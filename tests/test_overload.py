"""Overload control: bounded-queue drops, deadline-aware drops, shedding, safe insertion, admission, and the
compare-overload targets on the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from policy_harness import arrive, decide, view_of
from typer.testing import CliRunner

from costmodel.fixed import FixedServiceCost, FixedServiceModel
from jetfleet.errors import ConfigError
from jetfleet.telemetry import EventList
from jetfleet.types import DeviceState, DropReason, OutcomeStatus, Request
from policies.admission import admission_decision
from policies.context import with_device_facts
from policies.overload import EdfDispatch, FifoPolicy, OverloadControl
from policies.queue import RequestQueue
from policies.registry import make_policy
from policies.shedding import ActiveStream, CostOracle, bound_victims
from policies.streams import stream_set_from_dict
from simulator.overload import compare, events_stream_stats, load_experiment, stream_stats

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CPU_HZ = 2400e6
COST = FixedServiceCost({"cpu": FixedServiceModel("cpu", {"hi": 0.008, "lo": 0.045})})


def _req(i, t, stream="hi", priority=100, slo=0.08, model=None):
    return Request(i, t, 1, slo, model or stream, priority=priority, stream=stream)


def _dev(busy_until=0.0, in_flight=0, name="dev0"):
    return with_device_facts(DeviceState(name, "cpu", CPU_HZ, busy_until_s=busy_until, in_flight=in_flight))


def _streams(**bound):
    base = {"name": "hi", "priority": 100, **bound}
    return stream_set_from_dict({"streams": [base, {"name": "lo", "priority": 20}]})


def _dropped(drops):
    return [(i, d.reason) for d in drops for i in d.request_ids]


def _oracle(devices, cost=COST):
    return CostOracle(view_of(cost), devices)


# -- bounded queues ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "victim"),
    [("drop_oldest", 0), ("drop_newest", 2)],
)
def test_a_full_stream_queue_drops_by_its_policy(policy, victim):
    streams = _streams(queue_limit=2, drop_policy=policy)
    q = RequestQueue([_req(0, 0.0), _req(1, 0.1)])
    assert _dropped(bound_victims(_req(2, 0.2), q, streams)) == [(victim, DropReason.QUEUE_FULL)]


def test_drop_low_priority_evicts_the_lowest_anywhere_in_the_group_oldest_first():
    streams = stream_set_from_dict(
        {
            "streams": [{"name": "hi", "group": "g"}, {"name": "lo", "group": "g"}],
            "groups": [{"name": "g", "queue_limit": 3, "drop_policy": "drop_low_priority"}],
        }
    )
    q = RequestQueue([_req(0, 0.0, priority=50), _req(1, 0.1, "lo", 10), _req(2, 0.2, "lo", 10)])
    drops = bound_victims(_req(3, 0.3), q, streams)
    assert _dropped(drops) == [(1, DropReason.EVICTED_LOW_PRIORITY)]
    assert drops[0].protected_stream == "hi"


def test_drop_low_priority_refuses_a_newcomer_lower_than_everything_queued():
    streams = stream_set_from_dict({"streams": [{"name": "hi", "queue_limit": 2, "drop_policy": "drop_low_priority"}]})
    q = RequestQueue([_req(0, 0.0, priority=50), _req(1, 0.1, priority=50)])
    assert _dropped(bound_victims(_req(2, 0.2, priority=5), q, streams)) == [(2, DropReason.QUEUE_FULL)]


def test_an_empty_drop_low_priority_group_admits_its_first_request():
    """Regression (issue 12, finding 1): the group's lowest queued priority of an empty queue raised in `min()`,
    so every request of `configs/overload-3stream.json` got a 503."""
    streams = stream_set_from_dict(
        {
            "streams": [{"name": "hi", "priority": 100, "group": "g"}, {"name": "lo", "priority": 20, "group": "g"}],
            "groups": [{"name": "g", "queue_limit": 2, "drop_policy": "drop_low_priority"}],
        }
    )
    devices = [_dev()]
    admission = admission_decision(0.0, _req(0, 0.0), RequestQueue(), streams, devices, _oracle(devices))
    assert admission.accepted and not admission.drops


def test_a_top_priority_request_the_backlog_would_make_late_is_refused_with_its_drain_time():
    """Eight 8 ms detector frames queued, each due in 70 ms: a ninth due then too would finish at 72 ms behind
    them; refused as `deadline_unreachable`, its retry-after the 2 ms of backlog that must drain first. One due
    in 80 ms still fits."""
    policy = _control()
    q = RequestQueue()
    for i in range(8):
        assert arrive(policy, 0.0, _req(i, 0.0, slo=0.07), q, [_dev()], COST).accepted
    late = arrive(policy, 0.0, _req(8, 0.0, slo=0.07), q, [_dev()], COST)
    assert not late.accepted and late.reason is DropReason.DEADLINE_UNREACHABLE
    assert late.retry_after_s == pytest.approx(0.072 - 0.07, abs=1e-6)
    assert arrive(policy, 0.0, _req(9, 0.0, slo=0.08), q, [_dev()], COST).accepted


def test_what_overload_control_remembers_per_stream_stays_bounded_under_ever_new_stream_names():
    """Regression (issue 12, finding 6): every stream name a client sent stayed in the policy's memory."""
    policy = _control()
    q = RequestQueue()
    for i in range(2000):
        arrive(policy, i * 0.01, _req(i, i * 0.01, stream=f"client-{i}", model="hi"), q, [_dev()], COST)
        q.remove([i])
    assert len(policy._last) <= 300 and len(policy._first_seen) <= 300 and len(policy._arrivals) <= 300


def test_unbounded_streams_never_drop_at_admission():
    q = RequestQueue([_req(i, i * 0.01) for i in range(99)])
    assert bound_victims(_req(99, 0.99), q, _streams()) == []


# -- fifo ---------------------------------------------------------------------------------------------
def test_fifo_sends_the_oldest_request_alone_at_max_frequency_to_idle_devices_only():
    q = RequestQueue([_req(0, 0.0, "lo", 20, slo=0.25), _req(1, 0.01), _req(2, 0.02)])
    out = decide(FifoPolicy(), 0.02, q, [_dev(), _dev(0.5, 1, "busy")], COST)
    assert [(d.device, d.request_ids, d.freq_hz) for d in out.dispatches] == [("dev0", (0,), CPU_HZ)]
    assert out.dispatches[0].predicted_latency_s == pytest.approx(0.045)


def test_fifo_rejects_a_newcomer_its_full_drop_newest_queue_would_drop():
    """drop_newest: the newcomer is refused at admission (never queued); drop_oldest: it evicts the oldest."""
    newest = FifoPolicy(_streams(queue_limit=2, drop_policy="drop_newest"))
    q = RequestQueue([_req(0, 0.0), _req(1, 0.1)])
    a = arrive(newest, 0.2, _req(2, 0.2), q, [_dev()], COST)
    assert not a.accepted and a.reason is DropReason.QUEUE_FULL and a.retry_after_s > 0
    assert [r.request_id for r in q] == [0, 1]
    oldest = FifoPolicy(_streams(queue_limit=2, drop_policy="drop_oldest"))
    a = arrive(oldest, 0.2, _req(2, 0.2), q, [_dev()], COST)
    assert a.accepted and _dropped(a.drops) == [(0, DropReason.QUEUE_FULL)]
    assert [r.request_id for r in q] == [1, 2]


# -- the overload layer -------------------------------------------------------------------------------
def _control(**kw):
    return OverloadControl(EdfDispatch(), _streams(), max_batch=1, **kw)


def test_a_request_no_device_can_finish_in_time_is_rejected_as_unreachable():
    policy = _control()
    q = RequestQueue()
    a = arrive(policy, 0.0, _req(0, 0.0, "lo", 20, slo=0.03), q, [_dev()], COST)  # 45 ms of service, 30 ms budget
    assert not a.accepted and a.reason is DropReason.DEADLINE_UNREACHABLE and not q


def test_a_queued_request_that_can_no_longer_finish_in_time_is_dropped_as_unreachable():
    policy = _control()
    q = RequestQueue()
    assert arrive(policy, 0.0, _req(0, 0.0, "lo", 20, slo=0.08), q, [_dev()], COST).accepted
    out = decide(policy, 0.04, q, [_dev()], COST)  # 40 ms later, 45 ms of service misses the 80 ms budget
    assert _dropped(out.drops) == [(0, DropReason.DEADLINE_UNREACHABLE)] and not out.dispatches


def test_busy_device_makes_a_request_unreachable_by_its_busy_until():
    policy = _control()
    q = RequestQueue()
    late = arrive(policy, 0.0, _req(0, 0.0, slo=0.08), q, [_dev(busy_until=0.075, in_flight=1)], COST)
    assert not late.accepted and late.reason is DropReason.DEADLINE_UNREACHABLE
    assert arrive(policy, 0.0, _req(0, 0.0, slo=0.08), q, [_dev()], COST).accepted
    assert _dropped(decide(policy, 0.0, q, [_dev(busy_until=0.075, in_flight=1)], COST, apply=False).drops) == [
        (0, DropReason.DEADLINE_UNREACHABLE)
    ]
    assert not decide(policy, 0.0, q, [_dev(busy_until=0.07, in_flight=1)], COST).drops


def test_low_priority_arriving_behind_a_high_priority_backlog_is_rejected_naming_the_protected_stream():
    policy = _control()
    q = RequestQueue()
    for i in range(8):  # 64 ms of detector work, each due in 80 ms
        assert arrive(policy, 0.0, _req(i, 0.0), q, [_dev()], COST).accepted
    # would finish at 109 ms behind them; running first delays them
    a = arrive(policy, 0.0, _req(8, 0.0, "lo", 20, slo=0.1), q, [_dev()], COST)
    assert not a.accepted and a.reason is DropReason.SHED and a.protected_stream == "hi"
    assert 8 not in q


@pytest.mark.parametrize(("min_share", "accepted"), [(0.0, False), (0.5, True)])
def test_a_stream_owed_its_floor_is_not_shed_at_admission(min_share, accepted):
    """Behind a detector backlog a classifier newcomer is shed, unless its stream is owed its `min_share`."""
    streams = stream_set_from_dict(
        {"streams": [{"name": "hi", "priority": 100}, {"name": "lo", "priority": 20, "min_share": min_share}]}
    )
    policy = OverloadControl(EdfDispatch(), streams, max_batch=1)
    q = RequestQueue()
    assert arrive(policy, 0.0, _req(0, 0.0), q, [_dev()], COST).accepted
    assert decide(policy, 0.0, q, [_dev()], COST).dispatches  # the detector got all device time so far
    q.remove([0])
    busy = [_dev(busy_until=0.008, in_flight=1)]
    for i in range(1, 9):  # 64 ms of detector work behind it, each due in 80 ms
        assert arrive(policy, 0.0, _req(i, 0.0), q, busy, COST).accepted
    a = arrive(policy, 0.0, _req(9, 0.0, "lo", 20, slo=0.1), q, busy, COST)
    assert a.accepted is accepted
    assert accepted or (a.reason is DropReason.SHED and a.protected_stream == "hi")


def test_queued_low_priority_is_shed_when_a_high_priority_backlog_arrives_after_it():
    policy = _control()
    q = RequestQueue()
    assert arrive(policy, 0.0, _req(8, 0.0, "lo", 20, slo=0.1), q, [_dev()], COST).accepted  # alone: in time
    for i in range(8):  # then 64 ms of detector work, each due in 80 ms
        assert arrive(policy, 0.0, _req(i, 0.0), q, [_dev()], COST).accepted
    out = decide(policy, 0.0, q, [_dev()], COST)
    sheds = [d for d in out.drops if d.reason is DropReason.SHED]
    assert [d.request_ids for d in sheds] == [(8,)] and sheds[0].protected_stream == "hi"
    assert out.dispatches[0].request_ids == (0,)


def test_low_priority_runs_on_an_idle_device_when_high_priority_keeps_its_slack():
    policy = _control()
    arrive(policy, 0.0, _req(0, 0.0), RequestQueue(), [_dev()], COST)  # the detector stream is active, none queued
    q = RequestQueue()
    assert arrive(policy, 0.01, _req(1, 0.01, "lo", 20, slo=0.25), q, [_dev()], COST).accepted
    out = decide(policy, 0.01, q, [_dev()], COST)
    assert [d.request_ids for d in out.dispatches] == [(1,)]
    assert out.dispatches[0].reason.startswith("insert")


def test_low_priority_waits_when_a_new_high_priority_arrival_could_not_make_its_budget():
    policy = _control()
    arrive(policy, 0.0, _req(0, 0.0, slo=0.05), RequestQueue(), [_dev()], COST)  # 45 ms + 8 ms would miss 50 ms
    q = RequestQueue()
    assert arrive(policy, 0.01, _req(1, 0.01, "lo", 20, slo=2.0), q, [_dev()], COST).accepted
    out = decide(policy, 0.01, q, [_dev()], COST)
    assert not out.dispatches and not out.drops
    assert out.wake_at_s == pytest.approx(1.0)  # when the detector stream stops counting as active


def test_low_priority_waits_when_the_other_devices_cannot_absorb_the_high_priority_rate_meanwhile():
    """One new arrival could go to the second device, but 200 fps of 8 ms frames cannot, for 200 ms."""
    cost = FixedServiceCost({"cpu": FixedServiceModel("cpu", {"hi": 0.008, "long": 0.2, "short": 0.01})})
    policy = OverloadControl(EdfDispatch(), _streams(), max_batch=1)
    devices = [_dev(name="a"), _dev(name="b")]
    for k in range(200):  # the detector stream: 200 fps over the last second, all served already
        arrive(policy, k * 0.005, _req(1000 + k, k * 0.005), RequestQueue(), devices, cost)
    long = RequestQueue([_req(1, 1.0, "lo", 20, slo=5.0, model="long")])
    assert not decide(policy, 1.0, long, devices, cost).dispatches
    short = RequestQueue([_req(2, 1.0, "lo", 20, slo=5.0, model="short")])
    assert [d.request_ids for d in decide(policy, 1.0, short, devices, cost).dispatches] == [(2,)]


def test_max_batch_cuts_the_inner_batch_to_its_first_requests():
    class Everything(EdfDispatch):
        def decide(self, ctx):
            out = super().decide(ctx)
            ids = tuple(r.request_id for r in ctx.queue.by_deadline())
            out.dispatches = [out.dispatches[0].__class__(ctx.devices[0].name, ids, CPU_HZ, "hi")]
            return out

    policy = OverloadControl(Everything(), _streams(), max_batch=2)
    q = RequestQueue([_req(i, 0.0) for i in range(5)])
    out = decide(policy, 0.0, q, [_dev()], COST)
    assert out.dispatches[0].request_ids == (0, 1) and "cut to 2 frames" in out.dispatches[0].reason


def test_each_priority_keeps_its_own_window_so_a_low_priority_backlog_cannot_hide_high_priority():
    policy = OverloadControl(EdfDispatch(), _streams(), window=2)
    q = RequestQueue([_req(i, 0.0, "lo", 20, slo=0.1 + i) for i in range(5)] + [_req(9, 0.0, slo=6.0)])
    out = decide(policy, 0.0, q, [_dev()], COST)
    assert [d.request_ids for d in out.dispatches] == [(9,)]


# -- admission (the HTTP path) ------------------------------------------------------------------------
def test_admission_rejects_a_full_drop_newest_queue_with_a_retry_after():
    streams = _streams(queue_limit=2, drop_policy="drop_newest")
    q = RequestQueue([_req(0, 0.0), _req(1, 0.0)])
    d = admission_decision(0.0, _req(2, 0.0), q, streams, [_dev()], _oracle([_dev()]))
    assert not d.accepted and d.reason is DropReason.QUEUE_FULL and d.retry_after_s >= 1.0
    assert "stream:hi" in d.detail


def test_admission_accepts_a_full_drop_oldest_queue():
    streams = _streams(queue_limit=2, drop_policy="drop_oldest")
    q = RequestQueue([_req(0, 0.0), _req(1, 0.0)])
    d = admission_decision(0.0, _req(2, 0.0), q, streams, [_dev()], _oracle([_dev()]))
    assert d.accepted and _dropped(d.drops) == [(0, DropReason.QUEUE_FULL)]


def test_admission_rejects_what_no_device_can_finish_and_what_would_hurt_higher_priority():
    streams, devices = _streams(), [_dev()]
    oracle = _oracle(devices)
    d = admission_decision(0.0, _req(0, 0.0, "lo", 20, slo=0.02), RequestQueue(), streams, devices, oracle)
    assert not d.accepted and d.reason is DropReason.DEADLINE_UNREACHABLE
    backlog = RequestQueue([_req(i, 0.0) for i in range(8)])
    active = [ActiveStream("hi", 100, 0.08, "hi", 0.0)]
    d = admission_decision(0.0, _req(9, 0.0, "lo", 20, slo=0.1), backlog, streams, devices, oracle, active=active)
    assert not d.accepted and d.reason is DropReason.SHED and d.protected_stream == "hi"
    assert admission_decision(0.0, _req(9, 0.0), backlog, streams, devices, oracle).accepted


def test_policy_admission_uses_its_own_active_streams():
    """The same low-priority newcomer is accepted by a policy that saw no detector stream, and shed by one that
    did: a 50 ms detector frame may arrive any moment, and running the newcomer first would make it late."""
    backlog = [_req(i, 0.0, slo=0.1) for i in range(1, 5)]  # 32 ms of detector work with 68 ms to spare
    newcomer = _req(9, 0.0, "lo", 20, slo=0.07)  # 45 ms: late behind the backlog, in time if run first
    unaware = _control()
    assert arrive(unaware, 0.0, newcomer, RequestQueue(backlog), [_dev()], COST).accepted
    aware = _control()
    arrive(aware, 0.0, _req(0, 0.0, slo=0.05), RequestQueue(), [_dev()], COST)
    d = arrive(aware, 0.0, newcomer, RequestQueue(backlog), [_dev()], COST)
    assert not d.accepted and d.reason is DropReason.SHED and d.protected_stream == "hi"


def test_registry_builds_fifo_and_the_overload_layer():
    assert make_policy("fifo").name == "fifo"
    assert make_policy("overload:edf").name == "overload:edf"
    assert make_policy("overload").name == "overload:jetfleet"


# -- the experiment -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_task():
    experiment = load_experiment(CONFIGS / "overload-2task.json")
    sinks = {label: EventList() for label in experiment.policies}
    return compare(experiment, sinks=sinks), sinks


def test_two_task_fifo_reproduces_inferedge_and_jetfleet_meets_the_target(two_task):
    out, _ = two_task
    assert out["fifo"]["detector"]["p95_latency_ms"] == pytest.approx(782.0)
    assert out["fifo"]["classifier"]["p95_latency_ms"] == pytest.approx(827.0)
    detector = out["jetfleet"]["detector"]
    assert detector["p95_latency_ms"] <= 80.0 and detector["dropped"] == 0 and detector["budget_misses"] == 0
    assert out["jetfleet"]["classifier"]["executed"] > 0 and out["target"]["met"]


def test_jetfleet_never_runs_a_classifier_frame_past_its_budget(two_task):
    out, _ = two_task
    assert out["jetfleet"]["classifier"]["budget_misses"] == 0


def test_the_events_explain_every_drop_and_agree_with_the_outcomes(two_task):
    out, sinks = two_task
    for label, events in sinks.items():
        drops = [e for e in events if e.event in ("drop", "shed", "reject")]
        assert all(e.reason for e in drops)
        assert all(e.protected_stream for e in drops if e.event == "shed" or e.reason == DropReason.SHED.value)
        from_events = events_stream_stats(json.loads(e.to_json()) for e in events)
        assert {s: st.to_dict() for s, st in from_events.items()} == out[label]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("overload-sustained", marks=pytest.mark.slow),
        "overload-3stream",
        pytest.param("overload-fleet", marks=pytest.mark.slow),
    ],
)
def test_the_other_configs_meet_the_target_too(name):
    out = compare(load_experiment(CONFIGS / f"{name}.json"))
    assert out["target"]["met"], out["target"]
    assert all(st["budget_misses"] == 0 for st in out["jetfleet"].values())
    assert all(st["executed"] > 0 for st in out["jetfleet"].values())


def test_stream_stats_counts_misses_with_queueing_included():
    reqs = [_req(0, 0.0, slo=0.05), _req(1, 0.0, slo=0.05)]
    from jetfleet.types import Outcome

    outcomes = [Outcome(0, OutcomeStatus.COMPLETED, 0.04), Outcome(1, OutcomeStatus.COMPLETED, 0.06)]
    st = stream_stats(reqs, outcomes)["hi"]
    assert (st.executed, st.within_budget, st.budget_misses, st.p95_latency_ms) == (2, 1, 1, 60.0)


def test_compare_overload_cli_writes_the_json_and_a_bad_config_names_the_field(tmp_path):
    from simulator.overload_cli import app

    out = tmp_path / "o.json"
    result = CliRunner().invoke(
        app, ["compare-overload", "--config", str(CONFIGS / "overload-2task.json"), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["fifo"]["detector"]) >= {"executed", "dropped", "p95_latency_ms", "budget_misses"}
    bad = tmp_path / "bad.json"
    raw = json.loads((CONFIGS / "overload-2task.json").read_text())
    raw["streams"][1]["budget_ms"] = "soon"
    bad.write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["compare-overload", "--config", str(bad)])
    assert isinstance(result.exception, ConfigError)
    assert "stream 'classifier'" in str(result.exception) and "'budget_ms'" in str(result.exception)
