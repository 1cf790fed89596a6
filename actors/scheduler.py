"""The live scheduler: drives `policies.core.SchedulerCore` — the same core and policy objects as the
simulator — in real time, and answers every request exactly once.

Life of a request (the simulator's, on a real clock):

    submit(item)    -> Request(arrival = now) joins the core's queue; admission may answer it at once
    loop: step(now) -> the policy's batches go to their devices (`DeviceClient.run_batch`), its drops and
                       clock changes are applied; the loop runs again on every arrival, every batch
                       completion, and at the `wake_at_s` the policy asked for
    completion      -> `core.complete`: each request of the batch gets its answer (its asyncio Future
                       resolves); a failed batch goes back to the queue
    device gone     -> `core.fail_device`: the requests of its batches in flight go back to the queue for
                       the other devices; a result that still arrives from it later is ignored, so
                       nothing is lost or answered twice

Time. The core sees *scheduler time* = (time.monotonic() - t0) × `time_scale`. With an emulated fleet
compressed by a speed factor k (`DeviceRuntime(speed_factor=k)`), `time_scale = k` makes the policy, the
cost model, the SLOs and the measured latencies agree on the same (device) seconds the simulator uses;
`InferItem.slo_s` and the answer's timings are wall seconds. When the policy asked to be woken at t and
nothing else happened in between, the core is stepped at exactly t (as the simulator would), so tick-based
policies see their ticks.

Safety nets the simulator does not need: with no healthy device left, queued requests are dropped
(`no_device`); a request still queued `stale_grace_s` (wall) past its deadline is dropped
(`deadline_expired`); a request whose batches failed `max_attempts` times is dropped (`device_failed`);
a policy that breaks its contract gets its queue dropped and the error logged, never a hang; a policy whose
`admit` raises fails that request alone.

Memory is bounded by what is open, not by what was served: per-request state lives only until the answer
(`_pending`, the core's queue and batches in flight); the run's records (`LiveRun`, for the simulator-comparable
report) hold at most `record_limit` requests and then roll over to a new window (open requests carried, energy
counted from the roll-over); lifetime counters are plain integers.

`LiveScheduler` is plain asyncio; `deployments.app` runs it as the scheduler actor (a Serve deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from actors.accounting import EnergyLedger, LiveRun, idle_power_fn
from actors.device import BatchRun
from actors.messages import DeviceClient, DeviceUnavailableError, InferAnswer, InferItem, servable_models
from actors.metrics import NullMetrics
from actors.round_trip import RoundTrips
from actors.sleep_books import SleepBooks
from actors.sleep_control import refused_asleep
from cluster.inventory import Fleet
from costmodel.base import CostModel
from costmodel.frames import frame_bytes
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError, InvalidRequestError, JetfleetError, PowerStateError, UnknownNameError
from jetfleet.power_states import PowerState
from jetfleet.telemetry import EventSink
from jetfleet.types import Batch, BatchResult, DeviceState, DropReason, Outcome, OutcomeStatus, Request, SetPowerState
from policies.base import Policy
from policies.core import SchedulerCore, StepOutput
from policies.planning import warm_planner

log = logging.getLogger(__name__)
MIN_WAKE_WALL_S = 0.001  # the soonest a policy's "wake me at t <= now" is honoured again
ADMISSION_FAILED = "admission_failed"  # the reason of a request whose policy's `admit` raised


@dataclass(slots=True)
class _Pending:
    request: Request
    inputs: Any
    future: asyncio.Future[InferAnswer]
    attempts: int = 0
    dispatched_s: float = math.nan  # scheduler time of its (last) dispatch


class LiveScheduler:
    """The scheduler actor's logic: one policy, one queue, one fleet of `DeviceClient`s."""

    def __init__(
        self,
        fleet: Fleet,
        policy: Policy,
        cost: CostModel,
        clients: Mapping[str, DeviceClient],
        *,
        time_scale: float = 1.0,
        sink: EventSink | None = None,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
        probe_interval_s: float = 1.0,
        probe_timeout_s: float = 5.0,
        batch_timeout_s: float = 60.0,
        max_attempts: int = 3,
        stale_grace_s: float = 30.0,
        record_limit: int = 20_000,
        first_request_id: int = 0,
    ) -> None:
        missing = sorted({d.name for d in fleet.devices} - set(clients))
        if missing:
            raise ConfigError(f"live scheduler: no device client for {missing} of fleet {fleet.name!r}")
        if not time_scale > 0:
            raise ConfigError(f"live scheduler: time_scale must be > 0, got {time_scale}")
        self.fleet, self.cost, self.clients = fleet, cost, dict(clients)
        self.time_scale = float(time_scale)
        self.metrics = metrics if metrics is not None else NullMetrics()
        self._sink, self._clock = sink, clock
        self.probe_interval_s, self.probe_timeout_s = probe_interval_s, probe_timeout_s
        self.batch_timeout_s, self.max_attempts = batch_timeout_s, max_attempts
        self.stale_grace_s, self.record_limit = stale_grace_s, record_limit
        self._t0 = clock()
        self.started_unix_s = time.time()  # the counters of `stats` count from here (a restart starts them again)
        self._ids = itertools.count(first_request_id)  # the service passes a clock-based base: unique across restarts
        self._idle_power = {kind: idle_power_fn(kind) for kind in {d.kind for d in fleet.devices}}
        self._healthy = {d.name: True for d in fleet.devices}
        self.models = servable_models(fleet)
        self._statuses: dict[str, Any] = {}
        self._pending: dict[int, _Pending] = {}
        self._launched: dict[int, Batch] = {}  # batches sent to a device and still owed an answer
        self._tasks: set[asyncio.Task] = set()
        self._event: asyncio.Event | None = None
        self._kicked = False
        self._wake_s: float | None = None
        self._last_s = 0.0  # the latest time given to the core (it must never go back)
        self._closed = False
        self._away: set[str] = set()  # devices in a long sleep: their node left Ray on purpose, probes may fail
        self._power_pending: set[str] = set()  # devices with a power-state change on its way to them
        self.sleep_books = SleepBooks(self.clients, 0.0)
        self.round_trips = RoundTrips()
        self._loop_task: asyncio.Task | None = None
        self._probe_task: asyncio.Task | None = None
        self.counters: dict[str, int] = {"submitted": 0, "completed": 0, "within_slo": 0, "decisions": 0}
        self.answers_by_reason: dict[str, int] = {}
        self.recent_latency_s: deque[float] = deque(maxlen=2000)  # wall seconds of recent completions
        self.last_error = ""
        warm_planner()  # numba's first use costs ~0.5 s: here, not in the first request's decision
        self._new_run(policy)

    # -- time ------------------------------------------------------------------------------------------
    def now(self) -> float:
        """Scheduler time: wall seconds since start × time_scale."""
        return max((self._clock() - self._t0) * self.time_scale, self._last_s)

    def _wall(self, scheduler_s: float) -> float:
        return scheduler_s / self.time_scale

    # -- life cycle ------------------------------------------------------------------------------------
    def _new_run(self, policy: Policy) -> None:
        now = self.now()
        states = []
        self.ledgers: dict[str, EnergyLedger] = {}
        for spec in self.fleet.devices:
            f_max = get_kind(spec.kind).max_freq_hz
            state = DeviceState(spec.name, spec.kind, f_max, now, 0, now, self._healthy[spec.name], spec.models)
            state.round_trip_s = self.round_trips.estimate(spec.name, self._clock())  # the link outlives the run
            state.link = spec.link  # the data path policies price (`jetfleet.links`)
            states.append(state)
            self.ledgers[spec.name] = EnergyLedger(self._idle_power[spec.kind], f_max)
        self.policy = policy
        self.core = SchedulerCore(policy, self.cost, states, self._sink)
        for name, status in self._statuses.items():  # what the devices reported of themselves stays true
            self._take_frequencies(name, status)
        self.run = LiveRun(policy.name, self.ledgers)
        self.sleep_books = SleepBooks(self.clients, now, dict(self.sleep_books.states))  # asleep stays asleep
        self._wake_s = None

    def start(self) -> None:
        """Start the scheduling loop and the device probes (idempotent; needs a running event loop)."""
        if self._loop_task is None:
            self._event = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
            if self.probe_interval_s > 0:
                self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop())

    async def reset(self, policy: Policy, *, drain_timeout_s: float = 60.0) -> None:
        """Start a new run with `policy`: wait for what is open to be answered (dropping what is still
        queued after `drain_timeout_s`), set every device to its maximum clock, clear the run's records."""
        self.start()
        deadline = time.monotonic() + drain_timeout_s
        while self.core.open_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.core.open_requests:
            self._settle(self.core.drop_all(self._touch(), DropReason.SHUTDOWN))
            while self._launched and time.monotonic() < deadline + drain_timeout_s:
                await asyncio.sleep(0.01)
        for spec in self.fleet.devices:
            if self._healthy[spec.name]:
                await self._wake_for_new_run(spec.name)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.clients[spec.name].set_frequency(get_kind(spec.kind).max_freq_hz), self.probe_timeout_s
                    )
        self._new_run(policy)
        self._kick()

    async def _wake_for_new_run(self, name: str) -> None:
        """A new run starts with every device awake (its core believes so): wake one the last run left asleep."""
        if self.sleep_books.states[name].awake:
            return
        try:
            waking = self.clients[name].set_power_state(PowerState.IDLE.value, None)
            await asyncio.wait_for(waking, self.probe_timeout_s)
        except Exception as e:  # noqa: BLE001 - the next probe tells what state it is in
            log.warning("waking %s for a new run failed: %s", name, e)
            return
        self.sleep_books.mark(self._touch(), name, PowerState.IDLE)

    async def close(self) -> None:
        """Answer everything still queued with `shutdown` and stop the loop."""
        if self._closed:
            return
        self._settle(self.core.drop_all(self._touch(), DropReason.SHUTDOWN))
        self._closed = True
        for task in (self._loop_task, self._probe_task, *self._tasks):
            if task is not None:
                task.cancel()
        for p in list(self._pending.values()):  # batches in flight: answered as failed, once
            self._resolve(p, InferAnswer(p.request.request_id, "failed", reason=DropReason.SHUTDOWN.value))

    # -- arrivals --------------------------------------------------------------------------------------
    def submit_nowait(self, item: InferItem) -> asyncio.Future[InferAnswer]:
        """Queue one request; return the Future of its one answer."""
        if self._closed:
            raise InvalidRequestError("the scheduler is shut down")
        if item.model not in self.models:
            raise UnknownNameError("model", item.model, self.models)
        self.start()
        now = self._touch()
        request = Request(
            next(self._ids), now, item.n_frames, item.slo_s * self.time_scale, item.model, item.priority, item.stream
        )
        future: asyncio.Future[InferAnswer] = asyncio.get_running_loop().create_future()
        self._pending[request.request_id] = _Pending(request, item.inputs, future)
        self.counters["submitted"] += 1
        if len(self.run.requests) >= self.record_limit:  # bounded memory: the run's report covers a window
            self.run = self.run.rolled(now)
        if self.run.start_s is None:
            self._start_books(now)
        self.run.arrive(request)
        self._settle(self._admit(now, request))  # the policy's admission may reject it at once (429)
        if request.request_id in self.core.queue:
            self._kick()
        return future

    def _admit(self, now: float, request: Request) -> list[Outcome]:
        """`core.submit`; a policy whose `admit` raises fails this request alone, answered at once (the
        core never opened it, so nothing stays open in the scheduler or in the run's books)."""
        try:
            return self.core.submit(now, request)
        except Exception as e:  # a policy bug must not leave the request open or fail its whole burst
            log.exception("policy %s failed to admit request %d", self.policy.name, request.request_id)
            self.last_error = f"{type(e).__name__}: {e}"
            return [Outcome(request.request_id, OutcomeStatus.FAILED, now, reason=ADMISSION_FAILED)]

    async def submit(self, item: InferItem) -> InferAnswer:
        """Queue one request and wait for its answer."""
        return await self.submit_nowait(item)

    async def submit_many(self, items: Sequence[InferItem]) -> AsyncIterator[list[tuple[int, InferAnswer]]]:
        """Queue several requests; yield (index, answer) pairs in groups, as they are answered."""
        answered: asyncio.Queue[tuple[int, InferAnswer]] = asyncio.Queue()
        for i, item in enumerate(items):
            try:
                future = self.submit_nowait(item)
            except JetfleetError as e:  # one bad item must not fail the others of its burst
                answered.put_nowait((i, InferAnswer(-1, "failed", reason="invalid", detail=str(e))))
                continue
            future.add_done_callback(lambda f, i=i: answered.put_nowait((i, f.result())))
        left = len(items)
        while left:
            group = [await answered.get()]
            while not answered.empty():
                group.append(answered.get_nowait())
            left -= len(group)
            yield group

    def _start_books(self, now: float) -> None:
        """The run's first arrival: devices idle so far count as idle from now (as in the simulator)."""
        self.core.start_books(now)

    # -- the loop --------------------------------------------------------------------------------------
    def _touch(self) -> float:
        self._last_s = self.now()
        return self._last_s

    def _kick(self) -> None:
        self._kicked = True
        if self._event is not None:
            self._event.set()

    async def _loop(self) -> None:
        assert self._event is not None
        await self._learn_devices()
        while not self._closed:
            timeout = None
            wake = self._next_wake()
            if wake is not None:
                timeout = max(0.0, self._wall(wake - self.now()))
            if not self._kicked:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._event.wait(), timeout)
            self._event.clear()
            now = self.now()
            if not self._kicked and self._wake_s is not None and self._last_s <= self._wake_s <= now:
                now = self._wake_s  # woken by the policy's timer alone: step at the time it asked for
            self._kicked = False
            self._last_s = now
            try:
                self._step(now)
            except Exception as e:  # a policy bug must not leave requests hanging
                self._policy_failed(now, e)

    def _next_wake(self) -> float | None:
        wake = self._wake_s
        earliest = self.core.queue.earliest()
        if earliest is not None:
            # Step at the earliest queued deadline at the latest (a request no policy decision covers is looked at
            # again while its answer still matters: SLO admission drops what became hopeless), and once it is past,
            # when it goes stale.
            due = earliest.deadline_s
            if due <= self._last_s:
                due += self.stale_grace_s * self.time_scale
            wake = due if wake is None else min(wake, due)
        return wake

    def _step(self, now: float) -> None:
        self._safety_drops(now)
        t0 = time.perf_counter()
        out = self.core.step(now)
        self.metrics.decision_time(time.perf_counter() - t0)
        self.counters["decisions"] += 1
        self._apply(now, out)
        self.metrics.queue_length(len(self.core.queue))

    def _apply(self, now: float, out: StepOutput) -> None:
        self._settle(out.outcomes)
        self.metrics.decisions("drop", len(out.outcomes))
        self.metrics.decisions("frequency", len(out.frequency_changes))
        self.metrics.decisions("dispatch", len(out.batches))
        # Power states before batches: a batch may go to a device this step woke (it starts at `settled_s`).
        for power in out.power_changes:
            if power.state.awake:
                self.ledgers[power.device].wake(now)
            elif (spec := self.core.devices[power.device].power_spec(power.state)) is not None:
                self.ledgers[power.device].sleep(now, spec)
            self._apply_power_change(now, power)
        for change in out.frequency_changes:
            self.ledgers[change.device].frequency(now, change.freq_hz)
            self.metrics.frequency(change.device, change.freq_hz)
            self._spawn(self._set_frequency(change.device, change.freq_hz))
        for batch in out.batches:
            self._launched[batch.batch_id] = batch
            for r in batch.requests:
                p = self._pending.get(r.request_id)
                if p is not None:
                    p.dispatched_s = now
            self._spawn(self._run_batch(batch, self._expected_wait_s(now, batch)))
        wake = out.wake_at_s
        if wake is not None and wake <= now:  # "now again" would spin: the simulator's 1 µs becomes 1 ms of wall
            wake = now + MIN_WAKE_WALL_S * self.time_scale
        self._wake_s = wake

    def _safety_drops(self, now: float) -> None:
        queue = self.core.queue
        if queue and not any(s.healthy for s in self.core.devices.values()):
            ids = [r.request_id for r in queue]
            self._settle(self.core.drop(now, ids, DropReason.NO_DEVICE, "no healthy device"))
            return
        grace = self.stale_grace_s * self.time_scale
        stale = []
        for r in queue.by_deadline():
            if r.deadline_s + grace > now:
                break
            stale.append(r.request_id)
        if stale:
            self._settle(self.core.drop(now, stale, DropReason.DEADLINE_EXPIRED, "still queued long past deadline"))

    def _policy_failed(self, now: float, error: Exception) -> None:
        log.exception("policy %s failed at t=%.3f", self.policy.name, now)
        self.last_error = f"{type(error).__name__}: {error}"
        for batch in self.core.in_flight_batches:  # applied by the core but never sent: back to the queue
            if batch.batch_id not in self._launched:
                self.core.complete(now, self._failed_run(batch, "policy error").result, batch.batch_id)
        self._settle(self.core.drop_all(now, DropReason.SHUTDOWN))
        self._wake_s = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- devices ---------------------------------------------------------------------------------------
    def _expected_wait_s(self, now: float, batch: Batch) -> float:
        """How long the core expects `batch` to wait before its device starts it (busy, waking, changing clock),
        round trip excluded; nan when it cannot tell (another batch in flight there, no predicted latency)."""
        device = self.core.devices[batch.dispatch.device]
        latency_s = batch.dispatch.predicted_latency_s
        if device.in_flight != 1 or not math.isfinite(latency_s):
            return math.nan
        return device.busy_until_s - latency_s - now - device.round_trip_s

    async def _run_batch(self, batch: Batch, expected_wait_s: float = math.nan) -> None:
        name = batch.dispatch.device
        sent_wall_s = self._clock()
        inputs = [self._pending[r.request_id].inputs if r.request_id in self._pending else None for r in batch.requests]
        if all(x is None for x in inputs):
            inputs = None
        timeout_s = self.batch_timeout_s
        if math.isfinite(batch.dispatch.predicted_latency_s):
            timeout_s = max(timeout_s, 20 * self._wall(batch.dispatch.predicted_latency_s))
        try:
            run = await asyncio.wait_for(self.clients[name].run_batch(batch, inputs), timeout_s)
        except DeviceUnavailableError as e:
            self._device_failed(name, f"device unavailable: {e}")
            return
        except asyncio.TimeoutError:
            self._device_failed(name, f"no answer to batch {batch.batch_id} within {timeout_s:.1f} s")
            return
        except Exception as e:  # anything else fails this batch only: its requests are retried
            run = self._failed_run(batch, f"{type(e).__name__}: {e}")
        else:
            self._round_trip(name, sent_wall_s, run, expected_wait_s)
        self._completed(batch, run)

    def _round_trip(self, name: str, sent_wall_s: float, run: BatchRun, expected_wait_s: float) -> None:
        """Sample the batch's round trip (`actors.round_trip`) and tell the core the device's estimate."""
        if run.result.ok and math.isfinite(run.device_latency_s) and math.isfinite(expected_wait_s):
            now_wall_s = self._clock()
            elapsed_s = (now_wall_s - sent_wall_s) * self.time_scale
            # The link model's transfer is priced by the cost view already: the round trip is what is left over.
            accounted_s = run.device_latency_s + self._transfer_s(name, run.result.model, run.result.n_frames)
            self.round_trips.batch(name, now_wall_s, elapsed_s, accounted_s, expected_wait_s)
            self.core.set_round_trip(name, self.round_trips.estimate(name, now_wall_s))

    def _transfer_s(self, name: str, model: str, n_frames: int) -> float:
        """What the device's link model says `n_frames` of `model` take to cross it (0 for a model unknown here)."""
        link = self.core.devices[name].link
        if link.local:
            return 0.0
        try:
            return link.transfer_s(n_frames * frame_bytes(model))
        except JetfleetError:
            return 0.0

    def _failed_run(self, batch: Batch, error: str) -> BatchRun:
        d = batch.dispatch
        now = self.now()
        result = BatchResult(
            d.device, d.request_ids, batch.n_frames, d.model, d.freq_hz, now, now, 0.0, 0.0, ok=False, error=error
        )
        return BatchRun(result, None)

    def _completed(self, batch: Batch, run: BatchRun) -> None:
        now = self._touch()
        result = run.result
        latency_s = run.device_latency_s if math.isfinite(run.device_latency_s) else result.latency_s
        latency_s = max(0.0, float(latency_s)) if math.isfinite(latency_s) else 0.0
        if self._launched.get(batch.batch_id) is not batch:
            return  # its device was failed over meanwhile: the requests were re-queued already
        del self._launched[batch.batch_id]
        if result.ok or result.energy_j > 0:
            self.ledgers[batch.dispatch.device].batch(now, latency_s, result.energy_j, result.freq_hz)
            self.metrics.frequency(batch.dispatch.device, result.freq_hz)
        result = replace(result, started_s=now - latency_s, finished_s=now, latency_s=latency_s)
        outcomes = self.core.complete(now, result, batch.batch_id)
        if not result.ok and refused_asleep(result.error):  # issue 10 safety net: no batches until it is awake
            self._device_failed(batch.dispatch.device, result.error)
        elif not result.ok:
            log.warning("batch %d failed on %s: %s", batch.batch_id, result.device, result.error)
            self._retry_or_drop(now, batch.requests, result.error)
        else:
            self._settle(outcomes, batch, run.outputs, latency_s)
        self._kick()

    def _retry_or_drop(self, now: float, requests: Sequence[Request], error: str) -> None:
        give_up = []
        for r in requests:
            p = self._pending.get(r.request_id)
            if p is not None:
                p.attempts += 1
                if p.attempts >= self.max_attempts and r.request_id in self.core.queue:
                    give_up.append(r.request_id)
        if give_up:
            detail = f"failed {self.max_attempts} times; last: {error}"
            self._settle(self.core.drop(now, give_up, DropReason.DEVICE_FAILED, detail))

    def _device_failed(self, name: str, reason: str) -> None:
        if not self._healthy.get(name, False):
            return
        now = self._touch()
        log.warning("device %s failed: %s", name, reason)
        self._healthy[name] = False
        requeued = self.core.fail_device(now, name, reason)
        for batch_id in [b for b, batch in self._launched.items() if batch.dispatch.device == name]:
            del self._launched[batch_id]
        self.ledgers[name].close(now)
        self.run.requeued += len(requeued)
        self.run.device_failures += 1
        self._retry_or_drop(now, requeued, reason)
        self._kick()

    def _device_restored(self, name: str) -> None:
        log.warning("device %s is back", name)
        self._healthy[name] = True
        now = self._touch()
        self.core.restore_device(name, now)
        ledger = self.ledgers[name]
        ledger.closed, ledger.mark_s = False, (now if ledger.mark_s is not None else None)
        self._kick()

    async def _set_frequency(self, name: str, freq_hz: float) -> None:
        try:
            await asyncio.wait_for(self.clients[name].set_frequency(freq_hz), self.probe_timeout_s)
        except DeviceUnavailableError as e:
            self._device_failed(name, f"device unavailable: {e}")
        except Exception as e:  # the policy believes the clock changed; the next batch sets it again
            log.warning("setting %s to %.0f Hz failed: %s", name, freq_hz, e)

    # -- power states (issue 10) ------------------------------------------------------------------------
    def _apply_power_change(self, now: float, change: SetPowerState) -> None:
        """An applied SetPowerState: book it, wake a suspended Jetson by Wake-on-LAN, and have the device do it."""
        state = PowerState(change.state)
        self.sleep_books.mark(now, change.device, state)
        self.metrics.decisions("power_state", 1)
        spec = self.fleet.device(change.device)
        if state.awake and change.device in self._away and spec.mac and spec.power_states == "jetson":
            from cluster.wake_on_lan import send_wake_on_lan

            self._spawn(asyncio.to_thread(send_wake_on_lan, spec.mac))
        # No sleep length: the policy wakes a device when its forecast says so, so the device needs a wake way
        # that does not depend on one (deep idle, Wake-on-LAN, an emulated device's reachable actor).
        self._power_pending.add(change.device)
        self._spawn(self._set_power_state(change.device, state, None))

    async def _set_power_state(self, name: str, state: PowerState, sleep_s: float | None) -> None:
        try:
            done = await asyncio.wait_for(
                self.clients[name].set_power_state(state.value, sleep_s), self.probe_timeout_s
            )
        except PowerStateError as e:  # refused (no way to wake it, not offered): it stays awake
            log.warning("device %s refused %s: %s", name, state.value, e)
            self.last_error = f"PowerStateError: {e}"
            self.sleep_books.mark(self._touch(), name, PowerState.IDLE)
            return
        except DeviceUnavailableError as e:
            if name not in self._away:
                self._device_failed(name, f"device unavailable: {e}")
            return
        except Exception as e:  # noqa: BLE001 - the next probe tells what state the device is in
            log.warning("power state %s on %s failed: %s", state.value, name, e)
            return
        finally:
            self._power_pending.discard(name)
        if getattr(done, "long_sleep", False):
            self._away.add(name)

    def _take_power_state(self, name: str, status: Any) -> None:
        """What the device says of itself wins (it woke by its own timer, or rejoined after a long sleep)."""
        reported = getattr(status, "power_state", None)
        if reported is None or name in self._power_pending:
            return
        state = PowerState(reported)
        if state.awake != self.sleep_books.states[name].awake:
            self.sleep_books.mark(self._touch(), name, state)

    async def _learn_devices(self) -> None:
        """Before the first decision: ask every device for its own facts (its frequency list), so no batch is
        ever sent at a clock a device does not offer. A device that does not answer keeps the catalogue's."""

        async def learn(name: str) -> None:
            try:
                status = await asyncio.wait_for(self.clients[name].status(), self.probe_timeout_s)
            except Exception as e:  # noqa: BLE001 - health is the probes' business, not this one's
                log.warning("device %s: could not read its facts at start: %s", name, e)
                return
            self._statuses[name] = status
            self._take_frequencies(name, status)

        await asyncio.gather(*(learn(name) for name in self.clients))

    def _take_frequencies(self, name: str, status: Any) -> None:
        """Schedule only at the clocks the device itself offers (its DVFS list may differ from the catalogue)."""
        listed = tuple(getattr(status, "freqs_hz", ()) or ())
        if listed and listed != self.core.devices[name].freqs_hz:
            try:
                self.core.set_device_frequencies(name, listed, getattr(status, "freq_hz", None))
            except JetfleetError as e:
                log.warning("device %s: frequency list not taken: %s", name, e)
                return
            self.ledgers[name].frequency(self.now(), self.core.devices[name].freq_hz)

    async def _probe_loop(self) -> None:
        first = True
        while not self._closed:
            if not first:  # the first probe runs at once: the devices' own frequency lists before any batch
                await asyncio.sleep(self.probe_interval_s)
            first = False
            await asyncio.gather(*(self._probe(name) for name in self.clients), return_exceptions=True)
            try:
                energy = self.run.energy_j(self.now()) if self.run.start_s is not None else {}
                self.metrics.devices(self.core.devices, energy)
                self.metrics.flush()
            except Exception as e:  # noqa: BLE001 - metrics must never stop the probes
                log.warning("metrics flush failed: %s", e)

    async def _probe(self, name: str) -> None:
        try:
            status = await asyncio.wait_for(self.clients[name].status(), self.probe_timeout_s)
        except (DeviceUnavailableError, asyncio.TimeoutError) as e:
            if name not in self._away:  # a node in a long sleep is drained and gone on purpose
                self._device_failed(name, f"probe: {type(e).__name__}: {e}")
            return
        except Exception as e:  # noqa: BLE001 - a probe that cannot tell: leave the device as it is
            log.warning("probe of %s failed: %s", name, e)
            return
        self.core.set_round_trip(name, self.round_trips.estimate(name, self._clock()))  # old samples expire
        self._statuses[name] = status
        self._away.discard(name)
        self._take_frequencies(name, status)
        self._take_power_state(name, status)
        self.metrics.power(name, getattr(status, "power_w", math.nan))
        if not self._healthy[name] and PowerState(getattr(status, "power_state", "idle")).awake:
            self._device_restored(name)

    # -- answers ---------------------------------------------------------------------------------------
    def _settle(
        self,
        outcomes: Sequence[Outcome],
        batch: Batch | None = None,
        outputs: list[Any] | None = None,
        latency_s: float = math.nan,
    ) -> None:
        """Answer each outcome's request; completed ones get their slice of the batch's outputs."""
        offsets: dict[int, tuple[int, int]] = {}
        if batch is not None:
            start = 0
            for r in batch.requests:
                offsets[r.request_id] = (start, start + r.n_frames)
                start += r.n_frames
        for o in outcomes:
            p = self._pending.get(o.request_id)
            if p is None:
                continue
            frames = None
            if outputs is not None and o.request_id in offsets:
                a, b = offsets[o.request_id]
                frames = list(outputs[a:b])
            if o.status is OutcomeStatus.REJECTED:
                self._answer_one(p, o, detail=o.detail, retry_after_s=self._wall(o.retry_after_s))
            else:
                self._answer_one(p, o, outputs=frames, latency_s=latency_s)

    def _answer_one(
        self,
        p: _Pending,
        o: Outcome,
        *,
        status: str | None = None,
        detail: str = "",
        retry_after_s: float | None = None,
        outputs: list[Any] | None = None,
        latency_s: float = math.nan,
    ) -> None:
        r = p.request
        self.run.answer(o)
        status = status or o.status.value
        within = o.status is OutcomeStatus.COMPLETED and o.time_s <= r.deadline_s
        answer = InferAnswer(
            request_id=r.request_id,
            status=status,
            reason=o.reason,
            detail=detail,
            device=o.device,
            model=o.model,
            freq_hz=o.freq_hz,
            energy_j=o.energy_j,
            queued_s=self._wall(p.dispatched_s - r.arrival_s) if math.isfinite(p.dispatched_s) else math.nan,
            inference_s=self._wall(latency_s) if math.isfinite(latency_s) else math.nan,
            total_s=self._wall(o.time_s - r.arrival_s),
            within_slo=within,
            retry_after_s=retry_after_s,
            outputs=outputs,
        )
        if status == "completed":
            self.counters["completed"] += 1
            self.counters["within_slo"] += int(within)
            self.recent_latency_s.append(answer.total_s)
        else:
            key = answer.reason or status
            self.answers_by_reason[key] = self.answers_by_reason.get(key, 0) + 1
        self.metrics.answer(status, answer.reason, r.n_frames, within, model=r.model, stream=r.stream)
        self._resolve(p, answer)

    def _resolve(self, p: _Pending, answer: InferAnswer) -> None:
        self._pending.pop(p.request.request_id, None)
        if not p.future.done():
            p.future.set_result(answer)

    # -- views -----------------------------------------------------------------------------------------
    def fleet_view(self) -> list[dict[str, Any]]:
        """Each device: kind, health, clock, work in flight, last reported power and this run's energy."""
        energy = self.run.energy_j(self.now()) if self.run.start_s is not None else {}
        out = []
        for spec in self.fleet.devices:
            state = self.core.devices[spec.name]
            status = self._statuses.get(spec.name)
            out.append(
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "engine": spec.engine,
                    "state": "healthy" if state.healthy else "failed",
                    "freq_mhz": round(state.freq_hz / 1e6, 2),
                    "in_flight": state.in_flight,
                    "power_w": _finite(getattr(status, "power_w", math.nan)),
                    "busy": bool(getattr(status, "busy", state.in_flight > 0)),
                    "batches_run": getattr(status, "batches_run", None),
                    "power_state": self.sleep_books.states[spec.name].value,
                    "run_energy_j": round(energy.get(spec.name, 0.0), 3),
                    "round_trip_ms": round(self._wall(state.round_trip_s) * 1e3, 3),
                }
            )
        return out

    def stats(self) -> dict[str, Any]:
        """Counters since this scheduler started (`since_unix_s`: a restarted scheduler counts again; Prometheus
        keeps the totals across restarts), drops by reason, queue, recent wall latency, the current run's metrics."""
        lat = sorted(self.recent_latency_s)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3, 3) if lat else None

        return {
            "policy": self.policy.name,
            "time_scale": self.time_scale,
            "since_unix_s": round(self.started_unix_s, 3),
            **self.counters,
            "queued": len(self.core.queue),
            "open": self.core.open_requests,
            "dropped_by_reason": dict(self.answers_by_reason),
            "p50_ms": pct(0.5),
            "p95_ms": pct(0.95),
            "last_error": self.last_error,
            "metrics": type(self.metrics).__name__,  # RayMetrics when exported to Prometheus
            "run": self.run_report(),
        }

    def run_report(self) -> dict[str, Any]:
        """The current run's metrics on the simulator's definitions (scheduler time, modelled energy)."""
        report = self.run.metrics(self.fleet)
        report["time_scale"] = self.time_scale
        report["asleep_s"] = {k: round(v, 3) for k, v in self.sleep_books.asleep_s(self.now()).items()}
        return report


def _finite(x: float) -> float | None:
    return round(float(x), 3) if isinstance(x, (int, float)) and math.isfinite(x) else None
