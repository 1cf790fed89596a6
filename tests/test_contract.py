"""The scheduling contract: `decide` has no side effects, wrappers leave no state for unapplied work, both drivers
admit alike, devices are given only their own clocks, and the objective is a seam."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from device_fakes import LinearDeviceModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.device import DeviceRuntime
from actors.dvfs import EmulatedDvfs
from actors.messages import InferItem, LocalDeviceClient
from actors.scheduler import LiveScheduler
from cluster.inventory import fleet_from_dict, load_fleet
from costmodel.device_models import OracleCostModel
from jetfleet.catalogue import get_kind
from jetfleet.types import Applied, Decisions, DeviceState, Dispatch, OutcomeStatus, Request
from policies.base import Policy
from policies.context import StepContext
from policies.core import PolicyContractError, SchedulerCore
from policies.jetfleet import EnergyPerFrame, JetfleetConfig, JetfleetPolicy, LatencyFirst
from policies.overload import OverloadControl
from policies.registry import make_policy
from policies.streams import DropPolicy, StreamConfig, StreamSet
from simulator.engine import simulate

COST = OracleCostModel()
DEMO = load_fleet("demo")
TWO_NANOS = fleet_from_dict(
    {"name": "two-nanos", "devices": [{"name": f"n{i}", "kind": "jetson-nano"} for i in (0, 1)]}
)
POLICIES = [
    "transparent",
    "round-robin",
    "fixed-batch:8",
    "interval:0.2",
    "random:3",
    "loudva",
    "jetfleet",
    "jetfleet:drop",
    "overload",
    "overload:edf",
    "fifo",
    "juggler",
    "jetfleet-variants",
]


@st.composite
def workloads(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 30))
    gaps = draw(st.lists(st.floats(0.0, 0.4), min_size=n, max_size=n))
    out, t = [], 0.0
    for i, gap in enumerate(gaps):
        t += gap
        frames = draw(st.integers(1, 4))
        slo_s = draw(st.sampled_from([0.15, 0.5, 1.0, 3.0]))
        stream = draw(st.sampled_from(["a", "b"]))
        out.append(Request(i, t, frames, slo_s, stream=stream, priority=1 if stream == "a" else 0))
    return out


class _DecidesTwice(Policy):
    """Asks the wrapped policy every decision twice and throws the first answer away."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]

    def admit(self, ctx: StepContext, request: Request):
        self.inner.admit(ctx, request)  # admission is side-effect free too
        return self.inner.admit(ctx, request)

    def decide(self, ctx: StepContext) -> Decisions:
        self.inner.decide(ctx)
        return self.inner.decide(ctx)

    def absorb(self, applied: Applied) -> None:
        self.inner.absorb(applied)

    def observe(self, result) -> None:
        self.inner.observe(result)


def _answers(result) -> list[tuple]:
    return [(o.request_id, o.status, o.device, o.freq_hz, round(o.time_s, 9), o.reason) for o in result.outcomes]


@pytest.mark.parametrize("name", POLICIES)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=workloads())
def test_decide_and_admit_have_no_side_effects(name, requests):
    """Asking every decision (and admission) twice, discarding the first answer, changes no outcome."""
    once = simulate(requests, DEMO, make_policy(name), COST)
    twice = simulate(requests, DEMO, _DecidesTwice(make_policy(name)), COST)
    assert _answers(twice) == _answers(once)


@pytest.mark.parametrize("inner", ["jetfleet", "jetfleet:drop"])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=workloads())
def test_overload_inner_policy_remembers_only_applied_dispatches(inner, requests):
    """Overload control runs its inner policy on narrowed views and keeps some proposals: the inner policy's memory
    of device use counts exactly the dispatches the core applied, and names only real devices."""
    policy = OverloadControl(make_policy(inner))
    result = simulate(requests, TWO_NANOS, policy, COST)
    jet = policy.inner
    assert isinstance(jet, JetfleetPolicy)
    assert jet._use_seq == len(result.batches)
    assert set(jet._last_use) <= {d.name for d in TWO_NANOS.devices}
    assert len(jet._settle) <= len(TWO_NANOS.devices)


def test_overload_jetfleet_keeps_no_stale_state_over_a_long_run():
    """The reviewed leak: 2 Nanos, 2 streams, 240 s of overload. Applied dispatches and remembered ones agree."""
    requests = [Request(i, i * 0.05, 1, 0.3 if i % 2 else 1.0, stream="ab"[i % 2], priority=i % 2) for i in range(4800)]
    policy = OverloadControl(make_policy("jetfleet"))
    result = simulate(requests, TWO_NANOS, policy, COST)
    assert policy.inner._use_seq == len(result.batches)  # type: ignore[attr-defined]
    assert any(o.status is OutcomeStatus.REJECTED for o in result.outcomes)  # it was overloaded indeed


