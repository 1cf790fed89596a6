"""One device's sleep: which backend, which figures, the long-sleep protocol, and the time spent asleep.

`SleepControl` is what `actors.device.DeviceRuntime.set_power_state` delegates to (under the runtime's lock, so
never while a batch runs). A change to a sleep state is checked by the backend (offered, and a way to wake it);
a suspend or power-off longer than half Ray's health-check window (cluster.health) is a *long sleep*: the
device's Ray node is drained first (`drain`, given by the Ray deployment), and on an emulated node of its own
the node's Ray processes are stopped and restarted for real (cluster.node_sleep). Times asked for and reported
are device seconds (wall seconds × the emulated speed factor).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from actors.dvfs import DvfsController
from actors.power_states import (
    RTC,
    EmulatedPowerStates,
    JetsonPowerStates,
    NvmlPowerStates,
    PowerStateBackend,
)
from cluster.health import is_long_sleep
from cluster.inventory import DeviceSpec
from cluster.node_sleep import EmulatedNode, suspend_emulated_node
from jetfleet.errors import ConfigError, PowerStateError
from jetfleet.power_states import PowerState, PowerStateSpec

LONG_SLEEP_STATES = (PowerState.SUSPENDED, PowerState.OFF)
ASLEEP_REFUSAL = "refused while asleep"  # in the error of a batch an asleep device refused
DRAIN_DEADLINE_S = 5.0  # how long Ray is told the drained node has before it goes


@dataclass(frozen=True, slots=True)
class PowerStateChange:
    """What `DeviceRuntime.set_power_state` did."""

    device: str
    state: str  # the PowerState value now
    previous: str
    wake: tuple[str, ...] = ()  # how it comes back: "self", "rtc", "wake-on-lan"
    long_sleep: bool = False  # its node was drained and leaves Ray until it wakes
    transition_s: float = 0.0  # wall seconds the transition took


def specs_from_table(raw: Mapping[str, Any], where: str) -> dict[PowerState, PowerStateSpec]:
    """`{state: {PowerStateSpec fields}}` (the format `jetfleet power-states probe` writes) as specs."""
    names = {f.name for f in fields(PowerStateSpec)} - {"state"}
    out = {}
    for key, entry in raw.items():
        try:
            state = PowerState(key)
        except ValueError:
            raise ConfigError(f"{where}: unknown power state {key!r}") from None
        if not isinstance(entry, Mapping) or set(entry) - names:
            raise ConfigError(f"{where}: {key}: expected a mapping of {sorted(names)}, got {entry!r}")
        values = dict(entry)
        for k in ("assumed",):
            values[k] = tuple(values.get(k, ()))
        values["ranges"] = {k: tuple(v) for k, v in dict(values.get("ranges", {})).items()}
        try:
            out[state] = PowerStateSpec(state=state, **values)
        except TypeError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None
    return out


def power_state_table(spec: DeviceSpec) -> dict[PowerState, PowerStateSpec]:
    """The figures an emulated device sleeps by: the inventory's `options.power_states` (e.g. a probe's output)
    or else the catalogue's for its kind; none means it offers no sleep state."""
    raw = spec.options.get("power_states")
    if raw is not None:
        return specs_from_table(raw, f"device {spec.name!r} options.power_states")
    return {s.state: s for s in spec.device_kind.power_states}


def build_power_states(spec: DeviceSpec, dvfs: DvfsController, speed_factor: float) -> PowerStateBackend | None:
    """The backend named by `spec.power_states` (None for "none": the device never sleeps)."""
    opts = spec.options
    if spec.power_states == "none":
        return None
    if spec.power_states == "emulated":
        return EmulatedPowerStates(power_state_table(spec), speed_factor=speed_factor, mac=spec.mac)
    if spec.power_states == "jetson":
        return JetsonPowerStates(
            root=opts.get("sysfs_root", "/"), gpu_node=opts.get("gpu_node"), dvfs=dvfs, mac=spec.mac
        )
    if spec.power_states == "nvml":
        return NvmlPowerStates(dvfs)
    raise ConfigError(f"device {spec.name!r}: unknown power_states {spec.power_states!r}")


