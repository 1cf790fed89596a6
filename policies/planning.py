"""Vectorised batch planning for the `jetfleet` policy: which (frequency, batch) a device should run now.

The planner answers one question for one device: given the queued requests this device could serve (in
earliest-deadline-first order), the time it is free and its current clock, which prefix of those requests
should it run as one batch, at which catalogue frequency, so that

1. every request in the batch meets its deadline, with a safety margin against predictor error;
2. the requests *behind* the batch can still meet theirs if the fleet serves them at full speed afterwards
   (LoudVA checks the tightest slack only);
3. the batch costs the fewest *marginal* joules per frame. On a Jetson the idle baseline is a large part of
   the board power, and the board draws it whether or not a batch runs, so the planner charges a batch only
   the energy above the device's lowest idle power. A slow clock with a big batch therefore wins whenever
   the deadlines allow it (LoudVA minimises total energy per frame, idle included, which favours racing
   at a high clock and idling afterwards; the board idles anyway).

When (2) cannot hold for any choice the fleet is overloaded: the planner then takes the configuration that
clears frames fastest (the largest batch at the best frames per second) instead of falling back to batch 1.

Everything is numpy over a (frequencies x prefixes) grid; the cost model is asked once per (kind, model)
and cached in `GridCache`. No clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cluster.catalogue import get_kind
from costmodel.base import CostModel

_EPS_S = 1e-6  # comparisons of predicted times tolerate this much rounding
IdlePowerFn = Callable[[str, float], float]  # (device kind, GPU frequency in Hz) -> idle board watts


@dataclass(frozen=True)
class Margins:
    """How much slack the planner keeps against predictor error: finish = start + latency * (1 + rel) + abs."""

    abs_s: float = 0.05
    rel: float = 0.15

    def padded(self, latency_s: np.ndarray) -> np.ndarray:
        return latency_s * (1.0 + self.rel) + self.abs_s


@dataclass(frozen=True)
class GridTables:
    """One (device kind, model)'s predicted costs, with what the planner derives from them once.

    Batch axis: index i is a batch of i + 1 frames, up to `max_frames`. Arrays are read-only.
    """

    kind: str
    model: str
    freqs_hz: np.ndarray  # (F,) the kind's catalogue frequencies, ascending
    latency_s: np.ndarray  # (F, B) predicted seconds per batch
    energy_j: np.ndarray  # (F, B) predicted board joules per batch (idle baseline included)
    padded_s: np.ndarray  # (F, B) latency with the safety margins
    fastest_padded_s: np.ndarray  # (B,) min over frequencies of padded_s
    marginal_epf_j: np.ndarray  # (F, B) joules per frame above the floor idle power
    per_frame_s: np.ndarray  # (F, cap) latency_s / batch: device time per frame
    idle_w: np.ndarray  # (F,) idle board power at each frequency
    floor_w: float  # the kind's lowest idle power: what the board draws anyway
    cap: int  # largest batch worth running (catalogue max_batch)
    s_per_frame: float  # best sustained seconds per frame (max throughput over the grid up to cap)
    margins: Margins
    clock_index: dict[float, int] = field(default_factory=dict, compare=False)  # catalogue freq_hz -> index

    @property
    def max_frames(self) -> int:
        return int(self.latency_s.shape[1])

    def freq_index(self, freq_hz: float) -> int:
        """Index of `freq_hz` in `freqs_hz`, or -1 when it is not a catalogue frequency."""
        i = self.clock_index.get(freq_hz, -1)
        if i < 0:
            j = int(np.searchsorted(self.freqs_hz, freq_hz - 1.0))
            i = j if j < len(self.freqs_hz) and abs(self.freqs_hz[j] - freq_hz) < 1.0 else -1
        return i


class LatencyCorrection:
    """Measured / predicted latency of one (kind, model), learned from completed batches.

    A cost model's error is mostly a function of the batch size (a tree model's splits), so the factor for a
    (frequency, batch) cell is that cell's own running ratio once seen, else the ratio seen for that batch
    size at any frequency, else 1 (trust the model). Ratios are exponentially weighted (`alpha`) and clipped
    to [0.5, 2] so one outlier cannot derail the planner.
    """

    def __init__(self, n_freqs: int, n_batches: int, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.cell = np.ones((n_freqs, n_batches))
        self.cell_seen = np.zeros((n_freqs, n_batches), dtype=bool)
        self.column = np.ones(n_batches)
        self.column_seen = np.zeros(n_batches, dtype=bool)
        self.observations = 0

    def update(self, freq_index: int, batch: int, ratio: float) -> None:
        ratio = min(2.0, max(0.5, ratio))
        b = batch - 1
        if not 0 <= b < len(self.column):
            return
        for seen, values, idx in ((self.column_seen, self.column, b), (self.cell_seen, self.cell, (freq_index, b))):
            if freq_index < 0 and values is self.cell:
                continue
            values[idx] = ratio if not seen[idx] else (1 - self.alpha) * values[idx] + self.alpha * ratio
            seen[idx] = True
        self.observations += 1

    def factors(self) -> np.ndarray:
        """(F, B) multipliers for the predicted latency."""
        return np.where(self.cell_seen, self.cell, self.column[None, :])


class GridCache:
    """Cost grids per (cost model, kind, model), asked once and kept; grows when a larger batch shows up.

    With `learn=True`, `observe` feeds measured batch latencies into a `LatencyCorrection` per (kind, model)
    and the tables are re-derived with the corrected latency (and energy, which lasts as long) on next use.
    """

    def __init__(self, idle_power_w: IdlePowerFn, margins: Margins, *, learn: bool = True) -> None:
        self._idle_power_w = idle_power_w
        self._margins = margins
        self._learn = learn
        self._base: dict[tuple[int, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._tables: dict[tuple[int, str, str], GridTables] = {}
        self._corrections: dict[tuple[str, str], LatencyCorrection] = {}
        self._seen: dict[tuple[int, str, str], int] = {}  # observations folded into the cached tables
        self._idle_w: dict[tuple[int, str, str], np.ndarray] = {}  # idle watts per catalogue clock, asked once

    def get(self, cost: CostModel, kind: str, model: str, min_frames: int = 1) -> GridTables:
        """The tables of (kind, model) covering batches up to at least `min_frames` frames."""
        key = (id(cost), kind, model)
        tables = self._tables.get(key)
        correction = self._corrections.get((kind, model))
        fresh = correction is None or self._seen.get(key) == correction.observations
        if tables is not None and tables.max_frames >= min_frames and fresh:
            return tables
        base = self._base.get(key)
        if base is None or base[1].shape[1] < min_frames:
            size = max(get_kind(kind).max_batch, min_frames, 2 * base[1].shape[1] if base is not None else 0)
            base = self._base[key] = predicted_grid(cost, kind, model, size)
        factors = None
        if correction is not None:
            if correction.cell.shape != base[1].shape:
                correction = self._regrid(kind, model, base[1].shape)
            factors = correction.factors()
            self._seen[key] = correction.observations
        idle_w = self._idle_w.get(key)
        if idle_w is None:
            idle_w = self._idle_w[key] = idle_watts(kind, base[0], self._idle_power_w)
        tables = derive_tables(kind, model, *base, self._idle_power_w, self._margins, factors, idle_w=idle_w)
        self._tables[key] = tables
        return tables

    def observe(self, kind: str, model: str, freq_hz: float, n_frames: int, latency_s: float) -> None:
        """Fold one measured batch latency into the correction of (kind, model)."""
        if not self._learn or not latency_s > 0:
            return
        base = next((b for (_, k, m), b in self._base.items() if k == kind and m == model), None)
        if base is None or n_frames > base[1].shape[1]:
            return
        freqs, latency, _ = base
        fi = int(np.argmin(np.abs(freqs - freq_hz)))
        fi = fi if abs(freqs[fi] - freq_hz) < 1.0 else -1
        predicted = float(latency[fi, n_frames - 1]) if fi >= 0 else math.nan
        if not predicted > 0:
            return
        correction = self._corrections.get((kind, model))
        if correction is None:
            correction = self._corrections[(kind, model)] = LatencyCorrection(*latency.shape)
        correction.update(fi, n_frames, latency_s / predicted)

    def _regrid(self, kind: str, model: str, shape: tuple[int, ...]) -> LatencyCorrection:
        old = self._corrections[(kind, model)]
        new = LatencyCorrection(*shape, alpha=old.alpha)
        n = min(shape[1], old.cell.shape[1])
        new.cell[:, :n], new.cell_seen[:, :n] = old.cell[:, :n], old.cell_seen[:, :n]
        new.column[:n], new.column_seen[:n] = old.column[:n], old.column_seen[:n]
        new.observations = old.observations
        self._corrections[(kind, model)] = new
        return new


def predicted_grid(cost: CostModel, kind: str, model: str, max_frames: int) -> tuple[np.ndarray, ...]:
    """(freqs_hz, latency_s, energy_j) the cost model predicts for the kind's catalogue clocks x 1..max_frames."""
    freqs = np.asarray(get_kind(kind).freqs_hz, dtype=float)
    grid = cost.predict_grid(kind, model, freqs, np.arange(1, max_frames + 1))
    latency = np.maximum(np.asarray(grid.latency_s, dtype=float), 1e-6)
    return freqs, latency, np.maximum(np.asarray(grid.energy_j, dtype=float), 0.0)