# -- admission: the same decisions in both drivers ------------------------------------------------------------
CAMERAS = StreamSet(streams=(StreamConfig("cam", queue_limit=3, drop_policy=DropPolicy.DROP_NEWEST),))
NX_PAIR = fleet_from_dict({"name": "two", "devices": [{"name": n, "kind": "xavier-nx"} for n in ("a", "b")]})
SPEED = 200.0


def _burst() -> list[tuple[int, float, str]]:
    """(frames, slo_s, stream) of a burst that arrives at once: cameras past their queue bound, one hopeless SLO."""
    return [(1, 2.0, "cam")] * 6 + [(1, 0.0005, "other"), (2, 2.0, "other")]


def _sim_rejections() -> list[tuple[int, str]]:
    requests = [Request(i, 0.0, f, slo, stream=s) for i, (f, slo, s) in enumerate(_burst())]
    result = simulate(requests, NX_PAIR, OverloadControl(make_policy("jetfleet"), CAMERAS), COST)
    return [(o.request_id, o.reason) for o in result.outcomes if o.status is OutcomeStatus.REJECTED]


def _live_rejections() -> list[tuple[int, str]]:
    async def run() -> list:
        clients = {
            d.name: LocalDeviceClient(DeviceRuntime(d, speed_factor=SPEED, device_model=LinearDeviceModel(d.kind)))
            for d in NX_PAIR.devices
        }
        policy = OverloadControl(make_policy("jetfleet"), CAMERAS)
        s = LiveScheduler(NX_PAIR, policy, COST, clients, time_scale=SPEED, probe_interval_s=0)
        futures = [s.submit_nowait(InferItem(f, slo / SPEED, stream=st_)) for f, slo, st_ in _burst()]
        answers = await asyncio.gather(*futures)
        await s.close()
        return answers

    answers = asyncio.run(run())
    return [(a.request_id, a.reason) for a in answers if a.status == "rejected"]


def test_simulator_and_live_service_reject_the_same_arrivals():
    """One burst through both drivers: the same requests rejected at admission, for the same reasons."""
    sim = _sim_rejections()
    assert sim == _live_rejections()
    assert {reason for _, reason in sim} == {"queue_full", "deadline_unreachable"}


def test_live_rejection_carries_a_retry_after():
    """A rejected request's answer says when to come back (the HTTP layer's Retry-After)."""

    async def run():
        clients = {d.name: LocalDeviceClient(DeviceRuntime(d, speed_factor=SPEED)) for d in NX_PAIR.devices}
        s = LiveScheduler(NX_PAIR, OverloadControl(make_policy("jetfleet"), CAMERAS), COST, clients, time_scale=SPEED)
        answer = await s.submit(InferItem(1, 0.0005 / SPEED))
        await s.close()
        return answer

    answer = asyncio.run(run())
    assert answer.status == "rejected" and answer.reason == "deadline_unreachable"
    assert answer.retry_after_s is not None and answer.retry_after_s > 0


# -- each device's own frequency list -------------------------------------------------------------------------
OWN_NX_HZ = (204e6, 420.75e6, 599.25e6, 803.25e6, 1100e6)  # not the catalogue's xavier-nx list


def test_core_gives_a_device_only_its_own_clocks():
    """After a device reports its list, a dispatch at a catalogue clock it does not offer is a contract error."""
    device = DeviceState("a", "xavier-nx", get_kind("xavier-nx").max_freq_hz)
    core = SchedulerCore(make_policy("transparent"), COST, [device])
    core.set_device_frequencies("a", OWN_NX_HZ, current_hz=1100e6)
    core.submit(0.0, Request(0, 0.0, 1, 1.0))
    (batch,) = core.step(0.0).batches
    assert batch.dispatch.freq_hz == pytest.approx(1100e6)  # its own top clock
    core.complete(0.1, _ok(batch), batch.batch_id)
    core.submit(0.2, Request(1, 0.2, 1, 1.0))
    bad = Dispatch("a", (1,), get_kind("xavier-nx").freqs_hz[2], "inceptionv3")
    with pytest.raises(PolicyContractError, match="does not offer"):
        core._apply_dispatch(0.2, bad)


def _ok(batch):
    from jetfleet.types import BatchResult

    d = batch.dispatch
    return BatchResult(d.device, d.request_ids, batch.n_frames, d.model, d.freq_hz, 0.0, 0.1, 0.1, 1.0)


