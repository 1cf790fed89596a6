"""`loudva`: LoudVA's own energy-aware scheduler, reproduced faithfully (weaknesses included).

Source: LoudVA (github.com/iloudaros/LoudVA) `LoudController/LoudScheduler.py` (the version with the
safety margin, frequency-change delay and throughput fallback), `Settings.py` and `DeviceData.py`.
Paper: "Leveraging DVFS for Energy-Efficient and QoS-aware Edge Video Analytics" (doi 10.1145/3721889.3721925).

Every decision (LoudVA polls every 10 ms; here: after each arrival or completion, and every 10 ms while it
holds requests back):

1. The queue is ordered by remaining slack (deadline - now); the tightest slack is the constraint.
2. Exhaustive search over the *available* devices (fewer than `max_in_flight` = 2 batches in flight;
   LoudVA's Triton `model_instances`), every frequency of the device, and every batch size up to
   min(queued frames, device cap) (caps AGX 64, NX 8, Nano 4): predicted latency + 0.2 s safety margin
   + the frequency-change delay (when the frequency differs from the device's current one) must fit the
   tightest slack; among those, the lowest predicted energy per frame wins. LoudVA predicts as if the
   device were idle now: it ignores the work already queued on it (`busy_until_s`), a weakness kept on
   purpose. Batch sizes are the frame counts of whole-request prefixes of the slack order.
3. When nothing fits, LoudVA's "closest configuration": among all configurations, those whose throughput
   (frames / predicted latency) is at least the queued frame count, with the lowest latency (margin and
   change delay included); if none reaches it, the highest throughput, then the lowest latency. With a
   short queue this is batch 1 at the current clock.
4. Adaptive waiting: if the tightest slack exceeds 4 x the chosen configuration's expected latency
   (`batching_wait_strictness`), fewer frames than the largest cap are queued, and a request arrived in
   the last 5 s (`batching_max_wait_time`), dispatch nothing and look again in 10 ms.
5. One batch per decision (LoudVA dispatches one batch per loop iteration).
6. Every 2 s (`scaling_logic_period`) devices idle for at least 4 s (`frequency_scaling_idle_limit`) are
   down-clocked to their lowest frequency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from costmodel.view import CostView
from jetfleet.types import Applied, Decisions, DeviceState, Dispatch, SetFrequency
from policies.base import Policy
from policies.baselines import LOUDVA_TICK_S, Ticker, batch_cap
from policies.context import QueueView, StepContext
from policies.registry import register

SAFETY_MARGIN_S = 0.2  # Settings.safety_margin
WAIT_STRICTNESS = 4.0  # Settings.batching_wait_strictness
MAX_WAIT_SINCE_ARRIVAL_S = 5.0  # Settings.batching_max_wait_time
SCALING_PERIOD_S = 2.0  # Settings.scaling_logic_period
IDLE_DOWNCLOCK_S = 4.0  # Settings.frequency_scaling_idle_limit
MAX_IN_FLIGHT = 2  # Triton model_instances per device


@dataclass(frozen=True)
class _Choice:
    device: DeviceState
    freq_hz: float
    n_requests: int  # the batch is the first n_requests of the slack order
    latency_s: float  # predicted inference latency
    energy_j: float
    expected_s: float  # latency + safety margin + change delay: LoudVA's "expected latency"
    fits: bool


class LoudVA(Policy):
    """LoudVA's scheduler; see the module docstring for the algorithm and its source."""

    name = "loudva"

    def __init__(self, *, safety_margin_s: float = SAFETY_MARGIN_S, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.safety_margin_s = safety_margin_s
        self.max_in_flight = max_in_flight
        self._last_arrival_s = -math.inf
        self._scaling = Ticker(SCALING_PERIOD_S)

    def absorb(self, applied: Applied) -> None:
        if applied.admitted:
            self._last_arrival_s = applied.now_s

    def decide(self, ctx: StepContext) -> Decisions:
        out = Decisions()
        if ctx.queue:
            self._schedule(ctx.now_s, ctx.queue, ctx.devices, ctx.cost, out)
        busy = {d.device for d in out.dispatches}
        self._downclock(ctx.now_s, [d for d in ctx.devices if d.name not in busy], out)
        return out

    # -- idle down-clocking ---------------------------------------------------------------------
    def _downclock(self, now_s: float, devices: Sequence[DeviceState], out: Decisions) -> None:
        pending = False
        for d in devices:
            f_min = d.min_freq_hz
            if d.healthy and d.in_flight == 0 and d.freq_hz != f_min:
                if self._scaling.due(now_s) and now_s - d.last_busy_s >= IDLE_DOWNCLOCK_S:
                    out.frequency_changes.append(SetFrequency(d.name, f_min, "idle for 4 s"))
                else:
                    pending = True
        if pending:
            out.wake_at_s = _earliest(out.wake_at_s, self._scaling.next(now_s))

    # -- batching -------------------------------------------------------------------------------
    def _schedule(
        self, now_s: float, queue: QueueView, devices: Sequence[DeviceState], cost: CostView, out: Decisions
    ) -> None:
        ordered = list(queue.by_deadline())  # least remaining slack first
        model = ordered[0].model
        ordered = [r for r in ordered if r.model == model]
        slack_s = ordered[0].deadline_s - now_s
        frames = np.cumsum([r.n_frames for r in ordered])
        available = [d for d in devices if d.healthy and d.in_flight < self.max_in_flight]
        if not available:
            return  # a completion wakes us
        choice = self._search(available, model, frames, slack_s, cost)
        if choice is None:
            return
        largest_cap = max(batch_cap(d) for d in devices)
        if (
            slack_s > choice.expected_s * WAIT_STRICTNESS
            and queue.frames < largest_cap
            and now_s - self._last_arrival_s < MAX_WAIT_SINCE_ARRIVAL_S
        ):
            out.wake_at_s = _earliest(out.wake_at_s, now_s + LOUDVA_TICK_S)
            return
        batch = ordered[: choice.n_requests]
        out.dispatches.append(
            Dispatch(
                choice.device.name,
                tuple(r.request_id for r in batch),
                choice.freq_hz,
                model,
                predicted_latency_s=choice.latency_s,
                predicted_energy_j=choice.energy_j,
                reason="lowest energy per frame" if choice.fits else "throughput fallback",
            )
        )
        if len(batch) < len(queue):
            out.wake_at_s = _earliest(out.wake_at_s, now_s + LOUDVA_TICK_S)

    def _search(
        self, devices: Sequence[DeviceState], model: str, frames: np.ndarray, slack_s: float, cost: CostView
    ) -> _Choice | None:
        tables = [(d, self._table(d, model, frames, cost)) for d in devices]
        best: tuple[float, DeviceState, _Table, int] | None = None  # lowest energy per frame that fits
        for d, t in tables:
            hits = np.flatnonzero(t.expected_by_epf <= slack_s)
            if hits.size and (best is None or t.epf_sorted[hits[0]] < best[0]):
                best = (float(t.epf_sorted[hits[0]]), d, t, int(t.order[hits[0]]))
        if best is not None:
            _, d, t, flat = best
            return t.choice(d, flat, fits=True)
        closest: tuple[tuple, _Choice] | None = None  # LoudVA's closest_config, by its ordering key
        queued = float(frames[-1])
        for d, t in tables:
            throughput = t.sizes[None, :] / t.lat
            meets = throughput >= queued
            # LoudVA's ordering: meeting the throughput first, then lowest latency; else highest throughput.
            if meets.any():
                flat = int(np.argmin(np.where(meets, t.expected, np.inf)))
                key: tuple = (0, float(t.expected.flat[flat]))
            else:
                flat = int(np.lexsort((t.expected.ravel(), -throughput.ravel()))[0])
                key = (1, -float(throughput.flat[flat]), float(t.expected.flat[flat]))
            if closest is None or key < closest[0]:
                closest = (key, t.choice(d, flat, fits=False))
        return closest[1] if closest is not None else None

    def _table(self, d: DeviceState, model: str, frames: np.ndarray, cost: CostView) -> _Table:
        """The search table of one device for this queue, kept in the cost view (holding requests back costs
        little). LoudVA learns nothing from measurements: it reads the cost model's raw predictions."""
        cap = batch_cap(d)
        n = max(1, int(np.searchsorted(frames, cap, side="right")))  # prefixes of <= cap frames (>= 1)
        sizes = frames[:n].astype(int)
        # LoudVA priced its network too (a measured cost per batch size in its DeviceData)
        grid = cost.grid(d.kind, model, d.freqs_hz, max(int(sizes[-1]), cap), link=d.link)
        key = (
            "loudva",
            d.kind,
            model,
            d.freqs_hz,
            d.freq_hz,
            d.freq_change_delay_s,
            self.safety_margin_s,
            sizes.tobytes(),
        )

        def build() -> _Table:
            lat, en = grid.latency_s[:, sizes - 1], grid.energy_j[:, sizes - 1]
            return _Table.build(grid.freqs_hz, lat, en, sizes, d.freq_hz, d.freq_change_delay_s, self)

        return cost.derived(key, grid, build)


@dataclass(frozen=True)
class _Table:
    """One device's (frequency x whole-request prefix) search table for one queue and clock."""

    freqs: np.ndarray  # (F,)
    sizes: np.ndarray  # (n,) frames of each prefix
    lat: np.ndarray  # (F, n) predicted latency
    en: np.ndarray  # (F, n) predicted energy
    expected: np.ndarray  # (F, n) latency + safety margin + change delay
    order: np.ndarray  # flat indices by energy per frame, then frequency ascending, then batch descending
    epf_sorted: np.ndarray  # energy per frame in that order
    expected_by_epf: np.ndarray  # expected latency in that order

    @staticmethod
    def build(
        freqs: np.ndarray,
        lat: np.ndarray,
        en: np.ndarray,
        sizes: np.ndarray,
        freq_now_hz: float,
        delay_s: float,
        policy: LoudVA,
    ) -> _Table:
        delay = np.where(np.abs(freqs - freq_now_hz) < 1.0, 0.0, delay_s)[:, None]
        expected = lat + policy.safety_margin_s + delay
        epf = (en / sizes[None, :]).ravel()
        fi, bi = np.indices(lat.shape)
        # LoudVA scans frequencies ascending and batches descending and keeps the first strict minimum.
        order = np.lexsort((-bi.ravel(), fi.ravel(), epf))
        return _Table(freqs, sizes, lat, en, expected, order, epf[order], expected.ravel()[order])

    def choice(self, d: DeviceState, flat: int, *, fits: bool) -> _Choice:
        fi, bi = np.unravel_index(flat, self.lat.shape)
        return _Choice(
            d,
            float(self.freqs[fi]),
            int(bi) + 1,
            float(self.lat[fi, bi]),
            float(self.en[fi, bi]),
            float(self.expected[fi, bi]),
            fits,
        )


def _earliest(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


@register("loudva")
def _loudva(arg: str | None) -> Policy:
    return LoudVA()