def build_tables(
    cost: CostModel, kind: str, model: str, max_frames: int, idle_power_w: IdlePowerFn, margins: Margins
) -> GridTables:
    """Ask `cost` for the (catalogue frequency x 1..max_frames) grid of (kind, model) and derive the rest."""
    return derive_tables(kind, model, *predicted_grid(cost, kind, model, max_frames), idle_power_w, margins)


def idle_watts(kind: str, freqs: np.ndarray, idle_power_w: IdlePowerFn) -> np.ndarray:
    """(F,) idle board watts of `kind` at each of `freqs`."""
    return np.array([idle_power_w(kind, f) for f in freqs], dtype=float)


def derive_tables(
    kind: str,
    model: str,
    freqs: np.ndarray,
    latency: np.ndarray,
    energy: np.ndarray,
    idle_power_w: IdlePowerFn,
    margins: Margins,
    factors: np.ndarray | None = None,
    *,
    idle_w: np.ndarray | None = None,
) -> GridTables:
    """The planner's tables from a predicted grid, with latency (and energy) scaled by `factors` if given.
    `idle_w`: `idle_watts(kind, freqs, idle_power_w)` when the caller has it already."""
    if factors is not None:
        latency, energy = latency * factors, energy * factors
    batches = np.arange(1, latency.shape[1] + 1)
    if idle_w is None:
        idle_w = idle_watts(kind, freqs, idle_power_w)
    floor_w = float(idle_w.min())
    # Board energy above the floor the device draws anyway; a predictor may dip below it, so clip.
    marginal = np.maximum(energy - floor_w * latency, 0.0) / batches[None, :]
    padded = margins.padded(latency)
    cap = min(get_kind(kind).max_batch, latency.shape[1])
    per_frame = latency[:, :cap] / batches[None, :cap]
    arrays = (freqs, latency, energy, padded, padded.min(axis=0), marginal, per_frame, idle_w)
    for a in arrays:
        a.flags.writeable = False
    index = {float(f): i for i, f in enumerate(freqs)}
    return GridTables(kind, model, *arrays[:7], idle_w, floor_w, cap, float(per_frame.min()), margins, index)