@pytest.mark.parametrize("policy", ["jetfleet", "loudva", "overload"])
def test_a_device_whose_frequency_list_differs_from_the_catalogue_serves_batches(policy):
    """Live, with devices whose DVFS offers other clocks than the catalogue: every request completes, at clocks
    the devices offer (a catalogue clock would fail the batch with FrequencyError). Time runs only 10x faster here:
    overload control's decisions take milliseconds of wall time, which 200x would turn into missed deadlines."""
    own = replace(get_kind("xavier-nx"), freqs_hz=OWN_NX_HZ)
    speed = 10.0

    async def run():
        clients = {
            d.name: LocalDeviceClient(
                DeviceRuntime(
                    d,
                    speed_factor=speed,
                    device_model=LinearDeviceModel(d.kind),
                    dvfs=EmulatedDvfs(own, settle_delay_s=0.0),
                )
            )
            for d in NX_PAIR.devices
        }
        s = LiveScheduler(NX_PAIR, make_policy(policy), COST, clients, time_scale=speed, probe_interval_s=0)
        answers = await asyncio.gather(*(s.submit(InferItem(2, 3.0 / speed)) for _ in range(24)))
        await s.close()
        return answers

    answers = asyncio.run(run())
    assert [a.status for a in answers] == ["completed"] * 24
    assert {a.freq_hz for a in answers} <= set(OWN_NX_HZ)


# -- the objective seam ---------------------------------------------------------------------------------------
def test_a_second_objective_changes_what_jetfleet_minimises_without_touching_the_planner():
    """LatencyFirst races at the top clock and serves faster; EnergyPerFrame slows the clock and spends less."""
    requests = [Request(i, i * 0.4, 2, 2.0) for i in range(60)]
    agx = load_fleet("agx")
    runs = {
        objective.name: simulate(requests, agx, JetfleetPolicy(JetfleetConfig(objective=objective)), COST)
        for objective in (EnergyPerFrame(), LatencyFirst())
    }
    energy, latency = runs["energy per frame"], runs["latency first"]
    top_hz = get_kind("agx-xavier").max_freq_hz
    assert all(b.freq_hz == pytest.approx(top_hz) for b in latency.batches)
    assert any(b.freq_hz < top_hz - 1.0 for b in energy.batches)
    assert latency.metrics.p50_latency_s < energy.metrics.p50_latency_s
    assert energy.metrics.frames_per_joule > latency.metrics.frames_per_joule
    assert energy.metrics.pct_frames_within_slo == pytest.approx(100.0)
    assert latency.metrics.pct_frames_within_slo == pytest.approx(100.0)


# -- refused arrivals are still demand; a sleeping device is not free ---------------------------------------------
class _RefuseAll(Policy):
    """Rejects every arrival and records what `absorb` was told."""

    name = "refuse-all"

    def __init__(self) -> None:
        self.applied: list[Applied] = []

    def admit(self, ctx: StepContext, request: Request):
        from jetfleet.types import Admission, DropReason

        return Admission.reject(DropReason.DEADLINE_UNREACHABLE, 0.5)

    def decide(self, ctx: StepContext) -> Decisions:
        return Decisions()

    def absorb(self, applied: Applied) -> None:
        self.applied.append(applied)


def test_a_refused_arrival_reaches_absorb_as_refused_not_admitted():
    """The offered load reaches the policy (its forecast must see it); the request itself is answered once."""
    policy = _RefuseAll()
    core = SchedulerCore(policy, COST, [DeviceState("nx", "xavier-nx", get_kind("xavier-nx").max_freq_hz)])
    request = Request(7, 1.0, 1, 0.5)
    (outcome,) = core.submit(1.0, request)
    assert outcome.status is OutcomeStatus.REJECTED and outcome.request_id == 7
    assert [(a.admitted, a.refused) for a in policy.applied] == [((), (request,))]
    assert not core.queue


def test_a_sleeping_device_is_free_only_after_its_wake():
    from jetfleet.power_states import PowerState
    from policies.context import with_device_facts

    awake = with_device_facts(DeviceState("nx", "xavier-nx", get_kind("xavier-nx").max_freq_hz))
    suspended = replace(awake, power_state=PowerState.SUSPENDED)
    wake_s = suspended.power_spec(PowerState.SUSPENDED).exit_s
    assert awake.free_s(10.0) == pytest.approx(10.0)
    assert suspended.free_s(10.0) == pytest.approx(10.0 + wake_s) and wake_s > 0
    waking = replace(awake, awake_at_s=11.5)
    assert waking.free_s(10.0) == pytest.approx(11.5)
