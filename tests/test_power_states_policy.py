"""jetfleet's power-state rules (policies/jetfleet/power.py): nap, consolidate, wake ahead, switch off."""

from __future__ import annotations

import pytest
from sim_fakes import FakeCost, fake_models, make_fleet

from costmodel.device_models import OracleCostModel
from jetfleet.power_states import PowerState
from jetfleet.telemetry import EventList
from jetfleet.types import Request
from policies.jetfleet import JetfleetConfig, JetfleetPolicy
from policies.jetfleet.power import PowerConfig
from policies.registry import make_policy
from simulator.engine import simulate


def _run(requests, fleet, policy, data_path=True):
    events = EventList()
    models = fake_models(fleet)
    result = simulate(requests, fleet, policy, FakeCost(), device_models=models, sink=events, data_path=data_path)
    return result, [e for e in events if e.event == "power"]


def _steady(n, gap_s, slo_s, frames=2, start_s=1.0):
    return [Request(i, start_s + i * gap_s, frames, slo_s, stream=f"cam{i % 4}") for i in range(n)]


def test_a_device_naps_in_long_gaps_in_the_state_that_pays_off_and_keeps_every_slo():
    result, power = _run(_steady(8, 30.0, 10.0), make_fleet("agx-xavier"), make_policy("jetfleet"))
    sleeps = [e for e in power if e.detail["state"] != "idle"]
    assert sleeps and all(e.detail["state"] == "suspended" for e in sleeps)
    assert all("break-even" in e.reason for e in sleeps)
    assert result.metrics.pct_frames_within_slo == pytest.approx(100.0)


def test_a_tight_slo_class_rules_out_states_that_wake_too_slowly():
    """With 1.5 s SLOs a suspend (1 s in, 2 s out) could not serve an arrival in time: only deep idle is used."""
    result, power = _run(_steady(8, 30.0, 1.5, frames=1), make_fleet("agx-xavier"), make_policy("jetfleet"))
    states = {e.detail["state"] for e in power}
    assert "suspended" not in states and "deep_idle" in states
    assert result.metrics.pct_frames_within_slo == pytest.approx(100.0)


def test_a_suspend_that_leaves_room_at_the_devices_own_clock_is_allowed():
    """3.4 s SLOs (LoudVA's tight class): entering and leaving a suspend takes 1 + 2 s, and the device serves a frame
    at the clock it keeps while asleep in well under 0.4 s, so it may suspend. Counting the AGX's 0.56 s clock
    change as well (which no waking device at its own clock pays) kept it in deep idle before.

    Without the data path: the fake AGX serves a frame at its lowest clock in 0.395 s padded, and the frame's
    11 ms over GbE (padded) would overrun the 0.4 s of room, rightly ruling the suspend out. This pins the clock."""
    requests = _steady(8, 30.0, 3.4, frames=1)
    result, power = _run(requests, make_fleet("agx-xavier"), make_policy("jetfleet"), data_path=False)
    assert "suspended" in {e.detail["state"] for e in power}
    assert result.metrics.pct_frames_within_slo == pytest.approx(100.0)


def test_no_nap_when_the_gap_is_shorter_than_break_even():
    result, power = _run(_steady(60, 0.2, 0.6, frames=4), make_fleet("agx-xavier"), make_policy("jetfleet"))
    assert not [e for e in power if e.detail["state"] == "suspended"]


def test_consolidation_keeps_few_devices_awake_at_low_load():
    fleet = make_fleet(*["xavier-nx"] * 6)
    result, power = _run(_steady(40, 2.0, 8.0), fleet, make_policy("jetfleet"))
    consolidated = {e.device for e in power if e.reason.startswith("jetfleet power: consolidate")}
    assert len(consolidated) >= 4
    assert sum(1 for v in result.device_batches.values() if v) <= 2
    assert result.metrics.pct_frames_within_slo == pytest.approx(100.0)


def test_a_rising_load_wakes_devices_ahead_of_it():
    fleet = make_fleet(*["jetson-nano"] * 6)
    quiet = _steady(20, 3.0, 8.0, frames=1)
    busy = [Request(100 + i, 70.0 + i * 0.05, 12, 8.0, stream=f"cam{i % 8}") for i in range(600)]
    result, power = _run(quiet + busy, fleet, make_policy("jetfleet"))
    ahead = [e for e in power if "wake ahead" in e.reason]
    assert ahead and min(e.time_s for e in ahead) >= 70.0
    assert sum(1 for v in result.device_batches.values() if v) >= 3


