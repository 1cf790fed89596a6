"""Dataclasses that cross every boundary: requests, device states, decisions, batch results, outcomes.

The simulator (virtual time) and the live Ray scheduler actor (real time) exchange exactly these
with the policies in `policies/`; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from jetfleet.errors import InvalidRequestError
from jetfleet.freqs import listed_index
from jetfleet.links import LOCAL, Link
from jetfleet.power_states import PowerState, PowerStateSpec

DEFAULT_MODEL = "inceptionv3"


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request: N frames of one model, due `slo_s` seconds after it arrived."""

    request_id: int
    arrival_s: float  # when it arrived (virtual or monotonic real time)
    n_frames: int  # frames in this request (>= 1)
    slo_s: float  # latency budget from arrival, network upload included
    model: str = DEFAULT_MODEL  # model family; the policy may pick a variant of it
    priority: int = 0  # higher is more important
    stream: str = "default"  # the stream (camera, client, task) it belongs to
    upload_s: float = 0.0  # network time already spent before it reached the queue
    # Absolute time by which the request must complete to be within SLO: arrival_s + slo_s, computed once (a field,
    # not a property: planners read it hundreds of times per decision, and a property call costs 3x an attribute).
    deadline_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_frames < 1:
            raise InvalidRequestError(f"request {self.request_id}: n_frames must be >= 1, got {self.n_frames}")
        if not self.slo_s > 0 or math.isinf(self.slo_s):
            raise InvalidRequestError(f"request {self.request_id}: slo_s must be > 0 and finite, got {self.slo_s}")
        object.__setattr__(self, "deadline_s", self.arrival_s + self.slo_s)


class DropReason(str, enum.Enum):
    """Why a request got no result. Every drop carries one."""

    QUEUE_FULL = "queue_full"  # its stream's bounded queue overflowed (drop_oldest / drop_newest)
    EVICTED_LOW_PRIORITY = "evicted_low_priority"  # drop_low_priority made room for higher priority
    DEADLINE_UNREACHABLE = "deadline_unreachable"  # no device can finish it in time, by the cost model
    SHED = "shed"  # adaptive load shedding protected a higher-priority stream
    DEADLINE_EXPIRED = "deadline_expired"  # already past its deadline while queued
    NO_DEVICE = "no_device"  # no healthy device can run its model
    DEVICE_FAILED = "device_failed"  # its device failed and it could not be retried
    REJECTED = "rejected"  # refused at admission (HTTP 429)
    SHUTDOWN = "shutdown"  # the service stopped before it ran


@dataclass(slots=True)
class DeviceState:
    """What a policy sees of one device at decision time. The driver keeps it current."""

    name: str  # unique name from the fleet inventory
    kind: str  # catalogue key, e.g. "agx-xavier"
    freq_hz: float  # GPU frequency now (or the one a pending change will set)
    busy_until_s: float = 0.0  # when its last dispatched batch is expected to finish (<= now: idle)
    in_flight: int = 0  # batches dispatched and not yet completed
    last_busy_s: float = 0.0  # when it last finished work (for idle down-clocking)
    healthy: bool = True  # False once the driver saw it fail; policies must not dispatch to it
    models: tuple[str, ...] = ()  # model variants resident on it (empty: any)
    # The device's own facts, as it reported them (its DVFS list, not the catalogue's). The driver fills
    # them; `policies.context.with_device_facts` fills what a driver left empty from the catalogue.
    freqs_hz: tuple[float, ...] = ()  # available GPU frequencies, ascending: the only ones a dispatch may use
    freq_change_delay_s: float = math.nan  # time a clock change takes to settle (nan: not known yet)
    max_batch: int = 0  # largest batch worth running
    power_state: PowerState = PowerState.IDLE  # the core's view; ACTIVE/IDLE are awake (see jetfleet.power_states)
    awake_at_s: float = 0.0  # a waking device can start its first batch at this time (<= now: awake)
    # Its sleep states as it reported them (None: not reported; the catalogue's are filled in). Empty: cannot sleep.
    power_states: tuple[PowerStateSpec, ...] | None = None
    # Time a batch spends outside the device's own latency: the way there and the answer's way back (the live
    # driver measures it per batch; 0 in the simulator). Counted as a delay before the batch starts.
    round_trip_s: float = 0.0
    # The device's data path from the controller (`jetfleet.links`): a batch's input crosses it before the batch
    # runs. The drivers set it from the fleet inventory; LOCAL (nothing to cross) when unknown.
    link: Link = LOCAL

    def power_spec(self, state: PowerState) -> PowerStateSpec | None:
        """The device's own figures for sleep `state`, or None when it cannot enter it."""
        return next((s for s in self.power_states or () if s.state is state), None)

    def free_s(self, now_s: float) -> float:
        """The earliest time a batch could start on it: after its work in flight, a wake under way, or (asleep)
        a wake ordered now, and after its round trip. Admission and shedding predict with this, so a sleeping
        fleet is not counted as free."""
        start_s = max(now_s, self.busy_until_s, self.awake_at_s) + self.round_trip_s
        if not self.power_state.awake:
            spec = self.power_spec(self.power_state)
            start_s += spec.exit_s if spec is not None else 0.0
        return start_s

    @property
    def min_freq_hz(self) -> float:
        return self.freqs_hz[0]

    @property
    def max_freq_hz(self) -> float:
        return self.freqs_hz[-1]

    def frequency(self, freq_hz: float) -> float | None:
        """The listed frequency within 1 Hz of `freq_hz`, or None when the device does not offer it."""
        i = listed_index(self.freqs_hz, freq_hz)
        return self.freqs_hz[i] if i >= 0 else None

    def idle(self, now_s: float) -> bool:
        """True when nothing is running or queued on the device."""
        return self.in_flight == 0 and self.busy_until_s <= now_s


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Run these requests as one batch on `device` at `freq_hz` with model `model` (variant)."""

    device: str
    request_ids: tuple[int, ...]
    freq_hz: float
    model: str  # the model (variant) to run; a family name when the family has one variant
    predicted_latency_s: float = math.nan  # the policy's prediction, for telemetry and checks
    predicted_energy_j: float = math.nan
    reason: str = ""  # why this choice, for telemetry


@dataclass(frozen=True, slots=True)
class Drop:
    """Answer these requests with no result, for `reason`."""

    request_ids: tuple[int, ...]
    reason: DropReason
    detail: str = ""
    protected_stream: str = ""  # the stream this drop protected (shedding, eviction), for telemetry


@dataclass(frozen=True, slots=True)
class SetFrequency:
    """Change an idle device's GPU frequency (e.g. down-clock after idling)."""

    device: str
    freq_hz: float
    reason: str = ""
    settled_s: float = math.nan  # filled by the core when it applies the change: when the new clock holds


