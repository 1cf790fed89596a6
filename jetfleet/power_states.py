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

_DEPTH_OF = {"active": 0, "idle": 1, "deep_idle": 2, "suspended": 3, "off": 4}


class PowerState(str, enum.Enum):
    """Ordered from most to least awake. Only AWAKE_STATES accept batches."""

    ACTIVE = "active"  # computing a batch
    IDLE = "idle"  # awake, GPU clocked, waiting
    DEEP_IDLE = "deep_idle"  # GPU rail-gated, CPU/EMC clocks at their floor; OS and Ray up
    SUSPENDED = "suspended"  # suspend-to-RAM (Jetson SC7); Ray cannot reach it until it wakes
    OFF = "off"  # powered off; needs an external wake (Wake-on-LAN, power switch)

    awake: bool  # accepts batches (ACTIVE, IDLE)
    depth: int  # 0 for ACTIVE, growing with how deep the state is

    def __init__(self, value: str) -> None:
        # Plain attributes, not properties: schedulers read `awake` for every device at every decision.
        self.awake = value in ("active", "idle")
        self.depth = _DEPTH_OF[value]


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


# The sleep states a fleet may use unless configured otherwise: OFF needs an external wake (Wake-on-LAN, a
# power switch) that not every fleet has, so it is opt-in.
DEFAULT_SLEEP_STATES = (PowerState.DEEP_IDLE, PowerState.SUSPENDED)


def awake_at_s(spec: PowerStateSpec, asleep_since_s: float, wake_s: float) -> float:
    """When a device that began entering `spec`'s state at `asleep_since_s` and is told to wake at `wake_s` can
    start a batch: an entry in progress completes first, then the exit (wake) latency."""
    return max(wake_s, asleep_since_s + spec.entry_s) + spec.exit_s


class SleepMeter:
    """The energy one device spends asleep and in transitions: the one account both drivers keep.

    `enter(t, spec)` at the start of a sleep pays the entry energy and draws the state's board power from `t`;
    `leave(t)` (the wake command) draws it until the wake completes (`awake_at_s`) and pays the exit energy.
    `accrue(t)` brings the state energy up to `t` while asleep. The simulator's emulated devices and the live
    accounting (`actors.accounting.EnergyLedger`) both integrate sleep through this class, so the two count a
    sleep identically; awake time stays with their own idle/busy integration.
    """

    __slots__ = ("spec", "since_s", "mark_s", "state_energy_j", "transition_energy_j", "asleep_s", "sleeps")

    def __init__(self) -> None:
        self.spec: PowerStateSpec | None = None  # the state being slept in (None: awake)
        self.since_s = 0.0  # when the current sleep began (entry started)
        self.mark_s = 0.0  # state energy is counted up to here
        self.state_energy_j = 0.0  # board power of sleep states over time asleep (entry and exit included)
        self.transition_energy_j = 0.0  # entry and exit energy above the state's own draw
        self.asleep_s = 0.0  # time from entry start to wake completion, summed
        self.sleeps = 0

    @property
    def asleep(self) -> bool:
        return self.spec is not None

    @property
    def energy_j(self) -> float:
        return self.state_energy_j + self.transition_energy_j

    def enter(self, t_s: float, spec: PowerStateSpec) -> None:
        if self.spec is not None:
            raise ValueError(f"SleepMeter.enter at {t_s}: already asleep in {self.spec.state.value}")
        self.spec, self.since_s, self.mark_s = spec, t_s, t_s
        self.transition_energy_j += spec.entry_energy_j
        self.sleeps += 1

    def accrue(self, t_s: float) -> None:
        if self.spec is not None and t_s > self.mark_s:
            self.state_energy_j += self.spec.board_power_w * (t_s - self.mark_s)
            self.asleep_s += t_s - self.mark_s
            self.mark_s = t_s

    def leave(self, t_s: float) -> float:
        """Wake at `t_s`; return when the device is awake (energy counted up to then)."""
        spec = self.spec
        if spec is None:
            raise ValueError(f"SleepMeter.leave at {t_s}: not asleep")
        done_s = awake_at_s(spec, self.since_s, t_s)
        self.accrue(done_s)
        self.transition_energy_j += spec.exit_energy_j
        self.spec = None
        return done_s
