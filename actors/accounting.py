"""What a live run measured, counted exactly as the simulator counts it (DESIGN.md's definitions).

The live scheduler keeps one `LiveRun` per experiment run: the requests it received (arrival and SLO in
scheduler time), the one outcome of each, and an `EnergyLedger` per device. The ledger integrates board
energy the way `simulator.devices.EmulatedDevice` does: each batch costs the energy its device's power
meter measured, over the interval it ran (in scheduler time: the moment its result came back, minus its
device-time latency); every other moment costs the device model's idle power at the clock the GPU was at, or,
while the device sleeps, its power state's board power plus the transitions' energy, counted by the same
`jetfleet.power_states.SleepMeter` the simulator's devices use (`EnergyLedger.sleep` / `wake`).
`LiveRun.metrics()` then feeds `jetfleet.metrics.compute_metrics`, so a live run and a simulated run of
the same workload are compared on exactly the same definitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from cluster.inventory import Fleet
from costmodel.device_models import device_model
from jetfleet.metrics import RunRecord, compute_metrics, energy_bound_j
from jetfleet.power_states import PowerStateSpec, SleepMeter
from jetfleet.types import Outcome, OutcomeStatus, Request

IdlePowerFn = Callable[[float], float]  # GPU frequency (Hz) -> idle board power (W)


class EnergyLedger:
    """Board energy of one device over a run, built from batch completions and clock changes.

    Times are scheduler times, non-decreasing per device. `open(t)` starts the books (the run's first
    arrival); before that nothing is counted. A failed device stops counting at `close(t)`.
    """

    def __init__(self, idle_power_w: IdlePowerFn, freq_hz: float) -> None:
        self._idle_power_w = idle_power_w
        self.freq_hz = freq_hz
        self.mark_s: float | None = None  # energy is accounted up to here
        self.busy_energy_j = 0.0
        self.idle_energy_j = 0.0
        self.busy_s = 0.0
        self.batches = 0
        self.closed = False
        self.sleep_meter = SleepMeter()

    @property
    def energy_j(self) -> float:
        return self.busy_energy_j + self.idle_energy_j + self.sleep_meter.energy_j

    def tail_power_w(self) -> float:
        """What the device draws from `mark_s` on: its sleep state's power, or idle power at its clock."""
        spec = self.sleep_meter.spec
        return spec.board_power_w if spec is not None else self._idle_power_w(self.freq_hz)

    def open(self, t_s: float) -> None:
        if self.mark_s is None:
            self.mark_s = t_s

    def _idle_until(self, t_s: float) -> None:
        if self.mark_s is None or self.closed:
            return
        if self.sleep_meter.asleep:
            self.sleep_meter.accrue(t_s)
            self.mark_s = max(self.mark_s, t_s)
        elif t_s > self.mark_s:
            self.idle_energy_j += self._idle_power_w(self.freq_hz) * (t_s - self.mark_s)
            self.mark_s = t_s

    def batch(self, finished_s: float, latency_s: float, energy_j: float, freq_hz: float) -> None:
        """A batch ran for `latency_s` (scheduler time) up to `finished_s` and cost `energy_j`."""
        if self.closed:
            return
        if self.mark_s is None:
            self.open(finished_s - latency_s)
        started_s = max(finished_s - max(latency_s, 0.0), self.mark_s)
        self._idle_until(started_s)
        self.busy_energy_j += energy_j
        self.busy_s += finished_s - started_s
        self.batches += 1
        self.mark_s = max(self.mark_s, finished_s)
        self.freq_hz = freq_hz

    def frequency(self, t_s: float, freq_hz: float) -> None:
        """The GPU clock became `freq_hz` at `t_s` (an idle down-clock, a reset)."""
        self._idle_until(t_s)
        self.freq_hz = freq_hz

    def sleep(self, t_s: float, spec: PowerStateSpec) -> None:
        """The device began entering `spec`'s state at `t_s` (an applied `SetPowerState`)."""
        self._idle_until(t_s)
        if not self.closed and self.mark_s is not None:
            self.sleep_meter.enter(self.mark_s, spec)

    def wake(self, t_s: float) -> float:
        """The device was told to wake at `t_s`; returns when it is awake (counted asleep until then)."""
        if not self.sleep_meter.asleep:
            return t_s
        self._idle_until(t_s)
        done_s = self.sleep_meter.leave(t_s)
        self.mark_s = max(self.mark_s or done_s, done_s)
        return done_s

    def close(self, t_s: float) -> None:
        """Stop counting at `t_s` (end of the run, or the device failed)."""
        self._idle_until(t_s)
        self.closed = True