def test_switched_off_the_policy_never_changes_a_power_state():
    for policy in (make_policy("jetfleet:awake"), JetfleetPolicy(JetfleetConfig(power=PowerConfig(enabled=False)))):
        _, power = _run(_steady(8, 30.0, 10.0), make_fleet("agx-xavier"), policy)
        assert power == []


def test_a_device_switched_off_by_name_stays_awake():
    config = JetfleetConfig(power=PowerConfig(never_sleep=frozenset({"d0"})))
    _, power = _run(_steady(8, 30.0, 10.0), make_fleet("agx-xavier", "agx-xavier"), JetfleetPolicy(config))
    assert power and all(e.device != "d0" for e in power)


def test_decide_twice_gives_the_same_power_changes():
    """`decide` has no side effects: asking again without absorbing proposes the same changes."""
    from policies.core import SchedulerCore

    fleet = make_fleet("agx-xavier", "xavier-nx")
    policy = make_policy("jetfleet")
    from jetfleet.types import DeviceState

    core = SchedulerCore(policy, FakeCost(), [DeviceState(d.name, d.kind, 1e9) for d in fleet.devices])
    core.submit(0.0, Request(1, 0.0, 1, 10.0))
    core.step(0.0)
    ctx = core.context(40.0)
    a, b = policy.decide(ctx), policy.decide(ctx)
    assert a.power_changes == b.power_changes


def test_the_power_rules_see_the_same_fleet_whether_or_not_the_context_names_the_sleeping_devices():
    """The planner keeps the devices it may change while the usable list, the active set and the context's asleep
    set stay the same; a device that falls asleep or wakes (a new asleep set) is seen at once."""
    from jetfleet.types import DeviceState
    from policies.core import SchedulerCore

    fleet = make_fleet("agx-xavier", "xavier-nx", "jetson-nano", "jetson-nano")
    policy = make_policy("jetfleet")
    core = SchedulerCore(policy, FakeCost(), [DeviceState(d.name, d.kind, 1e9) for d in fleet.devices])
    core.submit(0.0, Request(1, 0.0, 1, 10.0))
    seen = 0
    for t_s in (0.0, 5.0, 40.0, 40.5, 80.0, 120.0):
        ctx = core.context(t_s)
        known, derived = policy.decide(ctx), policy.decide(ctx.replace(asleep=None))
        assert known.power_changes == derived.power_changes and known.dispatches == derived.dispatches
        seen += len(known.power_changes)
        core.step(t_s)
    assert seen and core.context(200.0).asleep  # devices did fall asleep


def test_the_active_set_shrinks_by_its_least_efficient_device_only_once_settled_and_with_room_to_spare():
    from jetfleet.types import DeviceState
    from policies.core import SchedulerCore
    from policies.jetfleet.power import Demand, PowerMemo, PowerPlanner

    fleet = make_fleet("agx-xavier", "xavier-nx", "jetson-nano")
    policy = make_policy("jetfleet")
    core = SchedulerCore(policy, FakeCost(), [DeviceState(d.name, d.kind, 1e9) for d in fleet.devices])
    ctx = core.context(100.0)
    usable = policy._with_tables(ctx, "inceptionv3", ctx.devices)
    assert len(usable) == 3
    planner = PowerPlanner(PowerConfig())
    everyone = frozenset(d.name for d, _ in usable)
    least = max(usable, key=lambda dt: planner._efficiency(dt[1]))[0].name
    idle = Demand(now_s=100.0, rate_fps=0.0, requests_per_s=0.0, queued_frames=0)
    planner.absorb(PowerMemo(everyone, 90.0))  # changed 10 s ago: not settled
    assert planner._active_set(usable, idle) == (everyone, None)
    planner.absorb(PowerMemo(everyone, 0.0))  # changed 100 s ago: settled, and one fewer covers nothing needed
    for _ in range(2):  # the set one smaller is worked out once per view, the same answer when asked again
        active, memo = planner._active_set(usable, idle)
        assert active == everyone - {least} and memo == PowerMemo(active, 100.0)
    busy = Demand(now_s=100.0, rate_fps=1e6, requests_per_s=1e3, queued_frames=0)
    assert planner._active_set(usable, busy)[0] == everyone  # no room to spare: kept (and growing adds nobody)


