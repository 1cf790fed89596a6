"""Power states below the policies: catalogue figures, break-even, the shared sleep meter, the core's checks,
the simulator's and the live ledger's accounting, and the sleep-aware bound."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_fakes import FakeCost, FakeDeviceModel, fake_models, make_fleet

from actors.accounting import EnergyLedger
from jetfleet.catalogue import CATALOGUE, get_kind
from jetfleet.metrics import energy_bound_j, sleep_energy_bound_j
from jetfleet.power_states import AWAKE_STATES, SLEEP_STATES, PowerState, PowerStateSpec, SleepMeter, awake_at_s
from jetfleet.telemetry import EventList
from jetfleet.types import (
    BatchResult,
    Decisions,
    DeviceState,
    Dispatch,
    OutcomeStatus,
    Request,
    SetPowerState,
)
from policies.base import Policy
from policies.core import PolicyContractError, SchedulerCore
from simulator.devices import EmulatedDevice

AGX = get_kind("agx-xavier")
AGX_MAX = AGX.max_freq_hz
SUSPENDED = AGX.power_state(PowerState.SUSPENDED)


# -- catalogue ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["jetson-nano", "xavier-nx", "agx-xavier", "orin-nano", "orin-nx", "agx-orin"])
def test_every_jetson_has_deep_idle_suspended_and_off_each_figure_sourced(key):
    kind = get_kind(key)
    assert tuple(s.state for s in kind.power_states) == SLEEP_STATES
    for spec in kind.power_states:
        for figure in ("board_power_w", "entry_s", "exit_s", "entry_energy_j", "exit_energy_j"):
            assert spec.sources.get(figure), f"{key} {spec.state.value}.{figure} has no source"
        for figure in spec.ranges:
            lo, hi = spec.ranges[figure]
            assert lo <= getattr(spec, figure) <= hi, f"{key} {spec.state.value}.{figure} outside its range"
        assert set(spec.ranges) <= set(spec.assumed)
    powers = [kind.idle_power_w] + [s.board_power_w for s in kind.power_states]
    wakes = [s.exit_s for s in kind.power_states]
    assert powers == sorted(powers, reverse=True) and wakes == sorted(wakes)


def test_kinds_without_sleep_control_have_no_sleep_states():
    assert CATALOGUE["cpu"].power_states == () and CATALOGUE["cuda-gpu"].power_states == ()


def test_break_even_is_transition_energy_over_the_saving_and_never_shorter_than_the_transitions():
    spec = PowerStateSpec(PowerState.SUSPENDED, 1.0, 1.0, 2.0, 10.0, 6.0)
    assert spec.break_even_s(5.0) == pytest.approx(16.0 / 4.0)
    cheap = PowerStateSpec(PowerState.DEEP_IDLE, 1.0, 1.0, 2.0, 0.0, 0.0)
    assert cheap.break_even_s(5.0) == pytest.approx(3.0)
    assert math.isinf(spec.break_even_s(1.0))


def test_power_states_are_ordered_by_depth_and_only_active_and_idle_are_awake():
    order = [PowerState.ACTIVE, PowerState.IDLE, *SLEEP_STATES]
    assert [s.depth for s in order] == list(range(len(PowerState)))
    assert {s for s in PowerState if s.awake} == AWAKE_STATES == {PowerState.ACTIVE, PowerState.IDLE}
    assert PowerState("suspended") is PowerState.SUSPENDED and not PowerState.SUSPENDED.awake


@given(gap=st.floats(0.0, 100.0), idle=st.floats(1.5, 10.0))
def test_sleeping_longer_than_break_even_never_costs_more_than_idling(gap, idle):
    spec = SUSPENDED
    if gap >= spec.break_even_s(idle):
        asleep_j = spec.board_power_w * gap + spec.entry_energy_j + spec.exit_energy_j
        assert asleep_j <= idle * gap + 1e-9


# -- the shared meter ------------------------------------------------------------------------------------------
def test_sleep_meter_counts_state_power_and_both_transitions():
    meter = SleepMeter()
    meter.enter(10.0, SUSPENDED)
    meter.accrue(15.0)
    done = meter.leave(20.0)
    assert done == pytest.approx(20.0 + SUSPENDED.exit_s)
    assert meter.state_energy_j == pytest.approx(SUSPENDED.board_power_w * (done - 10.0))
    assert meter.transition_energy_j == pytest.approx(SUSPENDED.entry_energy_j + SUSPENDED.exit_energy_j)
    assert not meter.asleep and meter.sleeps == 1


def test_a_wake_during_the_entry_waits_for_the_entry_to_finish():
    assert awake_at_s(SUSPENDED, 10.0, 10.2) == pytest.approx(10.0 + SUSPENDED.entry_s + SUSPENDED.exit_s)


def test_simulated_device_and_live_ledger_count_a_sleep_identically():
    model = FakeDeviceModel("agx-xavier")
    device = EmulatedDevice("d0", AGX, model, AGX.min_freq_hz, 0.0)
    ledger = EnergyLedger(model.idle_power_w, AGX.min_freq_hz)
    ledger.open(0.0)
    device.sleep(2.0, SUSPENDED)
    ledger.sleep(2.0, SUSPENDED)
    assert device.wake(30.0) == pytest.approx(ledger.wake(30.0))
    device.finish(40.0)
    ledger.close(40.0)
    idle_w = model.idle_power_w(AGX.min_freq_hz)
    expected = idle_w * (2.0 + 40.0 - 32.0) + SUSPENDED.board_power_w * 30.0
    expected += SUSPENDED.entry_energy_j + SUSPENDED.exit_energy_j
    assert device.energy_j == pytest.approx(expected)
    assert ledger.energy_j == pytest.approx(expected)


# -- the core ---------------------------------------------------------------------------------------------------
class Scripted(Policy):
    """Returns the decisions it is handed, one list per step; remembers what it absorbed."""

    name = "scripted"

    def __init__(self, *steps: Decisions) -> None:
        self.steps = list(steps)
        self.absorbed = []

    def decide(self, ctx):
        return self.steps.pop(0) if self.steps else Decisions()

    def absorb(self, applied):
        self.absorbed.append(applied)


def _core(policy, sink=None):
    return SchedulerCore(policy, FakeCost(), [DeviceState("agx0", "agx-xavier", AGX_MAX)], sink)


def _sleep(state=PowerState.SUSPENDED):
    return Decisions(power_changes=[SetPowerState("agx0", state, "test")])


def test_device_facts_carry_the_catalogue_sleep_states():
    core = _core(Scripted())
    assert core.devices["agx0"].power_states == AGX.power_states


def test_a_sleep_is_applied_reported_to_the_driver_and_the_policy_and_logged_with_its_reason():
    events = EventList()
    policy = Scripted(_sleep())
    core = _core(policy, events)
    out = core.step(5.0)
    (change,) = out.power_changes
    assert change.state is PowerState.SUSPENDED and change.settled_s == pytest.approx(5.0 + SUSPENDED.entry_s)
    assert policy.absorbed[-1].power_changes == (change,)
    assert core.devices["agx0"].power_state is PowerState.SUSPENDED
    (event,) = [e for e in events if e.event == "power"]
    assert event.reason == "test" and event.detail["state"] == "suspended" and event.detail["from"] == "idle"


def test_dispatch_to_a_sleeping_device_is_refused():
    core = _core(Scripted(_sleep(), Decisions(dispatches=[Dispatch("agx0", (1,), AGX_MAX, "inceptionv3")])))
    core.step(0.0)
    core.submit(1.0, Request(1, 1.0, 1, 5.0))
    with pytest.raises(PolicyContractError, match="suspended"):
        core.step(1.0)


def test_a_device_with_work_in_flight_is_never_put_to_sleep():
    dispatch = Decisions(dispatches=[Dispatch("agx0", (1,), AGX_MAX, "inceptionv3")])
    core = _core(Scripted(dispatch, _sleep()))
    core.submit(0.0, Request(1, 0.0, 1, 5.0))
    core.step(0.0)
    with pytest.raises(PolicyContractError, match="in flight"):
        core.step(0.01)


def test_a_state_the_device_does_not_have_is_refused():
    core = SchedulerCore(Scripted(_sleep()), FakeCost(), [DeviceState("agx0", "cpu", 2.4e9)])
    with pytest.raises(PolicyContractError, match="no suspended state"):
        core.step(0.0)


def test_a_woken_device_starts_its_first_batch_only_once_awake():
    wake = SetPowerState("agx0", PowerState.IDLE, "work")
    run = Dispatch("agx0", (1,), AGX_MAX, "inceptionv3", predicted_latency_s=0.1)
    core = _core(Scripted(_sleep(), Decisions(dispatches=[run], power_changes=[wake])))
    core.step(0.0)
    core.submit(20.0, Request(1, 20.0, 1, 5.0))
    out = core.step(20.0)
    assert out.power_changes[0].settled_s == pytest.approx(20.0 + SUSPENDED.exit_s)
    assert core.devices["agx0"].busy_until_s == pytest.approx(20.0 + SUSPENDED.exit_s + 0.1)
    result = BatchResult("agx0", (1,), 1, "inceptionv3", AGX_MAX, 22.0, 22.1, 0.1, 1.0)
    (outcome,) = core.complete(22.1, result, out.batches[0].batch_id)
    assert outcome.status is OutcomeStatus.COMPLETED and core.open_requests == 0


def test_the_context_names_the_sleeping_devices_in_a_new_set_on_each_power_change_only():
    wake = SetPowerState("agx0", PowerState.IDLE, "work")
    core = _core(Scripted(Decisions(), _sleep(), Decisions(), Decisions(power_changes=[wake])))
    first = core.context(0.0).asleep
    assert first == frozenset() and core.context(0.5).asleep is first
    core.step(0.0)
    assert core.context(1.0).asleep is first  # nothing changed: the same set object
    core.step(1.0)
    asleep = core.context(2.0).asleep
    assert asleep == {"agx0"} and core.context(3.0).asleep is asleep
    core.step(2.0)
    assert core.context(4.0).asleep is asleep
    core.step(20.0)
    assert core.context(21.0).asleep == frozenset() and core.context(21.0).asleep is not first


def test_a_context_with_other_devices_does_not_keep_the_cores_sleeping_devices():
    core = _core(Scripted(_sleep()))
    core.step(0.0)
    ctx = core.context(1.0)
    assert ctx.asleep == {"agx0"}
    assert ctx.replace(devices=[]).asleep is None and ctx.replace(now_s=2.0).asleep is ctx.asleep
    assert ctx.replace(devices=[], asleep=frozenset()).asleep == frozenset()


# -- the simulator, end to end ---------------------------------------------------------------------------------
def _sparse(n=6, gap_s=30.0, slo_s=10.0):
    return [Request(i, 1.0 + i * gap_s, 4, slo_s) for i in range(n)]


def test_simulated_sleep_saves_energy_and_stays_above_the_sleep_aware_bound():
    from policies.registry import make_policy
    from simulator.engine import simulate

    fleet = make_fleet("agx-xavier")
    runs = {
        spec: simulate(_sparse(), fleet, make_policy(spec), FakeCost(), device_models=fake_models(fleet))
        for spec in ("jetfleet", "jetfleet:awake")
    }
    asleep, awake = runs["jetfleet"], runs["jetfleet:awake"]
    assert asleep.device_asleep_s["d0"] > 0.5 * (asleep.end_s - asleep.start_s)
    assert asleep.energy_j < 0.5 * awake.energy_j
    assert asleep.metrics.pct_frames_within_slo == pytest.approx(100.0)
    assert asleep.sleep_energy_bound_j <= asleep.energy_j
    assert awake.energy_bound_j <= awake.energy_j and awake.device_asleep_s["d0"] == 0.0


def test_the_sleep_aware_bound_is_the_awake_bound_with_the_deepest_allowed_floor():
    fleet = make_fleet("agx-xavier")
    models = fake_models(fleet)
    reqs = _sparse()
    awake = energy_bound_j(reqs, fleet, models, 0.0, 100.0)
    for states, floor_w in [
        ((), models["agx-xavier"].idle_power_w(AGX.min_freq_hz)),
        ((PowerState.SUSPENDED,), SUSPENDED.board_power_w),
    ]:
        bound = sleep_energy_bound_j(reqs, fleet, models, 0.0, 100.0, states=states)
        empty = sleep_energy_bound_j([], fleet, models, 0.0, 100.0, states=states)
        assert empty == pytest.approx(100.0 * floor_w)
        assert bound <= awake + 1e-9
    assert sleep_energy_bound_j(reqs, fleet, models, 0.0, 100.0, states=()) == pytest.approx(awake)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.floats(0.0, 40.0), min_size=1, max_size=15),
    slo=st.floats(0.5, 20.0),
    kinds=st.lists(st.sampled_from(["agx-xavier", "xavier-nx", "jetson-nano"]), min_size=1, max_size=3),
)
def test_no_batch_on_a_sleeping_device_no_sleep_with_work_in_flight_exactly_one_answer(gaps, slo, kinds):
    """Replaying the telemetry of a jetfleet run with power states: every dispatch goes to an awake device,
    every sleep to a device with nothing in flight, and every request has exactly one outcome."""
    from policies.registry import make_policy
    from simulator.engine import simulate

    t, reqs = 0.0, []
    for i, g in enumerate(gaps):
        t += g
        reqs.append(Request(i, t, 1 + i % 5, slo))
    fleet = make_fleet(*kinds)
    events = EventList()
    result = simulate(reqs, fleet, make_policy("jetfleet"), FakeCost(), device_models=fake_models(fleet), sink=events)
    assert [o.request_id for o in result.outcomes] == [r.request_id for r in reqs]
    asleep: dict[str, bool] = {}
    in_flight: dict[str, int] = {}
    batch_device: dict[int, str] = {}
    for e in events:
        if e.event == "power":
            if e.detail["state"] != "idle":
                assert in_flight.get(e.device, 0) == 0
            asleep[e.device] = e.detail["state"] != "idle"
        elif e.event == "dispatch":
            assert not asleep.get(e.device, False)
            in_flight[e.device] = in_flight.get(e.device, 0) + 1
            batch_device[e.detail["batch_id"]] = e.device
        elif e.event == "complete":
            in_flight[e.device] -= 1
    served = [rid for b in result.batches for rid in b.request_ids]
    assert len(served) == len(set(served))
