"""Each baseline's defining behaviour, as LoudVA's code has it."""

from __future__ import annotations

import numpy as np
import pytest
from policy_harness import arrive, decide
from sim_fakes import FakeCost, fake_models, make_fleet, req

from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError, UnknownNameError
from jetfleet.types import DeviceState, OutcomeStatus
from policies.baselines import FixedBatch, Interval, Random, RoundRobin, Transparent, batch_cap, take_frames
from policies.context import with_device_facts
from policies.loudva import LoudVA
from policies.queue import RequestQueue
from policies.registry import make_policy
from simulator.engine import simulate

AGX = get_kind("agx-xavier")
NANO = get_kind("jetson-nano")


def _agx(name="d0", **kw) -> DeviceState:
    return DeviceState(name, "agx-xavier", AGX.max_freq_hz, **kw)


def _ids(decisions, i=0):
    return decisions.dispatches[i].request_ids


def test_take_frames_keeps_requests_whole():
    """A batch is the longest prefix of whole requests within the frame cap, at least one request."""
    rs = [req(1, frames=3), req(2, frames=3), req(3, frames=1)]
    assert [r.request_id for r in take_frames(rs, 6)] == [1, 2]
    assert [r.request_id for r in take_frames(rs, 5)] == [1]
    assert [r.request_id for r in take_frames([req(9, frames=40)], 4)] == [9]


def test_loudva_batch_caps():
    caps = [batch_cap(with_device_facts(DeviceState("d", k, 1e9))) for k in ("agx-xavier", "xavier-nx", "jetson-nano")]
    assert caps == [64, 8, 4]
    orin = with_device_facts(DeviceState("d", "agx-orin", 1e9))
    assert batch_cap(orin) == get_kind("agx-orin").max_batch
    assert batch_cap(DeviceState("d", "agx-orin", 1e9, max_batch=12)) == 12  # the device's own max batch


def test_transparent_idle_device_takes_everything_waiting_at_max_frequency():
    q = RequestQueue([req(1, frames=2), req(2, t=0.1, frames=5)])
    out = decide(Transparent(), 0.1, q, [_agx()], FakeCost())
    assert _ids(out) == (1, 2) and out.dispatches[0].freq_hz == AGX.max_freq_hz


def test_transparent_waits_while_the_device_is_busy_and_caps_the_batch():
    q = RequestQueue([req(i, frames=10) for i in range(8)])
    assert not decide(Transparent(), 0.0, q, [_agx(busy_until_s=1.0, in_flight=1)], FakeCost()).dispatches
    out = decide(Transparent(), 1.0, q, [_agx()], FakeCost())
    assert sum(q.get(i).n_frames for i in _ids(out)) == 60  # whole requests within the AGX cap of 64


def test_transparent_batches_what_arrived_during_a_batch():
    """In the simulator, requests arriving while the device runs go together in the next batch."""
    fleet = make_fleet("agx-xavier")
    requests = [req(1, t=0.0, frames=8)] + [req(i, t=0.01 * i, frames=1) for i in range(2, 6)]
    # Without the data path: preprocessing would let the 1-frame requests reach the scheduler before the 8-frame one.
    result = simulate(requests, fleet, Transparent(), FakeCost(), device_models=fake_models(fleet), data_path=False)
    assert [b.n_frames for b in result.batches] == [8, 4]


def test_fixed_batch_waits_for_b_frames_then_sends_b():
    policy = FixedBatch(8)
    q = RequestQueue([req(1, frames=4)])
    out = decide(policy, 0.0, q, [_agx()], FakeCost())
    assert not out.dispatches and out.wake_at_s == pytest.approx(0.1)
    q.add(req(2, t=0.05, frames=4))
    q.add(req(3, t=0.05, frames=4))
    assert not decide(policy, 0.05, q, [_agx()], FakeCost()).dispatches  # between ticks
    out = decide(policy, 0.1, q, [_agx()], FakeCost())
    assert _ids(out) == (1, 2)


def test_fixed_batch_sends_a_short_batch_after_the_max_wait():
    policy = FixedBatch(32)
    q = RequestQueue([req(1, frames=3)])
    decide(policy, 0.0, q, [_agx()], FakeCost())
    assert not decide(policy, 14.9, q, [_agx()], FakeCost()).dispatches
    assert _ids(decide(policy, 15.0, q, [_agx()], FakeCost())) == (1,)


def test_interval_sends_only_on_its_ticks_at_most_one_cap():
    policy = Interval(0.5)
    q = RequestQueue([req(i, frames=10) for i in range(10)])
    out = decide(policy, 0.2, q, [_agx()], FakeCost())
    assert not out.dispatches and out.wake_at_s == pytest.approx(0.5)
    out = decide(policy, 0.5, q, [_agx()], FakeCost())
    assert len(out.dispatches) == 1 and sum(q.get(i).n_frames for i in _ids(out)) == 60


def test_round_robin_rotates_over_devices_busy_or_not():
    policy = RoundRobin()
    devices = [_agx("a", in_flight=1, busy_until_s=9.0), _agx("b")]
    chosen = []
    for k, t in enumerate((0.0, 0.01, 0.02)):
        q = RequestQueue([req(k, t=t)])
        chosen.append(decide(policy, t, q, devices, FakeCost()).dispatches[0].device)
    assert chosen == ["a", "b", "a"]