@dataclass(frozen=True)
class BatchPlan:
    """The planner's answer for one device: run `positions` of the candidate window as one batch."""

    positions: np.ndarray  # indices into the candidate window, EDF order
    n_frames: int
    freq_index: int
    freq_hz: float
    start_s: float  # predicted start (after the device is free and any clock change settled)
    latency_s: float  # predicted batch latency (no margin)
    energy_j: float  # predicted board energy of the batch
    marginal_epf_j: float  # predicted joules per frame above the floor idle power
    latest_dispatch_s: float  # dispatching the same batch this late would still meet every deadline checked
    overloaded: bool  # the requests behind could not all be protected; chosen for throughput

    @property
    def finish_s(self) -> float:
        return self.start_s + self.latency_s


def plan_batch(
    tables: GridTables,
    *,
    ready_s: float,
    freq_index: int,
    change_delay_s: float,
    frames: np.ndarray,
    deadlines_s: np.ndarray,
    positions: np.ndarray,
    behind_s_per_frame: np.ndarray,
    behind_overhead_s: np.ndarray | float = 0.0,
    finish_limit_s: np.ndarray | None = None,
    clock_ok: np.ndarray | None = None,
    cap: int | None = None,
    behind_share: float = 1.0,
    lookahead: int = 64,
    tie_tolerance: float = 0.02,
) -> BatchPlan | None:
    """Choose the batch and frequency for one device; None when it can serve none of the candidates in time.

    `frames`, `deadlines_s` and `positions` describe the candidates this device may take, in EDF order
    (`positions` maps them back to the caller's window). `ready_s` is when the device is free; a frequency
    other than its clock now (`freq_index`, -1 if none) starts `change_delay_s` later. The look-behind
    check (rule 2 in the module docstring) assumes the frames left behind drain at `behind_s_per_frame`
    (per frequency: the device keeps the clock it picks, or switches to its fastest paying the delay)
    after `behind_overhead_s` (per frequency) for the next batch's fixed cost and margin.
    `finish_limit_s` (per frequency, optional) keeps the device free early enough for work not queued yet;
    like the look-behind check it yields when no choice can honour it, as does `clock_ok` (per frequency,
    optional: the clocks fast enough for the expected arrivals). The look-behind check covers
    `lookahead` candidates past the largest batch; the chosen plan is re-checked with the frames behind run
    as real batches (at most `cap` frames each), `behind_share` of them on this device.
    """
    if len(frames) == 0:
        return None
    cap = tables.cap if cap is None else cap
    start = np.full(len(tables.freqs_hz), ready_s + change_delay_s)
    if freq_index >= 0:
        start[freq_index] = ready_s
    # Drop candidates this device cannot finish in time even alone at its best frequency.
    earliest = ready_s + change_delay_s + tables.fastest_padded_s[frames - 1]
    if freq_index >= 0:
        earliest = np.minimum(earliest, ready_s + tables.padded_s[freq_index, frames - 1])
    reachable = earliest <= deadlines_s + _EPS_S
    if not reachable.all():
        frames, deadlines_s, positions = frames[reachable], deadlines_s[reachable], positions[reachable]
        if len(frames) == 0:
            return None
    cum = frames.cumsum()
    k_max = max(1, int(cum.searchsorted(cap, "right")))  # whole requests up to the cap
    batch = cum[:k_max]  # frames of prefix k (k = 1..k_max)
    n_behind = min(len(cum), k_max + lookahead)
    cum, deadlines_s = cum[:n_behind], deadlines_s[:n_behind]
    finish = start[:, None] + tables.padded_s[:, batch - 1]  # (F, K)
    head_deadline = np.minimum.accumulate(deadlines_s[:k_max])
    fits = finish <= head_deadline + _EPS_S
    if not fits.any():
        return None
    # A cheap, optimistic look-behind first (the rest drains at the fastest rate, no clock change); the chosen
    # plan is then re-checked with the rest run as real batches (`_verified_cheapest`).
    fastest = behind_s_per_frame
    if type(fastest) is not np.ndarray or fastest.ndim != 1 or fastest.dtype != np.float64:
        fastest = np.atleast_1d(np.asarray(fastest, dtype=float))
    fi_fast = int(fastest.argmin())
    overhead_s = behind_overhead_s
    if type(overhead_s) is not np.ndarray or overhead_s.dtype != np.float64:
        overhead_s = np.asarray(overhead_s, dtype=float)
    overhead = float(overhead_s if overhead_s.ndim == 0 else overhead_s[fi_fast])
    behind = _behind_limit_one(cum, deadlines_s, k_max, float(fastest[fi_fast]), overhead)
    protected = fits & (finish <= behind + _EPS_S)
    if clock_ok is not None and (protected & clock_ok[:, None]).any():
        protected &= clock_ok[:, None]  # clocks that keep up with the arrivals, when any protects the queue
    if finish_limit_s is not None and protected.any():
        # Honour the limit where possible; otherwise come as close to it as the queued work allows.
        limit = np.maximum(finish_limit_s, finish[protected].min())
        protected &= finish <= limit[:, None] + _EPS_S
    choice = _verified_cheapest(tables, protected, finish, cum, deadlines_s, batch, change_delay_s, behind_share)
    if choice is not None:
        fi, k, exact = choice
        slack = min(head_deadline[k], exact) - finish[fi, k]
        overloaded = False
    else:
        fi, k = _fastest(tables.latency_s[:, batch - 1], batch, fits)
        slack, overloaded = 0.0, True
    n = int(batch[k])
    return BatchPlan(
        positions=positions[: k + 1],
        n_frames=n,
        freq_index=fi,
        freq_hz=float(tables.freqs_hz[fi]),
        start_s=float(start[fi]),
        latency_s=float(tables.latency_s[fi, n - 1]),
        energy_j=float(tables.energy_j[fi, n - 1]),
        marginal_epf_j=float(tables.marginal_epf_j[fi, n - 1]),
        latest_dispatch_s=float(ready_s + max(0.0, slack)),
        overloaded=overloaded,
    )