@dataclass(frozen=True, slots=True)
class SetPowerState:
    """Move a device to a power state (sleep, or wake it back to IDLE). The core checks it is safe."""

    device: str
    state: PowerState
    reason: str = ""
    settled_s: float = math.nan  # filled by the core when it applies the change: when the state holds


@dataclass(slots=True)
class Decisions:
    """What one call of `Policy.decide` returns. Empty lists mean: nothing to do now."""

    dispatches: list[Dispatch] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    frequency_changes: list[SetFrequency] = field(default_factory=list)
    power_changes: list[SetPowerState] = field(default_factory=list)
    wake_at_s: float | None = None  # call decide again no later than this, even with no event
    memo: object = None  # the policy's own note, handed back in `Applied.memo` once the core applied this step

    def __bool__(self) -> bool:
        return bool(self.dispatches or self.drops or self.frequency_changes or self.power_changes)


@dataclass(frozen=True, slots=True)
class Admission:
    """What `Policy.admit` answers for an arriving request, before it is queued.

    Accepted: it joins the queue and `drops` (other queued requests, e.g. the oldest of a full bounded
    queue) are answered. Rejected: it is answered at once with `reason` and `retry_after_s` (the live
    service's HTTP 429 + Retry-After; the simulator records the same outcome).
    """

    accepted: bool = True
    drops: tuple[Drop, ...] = ()  # queued requests to drop to make room (accepted only)
    reason: DropReason | None = None  # why it was rejected (queue_full, deadline_unreachable, shed)
    retry_after_s: float = 0.0  # when to try again, seconds from now (rejected only)
    detail: str = ""
    protected_stream: str = ""  # the stream a `shed` rejection protects

    @classmethod
    def accept(cls, drops: tuple[Drop, ...] = ()) -> Admission:
        return cls(True, drops) if drops else _ACCEPTED  # immutable: one plain acceptance serves every arrival

    @classmethod
    def reject(
        cls, reason: DropReason, retry_after_s: float, detail: str = "", protected_stream: str = ""
    ) -> Admission:
        return cls(False, (), reason, retry_after_s, detail, protected_stream)


_ACCEPTED = Admission()


@dataclass(frozen=True, slots=True)
class Applied:
    """What the core really applied, handed to `Policy.absorb`: a policy learns of its effects only here.

    After an arrival: `admitted` (the request, when accepted) and the `drops` its admission caused, or `refused`
    (the request, when admission rejected it: the load offered, which a forecast must see). After a
    step: the dispatches, frequency changes and drops the core applied (a wrapper such as overload control
    may have kept only some of its inner policy's proposals) and the step's `memo`.
    """

    now_s: float
    admitted: tuple[Request, ...] = ()
    dispatches: tuple[Dispatch, ...] = ()
    frequency_changes: tuple[SetFrequency, ...] = ()
    drops: tuple[Drop, ...] = ()
    memo: object = None
    power_changes: tuple[SetPowerState, ...] = ()
    refused: tuple[Request, ...] = ()  # an arrival admission refused: still demand, for a policy's forecast


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a device did with one dispatched batch, as measured (live) or modelled (simulator)."""

    device: str
    request_ids: tuple[int, ...]
    n_frames: int
    model: str
    freq_hz: float
    started_s: float
    finished_s: float
    latency_s: float  # inference time of the batch (excludes queueing on the device)
    energy_j: float  # board energy during the batch
    ok: bool = True
    error: str = ""  # why it failed, when not ok


class OutcomeStatus(str, enum.Enum):
    COMPLETED = "completed"
    DROPPED = "dropped"  # queued, then given up (reason says why)
    REJECTED = "rejected"  # refused at admission, never queued (HTTP 429; `retry_after_s` says when to retry)
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The one answer a request gets."""

    request_id: int
    status: OutcomeStatus
    time_s: float  # when it was answered
    device: str = ""
    model: str = ""
    freq_hz: float = math.nan
    reason: str = ""  # drop reason or failure message
    energy_j: float = 0.0  # its share of the batch energy (by frames)
    retry_after_s: float = 0.0  # rejected: seconds (scheduler time) after which a retry may be admitted
    detail: str = ""  # rejected: the admission's explanation


@dataclass(frozen=True, slots=True)
class Batch:
    """A dispatched batch as the driver sends it to a device: the decision plus its requests."""

    batch_id: int
    dispatch: Dispatch
    requests: tuple[Request, ...]
    dispatched_s: float

    @property
    def n_frames(self) -> int:
        return sum(r.n_frames for r in self.requests)