class SleepControl:
    """The sleep side of one device runtime (see the module docstring)."""

    def __init__(
        self,
        name: str,
        backend: PowerStateBackend | None,
        *,
        speed_factor: float = 1.0,
        drain: Callable[[float, str], None] | None = None,
        node: EmulatedNode | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.backend = name, backend
        self.speed_factor = float(speed_factor)
        self.drain, self.node, self._clock = drain, node, clock
        if node is not None and isinstance(backend, EmulatedPowerStates):
            backend.reachable_asleep = False  # its node really stops: only its own timer brings it back
        self._asleep_total_wall_s = 0.0
        self._since_wall: float | None = None
        self._self_wake_wall: float | None = None  # the emulated RTC alarm

    @property
    def state(self) -> PowerState:
        self._alarm()
        return PowerState.IDLE if self.backend is None else self.backend.state

    @property
    def awake(self) -> bool:
        return self.state.awake

    def board_power_w(self) -> float | None:
        self._alarm()
        return None if self.backend is None or self.backend.state.awake else self.backend.board_power_w()

    def asleep_s(self) -> float:
        """Device seconds spent asleep so far (the current sleep included)."""
        self._alarm()
        now_part = 0.0 if self._since_wall is None else self._clock() - self._since_wall
        return (self._asleep_total_wall_s + now_part) * self.speed_factor

    def _alarm(self) -> None:
        """An emulated device wakes itself when its RTC alarm fires (its `exit_s` then counts awake)."""
        if self._self_wake_wall is not None and self._clock() >= self._self_wake_wall and self.backend is not None:
            self._end_sleep(self._self_wake_wall)
            self.backend.state = PowerState.IDLE

    def _end_sleep(self, at_wall: float) -> None:
        if self._since_wall is not None:
            self._asleep_total_wall_s += max(0.0, at_wall - self._since_wall)
        self._since_wall = self._self_wake_wall = None

    async def change(self, state: PowerState, sleep_s: float | None) -> PowerStateChange:
        """Enter `state` (a sleep state, from awake) or wake (an awake state); see the module docstring."""
        where = f"device {self.name!r}"
        previous = self.state
        if state.awake == previous.awake and (state.awake or state is previous):
            return PowerStateChange(self.name, previous.value, previous.value, ("self",))
        if self.backend is None:
            raise PowerStateError(f"{where}: power_states is 'none': it never sleeps")
        t0 = time.perf_counter()
        if state.awake:
            self._end_sleep(self._clock())
            await self.backend.wake()
            return PowerStateChange(self.name, self.state.value, previous.value, ("self",), False, _since(t0))
        if not previous.awake:
            raise PowerStateError(f"{where}: already asleep in {previous.value}; wake it before {state.value}")
        wall_sleep_s = None if sleep_s is None else float(sleep_s) / self.speed_factor
        ways = self.backend.check(state, sleep_s, where)
        long = state in LONG_SLEEP_STATES and is_long_sleep(wall_sleep_s)
        if long and self.node is not None and RTC not in ways:
            raise PowerStateError(f"{where}: an emulated node wakes only by its own timer; give sleep_s")
        if long and self.drain is not None:
            self.drain(DRAIN_DEADLINE_S, f"jetfleet: {self.name} enters {state.value} for {sleep_s} s")
        await self.backend.enter(state, sleep_s)
        self._since_wall = self._clock()
        if long and self.node is not None and wall_sleep_s is not None:
            suspend_emulated_node(self.node, wall_sleep_s)
        elif RTC in ways and isinstance(self.backend, EmulatedPowerStates) and wall_sleep_s is not None:
            self._self_wake_wall = self._since_wall + wall_sleep_s
        return PowerStateChange(self.name, state.value, previous.value, ways, long, _since(t0))


def refused_asleep(error: str) -> bool:
    """Did a device refuse this batch because it is asleep (rather than fail it)?"""
    return ASLEEP_REFUSAL in error


def _since(t0: float) -> float:
    return time.perf_counter() - t0