def _behind_limit_one(
    cum: np.ndarray, deadlines_s: np.ndarray, k_max: int, rate: float, overhead_s: float
) -> np.ndarray:
    """(K,): `_behind_limit` for one rate, no clock change (the same arithmetic, without its (F + 1, K) arrays)."""
    out = np.full(k_max, math.inf)
    upto = min(k_max, len(cum) - 1)
    if upto > 0:
        g = deadlines_s[1:] - rate * cum[1:]
        out[:upto] = np.minimum.accumulate(g[::-1])[::-1][:upto]
    out += rate * cum[:k_max] - overhead_s
    return out


def _behind_limit(
    cum: np.ndarray,
    deadlines_s: np.ndarray,
    k_max: int,
    s_per_frame: np.ndarray,
    overhead_s: np.ndarray | float,
    change_delay_s: float,
) -> np.ndarray:
    """(F, K): for each frequency and prefix k, the latest finish that lets every later candidate j meet its deadline.

    Request j behind a batch of prefix k completes no earlier than finish + overhead[f] + s_per_frame[f] *
    (cum[j] - cum[k]), so finish <= min_{j > k} (deadline_j - s_per_frame[f] * cum[j]) + s_per_frame[f] *
    cum[k] - overhead[f]. The device may instead switch to its fastest rate for the rest, paying the delay.
    """
    n = len(cum)
    overhead = np.broadcast_to(overhead_s, s_per_frame.shape)
    fastest = int(np.argmin(s_per_frame))
    rates = np.append(s_per_frame, s_per_frame[fastest])  # last row: switch to the fastest clock
    extra = np.append(overhead, overhead[fastest] + change_delay_s)
    out = np.full((len(rates), k_max), math.inf)
    upto = min(k_max, n - 1)
    if upto > 0:
        g = deadlines_s[None, 1:] - rates[:, None] * cum[None, 1:]  # (F+1, n-1)
        suffix_min = np.minimum.accumulate(g[:, ::-1], axis=1)[:, ::-1]  # suffix_min[:, j] = min(g[:, j:])
        out[:, :upto] = suffix_min[:, :upto]
    out += rates[:, None] * cum[None, :k_max] - extra[:, None]
    return np.maximum(out[:-1], out[-1])


