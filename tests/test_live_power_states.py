"""The live scheduler applies power-state changes through the device and books each device's time asleep."""

from __future__ import annotations

import asyncio

import pytest
from device_fakes import LinearDeviceModel

from actors.device import DeviceRuntime
from actors.messages import DeviceUnavailableError, LocalDeviceClient
from actors.power_states import EmulatedPowerStates
from actors.scheduler import LiveScheduler
from actors.sleep_books import SleepBooks
from cluster.inventory import fleet_from_dict
from costmodel.device_models import OracleCostModel
from jetfleet.power_states import PowerState, PowerStateSpec
from jetfleet.types import SetPowerState
from policies.registry import make_policy

FLEET = fleet_from_dict({"name": "two", "devices": [{"name": n, "kind": "xavier-nx"} for n in ("a", "b")]})
SPEED = 200.0
DEEP = PowerStateSpec(PowerState.DEEP_IDLE, 3.0, 0.2, 0.2, 0.1, 0.1)
SUSP = PowerStateSpec(PowerState.SUSPENDED, 1.0, 1.0, 2.0, 1.0, 3.0)


def _scheduler() -> tuple[LiveScheduler, dict[str, DeviceRuntime]]:
    runtimes = {
        d.name: DeviceRuntime(
            d,
            speed_factor=SPEED,
            device_model=LinearDeviceModel(d.kind),
            power_states=EmulatedPowerStates(
                {PowerState.DEEP_IDLE: DEEP, PowerState.SUSPENDED: SUSP}, speed_factor=SPEED
            ),
        )
        for d in FLEET.devices
    }
    clients = {name: LocalDeviceClient(rt) for name, rt in runtimes.items()}
    s = LiveScheduler(
        FLEET, make_policy("transparent"), OracleCostModel(), clients, time_scale=SPEED, probe_interval_s=0
    )
    return s, runtimes


async def _settle(s: LiveScheduler) -> None:
    while s._tasks:
        await asyncio.gather(*list(s._tasks), return_exceptions=True)


def test_books_count_only_the_time_between_sleep_and_wake():
    books = SleepBooks(["a", "b"], 0.0)
    books.mark(10.0, "a", PowerState.SUSPENDED)
    assert books.asleep_s(15.0) == {"a": 5.0, "b": 0.0}
    books.mark(20.0, "a", PowerState.IDLE)
    books.mark(25.0, "a", PowerState.IDLE)  # awake again: no double count
    assert books.asleep_s(100.0) == {"a": 10.0, "b": 0.0}


def test_an_applied_sleep_reaches_the_device_and_shows_in_the_run_report():
    async def scenario():
        s, runtimes = _scheduler()
        s._apply_power_change(s.now(), SetPowerState("a", PowerState.DEEP_IDLE, "test"))
        await _settle(s)
        assert runtimes["a"].status().power_state == "deep_idle"
        await asyncio.sleep(0.05)
        s._apply_power_change(s.now(), SetPowerState("a", PowerState.IDLE, "test"))
        await _settle(s)
        report = s.run_report()
        await s.close()
        return runtimes["a"].status(), report, s.fleet_view()

    status, report, view = asyncio.run(scenario())
    assert status.power_state == "idle" and status.asleep_s > 0
    assert report["asleep_s"]["a"] >= 0.05 * SPEED * 0.9 and report["asleep_s"]["b"] == 0.0
    assert {d["name"]: d["power_state"] for d in view} == {"a": "idle", "b": "idle"}


def test_a_refused_sleep_leaves_the_device_awake_in_the_books():
    async def scenario():
        s, runtimes = _scheduler()
        runtimes["a"].sleep.backend.reachable_asleep = False  # as on a node that really stops
        s._apply_power_change(s.now(), SetPowerState("a", PowerState.SUSPENDED, "test"))  # no way to wake it
        await _settle(s)
        await s.close()
        return s, runtimes

    s, runtimes = asyncio.run(scenario())
    assert runtimes["a"].status().power_state == "idle" and s.sleep_books.states["a"] is PowerState.IDLE
    assert "no way to wake" in s.last_error


class _Gone:
    async def status(self):
        raise DeviceUnavailableError("node drained")


@pytest.mark.parametrize("away", [True, False])
def test_a_node_away_in_a_long_sleep_is_not_failed_by_its_probe(away):
    async def scenario():
        s, _ = _scheduler()
        s.clients["a"] = _Gone()
        if away:
            s._away.add("a")
        await s._probe("a")
        healthy = s._healthy["a"]
        await s.close()
        return healthy

    assert asyncio.run(scenario()) is away


def test_batches_refused_by_an_asleep_device_go_to_the_other_and_nobody_is_dropped():
    """A policy unaware of the sleep sends to `a`; its refusal fails `a` over (no attempt counted), `b` serves
    everything, and `a`'s probe does not bring it back while it reports itself asleep."""
    from actors.messages import InferItem

    async def scenario():
        s, runtimes = _scheduler()
        await runtimes["a"].set_power_state("deep_idle")
        answers = await asyncio.gather(*(s.submit(InferItem(2, 5.0 / SPEED)) for _ in range(20)))
        await s._probe("a")
        healthy_a = s._healthy["a"]
        await s.close()
        return answers, healthy_a

    answers, healthy_a = asyncio.run(scenario())
    assert [a.status for a in answers] == ["completed"] * 20 and {a.device for a in answers} == {"b"}
    assert not healthy_a


def test_the_demo_prints_time_asleep_per_device(capsys):
    from deployments.cli import _print_asleep

    _print_asleep([{"policy": "jetfleet", "live": {"asleep_s": {"nx0": 0.0, "agx0": 12.34}}}])
    assert capsys.readouterr().out.strip() == "time asleep per device (jetfleet): agx0 12.3 s, nx0 0.0 s"
