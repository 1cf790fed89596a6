"""Device power states: the vocabulary the catalogue, the policies, the core and the device backends share.

A device is in exactly one `PowerState`. ACTIVE and IDLE are the states jetfleet always had (computing, or
awake and waiting at some GPU frequency); the deeper states trade a wake latency and transition energy for a
lower board power. `PowerStateSpec` holds one state's figures for one device kind; every figure names its
source, and figures nobody has published are explicit named assumptions with a plausible range.

Pure data: no clock, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class PowerState(str, enum.Enum):
    """Ordered from most to least awake. Only AWAKE_STATES accept batches."""

    ACTIVE = "active"  # computing a batch
    IDLE = "idle"  # awake, GPU clocked, waiting
    DEEP_IDLE = "deep_idle"  # GPU rail-gated, CPU/EMC clocks at their floor; OS and Ray up
    SUSPENDED = "suspended"  # suspend-to-RAM (Jetson SC7); Ray cannot reach it until it wakes
    OFF = "off"  # powered off; needs an external wake (Wake-on-LAN, power switch)

    @property
    def awake(self) -> bool:
        return self in AWAKE_STATES

    @property
    def depth(self) -> int:
        """0 for ACTIVE, growing with how deep the state is."""
        return _ORDER.index(self)


_ORDER = (PowerState.ACTIVE, PowerState.IDLE, PowerState.DEEP_IDLE, PowerState.SUSPENDED, PowerState.OFF)
AWAKE_STATES = frozenset({PowerState.ACTIVE, PowerState.IDLE})
SLEEP_STATES = (PowerState.DEEP_IDLE, PowerState.SUSPENDED, PowerState.OFF)


@dataclass(frozen=True)
class PowerStateSpec:
    """One sleep state of one device kind: what it draws, and what entering and leaving it cost.

    `board_power_w` is the whole board's draw while in the state. `entry_s`/`exit_s` are the transition
    latencies (exit = wake: from the wake command until a batch can start); `entry_energy_j`/`exit_energy_j`
    are the energy of each transition above what the state itself would draw over that time.
    `assumed` names the figures that are assumptions (not measured or published), each with its range in
    `ranges` so results can show their sensitivity to it.
    """

    state: PowerState
    board_power_w: float
    entry_s: float
    exit_s: float
    entry_energy_j: float
    exit_energy_j: float
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    assumed: tuple[str, ...] = ()
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict, compare=False, hash=False)

    def break_even_s(self, idle_power_w: float) -> float:
        """Shortest idle gap for which sleeping in this state saves energy over staying idle.

        Sleeping for a gap of g seconds costs entry + exit energy plus `board_power_w` over g; staying idle
        costs `idle_power_w` over g. Gaps shorter than the transitions themselves cannot sleep at all.
        """
        saving_w = idle_power_w - self.board_power_w
        transitions_s = self.entry_s + self.exit_s
        if saving_w <= 0:
            return float("inf")
        paid = self.entry_energy_j + self.exit_energy_j
        return max(transitions_s, paid / saving_w)
