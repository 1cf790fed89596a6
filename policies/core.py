"""`SchedulerCore`: applies a policy's decisions to the queue and device states, the same way for
the simulator (virtual time) and the live scheduler actor (real time).

Life cycle of a request: `submit` (the policy's `admit` accepts it into the queue, possibly dropping
others, or rejects it at once) -> `step` dispatches it in a `Batch` (or drops it) -> `complete` answers it
with the batch's result, or a failed batch / `fail_device` put it back in the queue for another device.
Every request gets exactly one `Outcome`; answering one twice raises, so a driver bug cannot hide.

Per call the core builds one read-only `StepContext` (now, the queue, the device states with each
device's own frequency list, and the shared `CostView`), asks the policy, checks and applies what it
returned, and tells the policy what it applied (`Policy.absorb`). Finished batches feed the cost view's
learned latency correction and the policy's `observe`.

Power states: a policy's `SetPowerState` is checked and applied before the step's dispatches (so a wake and the
first batch on the woken device can share one step): a device sleeps only with no batch in flight and only in a
state it reported; a sleeping device gets no batch and no clock change; a woken device's first batch starts no
earlier than its `awake_at_s`. Applied changes (with `settled_s`: when the state holds, i.e. the entry or the wake
has completed) go to the driver in `StepOutput.power_changes` and to the policy in `Applied.power_changes`,
exactly as frequency changes do; each is a "power" telemetry event with its reason.

The core is pure: the driver passes `now_s` and performs the batches, frequency and power-state changes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from costmodel.base import CostModel
from costmodel.view import CostView
from jetfleet.errors import JetfleetError, UnknownNameError
from jetfleet.power_states import PowerState, awake_at_s
from jetfleet.telemetry import DecisionEvent, EventSink
from jetfleet.types import (
    Admission,
    Applied,
    Batch,
    BatchResult,
    DeviceState,
    Dispatch,
    Drop,
    DropReason,
    Outcome,
    OutcomeStatus,
    Request,
    SetFrequency,
    SetPowerState,
)
from policies.base import Policy
from policies.context import StepContext, with_device_facts
from policies.queue import RequestQueue


class PolicyContractError(JetfleetError, RuntimeError):
    """A policy returned a decision that cannot be applied (unknown request, device or frequency)."""


class DeviceFactsError(JetfleetError, ValueError):
    """A device reported facts the core cannot use (an empty or unordered frequency list)."""


@dataclass(slots=True)
class StepOutput:
    """What the driver must do after one `step`: change power states, run batches, change clocks, answer drops,
    re-wake. Power changes come first: a batch may go to a device woken in the same step (it starts at the
    change's `settled_s`)."""

    batches: list[Batch] = field(default_factory=list)
    frequency_changes: list[SetFrequency] = field(default_factory=list)
    power_changes: list[SetPowerState] = field(default_factory=list)  # applied, `settled_s` filled
    outcomes: list[Outcome] = field(default_factory=list)  # drops answered in this step
    wake_at_s: float | None = None


class SchedulerCore:
    """Owns the queue, the device states and the exactly-once bookkeeping; drives one policy."""

    def __init__(
        self,
        policy: Policy,
        cost: CostModel | CostView,
        devices: Sequence[DeviceState],
        sink: EventSink | None = None,
    ) -> None:
        self.policy = policy
        self.cost_view = cost if isinstance(cost, CostView) else CostView(cost)
        self.cost = self.cost_view.model
        self.queue = RequestQueue()
        self.devices: dict[str, DeviceState] = {d.name: with_device_facts(d) for d in devices}
        self._device_list = list(self.devices.values())
        self._sink = sink
        self._open: dict[int, Request] = {}  # submitted, not yet answered
        self._in_flight: dict[int, Batch] = {}
        # Per device, its in-flight batches in dispatch order with the seconds each was expected to run (clock
        # change and latency): `busy_until_s` is re-derived from them when one completes, so that a batch that ran
        # long moves the ones queued behind it (see `_release`).
        self._chains: dict[str, deque[tuple[int, float]]] = {}
        self._next_batch_id = 0
        self._asleep_since: dict[str, float] = {}  # sleeping device -> when its entry began
        # The devices not awake, for `StepContext.asleep`: a new set whenever a power state changes (`_apply_power`).
        self._asleep = frozenset(name for name, d in self.devices.items() if not d.power_state.awake)
        self._context: StepContext | None = None  # the last one `context` built
        # The devices with batches in flight, for `StepContext.busy`: a new set whenever one joins or leaves.
        self._busy = frozenset(name for name, d in self.devices.items() if d.in_flight)
        # Counts changes to any device's state (`StepContext.state_version`): every change goes through this core.
        self._state_version = 0

    def context(self, now_s: float) -> StepContext:
        """The read-only view a policy gets at `now_s`."""
        ctx = self._context
        # The same context while nothing it holds was replaced (an arrival and the step after it, say): it is
        # immutable, and what it refers to (the queue, the device states) is read live.
        if (
            ctx is None
            or ctx.now_s != now_s
            or ctx.devices is not self._device_list
            or ctx.asleep is not self._asleep
            or ctx.busy is not self._busy
            or ctx.state_version != self._state_version
        ):
            ctx = StepContext(
                now_s,
                self.queue,
                self._device_list,
                self.cost_view,
                self._asleep,
                busy=self._busy,
                state_version=self._state_version,
            )
            self._context = ctx
        return ctx

    # -- arrivals -----------------------------------------------------------------------------
    def submit(self, now_s: float, request: Request) -> list[Outcome]:
        """Ask the policy's `admit`: queue the request (answering the drops it causes) or reject it at once.
        Returns the outcomes answered now (drops, or the request's own rejection)."""
        if request.request_id in self._open:
            raise PolicyContractError(f"request {request.request_id} submitted twice")
        if self._sink is not None:  # (the detail is built only for a sink: the simulator runs without one)
            self._emit(
                now_s,
                "arrival",
                "",
                (request,),
                detail={"arrival_s": request.arrival_s, "slo_s": request.slo_s, "priority": request.priority},
            )
        admission = self.policy.admit(self.context(now_s), request)
        self._open[request.request_id] = request
        if not admission.accepted:
            outcome = self._reject(now_s, request, admission)
            self.policy.absorb(Applied(now_s, refused=(request,)))
            return [outcome]
        self.queue.add(request)
        outcomes = self._apply_drops(now_s, admission.drops)
        self.policy.absorb(Applied(now_s, admitted=(request,), drops=admission.drops))
        return outcomes

    def _reject(self, now_s: float, request: Request, admission: Admission) -> Outcome:
        reason = (admission.reason or DropReason.REJECTED).value
        self._emit(
            now_s,
            "reject",
            reason,
            (request,),
            protected_stream=admission.protected_stream,
            detail={"retry_after_s": admission.retry_after_s, "detail": admission.detail},
        )
        return self._answer(
            request,
            OutcomeStatus.REJECTED,
            now_s,
            reason=reason,
            retry_after_s=max(0.0, admission.retry_after_s),
            detail=admission.detail,
        )

    # -- decisions ----------------------------------------------------------------------------
    def step(self, now_s: float) -> StepOutput:
        """Ask the policy what to do now, apply it, and tell the policy what was applied."""
        decisions = self.policy.decide(self.context(now_s))
        out = StepOutput(wake_at_s=decisions.wake_at_s)
        if not decisions:  # nothing to apply (two steps in three on a busy fleet): the policy hears its memo only
            self.policy.absorb(Applied(now_s, memo=decisions.memo))
            return out
        out.outcomes = self._apply_drops(now_s, decisions.drops)
        for power in decisions.power_changes:
            out.power_changes.append(self._apply_power(now_s, power))
        for change in decisions.frequency_changes:
            out.frequency_changes.append(self._apply_frequency(now_s, change))
        for dispatch in decisions.dispatches:
            out.batches.append(self._apply_dispatch(now_s, dispatch))
        self.policy.absorb(
            Applied(
                now_s,
                dispatches=tuple(b.dispatch for b in out.batches),
                frequency_changes=tuple(out.frequency_changes),
                drops=tuple(decisions.drops),
                memo=decisions.memo,
                power_changes=tuple(out.power_changes),
            )
        )
        return out

    def _apply_dispatch(self, now_s: float, d: Dispatch) -> Batch:
        device = self._device(d.device)
        if not device.healthy:
            raise PolicyContractError(f"policy {self.policy.name} dispatched to failed device {d.device}")
        if not device.power_state.awake:
            raise PolicyContractError(
                f"policy {self.policy.name} dispatched to {d.device}, which is {device.power_state.value}"
            )
        freq_hz = self._check_freq(device, d.freq_hz)
        try:
            requests = tuple(self.queue.remove(d.request_ids))
        except KeyError as e:
            raise PolicyContractError(f"policy {self.policy.name} dispatched a request not queued: {e}") from None
        if not requests:
            raise PolicyContractError(f"policy {self.policy.name} dispatched an empty batch to {d.device}")
        if freq_hz != d.freq_hz:
            d = replace(d, freq_hz=freq_hz)  # the device's own listed value
        batch = Batch(self._next_batch_id, d, requests, now_s)
        self._next_batch_id += 1
        self._in_flight[batch.batch_id] = batch
        change_s = device.freq_change_delay_s if freq_hz != device.freq_hz else 0.0
        run_s = change_s + self._expected_latency(device, d, batch.n_frames, freq_hz)
        device.busy_until_s = max(now_s, device.busy_until_s, device.awake_at_s) + device.round_trip_s + run_s
        self._chains.setdefault(device.name, deque()).append((batch.batch_id, run_s))
        device.freq_hz = freq_hz
        if not device.in_flight:
            self._busy = self._busy | {device.name}
        device.in_flight += 1
        self._state_version += 1
        if self._sink is not None:
            self._emit(
                now_s,
                "dispatch",
                d.reason,
                requests,
                device=d.device,
                freq_hz=freq_hz,
                detail={
                    "batch_id": batch.batch_id,
                    "model": d.model,
                    "predicted_latency_s": _finite(d.predicted_latency_s),
                    "predicted_energy_j": _finite(d.predicted_energy_j),
                },
            )
        return batch

    def _apply_frequency(self, now_s: float, change: SetFrequency) -> SetFrequency:
        device = self._device(change.device)
        if not device.power_state.awake:
            raise PolicyContractError(
                f"policy {self.policy.name} changed the clock of {device.name}, which is {device.power_state.value}"
            )
        freq_hz = self._check_freq(device, change.freq_hz)
        device.freq_hz = freq_hz
        self._state_version += 1
        self._emit(now_s, "frequency", change.reason, (), device=device.name, freq_hz=freq_hz)
        return SetFrequency(device.name, freq_hz, change.reason, now_s + device.freq_change_delay_s)

    def _apply_power(self, now_s: float, change: SetPowerState) -> SetPowerState:
        """Check and apply one power-state change; return it with `settled_s` (when the new state holds)."""
        device = self._device(change.device)
        was = device.power_state
        if change.state.awake:
            if was.awake:
                raise PolicyContractError(f"policy {self.policy.name} woke {device.name}, which is awake")
            spec = device.power_spec(was)
            since_s = self._asleep_since.pop(device.name)
            settled_s = awake_at_s(spec, since_s, now_s) if spec is not None else now_s
            device.power_state, device.awake_at_s = PowerState.IDLE, settled_s
            self._asleep = self._asleep - {device.name}
        else:
            spec = device.power_spec(change.state)
            problem = ""
            if spec is None:
                problem = f"it has no {change.state.value} state"
            elif not was.awake:
                problem = f"it is already {was.value}; wake it first"
            elif device.in_flight:
                problem = f"it has {device.in_flight} batch(es) in flight"
            elif device.awake_at_s > now_s:
                problem = f"it is still waking (awake at {device.awake_at_s:.3f} s)"
            elif not device.healthy:
                problem = "it has failed"
            if problem or spec is None:
                raise PolicyContractError(
                    f"policy {self.policy.name} put {device.name} to {change.state.value}, but {problem}"
                )
            since_s = max(now_s, device.busy_until_s)
            self._asleep_since[device.name] = since_s
            device.power_state = change.state
            self._asleep = self._asleep | {device.name}
            settled_s = since_s + spec.entry_s
        self._state_version += 1
        self._emit(
            now_s,
            "power",
            change.reason,
            (),
            device=device.name,
            detail={"state": change.state.value, "from": was.value, "settled_s": settled_s},
        )
        return SetPowerState(device.name, device.power_state, change.reason, settled_s)

    def _apply_drops(self, now_s: float, drops: Iterable[Drop]) -> list[Outcome]:
        outcomes = []
        for drop in drops:
            try:
                requests = self.queue.remove(drop.request_ids)
            except KeyError as e:
                raise PolicyContractError(f"policy {self.policy.name} dropped a request not queued: {e}") from None
            kind = "shed" if drop.reason == DropReason.SHED else "drop"
            self._emit(
                now_s,
                kind,
                drop.reason.value,
                requests,
                protected_stream=drop.protected_stream,
                detail={"detail": drop.detail} if drop.detail else {},
            )
            reason = drop.reason.value
            outcomes += [self._answer(r, OutcomeStatus.DROPPED, now_s, reason=reason) for r in requests]
        return outcomes

    # -- results ------------------------------------------------------------------------------
    def complete(self, now_s: float, result: BatchResult, batch_id: int) -> list[Outcome]:
        """Absorb a finished batch; answer its requests (or re-queue them if it failed)."""
        batch = self._in_flight.pop(batch_id, None)
        if batch is None:
            raise PolicyContractError(f"batch {batch_id} completed but is not in flight")
        self._release(now_s, batch)
        device = self.devices.get(batch.dispatch.device)
        if result.ok and device is not None:
            self.cost_view.observe(
                device.kind, batch.dispatch.model, device.freqs_hz, result.freq_hz, result.n_frames, result.latency_s
            )
        self.policy.observe(result)
        if not result.ok:
            return self._requeue(now_s, batch, f"batch failed on {result.device}: {result.error}")
        if self._sink is not None:
            self._emit(
                now_s,
                "complete",
                "",
                batch.requests,
                device=result.device,
                freq_hz=result.freq_hz,
                latency_s=result.latency_s,
                energy_j=result.energy_j,
                detail={"batch_id": batch_id},
            )
        frames = max(result.n_frames, 1)
        return [
            self._answer(
                r,
                OutcomeStatus.COMPLETED,
                result.finished_s,
                device=result.device,
                model=result.model,
                freq_hz=result.freq_hz,
                energy_j=result.energy_j * r.n_frames / frames,
            )
            for r in batch.requests
        ]

    def fail_device(self, now_s: float, name: str, reason: str = "device failed") -> list[Request]:
        """Mark a device failed and put every request of its in-flight batches back in the queue."""
        device = self._device(name)
        device.healthy = False
        requeued: list[Request] = []
        for batch_id, batch in list(self._in_flight.items()):
            if batch.dispatch.device == name:
                del self._in_flight[batch_id]
                self._chains.pop(name, None)
                requeued += self._requeue_requests(now_s, batch, reason)
        device.in_flight, device.busy_until_s = 0, now_s
        if name in self._busy:
            self._busy = self._busy - {name}
        self._state_version += 1
        self._facts_changed()
        self._emit(now_s, "fail", reason, (), device=name)
        return requeued

    def restore_device(self, name: str, now_s: float | None = None) -> None:
        """The device is healthy again; with `now_s`, idle since then (its books start over)."""
        device = self._device(name)
        device.healthy = True
        if now_s is not None:
            device.busy_until_s = device.last_busy_s = now_s
        self._state_version += 1
        self._facts_changed()

    def set_round_trip(self, name: str, round_trip_s: float) -> None:
        """The driver's estimate of the time a batch to `name` spends outside the device (`DeviceState.round_trip_s`).
        Drivers change device state only through the core, which counts every change (`StepContext.state_version`)."""
        device = self._device(name)
        if device.round_trip_s != round_trip_s:
            device.round_trip_s = round_trip_s
            self._state_version += 1

    def start_books(self, now_s: float) -> None:
        """Devices idle so far count as idle from `now_s` (a live run's first arrival, as in the simulator)."""
        for device in self.devices.values():
            if device.in_flight == 0:
                device.busy_until_s = device.last_busy_s = now_s
        self._state_version += 1

    def set_device_frequencies(self, name: str, freqs_hz: Sequence[float], current_hz: float | None = None) -> None:
        """Take the frequency list a device reported (its DVFS table) as the only clocks it may be given, and its
        clock now when it said (else its top clock, when the one assumed so far is not listed)."""
        listed = tuple(float(f) for f in freqs_hz)
        if not listed or any(b <= a for a, b in zip(listed, listed[1:], strict=False)):
            raise DeviceFactsError(f"device {name} reported frequencies {listed!r}; need a non-empty ascending list")
        device = self._device(name)
        device.freqs_hz = listed
        now_hz = device.frequency(current_hz) if current_hz is not None else None
        if now_hz is not None:
            device.freq_hz = now_hz
        elif device.frequency(device.freq_hz) is None:
            device.freq_hz = listed[-1]
        self._state_version += 1
        self._facts_changed()

    def drop_all(self, now_s: float, reason: DropReason = DropReason.SHUTDOWN) -> list[Outcome]:
        """Answer everything still queued (shutdown, end of a simulation)."""
        return self._apply_drops(now_s, [Drop(tuple(r.request_id for r in self.queue), reason)] if self.queue else [])

    def drop(self, now_s: float, request_ids: Iterable[int], reason: DropReason, detail: str = "") -> list[Outcome]:
        """Answer these queued requests with no result: a driver's own drop (e.g. a request whose batches
        failed on devices too often, or no healthy device left). Raises for requests not queued."""
        ids = tuple(request_ids)
        return self._apply_drops(now_s, [Drop(ids, reason, detail)] if ids else [])

    @property
    def open_requests(self) -> int:
        """Requests submitted and not yet answered (queued or in flight)."""
        return len(self._open)

    @property
    def in_flight_batches(self) -> list[Batch]:
        return list(self._in_flight.values())

    # -- helpers ------------------------------------------------------------------------------
    def _facts_changed(self) -> None:
        """A device's facts or health changed: contexts get a new device sequence (see `StepContext`)."""
        self._device_list = list(self.devices.values())

    def _requeue(self, now_s: float, batch: Batch, reason: str) -> list[Outcome]:
        self._requeue_requests(now_s, batch, reason)
        return []

    def _requeue_requests(self, now_s: float, batch: Batch, reason: str) -> list[Request]:
        for r in batch.requests:
            self.queue.add(r)
        self._emit(now_s, "requeue", reason, batch.requests, device=batch.dispatch.device)
        return list(batch.requests)

    def _release(self, now_s: float, batch: Batch) -> None:
        """`batch` is done: its device's busy time is what remains of its chain, counted from now.

        The estimate made at dispatch assumed the batches ahead would end as predicted. One that ran long (a
        prediction error, a transfer that queued on the link) delays every batch behind it on the device; without
        this re-estimate the planner kept planning from the stale time, and a tight request put behind a late
        batch missed its deadline (the 1,000-device diurnal day lost 2 s-SLO requests this way on an AGX Xavier
        whose chain of overlapped batches ran 0.4-0.5 s behind its estimate).

        The remaining batches count their run time only, not the round trip: the next one was sent already and
        started on the device when this one ended, and `now_s` (when the answer arrived) already includes the way
        back. Counting the round trip again kept devices "busy" too long under a loaded live scheduler, which woke
        others: live frames/J fell 40 % below the simulation's (tests/test_live_vs_sim.py under CPU load)."""
        device = self.devices.get(batch.dispatch.device)
        chain = self._chains.get(batch.dispatch.device)
        if chain:
            if chain[0][0] == batch.batch_id:
                chain.popleft()
            else:  # not the oldest (a driver that completes out of order): drop it where it is
                self._chains[batch.dispatch.device] = chain = deque(e for e in chain if e[0] != batch.batch_id)
        if device is None:
            return
        device.in_flight = max(0, device.in_flight - 1)
        self._state_version += 1
        if device.in_flight == 0:
            if device.name in self._busy:
                self._busy = self._busy - {device.name}
            device.busy_until_s = now_s
            device.last_busy_s = now_s
        elif chain:
            device.busy_until_s = now_s + sum(expected_s for _, expected_s in chain)

    def _answer(self, request: Request, status: OutcomeStatus, time_s: float, **kw: object) -> Outcome:
        if self._open.pop(request.request_id, None) is None:
            raise PolicyContractError(f"request {request.request_id} answered twice")
        return Outcome(request.request_id, status, time_s, **kw)  # type: ignore[arg-type]

    def _device(self, name: str) -> DeviceState:
        try:
            return self.devices[name]
        except KeyError:
            raise UnknownNameError("device", name, self.devices) from None

    def _check_freq(self, device: DeviceState, freq_hz: float) -> float:
        listed = device.frequency(freq_hz)
        if listed is None:
            offered = ", ".join(f"{f / 1e6:g}" for f in device.freqs_hz)
            raise PolicyContractError(
                f"policy {self.policy.name} asked {device.name} for {freq_hz:.0f} Hz, which it does not offer; "
                f"available: {offered} MHz"
            )
        return listed

    def _expected_latency(self, device: DeviceState, d: Dispatch, n_frames: int, freq_hz: float) -> float:
        if math.isfinite(d.predicted_latency_s):
            return d.predicted_latency_s
        return self.cost_view.latency_s(device.kind, d.model, device.freqs_hz, freq_hz, n_frames, device.link)

    def _emit(self, now_s: float, event: str, reason: str, requests: Sequence[Request], **kw: object) -> None:
        if self._sink is None:
            return
        self._sink(
            DecisionEvent(
                time_s=now_s,
                event=event,
                reason=reason,
                request_ids=tuple(r.request_id for r in requests),
                streams=tuple(r.stream for r in requests),
                n_frames=sum(r.n_frames for r in requests),
                queue_depth=len(self.queue),
                queue_depths=self.queue.stream_counts(),
                **kw,  # type: ignore[arg-type]
            )
        )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
