"""Power-state backends and the device runtime's sleep: emulated table, Jetson sysfs (fake tree), NVML (fake)."""

from __future__ import annotations

import asyncio
import math

import pytest
from device_fakes import ORIN_DEVFREQ, ORIN_GPU_FREQS, LinearDeviceModel, fake_jetson_tree

from actors.device import DeviceRuntime
from actors.dvfs import JetsonDvfs
from actors.power_states import (
    CONTROLLER,
    RTC,
    SELF,
    WAKE_ON_LAN,
    EmulatedPowerStates,
    JetsonPowerStates,
    NvmlPowerStates,
    wake_ways,
)
from actors.sleep_control import power_state_table, specs_from_table
from cluster.health import HEALTH_CHECK_WINDOW_S, SHORT_SLEEP_MAX_S, is_long_sleep
from cluster.inventory import DeviceSpec
from jetfleet.errors import ConfigError, PowerStateError
from jetfleet.power_states import PowerState, PowerStateSpec
from jetfleet.types import Batch, Dispatch, Request

DEEP = PowerStateSpec(PowerState.DEEP_IDLE, 3.0, 0.5, 0.2, 0.1, 0.1)
SUSP = PowerStateSpec(PowerState.SUSPENDED, 1.0, 1.0, 2.0, 1.0, 3.0)
TABLE = {PowerState.DEEP_IDLE: DEEP, PowerState.SUSPENDED: SUSP}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _runtime(backend=None, clock=None, **kw) -> DeviceRuntime:
    spec = DeviceSpec(name="n0", kind="jetson-nano", **kw)
    rt = DeviceRuntime(spec, speed_factor=1000.0, device_model=LinearDeviceModel("jetson-nano"), power_states=backend)
    if clock is not None:
        rt.sleep._clock = clock
    return rt


def _batch(rt: DeviceRuntime) -> Batch:
    r = Request(1, 0.0, 2, 1.0)
    return Batch(0, Dispatch(rt.name, (1,), rt.frequency_hz(), "resnet18"), (r,), 0.0)


def test_wake_ways_need_a_timer_with_a_length_or_a_mac():
    """Suspend: RTC only with a finite sleep length, or WoL with a MAC; off: WoL only; deep idle: always."""
    assert wake_ways(PowerState.DEEP_IDLE, rtc=False, mac=None, sleep_s=None) == (SELF,)
    assert wake_ways(PowerState.SUSPENDED, rtc=True, mac=None, sleep_s=None) == ()
    assert wake_ways(PowerState.SUSPENDED, rtc=True, mac=None, sleep_s=30.0) == (RTC,)
    assert wake_ways(PowerState.SUSPENDED, rtc=False, mac="00:04:4b:aa:bb:cc", sleep_s=None) == (WAKE_ON_LAN,)
    assert wake_ways(PowerState.OFF, rtc=True, mac=None, sleep_s=30.0) == ()
    assert wake_ways(PowerState.OFF, rtc=True, mac="00:04:4b:aa:bb:cc", sleep_s=None) == (WAKE_ON_LAN,)


def test_long_sleep_is_past_half_the_health_check_window():
    assert pytest.approx(HEALTH_CHECK_WINDOW_S / 2) == SHORT_SLEEP_MAX_S
    assert not is_long_sleep(SHORT_SLEEP_MAX_S) and is_long_sleep(SHORT_SLEEP_MAX_S + 0.1) and is_long_sleep(None)


def test_emulated_sleep_reports_the_state_power_and_counts_time_asleep():
    """Deep idle from the table: status shows its board power and state; waking adds the time to asleep_s."""
    clock = Clock()
    rt = _runtime(EmulatedPowerStates(TABLE, speed_factor=1000.0), clock)
    idle_w = rt.status().power_w
    change = asyncio.run(rt.set_power_state("deep_idle"))
    assert change.state == "deep_idle" and change.previous == "idle" and change.wake == (SELF,)
    status = rt.status()
    assert status.power_state == "deep_idle" and status.power_w == pytest.approx(3.0) and idle_w != 3.0
    clock.t += 2.0
    asyncio.run(rt.set_power_state("idle"))
    assert rt.status().power_state == "idle"
    assert rt.status().asleep_s == pytest.approx(2.0 * 1000.0)  # device seconds = wall × speed factor


