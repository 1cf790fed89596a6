"""The discrete-event engine: timing, energy accounting, outcomes and metrics."""

from __future__ import annotations

import math

import pytest
from sim_fakes import FakeCost, FakeDeviceModel, SendAll, fake_models, make_fleet, req

from cluster.inventory import fleet_from_dict
from costmodel.device_models import NoiseModel, device_model
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError
from jetfleet.metrics import RESULT_KEYS, energy_bound_j
from jetfleet.telemetry import EventList
from jetfleet.types import Decisions, Dispatch, OutcomeStatus, SetFrequency
from policies.base import Policy
from simulator.engine import aggregate, simulate

AGX = get_kind("agx-xavier")
F_MAX, F_MIN = AGX.max_freq_hz, AGX.min_freq_hz
DM = FakeDeviceModel("agx-xavier")


def _sim(requests, policy=None, fleet=None, **kw):
    """A run whose frames move for free unless a test asks for the data path: most tests here pin the device's
    own timeline."""
    fleet = fleet or make_fleet("agx-xavier")
    kw.setdefault("data_path", False)
    return simulate(requests, fleet, policy or SendAll(), FakeCost(), device_models=fake_models(fleet), **kw)


def _linked_fleet(mbps: float, latency_ms: float = 0.0):
    device = {"name": "d0", "kind": "agx-xavier", "link_mbps": mbps, "link_latency_ms": latency_ms}
    return fleet_from_dict({"name": "linked", "devices": [device]})


class Scripted(Policy):
    """Dispatches what `script(now_s, queue, devices)` returns; records when it was asked."""

    name = "scripted"

    def __init__(self, script):
        self.script, self.calls = script, []

    def decide(self, ctx):
        self.calls.append(ctx.now_s)
        out = self.script(ctx.now_s, ctx.queue, ctx.devices)
        return out if out is not None else Decisions()


def test_single_batch_costs_its_energy_and_finishes_after_its_latency():
    """One request on an idle device: answered after the batch latency; energy is the batch's."""
    result = _sim([req(1, t=2.0, frames=3)])
    (outcome,) = result.outcomes
    assert outcome.status is OutcomeStatus.COMPLETED
    assert outcome.time_s == pytest.approx(2.0 + DM.latency_s("inceptionv3", 3, F_MAX))
    assert result.energy_j == pytest.approx(DM.energy_j("inceptionv3", 3, F_MAX))
    assert result.start_s == 2.0 and result.end_s == pytest.approx(outcome.time_s)


def test_idle_gap_is_charged_at_the_idle_power_of_the_current_frequency():
    """Between two batches the device draws idle power at its clock."""
    result = _sim([req(1, t=0.0), req(2, t=10.0)])
    lat = DM.latency_s("inceptionv3", 1, F_MAX)
    expected = 2 * DM.energy_j("inceptionv3", 1, F_MAX) + DM.idle_power_w(F_MAX) * (10.0 - lat)
    assert result.energy_j == pytest.approx(expected)


def test_frequency_change_delays_the_batch_at_idle_power():
    """A batch at another frequency first waits the kind's change delay, at the old clock's idle power."""

    def at_min(now_s, queue, devices):
        if queue:
            return Decisions(dispatches=[Dispatch("d0", tuple(r.request_id for r in queue), F_MIN, "inceptionv3")])

    result = _sim([req(1)], Scripted(at_min))
    lat = DM.latency_s("inceptionv3", 1, F_MIN)
    assert result.outcomes[0].time_s == pytest.approx(AGX.freq_change_delay_s + lat)
    expected = DM.idle_power_w(F_MAX) * AGX.freq_change_delay_s + DM.energy_j("inceptionv3", 1, F_MIN)
    assert result.energy_j == pytest.approx(expected)


def test_batches_on_one_device_run_one_after_another():
    """Two batches dispatched at once to one device: the second starts when the first ends."""

    def two(now_s, queue, devices):
        if len(queue) == 2:
            return Decisions(
                dispatches=[Dispatch("d0", (1,), F_MAX, "inceptionv3"), Dispatch("d0", (2,), F_MAX, "inceptionv3")]
            )

    result = _sim([req(1), req(2)], Scripted(two))
    lat = DM.latency_s("inceptionv3", 1, F_MAX)
    assert [o.time_s for o in result.outcomes] == pytest.approx([lat, 2 * lat])
    assert result.device_busy_s["d0"] == pytest.approx(2 * lat)


