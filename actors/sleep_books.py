"""Time asleep per device, as the live scheduler sees it (scheduler seconds, the simulator's clock).

The books follow the power-state changes the scheduler applies and what each device reports of itself (a device
that woke by its own timer, or rejoined after a long sleep, says so in its status). `/v1/stats` and the demo show
`asleep_s` from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from jetfleet.power_states import PowerState


class SleepBooks:
    """Per device: its power state as last known, and the scheduler seconds it spent in a sleep state."""

    def __init__(self, devices: Iterable[str], now_s: float, states: dict[str, PowerState] | None = None) -> None:
        states = states or {}
        self.states = {name: states.get(name, PowerState.IDLE) for name in devices}
        self._total_s = dict.fromkeys(self.states, 0.0)
        self._since_s = {name: now_s for name, state in self.states.items() if not state.awake}

    def mark(self, now_s: float, device: str, state: PowerState) -> None:
        """`device` is in `state` from `now_s` on."""
        was = self.states[device]
        self.states[device] = state
        if was.awake and not state.awake:
            self._since_s[device] = now_s
        elif not was.awake and state.awake:
            self._total_s[device] += max(0.0, now_s - self._since_s.pop(device, now_s))

    def asleep_s(self, now_s: float) -> dict[str, float]:
        """Seconds asleep so far per device (a sleep in progress counts up to `now_s`)."""
        return {
            name: total + (max(0.0, now_s - self._since_s[name]) if name in self._since_s else 0.0)
            for name, total in self._total_s.items()
        }
