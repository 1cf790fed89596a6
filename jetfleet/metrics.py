"""Per-run metrics exactly as DESIGN.md defines them, the energy bound, and aggregation over runs.

The simulator and the live scheduler (`actors.accounting`) both report these, so they live below both.

- A frame is *within SLO* when its request completed no later than arrival + slo_s; dropped or failed
  frames are not.
- Energy is the board energy of every device from the first arrival to the last answer (the simulator
  integrates it); frames per joule = completed frames / energy.
- Latency percentiles are over completed requests (end-to-end: completion - arrival).
- `bound_fraction` = energy bound / energy: 1.0 would be a policy that spends no more than the bound.
- `sleep_bound_fraction` = sleep-aware energy bound / energy (`sleep_energy_bound_j`): the same with every
  device allowed to spend its non-busy time in the deepest sleep state the fleet may use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jetfleet.catalogue import get_kind
from jetfleet.power_states import DEFAULT_SLEEP_STATES, PowerState, PowerStateSpec
from jetfleet.types import Outcome, OutcomeStatus, Request

if TYPE_CHECKING:  # annotations only: the fleet and device models are the layers above
    from cluster.inventory import Fleet
    from costmodel.base import DeviceModel

# The JSON keys of `jetfleet simulate --json`, in order.
RESULT_KEYS = (
    "policy",
    "requests",
    "frames",
    "frames_within_slo",
    "pct_frames_within_slo",
    "energy_j",
    "frames_per_joule",
    "p50_latency_s",
    "p95_latency_s",
    "dropped_frames",
    "bound_fraction",
)


@dataclass(frozen=True)
class RunMetrics:
    """What one run (or an aggregate of runs) of one policy achieved."""

    policy: str
    requests: int  # requests in the workload
    frames: int  # frames in the workload
    frames_within_slo: int
    pct_frames_within_slo: float  # 100 * frames_within_slo / frames
    energy_j: float  # board energy of the fleet, first arrival to last answer
    frames_per_joule: float  # completed frames / energy_j
    p50_latency_s: float  # over completed requests; nan when none completed
    p95_latency_s: float
    dropped_frames: int  # frames of dropped or failed requests
    bound_fraction: float  # energy_bound_j / energy_j (<= 1)
    energy_bound_j: float  # see `energy_bound_j`
    completed_frames: int
    requests_within_slo: int
    duration_s: float  # summed over runs: first arrival to last answer
    sleep_energy_bound_j: float = math.nan  # see `sleep_energy_bound_j`
    sleep_bound_fraction: float = math.nan  # sleep_energy_bound_j / energy_j (<= 1)
    asleep_s: float = 0.0  # device-seconds in sleep states (transitions included), summed over devices and runs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the `RESULT_KEYS` first, then the extras; nan becomes None."""
        d = asdict(self)
        ordered = {k: d.pop(k) for k in RESULT_KEYS}
        ordered.update(d)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in ordered.items()}


@dataclass(frozen=True)
class RunRecord:
    """The raw material of metrics for one run: the workload, its outcomes and its energy figures."""

    requests: Sequence[Request]
    outcomes: Sequence[Outcome]
    energy_j: float
    energy_bound_j: float
    duration_s: float
    sleep_energy_bound_j: float = math.nan
    asleep_s: float = 0.0