@dataclass
class LiveRun:
    """One run of the live service: its requests, their outcomes and the devices' ledgers.

    A run's records are bounded: `rolled` starts the next window of a long-running service, carrying the
    requests still open and counting energy from there on (the ledgers are shared; `energy_base_j` is what
    they held when this window began)."""

    policy: str
    ledgers: dict[str, EnergyLedger]
    requests: dict[int, Request] = field(default_factory=dict)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    start_s: float | None = None  # first arrival (of this window)
    requeued: int = 0  # requests put back in the queue after a device failed
    device_failures: int = 0
    energy_base_j: dict[str, float] = field(default_factory=dict)  # each ledger's energy when this window began
    windows: int = 1  # windows of this run so far (this one included)

    def rolled(self, now_s: float) -> LiveRun:
        """The next window from `now_s`: the requests still open move to it, answered ones are forgotten."""
        open_requests = {rid: r for rid, r in self.requests.items() if rid not in self.outcomes}
        base = self.energy_j(now_s)
        base = {name: base[name] + self.energy_base_j.get(name, 0.0) for name in base}
        return LiveRun(
            self.policy, self.ledgers, open_requests, {}, now_s, energy_base_j=base, windows=self.windows + 1
        )

    def arrive(self, request: Request) -> None:
        if self.start_s is None:
            self.start_s = request.arrival_s
            for ledger in self.ledgers.values():
                ledger.open(request.arrival_s)
        self.requests[request.request_id] = request

    def answer(self, outcome: Outcome) -> None:
        self.outcomes[outcome.request_id] = outcome

    @property
    def end_s(self) -> float:
        """The last answer (or the first arrival when nothing was answered)."""
        start = self.start_s if self.start_s is not None else 0.0
        return max((o.time_s for o in self.outcomes.values()), default=start)

    def energy_j(self, end_s: float | None = None) -> dict[str, float]:
        """Each device's energy from the first arrival to `end_s` (default: the last answer)."""
        end = self.end_s if end_s is None else end_s
        out = {}
        for name, ledger in self.ledgers.items():
            idle_tail = 0.0
            if ledger.mark_s is not None and not ledger.closed and end > ledger.mark_s:
                idle_tail = ledger.tail_power_w() * (end - ledger.mark_s)
            out[name] = ledger.energy_j + idle_tail - self.energy_base_j.get(name, 0.0)
        return out

    def metrics(self, fleet: Fleet) -> dict[str, object]:
        """`jetfleet.metrics.RunMetrics` of the answered requests, as a JSON-ready dict, plus live extras."""
        answered = [r for rid, r in self.requests.items() if rid in self.outcomes]
        outcomes = [self.outcomes[r.request_id] for r in answered]
        start = self.start_s if self.start_s is not None else 0.0
        end = self.end_s
        per_device = self.energy_j(end)
        energy = sum(per_device.values())
        served = [self.requests[o.request_id] for o in outcomes if o.status is OutcomeStatus.COMPLETED]
        bound = energy_bound_j(served, fleet, _device_models(fleet), start, end) if answered else 0.0
        record = RunRecord(answered, outcomes, energy, bound, end - start)
        out = compute_metrics(self.policy, [record]).to_dict()
        out.update(
            open_requests=len(self.requests) - len(answered),
            device_energy_j={k: round(v, 3) for k, v in per_device.items()},
            device_batches={k: ledger.batches for k, ledger in self.ledgers.items()},
            requeued=self.requeued,
            device_failures=self.device_failures,
            drops_by_reason=self.drops_by_reason(),
            window=self.windows,
        )
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

    def drops_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes.values():
            if o.status is not OutcomeStatus.COMPLETED:
                counts[o.reason or o.status.value] = counts.get(o.reason or o.status.value, 0) + 1
        return counts


def _device_models(fleet: Fleet) -> dict[str, object]:
    return {kind: device_model(kind) for kind in {d.kind for d in fleet.devices}}


def idle_power_fn(kind: str) -> IdlePowerFn:
    """The device model's idle power of `kind` (cached per frequency)."""
    model = device_model(kind)
    cache: dict[float, float] = {}

    def idle(freq_hz: float) -> float:
        p = cache.get(freq_hz)
        if p is None:
            p = cache[freq_hz] = float(model.idle_power_w(freq_hz))
        return p

    return idle