def _verified_cheapest(
    tables: GridTables,
    mask: np.ndarray,
    finish: np.ndarray,
    cum: np.ndarray,
    deadlines_s: np.ndarray,
    batch: np.ndarray,
    change_delay_s: float,
    share: float,
    tries: int = 16,
) -> tuple[int, int, float] | None:
    """The cheapest (freq index, prefix index) under `mask` whose requests behind still fit when their frames run
    as real batches; with that check's latest finish. The linear look-behind is optimistic for small batches."""
    score = tables.marginal_epf_j[:, batch - 1]
    copied = False
    for _ in range(tries):
        if not mask.any():
            return None
        fi, k = _cheapest(score, mask, 0.02)
        exact = _batched_behind_limit(tables, fi, k, cum, deadlines_s, change_delay_s, share)
        if finish[fi, k] <= exact + _EPS_S:
            return fi, k, exact
        if not copied:  # the caller's mask stays as it was
            mask, copied = mask.copy(), True
        mask[finish[:, k] >= finish[fi, k], k] = False  # slower clocks finish later and drain slower: no better
    return None


def _batched_behind_limit(
    tables: GridTables, fi: int, k: int, cum: np.ndarray, deadlines_s: np.ndarray, change_delay_s: float, share: float
) -> float:
    """Latest finish of prefix k at clock fi such that each later candidate j meets its deadline when the frames up
    to it (`share` of them on this device) run in batches of at most `cap` at clock fi, or at the fastest clock
    after the change delay."""
    if k + 1 >= len(cum):
        return math.inf
    m = np.maximum(1, np.ceil((cum[k + 1 :] - cum[k]) * share)).astype(np.int64)
    stay = _in_batches(tables.padded_s[fi], m, tables.cap)
    switch = change_delay_s + _in_batches(tables.fastest_padded_s, m, tables.cap)
    return float((deadlines_s[k + 1 :] - np.minimum(stay, switch)).min())