def test_an_asleep_device_refuses_batches_with_the_reason():
    rt = _runtime(EmulatedPowerStates(TABLE, speed_factor=1000.0))
    asyncio.run(rt.set_power_state(PowerState.DEEP_IDLE))
    run = asyncio.run(rt.run_batch(_batch(rt)))
    assert not run.result.ok and "asleep" in run.result.error and rt.batches_run == 0
    asyncio.run(rt.set_power_state(PowerState.IDLE))
    assert asyncio.run(rt.run_batch(_batch(rt))).result.ok


def test_suspend_without_a_way_to_wake_is_refused():
    """No sleep length, no MAC, a node that really stops: suspend refused, the device stays awake; off is refused
    without a MAC."""
    backend = EmulatedPowerStates(TABLE, speed_factor=1000.0)
    backend.reachable_asleep = False  # as on a node of its own (`jetfleet up --nodes`)
    rt = _runtime(backend)
    with pytest.raises(PowerStateError, match="no way to wake"):
        asyncio.run(rt.set_power_state("suspended"))
    assert rt.status().power_state == "idle"
    with pytest.raises(PowerStateError, match="cannot enter off"):
        asyncio.run(rt.set_power_state("off"))


def test_emulated_device_on_a_shared_node_suspends_without_a_length_and_wakes_on_call():
    """Its actor keeps answering, so the scheduler's wake call is its way back (the policy gives no length)."""
    rt = _runtime(EmulatedPowerStates(TABLE, speed_factor=1000.0))
    change = asyncio.run(rt.set_power_state("suspended"))
    assert change.wake == (CONTROLLER,) and rt.status().power_state == "suspended"
    asyncio.run(rt.set_power_state(PowerState.IDLE))
    assert rt.status().power_state == "idle"


def test_emulated_suspend_wakes_itself_when_its_timer_fires():
    clock = Clock()
    rt = _runtime(EmulatedPowerStates(TABLE, speed_factor=1000.0), clock)
    change = asyncio.run(rt.set_power_state("suspended", sleep_s=3000.0))  # 3 wall seconds at speed 1000
    assert change.wake == (RTC, CONTROLLER) and not change.long_sleep  # no node of its own: nothing to drain
    clock.t += 2.9
    assert rt.status().power_state == "suspended"
    clock.t += 0.2
    assert rt.status().power_state == "idle" and rt.status().asleep_s == pytest.approx(3000.0)


def test_a_long_sleep_drains_the_node_first():
    drained: list[tuple[float, str]] = []
    spec = DeviceSpec(name="n0", kind="jetson-nano")
    rt = DeviceRuntime(
        spec,
        speed_factor=1.0,
        device_model=LinearDeviceModel("jetson-nano"),
        power_states=EmulatedPowerStates(TABLE, speed_factor=1000.0),
        drain=lambda deadline_s, why: drained.append((deadline_s, why)),
    )
    short = asyncio.run(rt.set_power_state("suspended", sleep_s=1.0))
    assert not short.long_sleep and drained == []
    asyncio.run(rt.set_power_state("idle"))
    long = asyncio.run(rt.set_power_state("suspended", sleep_s=600.0))
    assert long.long_sleep and len(drained) == 1 and "suspended" in drained[0][1]


def test_a_device_with_power_states_none_never_sleeps():
    rt = DeviceRuntime(DeviceSpec(name="n0", kind="jetson-nano", power_states="none"), speed_factor=1000.0)
    with pytest.raises(PowerStateError, match="never sleeps"):
        asyncio.run(rt.set_power_state("deep_idle"))