def test_a_batch_waits_for_its_input_to_cross_the_link_at_idle_power():
    """Two FP32 299 x 299 frames (2 x 1,072,812 bytes) over an 80 Mbit/s link with 5 ms latency: the batch starts
    once they are there, and the device idles meanwhile."""
    transfer_s = 0.005 + 8 * 2 * 1_072_812 / 80e6
    lat = DM.latency_s("inceptionv3", 2, F_MAX)
    result = _sim([req(1, frames=2)], fleet=_linked_fleet(80, 5), data_path=True, preprocess_s_per_frame=0.0)
    assert result.outcomes[0].time_s == pytest.approx(transfer_s + lat)
    idle_j = DM.idle_power_w(F_MAX) * transfer_s
    assert result.energy_j == pytest.approx(idle_j + DM.energy_j("inceptionv3", 2, F_MAX))


def test_a_transfer_overlaps_the_batch_before_it():
    """Two batches dispatched at once: the second's input crosses while the first computes, so the second starts
    when the first ends (compute is longer than a transfer here), not a transfer later."""

    def two(now_s, queue, devices):
        if len(queue) == 2:
            return Decisions(
                dispatches=[Dispatch("d0", (1,), F_MAX, "inceptionv3"), Dispatch("d0", (2,), F_MAX, "inceptionv3")]
            )

    fleet = _linked_fleet(10_000)  # 0.86 ms a frame, shorter than a batch of 1
    transfer_s = 8 * 1_072_812 / 10e9
    lat = DM.latency_s("inceptionv3", 1, F_MAX)
    assert lat > transfer_s
    result = _sim([req(1), req(2)], Scripted(two), fleet=fleet, data_path=True, preprocess_s_per_frame=0.0)
    assert [o.time_s for o in result.outcomes] == pytest.approx([transfer_s + lat, transfer_s + 2 * lat])


def test_preprocessing_delays_when_the_scheduler_sees_a_request_not_its_deadline():
    """The controller preprocesses a request's frames before the scheduler sees it; its SLO still counts from its
    arrival. Requests reach the scheduler in the order their preprocessing ends."""
    seen: list[tuple[float, tuple[int, ...]]] = []

    def record(now_s, queue, devices):
        seen.append((now_s, tuple(sorted(r.request_id for r in queue))))
        if queue:
            return Decisions(dispatches=[Dispatch("d0", tuple(r.request_id for r in queue), F_MAX, "inceptionv3")])

    requests = [req(1, t=1.0, frames=4, slo=2.0), req(2, t=1.1, frames=1, slo=2.0)]
    result = _sim(requests, Scripted(record), fleet=_linked_fleet(1e9), data_path=True, preprocess_s_per_frame=0.1)
    assert seen[0][0] == pytest.approx(1.2) and seen[0][1] == (2,)  # request 2 is ready first
    assert any(t == pytest.approx(1.4) and 1 in ids for t, ids in seen)
    assert result.requests[0].deadline_s == pytest.approx(3.0)


def test_without_the_data_path_frames_move_for_free():
    """`data_path=False`: the same batch finishes after its compute alone."""
    lat = DM.latency_s("inceptionv3", 2, F_MAX)
    result = _sim([req(1, frames=2)], fleet=_linked_fleet(80, 5), data_path=False)
    assert result.outcomes[0].time_s == pytest.approx(lat)


def test_policy_is_woken_at_the_time_it_asked_for():
    """A policy that holds requests until t=3 dispatches exactly then."""

    def hold(now_s, queue, devices):
        if now_s < 3.0:
            return Decisions(wake_at_s=3.0)
        if queue:
            return Decisions(dispatches=[Dispatch("d0", tuple(r.request_id for r in queue), F_MAX, "inceptionv3")])

    policy = Scripted(hold)
    result = _sim([req(1, t=1.0)], policy)
    assert 3.0 in policy.calls
    assert result.outcomes[0].time_s == pytest.approx(3.0 + DM.latency_s("inceptionv3", 1, F_MAX))


def test_requests_nothing_will_serve_are_dropped_once_at_the_end():
    """A policy that never dispatches and never wakes: its requests are dropped (shutdown), once each."""
    result = _sim([req(1), req(2, t=1.0)], Scripted(lambda *a: None))
    assert [o.status for o in result.outcomes] == [OutcomeStatus.DROPPED] * 2
    assert {o.reason for o in result.outcomes} == {"shutdown"}
    assert result.metrics.dropped_frames == 2 and result.metrics.frames_within_slo == 0


def test_horizon_drops_what_is_not_served_by_then():
    """Requests arriving after the horizon get a shutdown drop; earlier ones are served."""
    result = _sim([req(1, t=0.0), req(2, t=50.0)], horizon_s=10.0)
    assert [o.status for o in result.outcomes] == [OutcomeStatus.COMPLETED, OutcomeStatus.DROPPED]


def test_late_completion_is_not_within_slo():
    """A request served after its deadline counts as completed but not within SLO."""

    def late(now_s, queue, devices):
        if now_s < 2.0:
            return Decisions(wake_at_s=2.0)
        if queue:
            return Decisions(dispatches=[Dispatch("d0", tuple(r.request_id for r in queue), F_MAX, "inceptionv3")])

    result = _sim([req(1, slo=1.0, frames=2), req(2, slo=10.0, frames=3)], Scripted(late))
    m = result.metrics
    assert m.completed_frames == 5 and m.frames_within_slo == 3
    assert m.pct_frames_within_slo == pytest.approx(60.0)