def _in_batches(row: np.ndarray, frames: np.ndarray, cap: int) -> np.ndarray:
    """Time to run `frames` as full batches of `cap` plus one remainder batch, from one row of padded latencies."""
    full, rest = np.divmod(frames, cap)
    return full * row[cap - 1] + np.where(rest > 0, row[np.maximum(rest, 1) - 1], 0.0)


def _cheapest(score: np.ndarray, mask: np.ndarray, tolerance: float) -> tuple[int, int]:
    """(freq index, prefix index) of the lowest score under `mask`; near-ties go to the larger batch."""
    masked = np.where(mask, score, np.inf)
    best = float(masked.min())
    near = masked <= best * (1.0 + tolerance) + 1e-12
    k = int(near.any(axis=0).nonzero()[0][-1])  # the largest batch among the near-best
    fi = int(masked[:, k].argmin())
    return fi, k


def _fastest(lat: np.ndarray, batch: np.ndarray, mask: np.ndarray) -> tuple[int, int]:
    """(freq index, prefix index) clearing the most frames per second under `mask` (overload mode)."""
    rate = np.where(mask, batch[None, :] / lat, -np.inf)
    fi, k = np.unravel_index(int(np.argmax(rate)), rate.shape)
    return int(fi), int(k)


def default_idle_power_w(kind: str, freq_hz: float) -> float:
    """Idle board power of `kind` from the catalogue (pure data; one figure for every frequency). The fallback
    when neither the policy nor the cost model (an `idle_power_w(kind, freq_hz)` method) says better."""
    return get_kind(kind).idle_power_w
