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

What "cheapest" means is the caller's objective (`score`, a (frequency x batch) table, lower is better);
the `jetfleet` policy passes its `Objective`'s table, energy per frame above idle by default.

Everything is numpy over a (frequencies x prefixes) grid derived once per cost grid (`derive_tables`, kept
in the core's `CostView`). No clock, no I/O. `plan_batch_reference` is the readable numpy formulation;
`plan_batch` is the compiled kernel of `policies.planning_kernel` when numba is installed (the same decisions,
a few microseconds instead of a few dozen numpy calls), else the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from costmodel.view import RawGrid
from policies.planning_kernel import KERNEL

_EPS_S = 1e-6  # comparisons of predicted times tolerate this much rounding


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
    freqs_hz: np.ndarray  # (F,) the device's own frequencies, ascending
    latency_s: np.ndarray  # (F, B) predicted seconds per batch
    energy_j: np.ndarray  # (F, B) predicted board joules per batch (idle baseline included)
    padded_s: np.ndarray  # (F, B) latency with the safety margins
    fastest_padded_s: np.ndarray  # (B,) min over frequencies of padded_s
    marginal_epf_j: np.ndarray  # (F, B) joules per frame above the floor idle power
    per_frame_s: np.ndarray  # (F, cap) latency_s / batch: device time per frame
    idle_w: np.ndarray  # (F,) idle board power at each frequency
    floor_w: float  # the kind's lowest idle power: what the board draws anyway
    cap: int  # largest batch worth running (the device's max_batch)
    s_per_frame: float  # best sustained seconds per frame (max throughput over the grid up to cap)
    margins: Margins
    clock_index: dict[float, int] = field(default_factory=dict, compare=False)  # listed freq_hz -> index
    # What callers derive from these tables and nothing else (guard budgets, objective floors), kept with them
    # so it lives exactly as long as they do.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # (B,) each batch's input transfer over the device's link, included in `latency_s` (None: no network)
    transfer_s: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Best sustained seconds per frame when each batch's input crosses the link while the batch before it computes
    # (the slower of the two sets the pace): `s_per_frame` without a network link.
    overlapped_s_per_frame: float = field(default=math.nan, compare=False, repr=False)

    @cached_property
    def max_frames(self) -> int:
        """The largest batch the tables cover (read for every group in every decision: kept once worked out)."""
        return int(self.latency_s.shape[1])

    def freq_index(self, freq_hz: float) -> int:
        """Index of `freq_hz` in `freqs_hz`, or -1 when it is not one of them."""
        i = self.clock_index.get(freq_hz, -1)
        if i < 0:
            j = int(np.searchsorted(self.freqs_hz, freq_hz - 1.0))
            i = j if j < len(self.freqs_hz) and abs(self.freqs_hz[j] - freq_hz) < 1.0 else -1
        return i


def derive_tables(grid: RawGrid, idle_w: np.ndarray, margins: Margins, max_batch: int) -> GridTables:
    """The planner's tables from one cost grid (raw or corrected), the idle watts at its clocks and the margins."""
    freqs, energy = grid.freqs_hz, grid.energy_j
    latency = grid.latency_s.view()  # read-only like the others: one array type, so the kernel compiles once
    latency.flags.writeable = False
    batches = np.arange(1, latency.shape[1] + 1)
    floor_w = float(idle_w.min())
    # Board energy above the floor the device draws anyway; a predictor may dip below it, so clip.
    marginal = np.maximum(energy - floor_w * latency, 0.0) / batches[None, :]
    padded = margins.padded(latency)
    cap = min(max_batch, latency.shape[1])
    per_frame = latency[:, :cap] / batches[None, :cap]
    arrays = (padded, padded.min(axis=0), marginal, per_frame)
    for a in arrays:
        a.flags.writeable = False
    transfer, overlapped_s = None, float(per_frame.min())
    if grid.transfer_s is not None:
        transfer = np.array(grid.transfer_s, dtype=float)
        transfer.flags.writeable = False
        cycle = np.maximum(latency[:, :cap] - transfer[None, :cap], transfer[None, :cap])
        overlapped_s = float((cycle / batches[None, :cap]).min())
    index = {float(f): i for i, f in enumerate(freqs)}
    return GridTables(
        grid.kind,
        grid.model,
        freqs,
        latency,
        energy,
        *arrays,
        idle_w,
        floor_w,
        cap,
        float(per_frame.min()),
        margins,
        index,
        transfer_s=transfer,
        overlapped_s_per_frame=overlapped_s,
    )


def overlapped(tables: GridTables, lead_s: float) -> GridTables:
    """The tables of a batch dispatched `lead_s` before its device is free: its input crosses the link while the
    device finishes the batch before it, so only the part of each transfer that outlasts `lead_s` still delays it.
    Without a link (or a lead) the tables themselves."""
    if tables.transfer_s is None or not lead_s > 0:
        return tables
    # A lead past the longest transfer hides every transfer whole: the same tables for all such leads (most of those
    # asked for on a loaded fleet), kept with the tables, and so is what callers derive from them (guard budgets).
    hidden = tables.memo.get("overlapped-hidden")
    if hidden is None:
        longest_s = float(tables.transfer_s.max())
        hidden = tables.memo["overlapped-hidden"] = (
            longest_s,
            _overlapped(tables, tables.transfer_s) if longest_s > 0 else tables,
        )
    if hidden[0] <= 0:
        return tables  # nothing crosses a link
    return hidden[1] if lead_s >= hidden[0] else _overlapped(tables, np.minimum(tables.transfer_s, lead_s))


def _overlapped(tables: GridTables, hidden_s: np.ndarray) -> GridTables:
    """`tables` with `hidden_s` (B,) of each batch's transfer taken off its latency."""
    latency = tables.latency_s - hidden_s[None, :]
    padded = tables.margins.padded(latency)
    fastest = padded.min(axis=0)
    for a in (latency, padded, fastest):
        a.flags.writeable = False
    # `dataclasses.replace` re-runs the constructor over every field: a third of a plan's time behind a link.
    out = object.__new__(GridTables)
    out.__dict__.update(tables.__dict__, latency_s=latency, padded_s=padded, fastest_padded_s=fastest, memo={})
    return out


def efficient_clock(tables: GridTables) -> int:
    """The clock index of least energy per frame above idle for a full batch: what the planner runs when it
    is not pressed for time (pressed, it runs faster, so times estimated at this clock are on the safe side)."""
    hit = tables.memo.get("power-efficient-clock")
    if hit is None:
        hit = tables.memo["power-efficient-clock"] = int(np.argmin(tables.marginal_epf_j[:, tables.cap - 1]))
    return hit


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
    score: float  # the objective's value of this (frequency, batch): what plans are compared by
    latest_dispatch_s: float  # dispatching the same batch this late would still meet every deadline checked
    overloaded: bool  # the requests behind could not all be protected; chosen for throughput

    @property
    def finish_s(self) -> float:
        return self.start_s + self.latency_s


def plan_batch_reference(
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
    score: np.ndarray | None = None,
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
    as real batches (at most `cap` frames each), `behind_share` of them on this device. `score` (F, B) is what
    "cheapest" minimises (default: `marginal_epf_j`, joules per frame above idle).
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
    score = tables.marginal_epf_j if score is None else score
    choice = _verified_cheapest(
        tables, score[:, batch - 1], protected, finish, cum, deadlines_s, change_delay_s, behind_share
    )
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
        score=float(score[fi, n - 1]),
        latest_dispatch_s=float(ready_s + max(0.0, slack)),
        overloaded=overloaded,
    )


def _behind_limit_one(
    cum: np.ndarray, deadlines_s: np.ndarray, k_max: int, rate: float, overhead_s: float
) -> np.ndarray:
    """(K,): for each prefix k, the latest finish that lets every later candidate j meet its deadline when the frames
    behind drain at `rate` seconds per frame after `overhead_s`: request j completes no earlier than finish +
    overhead + rate * (cum[j] - cum[k]), so finish <= min_{j > k} (deadline_j - rate * cum[j]) + rate * cum[k] -
    overhead."""
    out = np.full(k_max, math.inf)
    upto = min(k_max, len(cum) - 1)
    if upto > 0:
        g = deadlines_s[1:] - rate * cum[1:]
        out[:upto] = np.minimum.accumulate(g[::-1])[::-1][:upto]
    out += rate * cum[:k_max] - overhead_s
    return out


def _verified_cheapest(
    tables: GridTables,
    score: np.ndarray,
    mask: np.ndarray,
    finish: np.ndarray,
    cum: np.ndarray,
    deadlines_s: np.ndarray,
    change_delay_s: float,
    share: float,
    tries: int = 16,
) -> tuple[int, int, float] | None:
    """The cheapest (freq index, prefix index) by `score` (F, K) under `mask` whose requests behind still fit when
    their frames run as real batches; with that check's latest finish. The linear look-behind is optimistic for
    small batches."""
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


def plan_batch_compiled(
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
    score: np.ndarray | None = None,
) -> BatchPlan | None:
    """`plan_batch_reference` run by the numba kernel (`policies.planning_kernel`); requires numba."""
    if KERNEL is None:
        raise RuntimeError("plan_batch_compiled needs numba (pip install jetfleet[fast])")
    if len(frames) == 0:
        return None
    n_f = len(tables.freqs_hz)
    score = tables.marginal_epf_j if score is None else score
    code, fi, k, n, slack, kept = KERNEL(
        tables.padded_s,
        tables.fastest_padded_s,
        tables.latency_s,
        score,
        tables.cap,
        float(ready_s),
        int(freq_index),
        float(change_delay_s),
        _vector(frames, np.int64),
        _vector(deadlines_s, np.float64),
        tables.cap if cap is None else int(cap),
        int(lookahead),
        _vector(behind_s_per_frame, np.float64),
        _vector(behind_overhead_s, np.float64),
        not isinstance(behind_overhead_s, np.ndarray) or behind_overhead_s.ndim == 0,
        _NO_FLOATS if finish_limit_s is None else _vector(finish_limit_s, np.float64, n_f),
        finish_limit_s is not None,
        _NO_BOOLS if clock_ok is None else _vector(clock_ok, np.bool_, n_f),
        clock_ok is not None,
        float(behind_share),
    )
    if code == 0:
        return None
    return BatchPlan(
        positions=positions[kept[: k + 1]] if len(kept) < len(frames) else positions[: k + 1],
        n_frames=int(n),
        freq_index=fi,
        freq_hz=float(tables.freqs_hz[fi]),
        start_s=float(ready_s if fi == freq_index else ready_s + change_delay_s),
        latency_s=float(tables.latency_s[fi, n - 1]),
        energy_j=float(tables.energy_j[fi, n - 1]),
        marginal_epf_j=float(tables.marginal_epf_j[fi, n - 1]),
        score=float(score[fi, n - 1]),
        latest_dispatch_s=float(ready_s + max(0.0, slack)),
        overloaded=code == 2,
    )


def _vector(x: Any, dtype: type, n: int = 0) -> np.ndarray:
    """`x` as a writable, contiguous 1-D array of `dtype` (a scalar repeated `n` times, or once), copied only when it
    must be. One array type per argument keeps the kernel at one compiled signature: numba types a read-only or
    strided array apart and compiles (or loads from its cache) once more the first time one comes, which cost the
    first late batch of a simulation about 0.8 s (`_serve_late` passes a column of the tables). Called six times per
    plan, so the common cases go first: an array already fit (`dtype.type`, one `flags` read), a Python scalar."""
    if type(x) is np.ndarray:
        if x.dtype.type is dtype and x.ndim == 1:
            flags = x.flags
            if flags.c_contiguous and flags.writeable:
                return x
    elif type(x) in _PY_SCALARS:
        return np.array([x] * max(n, 1), dtype=dtype)
    a = np.array(x, dtype=dtype)  # a copy: writable and contiguous
    return a if a.ndim == 1 else np.full(max(n, 1), a, dtype=dtype)


_PY_SCALARS = frozenset((float, int, bool))
_NO_FLOATS = np.empty(0, dtype=np.float64)
_NO_BOOLS = np.empty(0, dtype=np.bool_)

# The planner the policies call: compiled when numba is there (same decisions), else the numpy reference.
plan_batch = plan_batch_compiled if KERNEL is not None else plan_batch_reference


def warm_planner() -> None:
    """Compile the planner kernel, or load it from numba's cache, now rather than in the first decision: that
    costs about 0.5 s even from the cache (numba's first use in a process imports much of itself), which the live
    scheduler would otherwise spend holding its first request. Plans once on tiny tables of the types the policies
    pass (read-only tables, the vectors `plan_batch_compiled` normalises), so the decisions that follow load no
    other signature. Nothing without numba; cheap once warm."""
    if KERNEL is None:
        return
    batches = np.arange(1, 5)
    latency = np.stack([0.2 * batches, 0.1 * batches]).astype(float)
    grid = RawGrid("warm-up", "warm-up", np.array([0.5e9, 1e9]), latency, 5.0 * latency, (0, -1))
    tables = derive_tables(grid, np.array([1.0, 2.0]), Margins(), max_batch=4)
    plan_batch_compiled(
        tables,
        ready_s=0.0,
        freq_index=0,
        change_delay_s=0.1,
        frames=np.array([1, 2]),
        deadlines_s=np.array([5.0, 6.0]),
        positions=np.array([0, 1]),
        behind_s_per_frame=np.array([0.1, 0.05]),
        behind_overhead_s=np.array([0.0, 0.0]),
        finish_limit_s=np.array([4.0, 4.0]),
        clock_ok=np.array([True, True]),
    )


def warm_up() -> float:
    """Compile the planner kernel now (numba compiles on first call, or loads its on-disk cache) by planning one
    tiny batch with the dtypes the policies pass; seconds it took. A live scheduler calls this before it says
    it is ready: a first compile takes seconds on a small machine, and a scheduler that blocks that long on its
    first decision looks dead to its callers."""
    import time

    from costmodel.view import RawGrid

    t0 = time.perf_counter()
    if KERNEL is not None:
        freqs_hz = np.array([500e6, 1000e6])
        latency_s = np.array([[0.02, 0.03], [0.01, 0.015]])
        grid = RawGrid("warm-up", "warm-up", freqs_hz, latency_s, latency_s * 5.0, (1, -1))
        tables = derive_tables(grid, np.array([1.0, 1.5]), Margins(0.0, 0.0), max_batch=2)
        frames, deadlines_s, positions = np.array([1, 1]), np.array([0.5, 0.6]), np.array([0, 1])
        args = {"ready_s": 0.0, "freq_index": -1, "change_delay_s": 0.05, "behind_s_per_frame": 0.01}
        plan_batch_compiled(tables, frames=frames, deadlines_s=deadlines_s, positions=positions, **args)
    return time.perf_counter() - t0