def test_power_config_rejects_awake_states_and_negative_times():
    from jetfleet.errors import ConfigError

    with pytest.raises(ConfigError):
        PowerConfig(states=(PowerState.IDLE,))
    with pytest.raises(ConfigError):
        PowerConfig(shrink_after_s=-1.0)


def test_a_window_of_requests_no_device_can_reach_does_not_spin_the_decisions():
    """A burst whose 1 s deadlines no device can meet (the fleet sleeps; a suspend takes 2 s to leave) fills the
    window with late requests while waking devices count as free. Looking again at once whenever the window ran dry
    made 979,455 decisions for these 410 requests, one a microsecond, until the wakes completed; a decision that took
    no work now leaves the next look to the next arrival, completion or timer."""
    fleet = make_fleet(*["xavier-nx"] * 4)
    quiet = [Request(i, 1.0 + 3.0 * i, 1, 8.0, stream="cam0") for i in range(10)]
    burst = [Request(100 + i, 40.0 + 0.001 * i, 2, 1.0, stream=f"cam{i % 8}") for i in range(400)]
    result, _ = _run(quiet + burst, fleet, make_policy("jetfleet"))
    assert result.decisions < 5 * len(quiet + burst)
    assert len(result.outcomes) == len(quiet + burst)  # every request answered once, as before


@pytest.mark.slow
def test_a_large_fleet_keeps_a_reserve_that_serves_the_bursts_its_busy_workers_cannot():
    """40 Xavier NX and 4 AGX Xavier; 80 requests/s of 6 frames under a 2 s SLO keep ~30 NX active and busy; a camera
    sends a burst of 64 frames (2 s SLO) every 15 s. An idle NX would need 1.9 s for it, after its running batch
    too long: the first burst comes late (no reserve yet), then an AGX Xavier is kept awake at its top clock and
    serves the others in about 1.5 s. Without the reserve (`reserve=0`) every burst is late."""
    fleet = make_fleet(*(["xavier-nx"] * 40 + ["agx-xavier"] * 4))
    steady = [Request(i, 1.0 + i / 80.0, 6, 2.0, stream=f"cam{i % 16}") for i in range(80 * 70)]
    bursts = [Request(10_000 + k, 30.37 + 15.0 * k, 64, 2.0, stream="burst") for k in range(3)]
    requests = sorted(steady + bursts, key=lambda r: r.arrival_s)

    def burst_outcomes(reserve: int):
        policy = JetfleetPolicy(JetfleetConfig(power=PowerConfig(reserve=reserve)))
        events = EventList()
        result = simulate(requests, fleet, policy, OracleCostModel(), sink=events)
        by_id = {o.request_id: o for o in result.outcomes}
        return [by_id[r.request_id] for r in bursts], events

    kept, events = burst_outcomes(2)
    reserve = {e.device for e in events if "reserve" in e.reason}
    assert reserve and all(int(d[1:]) >= 40 for d in reserve)  # AGX Xaviers (d40..d43)
    assert kept[0].time_s > bursts[0].deadline_s  # nothing was kept before the first one
    assert all(o.device in reserve and o.time_s <= r.deadline_s for o, r in zip(kept[1:], bursts[1:], strict=True))
    none, _ = burst_outcomes(0)
    assert all(o.time_s > r.deadline_s for o, r in zip(none, bursts, strict=True))


def test_a_keeper_that_napped_in_this_decision_keeps_no_room_even_if_found_later():
    """The guard's keepers are found lazily (`_Keepers`); one that napped before the scan reached it is gone too."""
    from jetfleet.types import DeviceState
    from policies.jetfleet.power import _Keepers

    devices = [(DeviceState(name, "agx-xavier", 1e9), None) for name in ("a", "b", "c")]
    keepers = _Keepers(iter(devices), lambda d, t: True)
    assert keepers.other_than("a")  # b keeps room for a
    for name in ("a", "b", "c"):  # all three nap; c before the scan reached it
        keepers.discard(name)
    assert not keepers.other_than("x")


