"""Overload control: bounded-queue drops, deadline-aware drops, shedding, safe insertion, admission, and the
compare-overload targets on the shipped configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from costmodel.fixed import FixedServiceModel
from jetfleet.errors import ConfigError
from jetfleet.telemetry import EventList
from jetfleet.types import DeviceState, DropReason, Request
from policies.overload import EdfDispatch, FifoPolicy, OverloadControl, admission_decision
from policies.queue import RequestQueue
from policies.registry import make_policy
from policies.shedding import ActiveStream, bound_victims
from policies.streams import stream_set_from_dict
from simulator.overload import compare, events_stream_stats, load_experiment, stream_stats

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CPU_HZ = 2400e6
COST = FixedServiceModel("cpu", {"hi": 0.008, "lo": 0.045})


def _req(i, t, stream="hi", priority=100, slo=0.08, model=None):
    return Request(i, t, 1, slo, model or stream, priority=priority, stream=stream)


def _dev(busy_until=0.0, in_flight=0, name="dev0"):
    return DeviceState(name, "cpu", CPU_HZ, busy_until_s=busy_until, in_flight=in_flight)


def _streams(**bound):
    base = {"name": "hi", "priority": 100, **bound}
    return stream_set_from_dict({"streams": [base, {"name": "lo", "priority": 20}]})


def _dropped(drops):
    return [(i, d.reason) for d in drops for i in d.request_ids]


# -- bounded queues ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "victim"),
    [("drop_oldest", 0), ("drop_newest", 2)],
)
def test_a_full_stream_queue_drops_by_its_policy(policy, victim):
    streams = _streams(queue_limit=2, drop_policy=policy)
    q = RequestQueue([_req(0, 0.0), _req(1, 0.1), _req(2, 0.2)])
    assert _dropped(bound_victims(q.get(2), q, streams)) == [(victim, DropReason.QUEUE_FULL)]


def test_drop_low_priority_evicts_the_lowest_anywhere_in_the_group_oldest_first():
    streams = stream_set_from_dict(
        {
            "streams": [{"name": "hi", "group": "g"}, {"name": "lo", "group": "g"}],
            "groups": [{"name": "g", "queue_limit": 3, "drop_policy": "drop_low_priority"}],
        }
    )
    q = RequestQueue([_req(0, 0.0, priority=50), _req(1, 0.1, "lo", 10), _req(2, 0.2, "lo", 10), _req(3, 0.3)])
    drops = bound_victims(q.get(3), q, streams)
    assert _dropped(drops) == [(1, DropReason.EVICTED_LOW_PRIORITY)]
    assert drops[0].protected_stream == "hi"


def test_drop_low_priority_refuses_a_newcomer_lower_than_everything_queued():
    streams = stream_set_from_dict({"streams": [{"name": "hi", "queue_limit": 2, "drop_policy": "drop_low_priority"}]})
    q = RequestQueue([_req(0, 0.0, priority=50), _req(1, 0.1, priority=50), _req(2, 0.2, priority=5)])
    assert _dropped(bound_victims(q.get(2), q, streams)) == [(2, DropReason.QUEUE_FULL)]


def test_unbounded_streams_never_drop_at_admission():
    q = RequestQueue([_req(i, i * 0.01) for i in range(100)])
    assert bound_victims(q.get(99), q, _streams()) == []


# -- fifo ---------------------------------------------------------------------------------------------
def test_fifo_sends_the_oldest_request_alone_at_max_frequency_to_idle_devices_only():
    q = RequestQueue([_req(0, 0.0, "lo", 20, slo=0.25), _req(1, 0.01), _req(2, 0.02)])
    out = FifoPolicy().decide(0.02, q, [_dev(), _dev(0.5, 1, "busy")], COST)
    assert [(d.device, d.request_ids, d.freq_hz) for d in out.dispatches] == [("dev0", (0,), CPU_HZ)]
    assert out.dispatches[0].predicted_latency_s == pytest.approx(0.045)


# -- the overload layer -------------------------------------------------------------------------------
def _control(**kw):
    return OverloadControl(EdfDispatch(), _streams(), max_batch=1, **kw)


def test_a_request_no_device_can_finish_in_time_is_dropped_as_unreachable():
    policy = _control()
    q = RequestQueue([_req(0, 0.0, "lo", 20, slo=0.03)])  # 45 ms of service, 30 ms budget
    policy.admit(0.0, q.get(0), q)
    out = policy.decide(0.0, q, [_dev()], COST)
    assert _dropped(out.drops) == [(0, DropReason.DEADLINE_UNREACHABLE)] and not out.dispatches


def test_busy_device_makes_a_request_unreachable_by_its_busy_until():
    policy = _control()
    q = RequestQueue([_req(0, 0.0, slo=0.08)])
    policy.admit(0.0, q.get(0), q)
    assert _dropped(policy.decide(0.0, q, [_dev(busy_until=0.075, in_flight=1)], COST).drops) == [
        (0, DropReason.DEADLINE_UNREACHABLE)
    ]
    assert not policy.decide(0.0, q, [_dev(busy_until=0.07, in_flight=1)], COST).drops


def test_low_priority_behind_a_high_priority_backlog_is_shed_naming_the_protected_stream():
    policy = _control()
    q = RequestQueue()
    for i in range(8):  # 64 ms of detector work, each due in 80 ms
        q.add(_req(i, 0.0))
        policy.admit(0.0, q.get(i), q)
    q.add(_req(8, 0.0, "lo", 20, slo=0.1))  # would finish at 109 ms behind them; running first delays them
    policy.admit(0.0, q.get(8), q)
    out = policy.decide(0.0, q, [_dev()], COST)
    sheds = [d for d in out.drops if d.reason is DropReason.SHED]
    assert [d.request_ids for d in sheds] == [(8,)] and sheds[0].protected_stream == "hi"
    assert out.dispatches[0].request_ids == (0,)


def test_low_priority_runs_on_an_idle_device_when_high_priority_keeps_its_slack():
    policy = _control()
    hi = _req(0, 0.0)
    policy.admit(0.0, hi, RequestQueue([hi]))  # the detector stream is active, nothing of it queued
    q = RequestQueue([_req(1, 0.01, "lo", 20, slo=0.25)])
    policy.admit(0.01, q.get(1), q)
    out = policy.decide(0.01, q, [_dev()], COST)
    assert [d.request_ids for d in out.dispatches] == [(1,)]
    assert out.dispatches[0].reason.startswith("insert")


def test_low_priority_waits_when_a_new_high_priority_arrival_could_not_make_its_budget():
    policy = _control()
    hi = _req(0, 0.0, slo=0.05)  # 50 ms budget: 45 ms of classifier + 8 ms would miss it
    policy.admit(0.0, hi, RequestQueue([hi]))
    q = RequestQueue([_req(1, 0.01, "lo", 20, slo=2.0)])
    policy.admit(0.01, q.get(1), q)
    out = policy.decide(0.01, q, [_dev()], COST)
    assert not out.dispatches and not out.drops
    assert out.wake_at_s == pytest.approx(1.0)  # when the detector stream stops counting as active


def test_low_priority_waits_when_the_other_devices_cannot_absorb_the_high_priority_rate_meanwhile():
    """One new arrival could go to the second device, but 200 fps of 8 ms frames cannot, for 200 ms."""
    cost = FixedServiceModel("cpu", {"hi": 0.008, "long": 0.2, "short": 0.01})
    policy = OverloadControl(EdfDispatch(), _streams(), max_batch=1)
    for k in range(200):  # the detector stream: 200 fps over the last second, all served already
        hi = _req(1000 + k, k * 0.005)
        policy.admit(k * 0.005, hi, RequestQueue([hi]))
    devices = [_dev(name="a"), _dev(name="b")]
    long = RequestQueue([_req(1, 1.0, "lo", 20, slo=5.0, model="long")])
    assert not policy.decide(1.0, long, devices, cost).dispatches
    short = RequestQueue([_req(2, 1.0, "lo", 20, slo=5.0, model="short")])
    assert [d.request_ids for d in policy.decide(1.0, short, devices, cost).dispatches] == [(2,)]


def test_max_batch_cuts_the_inner_batch_to_its_first_requests():
    class Everything(EdfDispatch):
        def decide(self, now_s, queue, devices, cost):
            out = super().decide(now_s, queue, devices, cost)
            ids = tuple(r.request_id for r in queue.by_deadline())
            out.dispatches = [out.dispatches[0].__class__(devices[0].name, ids, CPU_HZ, "hi")]
            return out

    policy = OverloadControl(Everything(), _streams(), max_batch=2)
    q = RequestQueue([_req(i, 0.0) for i in range(5)])
    out = policy.decide(0.0, q, [_dev()], COST)
    assert out.dispatches[0].request_ids == (0, 1) and "cut to 2 frames" in out.dispatches[0].reason


def test_each_priority_keeps_its_own_window_so_a_low_priority_backlog_cannot_hide_high_priority():
    policy = OverloadControl(EdfDispatch(), _streams(), window=2)
    q = RequestQueue([_req(i, 0.0, "lo", 20, slo=0.1 + i) for i in range(5)] + [_req(9, 0.0, slo=6.0)])
    out = policy.decide(0.0, q, [_dev()], COST)
    assert [d.request_ids for d in out.dispatches] == [(9,)]


# -- admission (the HTTP path) ------------------------------------------------------------------------
def test_admission_rejects_a_full_drop_newest_queue_with_a_retry_after():
    streams = _streams(queue_limit=2, drop_policy="drop_newest")
    q = RequestQueue([_req(0, 0.0), _req(1, 0.0)])
    d = admission_decision(0.0, _req(2, 0.0), q, streams, [_dev()], COST)
    assert not d.accepted and d.reason is DropReason.QUEUE_FULL and d.retry_after_s >= 1.0
    assert "stream:hi" in d.detail


def test_admission_accepts_a_full_drop_oldest_queue():
    streams = _streams(queue_limit=2, drop_policy="drop_oldest")
    q = RequestQueue([_req(0, 0.0), _req(1, 0.0)])
    assert admission_decision(0.0, _req(2, 0.0), q, streams, [_dev()], COST).accepted


def test_admission_rejects_what_no_device_can_finish_and_what_would_hurt_higher_priority():
    streams = _streams()
    d = admission_decision(0.0, _req(0, 0.0, "lo", 20, slo=0.02), RequestQueue(), streams, [_dev()], COST)
    assert d.reason is DropReason.DEADLINE_UNREACHABLE
    backlog = RequestQueue([_req(i, 0.0) for i in range(8)])
    active = [ActiveStream("hi", 100, 0.08, "hi", 0.0)]
    d = admission_decision(0.0, _req(9, 0.0, "lo", 20, slo=0.1), backlog, streams, [_dev()], COST, active=active)
    assert not d.accepted and d.reason is DropReason.SHED and d.protected_stream == "hi"
    assert admission_decision(0.0, _req(9, 0.0), backlog, streams, [_dev()], COST).accepted


def test_policy_admission_uses_its_own_active_streams():
    policy = _control()
    hi = _req(0, 0.0, slo=0.05)
    policy.admit(0.0, hi, RequestQueue([hi]))
    backlog = RequestQueue([_req(i, 0.0, slo=0.05) for i in range(1, 5)])
    d = policy.admission(0.0, _req(9, 0.0, "lo", 20, slo=0.07), backlog, [_dev()], COST)
    assert d.reason is DropReason.SHED


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
        drops = [e for e in events if e.event in ("drop", "shed")]
        assert all(e.reason for e in drops)
        assert all(e.protected_stream for e in drops if e.event == "shed")
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
    from jetfleet.types import Outcome, OutcomeStatus

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