def compute_metrics(policy: str, runs: Iterable[RunRecord]) -> RunMetrics:
    """Metrics of one policy over one or more runs: frames and energy summed, latencies pooled."""
    n_requests = frames = within = completed = requests_within = dropped = 0
    energy_j = bound_j = duration_s = sleep_bound_j = asleep_s = 0.0
    latencies: list[float] = []
    for run in runs:
        by_id = {r.request_id: r for r in run.requests}
        n_requests += len(run.requests)
        for o in run.outcomes:
            r = by_id[o.request_id]
            frames += r.n_frames
            if o.status is OutcomeStatus.COMPLETED:
                completed += r.n_frames
                latencies.append(o.time_s - r.arrival_s)
                if o.time_s <= r.deadline_s:
                    within += r.n_frames
                    requests_within += 1
            else:
                dropped += r.n_frames
        energy_j += run.energy_j
        bound_j += run.energy_bound_j
        sleep_bound_j += run.sleep_energy_bound_j
        asleep_s += run.asleep_s
        duration_s += run.duration_s
    p50, p95 = (np.percentile(latencies, [50, 95]).tolist()) if latencies else (math.nan, math.nan)
    return RunMetrics(
        policy=policy,
        requests=n_requests,
        frames=frames,
        frames_within_slo=within,
        pct_frames_within_slo=100.0 * within / frames if frames else math.nan,
        energy_j=energy_j,
        frames_per_joule=completed / energy_j if energy_j > 0 else math.nan,
        p50_latency_s=float(p50),
        p95_latency_s=float(p95),
        dropped_frames=dropped,
        bound_fraction=bound_j / energy_j if energy_j > 0 else math.nan,
        energy_bound_j=bound_j,
        completed_frames=completed,
        requests_within_slo=requests_within,
        duration_s=duration_s,
        sleep_energy_bound_j=sleep_bound_j,
        sleep_bound_fraction=sleep_bound_j / energy_j if energy_j > 0 else math.nan,
        asleep_s=asleep_s,
    )


_EXCESS_CACHE: dict[tuple[int, str, tuple[float, ...], int, float], tuple[DeviceModel, float]] = {}


def min_excess_energy_per_frame_j(
    model: DeviceModel, dnn: str, freqs_hz: Sequence[float], max_batch: int, floor_w: float
) -> float:
    """min over (frequency, batch <= max_batch) of (energy_j - floor_w * latency_s) / batch on one device kind.

    `floor_w` is the device's lowest idle power: what the board would draw anyway during the batch. Uses the
    model's noiseless vectorised grids when it has them (`latency_grid`, `energy_grid`); cached per model.
    """
    key = (id(model), dnn, tuple(freqs_hz), max_batch, floor_w)
    hit = _EXCESS_CACHE.get(key)
    if hit is not None and hit[0] is model:
        return hit[1]
    batches = np.arange(1, max_batch + 1)
    if hasattr(model, "latency_grid") and hasattr(model, "energy_grid"):
        latency = np.asarray(model.latency_grid(dnn, freqs_hz, batches))
        energy = np.asarray(model.energy_grid(dnn, freqs_hz, batches))
    else:
        latency = np.array([[model.latency_s(dnn, int(b), f) for b in batches] for f in freqs_hz])
        energy = np.array([[model.energy_j(dnn, int(b), f) for b in batches] for f in freqs_hz])
    best = float(np.min((energy - floor_w * latency) / batches[None, :]))
    _EXCESS_CACHE[key] = (model, best)
    return best


def energy_bound_j(
    requests: Iterable[Request],
    fleet: Fleet,
    device_models: Mapping[str, DeviceModel],
    start_s: float,
    end_s: float,
    *,
    max_batch: int | None = None,
) -> float:
    """A lower bound on the board energy any policy spends serving `requests` on `fleet` in [start_s, end_s].

    DESIGN.md: "every frame served at its device's lowest energy-per-frame configuration, idle power for
    the rest of the time". Made precise so that it is a true lower bound for a fleet:

        bound = (end_s - start_s) * sum_d Pmin_d + sum_requests n_frames * min_{k,f,b} (E_k(b,f) - Pmin_k L_k(b,f)) / b

    where d runs over the fleet's devices, Pmin_d = min_f idle_power_w(f) of d's kind, and the min runs
    over the fleet's kinds k, their frequencies f and batch sizes 1 <= b <= max_batch (default: the
    kind's catalogue `max_batch`), with E and L the device model's batch energy and latency for the
    request's model. Why it is a bound: every device draws at least Pmin_d all the time (idle power at
    any frequency, frequency changes at idle power, batches' board energy includes the baseline), so a
    schedule's energy is T * sum Pmin_d plus, for each batch, its energy above that floor, which is at
    least n_frames times the best excess per frame of any kind. Dropped requests should be left out by
    the caller (they cost nothing). With a noisy device model the bound holds for the noiseless truth.
    """
    return _bound_j(requests, fleet, device_models, start_s, end_s, max_batch, (), {})