def test_idle_downclock_saves_idle_energy():
    """Setting the lowest clock while idle lowers the energy of a long idle gap."""

    def downclock(now_s, queue, devices):
        out = Decisions()
        if queue:
            out.dispatches.append(Dispatch("d0", tuple(r.request_id for r in queue), F_MAX, "inceptionv3"))
        elif devices[0].idle(now_s) and devices[0].freq_hz != F_MIN:
            out.frequency_changes.append(SetFrequency("d0", F_MIN))
        return out

    requests = [req(1, t=0.0), req(2, t=100.0)]
    assert _sim(requests, Scripted(downclock)).energy_j < _sim(requests).energy_j


def test_frequency_change_after_the_last_batch_is_clipped_at_the_end():
    """A clock change queued as the run ends costs nothing beyond the last answer."""

    def downclock_at_end(now_s, queue, devices):
        out = Decisions()
        if queue:
            out.dispatches.append(Dispatch("d0", tuple(r.request_id for r in queue), F_MAX, "inceptionv3"))
        elif devices[0].idle(now_s) and devices[0].freq_hz != F_MIN:
            out.frequency_changes.append(SetFrequency("d0", F_MIN))
        return out

    policy = Scripted(downclock_at_end)
    result = _sim([req(1)], policy)
    assert len(policy.calls) == 2  # the second call, at the completion, down-clocks as the run ends
    assert result.energy_j == pytest.approx(DM.energy_j("inceptionv3", 1, F_MAX))


def test_energy_is_never_below_the_bound():
    """The workload's energy bound is a lower bound on what a run spends."""
    requests = [req(i, t=0.3 * i, frames=1 + i % 5) for i in range(40)]
    result = _sim(requests)
    assert 0 < result.energy_bound_j <= result.energy_j
    assert result.metrics.bound_fraction == pytest.approx(result.energy_bound_j / result.energy_j)


def test_bound_counts_idle_floor_of_every_device():
    """The bound grows by the fleet's lowest idle power for each second of the window."""
    fleet = make_fleet("agx-xavier", "jetson-nano")
    models = fake_models(fleet)
    short = energy_bound_j([req(1)], fleet, models, 0.0, 10.0)
    long = energy_bound_j([req(1)], fleet, models, 0.0, 20.0)
    floor_w = sum(models[d.kind].idle_power_w(get_kind(d.kind).min_freq_hz) for d in fleet.devices)
    assert long - short == pytest.approx(10.0 * floor_w)


def test_noise_is_deterministic_under_a_seed():
    """Same seed, same run; another seed, other latencies."""
    requests = [req(i, t=0.5 * i, frames=2) for i in range(20)]
    fleet = make_fleet("agx-xavier")
    models = {"agx-xavier": device_model("agx-xavier")}

    def run(seed):
        r = simulate(requests, fleet, SendAll(), FakeCost(), device_models=models, seed=seed, noise=NoiseModel(cv=0.1))
        return [o.time_s for o in r.outcomes], r.energy_j

    assert run(1) == run(1)
    assert run(1)[0] != run(2)[0]


def test_events_trace_arrivals_dispatches_and_completions():
    """The sink sees every request arrive, get dispatched and complete."""
    events = EventList()
    _sim([req(1), req(2, t=1.0)], sink=events)
    kinds = [e.event for e in events]
    assert kinds.count("arrival") == 2 and kinds.count("dispatch") == 2 and kinds.count("complete") == 2


def test_duplicate_request_ids_are_rejected():
    with pytest.raises(ConfigError, match="unique"):
        _sim([req(1), req(1, t=1.0)])


def test_aggregate_sums_frames_and_energy_and_pools_latencies():
    """Two runs aggregate to summed frames and energy; frames per joule is recomputed."""
    a = _sim([req(1, frames=2)])
    b = _sim([req(1, t=5.0, frames=3), req(2, t=6.0)])
    m = aggregate([a, b], "send-all")
    assert m.frames == 6 and m.requests == 3
    assert m.energy_j == pytest.approx(a.energy_j + b.energy_j)
    assert m.frames_per_joule == pytest.approx(6 / m.energy_j)


def test_metrics_json_keys_come_first_and_nan_is_null():
    """to_dict puts the CLI's keys first; nan latencies become None."""
    result = _sim([req(1)], Scripted(lambda *a: None))
    d = result.metrics.to_dict()
    assert tuple(d)[: len(RESULT_KEYS)] == RESULT_KEYS
    assert d["p50_latency_s"] is None and math.isnan(result.metrics.p50_latency_s)
