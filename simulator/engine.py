"""The discrete-event engine: drives one policy through `SchedulerCore` over emulated devices in virtual time.

Events and their life cycle (SimPy-style; ties broken deterministically):

- *arrival* of a request at `arrival_s`: submitted to the core (admission may drop it);
- *completion* of a batch at its device-modelled finish time: the core answers its requests;
- *wake-up* at the `wake_at_s` the policy asked for in its latest `Decisions` (each decision replaces the
  previous request; a wake-up at or before now is moved 1 µs ahead so a policy cannot stall time).

Completions live on a heap of `(time_s, priority, seq, payload)`; arrivals are read from the sorted
workload by a cursor and the single pending wake-up is one variable, so each event costs O(log n) with no
scan over devices. All events that fall at the same instant are applied in the order completions,
arrivals, wake-up; then the policy decides once (`SchedulerCore.step`) and its batches are queued on the
devices (`simulator.devices.EmulatedDevice`), which compute when they finish and what they cost.

The run ends when every request has its one outcome. Requests still queued when nothing else can happen
(no arrival, no batch in flight, no wake-up asked) are dropped with reason `shutdown`, as are requests
not yet answered at `horizon_s`. Energy is integrated per device from the first arrival to the last answer,
sleep states and their transitions included (`simulator.devices`). Beside the energy bound the result carries
the sleep-aware bound (`jetfleet.metrics.sleep_energy_bound_j`).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cluster.inventory import Fleet
from costmodel.base import CostModel, DeviceModel
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError
from jetfleet.links import PREPROCESS_S_PER_FRAME
from jetfleet.metrics import RunMetrics, RunRecord, compute_metrics, energy_bound_j, sleep_energy_bound_j
from jetfleet.power_states import PowerStateSpec
from jetfleet.telemetry import EventSink
from jetfleet.types import Batch, BatchResult, DeviceState, DropReason, Outcome, OutcomeStatus, Request
from policies.base import Policy
from policies.core import SchedulerCore, StepOutput
from simulator.devices import EmulatedDevice

if TYPE_CHECKING:
    from costmodel.device_models import NoiseModel

MIN_WAKE_STEP_S = 1e-6
_COMPLETION = 0  # heap priority; the only kind on the heap today, kept for SimPy-style ordering


@dataclass
class SimResult:
    """Everything one simulated run produced."""

    policy: str
    requests: Sequence[Request]  # the workload, in arrival order
    outcomes: list[Outcome]  # exactly one per request, in arrival order
    batches: list[BatchResult]  # every batch run, in completion order
    energy_j: float  # board energy of the fleet over [start_s, end_s]
    device_energy_j: dict[str, float]
    device_busy_s: dict[str, float]  # time spent running batches
    device_batches: dict[str, int]
    start_s: float  # start of the energy window: the first arrival unless simulate(start_s=) moved it
    end_s: float  # last answer
    energy_bound_j: float  # `jetfleet.metrics.energy_bound_j` of the completed requests over [start_s, end_s]
    decisions: int  # calls of Policy.decide
    metrics: RunMetrics = field(repr=False)
    device_asleep_s: dict[str, float] = field(default_factory=dict)  # time in sleep states, transitions included
    device_sleeps: dict[str, int] = field(default_factory=dict)  # sleeps entered
    sleep_energy_bound_j: float = math.nan  # `jetfleet.metrics.sleep_energy_bound_j` over the same window

    def record(self) -> RunRecord:
        """The run as metrics input (for aggregation over several runs)."""
        return RunRecord(
            self.requests,
            self.outcomes,
            self.energy_j,
            self.energy_bound_j,
            self.end_s - self.start_s,
            self.sleep_energy_bound_j,
            sum(self.device_asleep_s.values()),
        )


def default_device_models(fleet: Fleet) -> dict[str, DeviceModel]:
    """The analytic device model of every kind in the fleet (costmodel.device_models), noiseless."""
    from costmodel.device_models import device_model  # lazily: the engine also runs on any DeviceModel

    return {kind: device_model(kind) for kind in sorted({d.kind for d in fleet.devices})}


def simulate(
    requests: Sequence[Request],
    fleet: Fleet,
    policy: Policy,
    cost: CostModel,
    *,
    device_models: Mapping[str, DeviceModel] | None = None,
    seed: int = 0,
    sink: EventSink | None = None,
    horizon_s: float | None = None,
    noise: NoiseModel | None = None,
    initial_freq: str = "max",
    start_s: float | None = None,
    data_path: bool = True,
    preprocess_s_per_frame: float = PREPROCESS_S_PER_FRAME,
    power_states: Mapping[str, tuple[PowerStateSpec, ...]] | None = None,
) -> SimResult:
    """Run `policy` on `requests` over `fleet` and return outcomes, batches, energy and metrics.

    `device_models` maps each device kind to its noiseless truth (default: `costmodel.device_models`);
    `cost` is what the policy consults. With `noise` (a `costmodel.device_models.NoiseModel`), every device
    draws seeded run-to-run variation from its own stream, `noise` re-seeded with `seed` and the device's
    name, so a run is a pure function of its arguments. Devices start idle at their maximum
    (`initial_freq="max"`) or minimum (`"min"`) frequency.

    Energy is integrated from the first arrival (DESIGN.md) unless `start_s` (<= the first arrival) moves the
    start of the window earlier: LoudVA's measurements start at its scenario's time 0, before the first request.
    The data path (`data_path`, default on; `jetfleet.links`): each request's frames are preprocessed on the
    controller (`preprocess_s_per_frame` each, one after another, before the request reaches the scheduler) and
    each batch's input crosses its device's link (the inventory's, default its kind's) before it runs; policies
    see the links through their devices (`DeviceState.link`). `data_path=False`: frames move for free.
    `power_states` replaces the catalogue's sleep states of the kinds it names (the devices report these as
    their own facts, and sleep by them): sensitivity studies of assumed figures.
    """
    if not 0 <= preprocess_s_per_frame < math.inf:
        raise ConfigError(f"simulate: preprocess_s_per_frame must be >= 0 s and finite, got {preprocess_s_per_frame}")
    run = _Run(requests, fleet, policy, cost, device_models, sink, horizon_s, initial_freq, start_s, power_states)
    if data_path:
        run.add_data_path(preprocess_s_per_frame)
    if noise is not None:
        run.add_noise(dataclasses.replace(noise, seed=seed))
    return run.run()


class _Run:
    """One simulation's mutable state; `simulate` is its only user."""

    def __init__(
        self,
        requests: Sequence[Request],
        fleet: Fleet,
        policy: Policy,
        cost: CostModel,
        device_models: Mapping[str, DeviceModel] | None,
        sink: EventSink | None,
        horizon_s: float | None,
        initial_freq: str,
        start_s: float | None = None,
        power_states: Mapping[str, tuple[PowerStateSpec, ...]] | None = None,
    ) -> None:
        self.requests = sorted(requests, key=lambda r: r.arrival_s)  # stable: ties keep the given order
        ids = {r.request_id for r in self.requests}
        if len(ids) != len(self.requests):
            raise ConfigError(f"simulate: request ids must be unique; {len(self.requests) - len(ids)} repeat")
        if initial_freq not in ("max", "min"):
            raise ConfigError(f"simulate: initial_freq must be 'max' or 'min', got {initial_freq!r}")
        self.fleet, self.policy, self.horizon_s = fleet, policy, horizon_s
        self.truth = dict(device_models) if device_models is not None else default_device_models(fleet)
        missing = sorted({d.kind for d in fleet.devices} - set(self.truth))
        if missing:
            raise ConfigError(f"simulate: no device model for kind(s) {missing} of fleet {fleet.name!r}")
        first_s = self.requests[0].arrival_s if self.requests else 0.0
        if start_s is not None and start_s > first_s:
            raise ConfigError(f"simulate: start_s {start_s} is after the first arrival at {first_s}")
        self.start_s = first_s if start_s is None else start_s
        self.power_states = dict(power_states or {})
        states, self.devices = [], {}
        for spec in fleet.devices:
            kind = get_kind(spec.kind)
            f0 = kind.max_freq_hz if initial_freq == "max" else kind.min_freq_hz
            state = DeviceState(spec.name, spec.kind, f0, self.start_s, 0, self.start_s, True, spec.models)
            state.power_states = (power_states or {}).get(spec.kind)
            states.append(state)
            self.devices[spec.name] = EmulatedDevice(spec.name, kind, self.truth[spec.kind], f0, self.start_s)
        self.core = SchedulerCore(policy, cost, states, sink)
        self.ready_s = [r.arrival_s for r in self.requests]  # when each request reaches the scheduler
        self.order = list(range(len(self.requests)))  # requests in the order they reach it
        self.heap: list[tuple[float, int, int, Batch, BatchResult]] = []
        self.seq = 0
        self.wake_s: float | None = None
        self.outcomes: dict[int, Outcome] = {}
        self.batches: list[BatchResult] = []
        self.decisions = 0

    def add_data_path(self, preprocess_s_per_frame: float) -> None:
        """Charge the data path: each device's link (the inventory's) on every batch, and the controller's
        preprocessing on every request before the scheduler sees it."""
        for spec in self.fleet.devices:
            self.core.devices[spec.name].link = spec.link
            self.devices[spec.name].link = spec.link
        self.ready_s = [r.arrival_s + r.n_frames * preprocess_s_per_frame for r in self.requests]
        self.order = sorted(self.order, key=lambda j: self.ready_s[j])  # stable: ties keep arrival order

    def add_noise(self, noise: NoiseModel) -> None:
        """Give every device a noisy copy of its kind's model with its own seeded stream."""
        for name, device in self.devices.items():
            base = self.truth[device.kind.key]
            if not (dataclasses.is_dataclass(base) and hasattr(base, "noise") and hasattr(base, "batch_cost")):
                raise ConfigError(f"simulate: the device model of {device.kind.key} does not support noise")
            noisy = dataclasses.replace(base, noise=noise.for_device(name))
            device.set_cost_fn(noisy.batch_cost)

    def run(self) -> SimResult:
        requests, n = self.requests, len(self.requests)
        order, ready_s = self.order, self.ready_s
        heap, core = self.heap, self.core
        limit_s = self.horizon_s if self.horizon_s is not None else math.inf
        i = 0
        now_s = self.start_s
        while True:
            t_arrival = ready_s[order[i]] if i < n else math.inf
            t_heap = heap[0][0] if heap else math.inf
            t_wake = self.wake_s if self.wake_s is not None else math.inf
            t = min(t_arrival, t_heap, t_wake)
            if t == math.inf:
                if core.open_requests:  # stuck: nothing can happen any more
                    self._record(core.drop_all(now_s, DropReason.SHUTDOWN))
                break
            if t > limit_s:
                self._stop_at_horizon(limit_s, i)
                break
            now_s = t
            while heap and heap[0][0] <= t:
                _, _, _, batch, result = heapq.heappop(heap)
                self._record(core.complete(t, result, batch.batch_id))
                self.batches.append(result)
            while i < n and ready_s[order[i]] <= t:
                self._record(core.submit(t, requests[order[i]]))
                i += 1
            if self.wake_s is not None and self.wake_s <= t:
                self.wake_s = None
            self._apply(t, core.step(t))
            self.decisions += 1
            if i == n and not core.open_requests:
                break
        return self._result()

    def _apply(self, now_s: float, out: StepOutput) -> None:
        self._record(out.outcomes)
        for power in out.power_changes:
            device = self.devices[power.device]
            if power.state.awake:
                device.wake(now_s)
            else:
                spec = self.core.devices[power.device].power_spec(power.state)
                assert spec is not None  # the core checked it
                device.sleep(now_s, spec)
        for change in out.frequency_changes:
            self.devices[change.device].change_frequency(now_s, change.freq_hz)
        for batch in out.batches:
            d = batch.dispatch
            device = self.devices[d.device]
            n_frames = batch.n_frames
            started_s, finished_s, latency_s, energy_j = device.run(now_s, d.model, n_frames, d.freq_hz)
            result = BatchResult(
                d.device, d.request_ids, n_frames, d.model, d.freq_hz, started_s, finished_s, latency_s, energy_j
            )
            heapq.heappush(self.heap, (finished_s, _COMPLETION, self.seq, batch, result))
            self.seq += 1
        wake = out.wake_at_s
        if wake is not None and not wake > now_s:
            wake = now_s + MIN_WAKE_STEP_S
        self.wake_s = wake

    def _record(self, outcomes: list[Outcome]) -> None:
        for o in outcomes:
            self.outcomes[o.request_id] = o

    def _stop_at_horizon(self, horizon_s: float, next_arrival: int) -> None:
        """Drop what is queued or not yet arrived at the horizon; let batches in flight finish."""
        self._record(self.core.drop_all(horizon_s, DropReason.SHUTDOWN))
        for r in (self.requests[j] for j in self.order[next_arrival:]):
            self.outcomes[r.request_id] = Outcome(r.request_id, OutcomeStatus.DROPPED, horizon_s, reason="shutdown")
        while self.heap:
            t, _, _, batch, result = heapq.heappop(self.heap)
            self._record(self.core.complete(t, result, batch.batch_id))
            self.batches.append(result)

    def _result(self) -> SimResult:
        outcomes = [self.outcomes[r.request_id] for r in self.requests]
        end_s = max((o.time_s for o in outcomes), default=self.start_s)
        end_s = max(end_s, self.start_s)
        for device in self.devices.values():
            device.finish(end_s)
        completed = {o.request_id for o in outcomes if o.status is OutcomeStatus.COMPLETED}
        served = [r for r in self.requests if r.request_id in completed]
        bound_j = energy_bound_j(served, self.fleet, self.truth, self.start_s, end_s) if self.requests else 0.0
        sleep_bound_j = (
            sleep_energy_bound_j(served, self.fleet, self.truth, self.start_s, end_s, power_states=self.power_states)
            if self.requests
            else 0.0
        )
        energy_j = sum(d.energy_j for d in self.devices.values())
        name = self.policy.name
        asleep_s = {n: d.sleep_meter.asleep_s for n, d in self.devices.items()}
        record = RunRecord(
            self.requests, outcomes, energy_j, bound_j, end_s - self.start_s, sleep_bound_j, sum(asleep_s.values())
        )
        return SimResult(
            policy=name,
            requests=self.requests,
            outcomes=outcomes,
            batches=self.batches,
            energy_j=energy_j,
            device_energy_j={n: d.energy_j for n, d in self.devices.items()},
            device_busy_s={n: d.busy_s for n, d in self.devices.items()},
            device_batches={n: d.batches for n, d in self.devices.items()},
            start_s=self.start_s,
            end_s=end_s,
            energy_bound_j=bound_j,
            decisions=self.decisions,
            metrics=compute_metrics(name, [record]),
            device_asleep_s=asleep_s,
            device_sleeps={n: d.sleep_meter.sleeps for n, d in self.devices.items()},
            sleep_energy_bound_j=sleep_bound_j,
        )


def aggregate(results: Sequence[SimResult], policy: str | None = None) -> RunMetrics:
    """Metrics of several runs of one policy (e.g. one per scenario): frames/energy summed, latencies pooled."""
    name = policy if policy is not None else (results[0].policy if results else "")
    return compute_metrics(name, [r.record() for r in results])