def test_unknown_state_name_is_refused():
    with pytest.raises(PowerStateError, match="unknown power state 'nap'"):
        asyncio.run(_runtime(EmulatedPowerStates(TABLE)).set_power_state("nap"))


def test_the_inventory_table_wins_and_bad_tables_name_the_device():
    raw = {"deep_idle": {"board_power_w": 2.5, "entry_s": 0.5, "exit_s": 0.1, "entry_energy_j": 0, "exit_energy_j": 0}}
    spec = DeviceSpec(name="n0", kind="jetson-nano", options={"power_states": raw})
    assert power_state_table(spec)[PowerState.DEEP_IDLE].board_power_w == 2.5
    with pytest.raises(ConfigError, match="unknown power state 'nap'"):
        specs_from_table({"nap": {}}, "here")
    with pytest.raises(ConfigError, match="deep_idle"):
        specs_from_table({"deep_idle": {"watts": 1}}, "here")


# -- Jetson ------------------------------------------------------------------------------------------------
def test_jetson_deep_idle_railgates_and_floors_clocks_then_restores(tmp_path):
    gpu = fake_jetson_tree(tmp_path)
    dvfs = JetsonDvfs(root=tmp_path, devfreq=ORIN_DEVFREQ)
    backend = JetsonPowerStates(root=tmp_path, dvfs=dvfs, rtcwake=False, railgate_timeout_s=0.05)
    assert backend.gpu == gpu and backend.offered()[0] is PowerState.DEEP_IDLE
    backend.check(PowerState.DEEP_IDLE, None, "t")
    asyncio.run(backend.enter(PowerState.DEEP_IDLE, None))
    devfreq = tmp_path / ORIN_DEVFREQ
    assert (gpu / "railgate_enable").read_text().strip() == "1"
    assert int((devfreq / "max_freq").read_text()) == ORIN_GPU_FREQS[0]
    cpu0 = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq"
    assert cpu0.read_text().strip() == "115200"
    asyncio.run(backend.wake())
    assert (gpu / "railgate_enable").read_text().strip() == "0" and cpu0.read_text().strip() == "1510400"
    assert int((devfreq / "max_freq").read_text()) == ORIN_GPU_FREQS[-1]


@pytest.mark.parametrize(
    "node", ["sys/devices/gpu.0", "sys/devices/17000000.gv11b", "sys/devices/platform/bus@0/17000000.gpu"]
)
def test_jetson_finds_the_gpu_node_of_each_soc(tmp_path, node):
    fake_jetson_tree(tmp_path, gpu_node=node)
    assert JetsonPowerStates(root=tmp_path, rtcwake=False).gpu == tmp_path / node


def test_jetson_suspend_uses_rtcwake_when_it_can_wake_itself(tmp_path):
    fake_jetson_tree(tmp_path)
    launched: list[tuple[list[str], float]] = []
    backend = JetsonPowerStates(root=tmp_path, rtcwake=True, launch=lambda cmd, d: launched.append((list(cmd), d)))
    backend.check(PowerState.SUSPENDED, 42.2, "t")
    asyncio.run(backend.enter(PowerState.SUSPENDED, 42.2))
    assert launched == [(["rtcwake", "-m", "mem", "-s", "43"], 0.5)] and backend.state is PowerState.SUSPENDED


def test_jetson_suspend_and_off_for_wake_on_lan(tmp_path):
    fake_jetson_tree(tmp_path)
    launched: list[list[str]] = []
    mac = "00:04:4b:aa:bb:cc"
    backend = JetsonPowerStates(root=tmp_path, rtcwake=False, mac=mac, launch=lambda cmd, d: launched.append(list(cmd)))
    assert backend.check(PowerState.SUSPENDED, None, "t") == (WAKE_ON_LAN,)
    asyncio.run(backend.enter(PowerState.SUSPENDED, None))
    backend.state = PowerState.IDLE
    asyncio.run(backend.enter(PowerState.OFF, None))
    assert launched == [["systemctl", "suspend"], ["systemctl", "poweroff"]]