def test_an_awake_device_outside_the_active_set_gets_no_new_work():
    """It finishes what it runs and sleeps; given work it would stay busy, and awake, for good."""
    from jetfleet.types import DeviceState
    from policies.core import SchedulerCore
    from policies.jetfleet.power import PowerMemo

    fleet = make_fleet("xavier-nx", "xavier-nx", "xavier-nx")
    policy = make_policy("jetfleet")
    core = SchedulerCore(policy, FakeCost(), [DeviceState(d.name, d.kind, 1e9) for d in fleet.devices])
    policy.power.absorb(PowerMemo(frozenset({"d1"}), 0.0))  # as if consolidation had kept d1 only
    for i in range(6):
        core.submit(0.0, Request(i, 0.0, 4, 0.5, stream=f"cam{i}"))
    out = core.step(0.0)
    assert out.batches and {b.dispatch.device for b in out.batches} == {"d1"}


def test_without_power_control_every_awake_device_works_and_no_power_change_is_proposed():
    """A wrapper that drops power changes (overload control) says so in the context: held back from work, the devices
    it keeps awake would only idle (overload-fleet dropped 62 camera frames that way)."""
    from jetfleet.types import DeviceState
    from policies.core import SchedulerCore
    from policies.jetfleet.power import PowerMemo

    fleet = make_fleet("xavier-nx", "xavier-nx", "xavier-nx")
    policy = make_policy("jetfleet")
    core = SchedulerCore(policy, FakeCost(), [DeviceState(d.name, d.kind, 1e9) for d in fleet.devices])
    policy.power.absorb(PowerMemo(frozenset({"d1"}), 0.0))
    for i in range(6):
        core.submit(0.0, Request(i, 0.0, 4, 0.5, stream=f"cam{i}"))
    out = policy.decide(core.context(0.0).replace(power_control=False))
    assert len({d.device for d in out.dispatches}) > 1 and not out.power_changes


def test_the_keepers_answer_as_an_eager_scan_whoever_asked_before():
    """The nap rule asks the keepers only for devices that could nap (`PowerPlanner.plan`): skipping a question must
    change no later answer. Every order of questions and naps gets what a scan of the whole fleet would say."""
    from itertools import permutations

    from jetfleet.types import DeviceState
    from policies.jetfleet.power import _Keepers

    names = ("a", "b", "c", "d")
    serves = {"a": True, "b": False, "c": True, "d": True}
    devices = [(DeviceState(name, "agx-xavier", 1e9), None) for name in names]
    for order in permutations(names):
        for skipped in names:
            keepers, gone = _Keepers(iter(devices), lambda d, t: serves[d.name]), set()
            for name in order:
                if name == skipped:
                    continue
                eager = any(serves[k] and k != name and k not in gone for k in names)
                assert keepers.other_than(name) == eager
                if name in ("a", "d"):  # these two nap once asked
                    keepers.discard(name)
                    gone.add(name)


def test_a_nap_ruled_out_by_the_room_a_tight_arrival_needs_is_the_nap_the_full_rule_finds():
    """`_nap` answers None without the queue's latest start when the backlog outgrows a tight arrival's room before
    any sleep state fits: on a grid of demands it answers what the whole rule does, and naps where that finds some."""
    import math

    import numpy as np

    from jetfleet.types import DeviceState
    from policies.core import SchedulerCore
    from policies.jetfleet.power import Demand, PowerPlanner

    fleet = make_fleet("agx-xavier", "xavier-nx", "jetson-nano")
    policy = make_policy("jetfleet")
    core = SchedulerCore(policy, FakeCost(), [DeviceState(d.name, d.kind, 1e9) for d in fleet.devices])
    usable = policy._with_tables(core.context(100.0), "inceptionv3", core.context(100.0).devices)
    shortcut, full = PowerPlanner(PowerConfig()), PowerPlanner(PowerConfig())
    full._shortest_sleep_s = lambda device: -math.inf  # never rules a nap out early
    answers = []
    for queued, rate_fps, guard_slo_s, first_deadline_s in [
        (q, r, g, d) for q in (1, 8, 200) for r in (0.01, 1.0, 40.0) for g in (None, 1.5, 6.0) for d in (101.0, 160.0)
    ]:
        demand = Demand(
            now_s=100.0,
            rate_fps=rate_fps,
            requests_per_s=rate_fps / 2,
            queued_frames=queued,
            deadlines_s=np.array([first_deadline_s]),
            frames=np.array([queued]),
            guard_slo_s=guard_slo_s,
        )
        for device, tables in usable:
            for until_s in (None, 130.0):
                nap = shortcut._nap(device, tables, demand, 3, True, until_s)
                assert nap == full._nap(device, tables, demand, 3, True, until_s)
                answers.append(nap)
    assert any(a is None for a in answers) and any(a is not None for a in answers)
