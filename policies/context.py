"""`StepContext`: everything a policy may read at one decision, built by `SchedulerCore`, read-only.

    now_s     the time of the decision (virtual in the simulator, scheduler time live)
    queue     the queued requests (`QueueView`: arrival order, deadline order, counts)
    devices   one `DeviceState` per device, carrying the device's *own* facts (its frequency list, clock
              change delay, max batch) beside its state (clock, busy-until, batches in flight, health)
    cost      the core's `CostView`: cached cost grids, idle power, the learned latency correction
    asleep    the names of the devices not awake (asleep or entering sleep), when the builder knows them; None:
              a policy derives them from `devices` (`DeviceState.power_state`)
    busy      the names of the devices with batches in flight, when the builder knows them; None: a policy reads
              `DeviceState.in_flight`
    state_version  a count that changes whenever any device's state changes (a dispatch, a batch done, a clock or
              power change, a failure, a round trip re-estimated), when the builder keeps it; None: not known
    power_control  False when power-state changes this decision proposes will not be applied (a wrapper that plans
              on every device, as overload control does, drops them): the policy then plans as if power states were
              off, on every awake device, instead of holding work back from devices it expects to sleep

A policy never changes what it is given: the core owns the queue and the device states. The core hands the
same `devices` sequence object for as long as no device's facts (frequency list, change delay, max batch,
models) or health changed, and a new one when any did: a policy may keep what it derives from those facts
(which devices are interchangeable, say) keyed on the sequence's identity, holding a reference to it so the
identity is never reused. Device *state* (clock, busy-until, in flight) changes in place between calls. The core
hands the same `asleep` set object for as long as no device's power state changed, and a new one when any did: a
policy may key what it derives from power states on its identity (and on the device sequence's) the same way; and
the same `busy` set object for as long as no device went from idle to busy or back (a batch dispatched to an idle
device, a device's last batch done), so a policy can keep the idle part of a list until it changes: most decisions
change none. A wrapper policy (overload control) hands its inner policy a narrower context (`replace`) — fewer
requests, devices as they would be after its own choices — and the inner cannot tell the difference; replacing
`devices` without saying `asleep` and `busy` resets them to None, so an index never describes devices it was not
built for. The same holds for `state_version`: a policy may keep what it derives from device states while the count
stands (the core changes device states only through its own methods, drivers included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import Protocol

from costmodel.view import CostView, RawGrid
from jetfleet.catalogue import get_kind
from jetfleet.types import DeviceState, Request

__all__ = ["QueueView", "StepContext", "device_grid", "with_device_facts"]


class QueueView(Protocol):
    """The read-only queue a policy sees (implemented by `policies.queue.RequestQueue`)."""

    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __iter__(self) -> Iterator[Request]: ...
    def __contains__(self, request_id: object) -> bool: ...
    def get(self, request_id: int) -> Request: ...
    def by_deadline(self, not_before_s: float | None = None) -> Iterator[Request]: ...
    def count_due_before(self, t_s: float) -> int: ...
    def earliest(self) -> Request | None: ...
    def stream_counts(self) -> dict[str, int]: ...

    @property
    def frames(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StepContext:
    """What one `Policy.admit` or `Policy.decide` call sees (see the module docstring)."""

    now_s: float
    queue: QueueView
    devices: Sequence[DeviceState]
    cost: CostView
    asleep: frozenset[str] | None = None
    power_control: bool = True
    busy: frozenset[str] | None = None
    state_version: int | None = None

    def replace(self, **changes: object) -> StepContext:
        """A copy with some fields replaced (a wrapper's narrower view for its inner policy); new `devices` without
        a new `asleep`, `busy` or `state_version` leave that index unknown (None)."""
        if "devices" in changes:
            changes.setdefault("asleep", None)
            changes.setdefault("busy", None)
            changes.setdefault("state_version", None)
        return _replace(self, **changes)  # type: ignore[arg-type]


def with_device_facts(device: DeviceState) -> DeviceState:
    """Fill the facts a driver left empty (frequency list, change delay, max batch, sleep states) from the catalogue;
    returns the same object. Drivers that know the device's own list (the live scheduler asks the device) set it."""
    if (
        not device.freqs_hz
        or device.max_batch <= 0
        or not device.freq_change_delay_s >= 0
        or device.power_states is None
    ):
        kind = get_kind(device.kind)
        if not device.freqs_hz:
            device.freqs_hz = tuple(float(f) for f in kind.freqs_hz)
        if device.max_batch <= 0:
            device.max_batch = kind.max_batch
        if not device.freq_change_delay_s >= 0:
            device.freq_change_delay_s = kind.freq_change_delay_s
        if device.power_states is None:
            device.power_states = kind.power_states
    return device


def device_grid(
    cost: CostView, device: DeviceState, model: str, min_frames: int = 1, *, corrected: bool = False
) -> RawGrid:
    """The cost grid of `model` on `device`: its kind at its own clocks, batches up to its max batch at least, each
    batch's input shipped over the device's link first."""
    return cost.grid(
        device.kind, model, device.freqs_hz, max(device.max_batch, min_frames), corrected=corrected, link=device.link
    )