def test_jetson_without_rtcwake_or_mac_refuses_suspend_and_launches_nothing(tmp_path):
    fake_jetson_tree(tmp_path)
    launched: list = []
    backend = JetsonPowerStates(root=tmp_path, rtcwake=False, launch=lambda cmd, d: launched.append(cmd))
    rt = _runtime(backend)
    with pytest.raises(PowerStateError, match="no way to wake"):
        asyncio.run(rt.set_power_state("suspended", sleep_s=60.0))
    assert launched == [] and rt.status().power_state == "idle"


def test_jetson_write_refused_names_the_file(tmp_path):
    gpu = fake_jetson_tree(tmp_path)
    (gpu / "railgate_enable").unlink()
    (gpu / "railgate_enable").mkdir()  # writing it now fails like a permission problem would
    backend = JetsonPowerStates(root=tmp_path, gpu_node=str(gpu.relative_to(tmp_path)), rtcwake=False)
    with pytest.raises(PowerStateError, match="railgate_enable"):
        asyncio.run(backend.enter(PowerState.DEEP_IDLE, None))


# -- NVML --------------------------------------------------------------------------------------------------
class FakeDvfsBase:
    def __init__(self) -> None:
        self.freq = 1500e6

    def available_frequencies_hz(self):
        return [300e6, 900e6, 1500e6]

    def frequency_hz(self):
        return self.freq

    def set_frequency(self, f):
        self.freq = f
        return f


class FakeDvfs(FakeDvfsBase):
    pass


def test_nvml_deep_idle_is_the_lowest_clock_and_offers_no_suspend():
    dvfs = FakeDvfs()
    backend = NvmlPowerStates(dvfs)
    asyncio.run(backend.enter(PowerState.DEEP_IDLE, None))
    assert math.isclose(dvfs.freq, 300e6)
    asyncio.run(backend.wake())
    assert math.isclose(dvfs.freq, 1500e6)
    with pytest.raises(PowerStateError, match="nvml backend cannot enter suspended"):
        backend.check(PowerState.SUSPENDED, 60.0, "t")


def test_the_inventory_checks_the_mac_address_and_the_backend_name():
    from cluster.inventory import fleet_from_dict

    ok = fleet_from_dict(
        {"devices": [{"name": "o", "kind": "orin-nx", "power_states": "jetson", "mac": "48:b0:2d:12:34:56"}]}
    )
    assert ok.devices[0].mac == "48:b0:2d:12:34:56"
    with pytest.raises(ConfigError, match="mac"):
        fleet_from_dict({"devices": [{"name": "o", "kind": "orin-nx", "mac": "48:b0:2d"}]})
    with pytest.raises(ConfigError, match="power_states"):
        fleet_from_dict({"devices": [{"name": "o", "kind": "orin-nx", "power_states": "hibernate"}]})


def test_jetson_deep_idle_half_way_in_puts_everything_back(tmp_path):
    """A GPU clock write refused after the rail gate was set: the rail gate goes back and the device stays awake."""
    gpu = fake_jetson_tree(tmp_path)

    class RefusingDvfs(FakeDvfsBase):
        def set_frequency(self, f):
            raise PowerStateError("permission denied writing min_freq")

    backend = JetsonPowerStates(root=tmp_path, dvfs=RefusingDvfs(), rtcwake=False, railgate_timeout_s=0.01)
    rt = _runtime(backend)
    with pytest.raises(PowerStateError, match="min_freq"):
        asyncio.run(rt.set_power_state("deep_idle"))
    assert (gpu / "railgate_enable").read_text().strip() == "0" and rt.status().power_state == "idle"
