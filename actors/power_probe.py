"""Measure a real Jetson's power states: board power in each, and each transition's latency and energy.

`probe_power_states` drives the device's own `JetsonPowerStates` backend and samples its own power meter (jtop on
a Jetson); it writes the figures as `PowerStateSpec` fields, with every measured figure's source "measured by
jetfleet power-states probe on HOST, DATE", so the result can replace the catalogue's assumptions (it is also the
format of an inventory's `options.power_states`). What the board cannot measure of itself stays marked assumed:
its own meter is off in suspend-to-RAM (SC7), so the suspended state's board power needs an external meter.

Transition energies are coarse: the mean of the samples taken around a transition, above the state's own power,
times its duration; a meter sampling every 50 ms cannot resolve a shorter transition.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.power_states import JetsonPowerStates
from jetfleet.errors import DeviceError
from jetfleet.power_states import PowerState

TEGRA_MARKERS = ("etc/nv_tegra_release", "proc/device-tree/compatible")


def is_jetson(root: str | Path = "/") -> bool:
    """True on an NVIDIA Jetson (L4T's release file, or a Tegra device tree)."""
    root = Path(root)
    if (root / TEGRA_MARKERS[0]).exists():
        return True
    compatible = root / TEGRA_MARKERS[1]
    return compatible.exists() and b"nvidia,tegra" in compatible.read_bytes()


def require_jetson(root: str | Path = "/") -> None:
    """DeviceError unless this is a Jetson: the probe measures real power states, nothing to emulate."""
    if not is_jetson(root):
        raise DeviceError(
            f"jetfleet power-states probe runs on a Jetson only: found neither /{TEGRA_MARKERS[0]} nor a Tegra "
            f"/{TEGRA_MARKERS[1]} under {root} (it measures the board's own power states; emulated devices "
            "take theirs from the catalogue)"
        )


class _Sampler:
    """Power samples from `power_w` every `interval_s` for a while; their mean."""

    def __init__(self, power_w: Callable[[], float], interval_s: float, sleep: Callable[[float], Any]) -> None:
        self.power_w, self.interval_s, self.sleep = power_w, interval_s, sleep

    async def mean_w(self, dwell_s: float) -> float:
        samples = []
        for _ in range(max(1, int(round(dwell_s / self.interval_s)))):
            samples.append(float(self.power_w()))
            await self.sleep(self.interval_s)
        return statistics.fmean(samples)


async def probe_power_states(
    backend: JetsonPowerStates,
    power_w: Callable[[], float],
    *,
    host: str,
    date: str,
    dwell_s: float = 5.0,
    interval_s: float = 0.05,
    suspend_s: float | None = None,
    rtcwake: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = asyncio.sleep,
) -> dict[str, Any]:
    """Idle power, then deep idle (entry until `is_railgated`, its power, wake), then with `suspend_s` one
    self-timed suspend through `rtcwake(seconds)` (which blocks until resume); see the module docstring."""
    source = f"measured by jetfleet power-states probe on {host}, {date}"
    sampler = _Sampler(power_w, interval_s, sleep)
    idle_w = await sampler.mean_w(dwell_s)
    states: dict[str, Any] = {}
    if PowerState.DEEP_IDLE in backend.offered():
        states[PowerState.DEEP_IDLE.value] = await _probe_deep_idle(backend, sampler, power_w, dwell_s, clock, source)
    if suspend_s is not None:
        if rtcwake is None:
            raise DeviceError("probing suspend needs rtcwake (util-linux) and root")
        states[PowerState.SUSPENDED.value] = _probe_suspend(rtcwake, suspend_s, clock, host, source)
    return {
        "host": host,
        "date": date,
        "idle_power_w": round(idle_w, 4),
        "sources": {"idle_power_w": source},
        "power_states": states,
    }


async def _probe_deep_idle(
    backend: JetsonPowerStates,
    sampler: _Sampler,
    power_w: Callable[[], float],
    dwell_s: float,
    clock: Callable[[], float],
    source: str,
) -> dict[str, Any]:
    before_w = float(power_w())
    t0 = clock()
    await backend.enter(PowerState.DEEP_IDLE, None)
    entry_s = clock() - t0
    if backend.railgated() is False:
        raise DeviceError(
            f"the GPU did not rail-gate within {backend.railgate_timeout_s} s of railgate_enable=1 "
            f"({backend.gpu}): is a process keeping it busy?"
        )
    state_w = await sampler.mean_w(dwell_s)
    t1 = clock()
    await backend.wake()
    exit_s = clock() - t1
    after_w = float(power_w())
    return {
        "board_power_w": round(state_w, 4),
        "entry_s": round(entry_s, 4),
        "exit_s": round(exit_s, 4),
        "entry_energy_j": round(_above(before_w, state_w, entry_s), 4),
        "exit_energy_j": round(_above(after_w, state_w, exit_s), 4),
        "sources": dict.fromkeys(("board_power_w", "entry_s", "exit_s", "entry_energy_j", "exit_energy_j"), source),
    }


def _above(edge_w: float, state_w: float, duration_s: float) -> float:
    """Energy of a transition above the state's own power: the trapezoid between the edge and the state."""
    return max(0.0, ((edge_w + state_w) / 2 - state_w) * duration_s)


def _probe_suspend(
    rtcwake: Callable[[float], None], suspend_s: float, clock: Callable[[], float], host: str, source: str
) -> dict[str, Any]:
    t0 = clock()
    rtcwake(suspend_s)  # returns once the board has resumed
    round_trip_s = clock() - t0 - suspend_s
    if not math.isfinite(round_trip_s) or round_trip_s < 0:
        raise DeviceError(f"rtcwake returned after {clock() - t0:.3f} s, before the {suspend_s} s it was asked for")
    unmeasured = f"not measurable on {host}: the board's own meter is off in SC7; measure with an external meter"
    return {
        # entry + exit together: rtcwake cannot split them; counted as the wake latency (the one the policy waits)
        "board_power_w": math.nan,
        "entry_s": 0.0,
        "exit_s": round(round_trip_s, 4),
        "entry_energy_j": math.nan,
        "exit_energy_j": math.nan,
        "sources": {
            "exit_s": f"{source} (suspend and resume together)",
            "board_power_w": unmeasured,
            "entry_energy_j": unmeasured,
            "exit_energy_j": unmeasured,
        },
        "assumed": ["board_power_w", "entry_energy_j", "exit_energy_j"],
    }