def test_random_is_seeded_and_uses_only_idle_devices():
    devices = [_agx("a", in_flight=1, busy_until_s=5.0), _agx("b")]

    def picks(seed):
        policy, out = Random(seed), []
        for k in range(5):
            q = RequestQueue([req(10 * k + j, t=0.0, frames=3) for j in range(5)])
            d = decide(policy, 0.01 * k, q, devices, FakeCost()).dispatches[0]
            out.append((d.device, d.freq_hz, len(d.request_ids)))
        return out

    assert picks(3) == picks(3)
    assert {p[0] for p in picks(3)} == {"b"}
    assert len({p[1] for p in picks(3) + picks(4)}) > 1


def test_loudva_picks_lowest_energy_per_frame_that_fits_the_tightest_slack():
    """With slack for it the whole queue goes as one batch; with tighter slack, at no lower a clock."""
    cost = FakeCost()
    q = RequestQueue([req(i, frames=8, slo=0.9) for i in range(8)])  # 64 frames: no adaptive wait
    roomy = decide(LoudVA(), 0.0, q, [_agx()], cost).dispatches[0]
    assert len(roomy.request_ids) == 8
    grid = cost.predict_grid("agx-xavier", "inceptionv3", np.array([roomy.freq_hz]), np.array([64]))
    assert grid.latency_s[0, 0] + 0.2 <= 0.9
    tight_q = RequestQueue([req(i, frames=8, slo=0.5) for i in range(8)])
    tight = decide(LoudVA(), 0.0, tight_q, [_agx()], cost).dispatches[0]
    assert tight.freq_hz >= roomy.freq_hz


def test_loudva_counts_the_frequency_change_delay():
    """Switching to the cheaper top clock would add the 0.56 s change delay and miss the slack: stay put."""
    f_mid = 1032.75e6
    q = RequestQueue([req(1, frames=64, slo=0.8)])
    here = DeviceState("d0", "agx-xavier", f_mid)
    assert decide(LoudVA(), 0.0, q, [here], FakeCost()).dispatches[0].freq_hz == f_mid
    roomy = RequestQueue([req(1, frames=64, slo=1.5)])
    assert decide(LoudVA(), 0.0, roomy, [here], FakeCost()).dispatches[0].freq_hz == AGX.max_freq_hz


def test_loudva_waits_while_slack_is_ample_and_the_queue_short():
    q = RequestQueue()
    policy = LoudVA()
    arrive(policy, 0.0, req(1, frames=2, slo=20.0), q, [_agx()], FakeCost())
    out = decide(policy, 0.0, q, [_agx()], FakeCost())
    assert not out.dispatches and out.wake_at_s == pytest.approx(0.01)


def test_loudva_falls_back_to_the_fastest_small_batch_when_nothing_fits():
    """An already-late queue gets LoudVA's closest configuration: batch 1 at the current clock."""
    q = RequestQueue([req(i, t=0.0, frames=1, slo=0.1) for i in range(3)])
    d = decide(LoudVA(), 0.05, q, [_agx()], FakeCost()).dispatches[0]
    assert len(d.request_ids) == 1 and d.freq_hz == AGX.max_freq_hz and d.reason == "throughput fallback"


def test_loudva_ignores_work_queued_on_a_device_and_stops_at_two_in_flight():
    """A device with one batch in flight is still 'available' (and treated as idle); with two it is not."""
    q = RequestQueue([req(i, frames=8, slo=2.0) for i in range(8)])
    one = decide(LoudVA(), 0.0, q, [_agx(in_flight=1, busy_until_s=100.0)], FakeCost())
    idle = decide(LoudVA(), 0.0, q, [_agx()], FakeCost())
    assert one.dispatches and one == idle  # a deadline 2 s away, behind 100 s of work: planned as if idle
    two = decide(LoudVA(), 0.0, q, [_agx(in_flight=2, busy_until_s=100.0)], FakeCost())
    assert not two.dispatches


def test_loudva_downclocks_devices_idle_for_four_seconds():
    policy = LoudVA()
    q = RequestQueue()
    out = decide(policy, 2.0, q, [_agx(last_busy_s=0.0)], FakeCost())
    assert not out.frequency_changes and out.wake_at_s == pytest.approx(4.0)
    out = decide(policy, 4.0, q, [_agx(last_busy_s=0.0)], FakeCost())
    assert [c.freq_hz for c in out.frequency_changes] == [AGX.min_freq_hz]


def test_loudva_uses_the_nano_cap_of_four_frames():
    q = RequestQueue([req(i, frames=1, slo=3.0) for i in range(10)])
    nano = DeviceState("n0", "jetson-nano", NANO.max_freq_hz)
    d = decide(LoudVA(), 0.0, q, [nano], FakeCost()).dispatches[0]
    assert len(d.request_ids) == 4


@pytest.mark.parametrize("spec", ["transparent", "fixed-batch:8", "interval:0.2", "round-robin", "random", "loudva"])
def test_every_baseline_serves_a_light_load_within_slo(spec):
    fleet = make_fleet("agx-xavier", "xavier-nx")
    requests = [req(i, t=0.37 * i, frames=1 + i % 4, slo=3.0) for i in range(40)]
    result = simulate(requests, fleet, make_policy(spec), FakeCost(), device_models=fake_models(fleet))
    assert all(o.status is OutcomeStatus.COMPLETED for o in result.outcomes)
    assert result.metrics.pct_frames_within_slo > 90.0


def test_policy_specs_are_validated():
    assert make_policy("fixed-batch:16").name == "fixed-batch:16"
    assert make_policy("interval:0.5").name == "interval:0.5"
    with pytest.raises(ConfigError):
        make_policy("fixed-batch")
    with pytest.raises(ConfigError):
        make_policy("interval:soon")
    with pytest.raises(UnknownNameError):
        make_policy("fastest")