def sleep_energy_bound_j(
    requests: Iterable[Request],
    fleet: Fleet,
    device_models: Mapping[str, DeviceModel],
    start_s: float,
    end_s: float,
    *,
    states: Sequence[PowerState] = DEFAULT_SLEEP_STATES,
    max_batch: int | None = None,
    power_states: Mapping[str, tuple[PowerStateSpec, ...]] | None = None,
) -> float:
    """A lower bound on the board energy of any policy that may also put devices to sleep in `states`.

    The same formula as `energy_bound_j` with each device's floor lowered from its lowest idle power to
    Pdeep_d = min(Pmin_d, board power of the deepest of `states` its kind has), and each batch's excess taken
    above that floor: (E - Pdeep L) / b >= (E - Pmin L) / b. Why it is a bound: at every moment a device either
    runs a batch (board energy E over L), idles (>= Pmin_d >= Pdeep_d), sleeps or transitions (>= the state's
    board power >= Pdeep_d; transition energy >= 0); so its energy is at least T * Pdeep_d plus, per batch,
    E - Pdeep_d L. Transitions are charged nothing: a device that never sleeps pays none, and what it pays
    instead, idle above Pdeep_d while not busy, is only known once the schedule is. See docs/power-states.md.
    `power_states` replaces the catalogue's sleep states of the kinds it names (as `simulate` does).

    It is also never above `energy_bound_j`: the formula can be (when the best configuration's busy time exceeds
    the window, a lower floor subtracts more from each batch than it saves on the window), yet a policy that may
    sleep may also stay awake, so the least such a policy spends is at least the smaller of the two bounds.
    """
    requests = list(requests)
    asleep = _bound_j(requests, fleet, device_models, start_s, end_s, max_batch, tuple(states), power_states or {})
    return min(asleep, _bound_j(requests, fleet, device_models, start_s, end_s, max_batch, (), {}))


def _bound_j(
    requests: Iterable[Request],
    fleet: Fleet,
    device_models: Mapping[str, DeviceModel],
    start_s: float,
    end_s: float,
    max_batch: int | None,
    states: tuple[PowerState, ...],
    power_states: Mapping[str, tuple[PowerStateSpec, ...]],
) -> float:
    duration_s = max(0.0, end_s - start_s)
    kinds = {}
    floor_w = 0.0
    for spec in fleet.devices:
        kind = get_kind(spec.kind)
        dm = device_models[spec.kind]
        if spec.kind not in kinds:
            p_min = min(dm.idle_power_w(f) for f in kind.freqs_hz)
            specs = power_states.get(spec.kind, kind.power_states)
            asleep_w = [s.board_power_w for s in specs if s.state in states]
            kinds[spec.kind] = (kind, dm, min([p_min, *asleep_w]))
        floor_w += kinds[spec.kind][2]
    frames_by_model: dict[str, int] = {}
    for r in requests:
        frames_by_model[r.model] = frames_by_model.get(r.model, 0) + r.n_frames
    busy_j = 0.0
    for dnn, frames in frames_by_model.items():
        best = min(
            min_excess_energy_per_frame_j(dm, dnn, kind.freqs_hz, max_batch or kind.max_batch, p_min)
            for kind, dm, p_min in kinds.values()
        )
        busy_j += frames * best
    return duration_s * floor_w + busy_j
