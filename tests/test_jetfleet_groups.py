"""`JetfleetPolicy._groups`: free devices and earliest-ready-per-clock as the one-device-at-a-time rule defines them."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_fakes import FakeCost

from jetfleet.catalogue import get_kind
from jetfleet.types import Applied, Decisions, DeviceState, SetFrequency
from policies.core import SchedulerCore
from policies.jetfleet import JetfleetConfig, JetfleetPolicy
from policies.jetfleet.groups import DeviceGroup
from policies.jetfleet.step import Step

KINDS = ("agx-xavier", "xavier-nx", "jetson-nano")
NOW_S = 10.0
_device = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, 20),  # frequency index (clipped to the kind's list)
    st.floats(-1.0, 3.0),  # busy until now + this
    st.integers(0, 2),  # batches in flight
    st.one_of(st.none(), st.floats(-1.0, 1.0)),  # a clock change settling at now + this (None: none)
    st.booleans(),  # dispatched to already in this decision
)


def _expected(policy: JetfleetPolicy, step: Step, members: list[DeviceState]) -> tuple[dict[int, float], list[str]]:
    """(earliest ready per clock index, free device names in order), one device at a time."""
    t = policy.tables(step.ctx, members[0], "m")
    by_clock: dict[int, float] = {}
    free = []
    for d in members:
        ready_s = policy.ready_s(step.now_s, d)
        fi = t.freq_index(d.freq_hz)
        by_clock[fi] = min(by_clock.get(fi, math.inf), ready_s)
        if d.in_flight < policy.config.max_in_flight and d.name not in step.taken:
            free.append((ready_s, policy._last_use.get(d.name, -1), d.name))
    return by_clock, [name for *_, name in sorted(free)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.lists(_device, min_size=1, max_size=12),
    max_in_flight=st.integers(1, 2),
    settle=st.booleans(),
    busy_index=st.booleans(),
)
def test_groups_match_the_per_device_rule(devices, max_in_flight, settle, busy_index):
    """Idle, busy, settling and already-taken devices: each group's free order and ready-per-clock are the rule's,
    whether the context names the busy devices or not (`StepContext.busy`)."""
    states, settling, taken = [], [], set()
    for i, (kind, fi, busy_s, in_flight, settle_s, was_taken) in enumerate(devices):
        freqs = get_kind(kind).freqs_hz
        name = f"d{i}"
        states.append(DeviceState(name, kind, float(freqs[min(fi, len(freqs) - 1)]), NOW_S + busy_s, in_flight))
        if settle and settle_s is not None:
            settling.append(SetFrequency(name, states[-1].freq_hz, "test", NOW_S + settle_s))
        if was_taken:
            taken.add(name)
    policy = JetfleetPolicy(JetfleetConfig(max_in_flight=max_in_flight))
    policy.absorb(Applied(NOW_S - 5.0, frequency_changes=tuple(settling)))
    ctx = SchedulerCore(policy, FakeCost(), states).context(NOW_S)
    if not busy_index:
        ctx = ctx.replace(busy=None)
    step = Step(ctx, Decisions(), taken=taken)
    groups: list[DeviceGroup] = policy._groups(step, "m", ctx.devices, 1)
    members = policy._members_of("m", ctx.devices, NOW_S)
    assert len(groups) == len(members)
    for group, same in zip(groups, members.values(), strict=True):
        by_clock, free = _expected(policy, step, same)
        assert group.ready_by_clock == by_clock
        assert group.n_clocks == len({d.freq_hz for d in same})  # what `representatives` may stop at
        assert [d.name for d in group.free] == free


def test_the_power_view_is_kept_until_a_groups_tables_change():
    """`_with_tables` hands the same list while no table changed, and one with the new tables once a learned
    correction changed them (the look-ups are skipped only while the cost view's generation stands still)."""
    states = [DeviceState(f"d{i}", kind, get_kind(kind).max_freq_hz) for i, kind in enumerate(KINDS * 2)]
    policy = JetfleetPolicy()
    core = SchedulerCore(policy, FakeCost(), states)
    ctx = core.context(NOW_S)
    usable = policy._with_tables(ctx, "m", ctx.devices)
    assert [d.name for d, _ in usable] == [d.name for d in ctx.devices]
    assert all(t is policy.tables(ctx, d, "m") for d, t in usable)
    assert policy._with_tables(core.context(NOW_S + 1.0), "m", ctx.devices) is usable
    nano = ctx.devices[2]
    t = usable[2][1]
    ctx.cost.observe(nano.kind, "m", nano.freqs_hz, nano.freq_hz, 1, 3.0 * float(t.latency_s[-1, 0]))
    changed = policy._with_tables(core.context(NOW_S + 2.0), "m", ctx.devices)
    assert changed is not usable
    assert all(t is policy.tables(ctx, d, "m") for d, t in changed)
    assert changed[2][1] is not t and changed[0][1] is usable[0][1]  # only the nanos' tables changed
    assert policy._with_tables(core.context(NOW_S + 3.0), "m", ctx.devices) is changed
