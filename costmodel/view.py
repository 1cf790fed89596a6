"""`CostView`: the one cache of predicted costs that a scheduler core and all its policies share.

A policy asks "what would a batch of b frames of model m cost on a device of kind k at each of its clocks?"
many times per second; the cost model (LightGBM, or the analytic oracle) answers a whole grid at once, but
not cheaply. The view asks each (kind, model, frequency list) once, keeps the answer, and keeps beside it:

- the idle board power of the kind at each listed clock (`idle_w`), from the cost model's `idle_power_w`;
- a learned latency correction per (kind, model, frequency list) (`LatencyCorrection`), fed by the core with
  every finished batch (`observe`). Grids come raw (`corrected=False`: what the model says) or corrected;
- the data path: `grid(..., link=)` prices each batch as its input's transfer over the device's link
  (`jetfleet.links`; bytes per frame from `costmodel.frames`) followed by its compute;
- policy-derived tables (`derived`): anything a policy computes from a grid (the jetfleet planner's tables,
  LoudVA's energy-per-frame arrays) is kept here under the policy's key and recomputed when the grid it
  came from changed (a larger batch asked for, or a new correction) — one invalidation rule for all.

`generation` counts changes of any kind (a grid predicted or grown, a correction that changed a factor; a batch that
ran as predicted changes none, bit for bit, and counts nothing): while it stands still, every `grid` and `derived`
answer stays what it was, so a caller may keep what it looked up (the jetfleet planner keeps its tables per device
group) and skip the look-ups, which hash frequency tuples.

Keys are values (kind, model, the frequency tuple, ...), never `id()`s: a view belongs to one cost model,
and a core builds a new view for a new model. Frequencies are the *device's own* list (its DVFS table), so a
device whose list differs from the catalogue's gets grids at its real clocks. Nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from costmodel.base import CostGrid, CostModel
from costmodel.frames import frame_bytes
from jetfleet.freqs import listed_index
from jetfleet.links import LOCAL, Link

__all__ = ["CostView", "LatencyCorrection", "RawGrid"]

FreqList = tuple[float, ...]
_MAX_DERIVED = 4096  # derived entries kept; the older half goes when full


@dataclass(frozen=True)
class RawGrid:
    """Predicted (frequency x batch 1..max_frames) latency and energy of one (kind, model, frequency list).

    `version` changes whenever the arrays do (the grid grew, or a correction was folded in): a policy's derived
    tables are valid for one version. Arrays are read-only.
    """

    kind: str
    model: str
    freqs_hz: np.ndarray  # (F,) ascending
    latency_s: np.ndarray  # (F, B) seconds per batch of b = 1..B frames
    energy_j: np.ndarray  # (F, B) board joules per batch
    version: tuple[int, int]  # (prediction number, corrections that changed a factor; -1 for a raw grid)
    link: Link = LOCAL  # the data path whose transfer the grid includes (LOCAL: compute only)
    transfer_s: np.ndarray | None = None  # (B,) of latency_s: each batch's input transfer (None: LOCAL, none)

    def compute_s(self) -> np.ndarray:
        """(F, B) seconds each batch computes: `latency_s` without its transfer."""
        return self.latency_s if self.transfer_s is None else self.latency_s - self.transfer_s[None, :]

    @property
    def max_frames(self) -> int:
        return int(self.latency_s.shape[1])


class LatencyCorrection:
    """Measured / predicted latency of one (kind, model), learned from completed batches.

    A cost model's error is mostly a function of the batch size (a tree model's splits), so the factor for a
    (frequency, batch) cell is that cell's own running ratio once seen, else the ratio seen for that batch
    size at any frequency, else 1 (trust the model). Ratios are exponentially weighted (`alpha`) and clipped
    to [0.5, 2] so one outlier cannot derail a planner.
    """

    def __init__(self, n_freqs: int, n_batches: int, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.cell = np.ones((n_freqs, n_batches))
        self.cell_seen = np.zeros((n_freqs, n_batches), dtype=bool)
        self.column = np.ones(n_batches)
        self.column_seen = np.zeros(n_batches, dtype=bool)
        self.observations = 0
        self.revision = 0  # updates that changed a factor: grids corrected with the same revision are the same

    def update(self, freq_index: int, batch: int, ratio: float) -> bool:
        """Fold in one measured / predicted `ratio` of a batch of `batch` frames at `freq_index` (-1: an unlisted
        clock, which teaches the batch size's column only); True when a factor changed.

        Whether one did is checked exactly (every factor of that batch size, bit for bit): a prediction that was
        right (the oracle in the simulator: a ratio of 1 up to the last bit) changes none, and a caller keeps
        what it derived from the grid (a 100-device simulation re-derived every planner table after each of its
        3,259 batches; 5 of them changed a factor)."""
        ratio = min(2.0, max(0.5, ratio))
        b = batch - 1
        if not 0 <= b < len(self.column):
            return False
        old_column = float(self.column[b])
        old_cell = old_column  # the factor at the observed clock before
        if freq_index >= 0 and self.cell_seen[freq_index, b]:
            old_cell = float(self.cell[freq_index, b])
        for seen, values, idx in ((self.column_seen, self.column, b), (self.cell_seen, self.cell, (freq_index, b))):
            if freq_index < 0 and values is self.cell:
                continue
            values[idx] = ratio if not seen[idx] else (1 - self.alpha) * values[idx] + self.alpha * ratio
            seen[idx] = True
        self.observations += 1
        # The factor at the observed clock is its cell's now; the column's is the factor at every clock of that batch
        # size not seen on its own (those were unseen before as well: cells are only ever learned).
        changed = freq_index >= 0 and float(self.cell[freq_index, b]) != old_cell
        if not changed and float(self.column[b]) != old_column:
            changed = not bool(self.cell_seen[:, b].all())
        self.revision += changed
        return changed

    def factors(self) -> np.ndarray:
        """(F, B) multipliers for the predicted latency."""
        return np.where(self.cell_seen, self.cell, self.column[None, :])

    def resized(self, n_batches: int) -> LatencyCorrection:
        """The same learned ratios on a wider batch axis (unseen cells trust the model)."""
        new = LatencyCorrection(self.cell.shape[0], n_batches, self.alpha)
        n = min(n_batches, self.cell.shape[1])
        new.cell[:, :n], new.cell_seen[:, :n] = self.cell[:, :n], self.cell_seen[:, :n]
        new.column[:n], new.column_seen[:n] = self.column[:n], self.column_seen[:n]
        new.observations, new.revision = self.observations, self.revision
        return new


class CostView:
    """Cached, optionally corrected cost grids of one cost model (see the module docstring)."""

    def __init__(self, model: CostModel, *, learn: bool = True) -> None:
        self.model = model
        self.learn = learn
        self._raw: dict[tuple[str, str, FreqList], RawGrid] = {}
        self._corrected: dict[tuple[str, str, FreqList], RawGrid] = {}
        self._corrections: dict[tuple[str, str, FreqList], LatencyCorrection] = {}
        self._idle: dict[tuple[str, FreqList], np.ndarray] = {}
        self._carried: dict[tuple[str, str, FreqList, bool, Link], RawGrid] = {}  # grids with a link's transfer
        self._transfers: dict[tuple[str, Link, int], np.ndarray] = {}
        self._derived: dict[Hashable, tuple[tuple[tuple[int, int], Link], Any]] = {}
        self._versions = 0
        self.generation = 0  # bumped whenever any grid this view answers may have changed (see `generation`)

    # -- grids --------------------------------------------------------------------------------------------
    def grid(
        self,
        kind: str,
        model: str,
        freqs_hz: FreqList,
        min_frames: int,
        *,
        corrected: bool = False,
        link: Link = LOCAL,
    ) -> RawGrid:
        """The grid of (kind, model) at `freqs_hz` covering batches 1..at least `min_frames`; with a `link`, each
        batch's input transfer comes first (`with_transfer`).

        Raises what the cost model raises for a (kind, model) it knows nothing of (`JetfleetError`)."""
        compute = self._compute_grid(kind, model, freqs_hz, min_frames, corrected)
        if link.local:
            return compute
        key = (kind, model, freqs_hz, corrected, link)
        hit = self._carried.get(key)
        if hit is None or hit.version != compute.version or hit.max_frames != compute.max_frames:
            hit = self._carried[key] = self.with_transfer(compute, link)
        return hit

    def with_transfer(self, compute: RawGrid, link: Link) -> RawGrid:
        """`compute` with each batch's input shipped over `link` first: latency + transfer, and energy + the kind's
        lowest idle board power over the transfer. Receiving costs the board nothing above the baseline it pays
        anyway (the network interface's draw is part of the idle figure), so a transfer adds no energy above the
        floor and biases no clock choice (pricing it at the clock's own idle power made high clocks look dearer:
        0.958 -> 0.901 frames/J on LoudVA's Experiment 1).

        Transfer, then compute, one after the other: frames wait at the controller until their batch is dispatched
        and policies give a device one batch at a time (jetfleet's `max_in_flight` = 1), so no transfer overlaps
        a computing batch. (Planning with an overlapped pace and letting a tight arrival's transfer overlap the
        batch before it cost up to 16 points of SLO attainment on a 200 Mbit/s link: the overlap never happened.)
        The simulated device does overlap a transfer with a batch dispatched to it while it is busy."""
        transfer_s = self._transfer_s(compute.model, link, compute.max_frames)
        idle_w = self.idle_w(compute.kind, tuple(float(f) for f in compute.freqs_hz))
        return RawGrid(
            compute.kind,
            compute.model,
            compute.freqs_hz,
            _frozen(compute.latency_s + transfer_s[None, :]),
            _frozen(compute.energy_j + float(idle_w.min()) * transfer_s[None, :]),
            compute.version,
            link,
            _frozen(transfer_s),
        )

    def _transfer_s(self, model: str, link: Link, max_frames: int) -> np.ndarray:
        """(max_frames,) seconds to ship batches of 1..max_frames frames of `model` over `link` (kept: a grid is
        rebuilt with every learned correction, its transfers never change)."""
        key = (model, link, max_frames)
        hit = self._transfers.get(key)
        if hit is None:
            frames = np.arange(1, max_frames + 1)
            hit = link.latency_s + 8.0 * frames * frame_bytes(model) / link.bandwidth_bps
            hit = self._transfers[key] = _frozen(hit)
        return hit

    def _compute_grid(self, kind: str, model: str, freqs_hz: FreqList, min_frames: int, corrected: bool) -> RawGrid:
        key = (kind, model, freqs_hz)
        raw = self._raw.get(key)
        if raw is None or raw.max_frames < min_frames:
            size = max(min_frames, 2 * raw.max_frames if raw is not None else 0)
            raw = self._raw[key] = self._predict(kind, model, freqs_hz, size)
        if not corrected:
            return raw
        correction = self._corrections.get(key)
        if correction is None:
            return raw
        version = (raw.version[0], correction.revision)
        hit = self._corrected.get(key)
        if hit is not None and hit.version == version:
            return hit
        if correction.cell.shape != raw.latency_s.shape:
            correction = self._corrections[key] = correction.resized(raw.max_frames)
        factors = correction.factors()
        hit = self._corrected[key] = RawGrid(
            kind,
            model,
            raw.freqs_hz,
            _frozen(raw.latency_s * factors),
            _frozen(raw.energy_j * factors),  # a batch that runs longer draws its power longer
            version,
        )
        return hit

    def latency_s(
        self, kind: str, model: str, freqs_hz: FreqList, freq_hz: float, n_frames: int, link: Link = LOCAL
    ) -> float:
        """Predicted latency of one batch (raw), its input's transfer over `link` included, from the cached grid
        when `freq_hz` is listed."""
        transfer_s = link.transfer_s(n_frames * frame_bytes(model)) if not link.local else 0.0
        fi = listed_index(freqs_hz, freq_hz)
        if fi >= 0:
            return float(self.grid(kind, model, freqs_hz, n_frames).latency_s[fi, n_frames - 1]) + transfer_s
        grid = self.model.predict_grid(kind, model, np.array([freq_hz]), np.array([n_frames]))
        return float(np.asarray(grid.latency_s)[0, 0]) + transfer_s

    def idle_w(self, kind: str, freqs_hz: FreqList) -> np.ndarray:
        """(F,) idle board watts of `kind` at each of `freqs_hz` (read-only)."""
        key = (kind, freqs_hz)
        hit = self._idle.get(key)
        if hit is None:
            hit = self._idle[key] = _frozen(np.array([self.model.idle_power_w(kind, f) for f in freqs_hz], dtype=float))
        return hit

    # -- learning -----------------------------------------------------------------------------------------
    def observe(
        self, kind: str, model: str, freqs_hz: FreqList, freq_hz: float, n_frames: int, latency_s: float
    ) -> None:
        """Fold one measured batch latency into the correction of (kind, model, frequency list)."""
        key = (kind, model, freqs_hz)
        raw = self._raw.get(key)
        if not self.learn or not latency_s > 0 or raw is None or n_frames > raw.max_frames:
            return
        fi = listed_index(freqs_hz, freq_hz)
        predicted = float(raw.latency_s[fi, n_frames - 1]) if fi >= 0 else math.nan
        if not predicted > 0:
            return
        correction = self._corrections.get(key)
        if correction is None:
            correction = self._corrections[key] = LatencyCorrection(*raw.latency_s.shape)
        if correction.update(fi, n_frames, latency_s / predicted):
            self.generation += 1  # an observation that changed no factor changed no grid

    # -- policy-derived tables ----------------------------------------------------------------------------
    def derived(self, key: Hashable, source: RawGrid, make: Callable[[], Any]) -> Any:
        """`make()`, kept under `key` for as long as `source` (the grid it is derived from, its link included)
        stays current."""
        stamp = (source.version, source.link)
        hit = self._derived.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        if len(self._derived) >= _MAX_DERIVED:
            for old in list(self._derived)[: _MAX_DERIVED // 2]:
                del self._derived[old]
        value = make()
        self._derived[key] = (stamp, value)
        return value

    # -- helpers ------------------------------------------------------------------------------------------
    def _predict(self, kind: str, model: str, freqs_hz: FreqList, max_frames: int) -> RawGrid:
        freqs = np.asarray(freqs_hz, dtype=float)
        grid: CostGrid = self.model.predict_grid(kind, model, freqs, np.arange(1, max_frames + 1))
        latency = np.maximum(np.asarray(grid.latency_s, dtype=float), 1e-6)
        energy = np.maximum(np.asarray(grid.energy_j, dtype=float), 0.0)
        self._versions += 1
        self.generation += 1
        return RawGrid(kind, model, _frozen(freqs), _frozen(latency), _frozen(energy), (self._versions, -1))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
