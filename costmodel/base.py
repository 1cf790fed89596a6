"""The two interfaces the rest of jetfleet uses to ask "what would this batch cost?".

- `CostModel`: what a *policy* asks. `predict_grid` answers for a whole (frequency × batch) grid of one
  device kind and model at once, so a policy can search it with numpy. Implemented by the LightGBM
  model (`costmodel.lgbm`) and by the analytic device models (`costmodel.device_models`), which then
  act as an oracle.
- `DeviceModel`: what the *simulator* and the *emulated engine* use as the truth of one device kind:
  latency and energy of a batch, and idle power at a frequency.

Neither reads a clock or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from jetfleet.errors import UnknownNameError


@dataclass(frozen=True)
class CostGrid:
    """Predicted cost of every (frequency, batch) pair of one device kind and model."""

    kind: str
    model: str
    freqs_hz: np.ndarray  # shape (F,), ascending
    batches: np.ndarray  # shape (B,), ascending ints
    latency_s: np.ndarray  # shape (F, B): seconds per batch
    energy_j: np.ndarray  # shape (F, B): joules per batch (board energy, idle baseline included)

    def lookup(self, freq_hz: float, batch: int) -> tuple[float, float]:
        """(latency_s, energy_j) at the grid point nearest to `freq_hz` and exactly `batch`."""
        fi = int(np.argmin(np.abs(self.freqs_hz - freq_hz)))
        bi = int(np.searchsorted(self.batches, batch))
        if bi >= len(self.batches) or self.batches[bi] != batch:
            raise UnknownNameError(
                f"batch size in the {self.kind}/{self.model} grid", str(batch), map(str, self.batches)
            )
        return float(self.latency_s[fi, bi]), float(self.energy_j[fi, bi])


@runtime_checkable
class CostModel(Protocol):
    """Predicts latency and energy per batch, and idle power; everything a policy may ask of a cost model.

    Policies do not call it directly: they read `costmodel.view.CostView`, which caches its answers.
    """

    def predict_grid(
        self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray
    ) -> CostGrid:  # pragma: no cover - protocol
        ...

    def idle_power_w(self, kind: str, freq_hz: float) -> float:  # pragma: no cover - protocol
        """Board power of an idle device of `kind` clocked at `freq_hz`."""
        ...


@runtime_checkable
class DeviceModel(Protocol):
    """The modelled behaviour of one device kind (the simulator's and emulated engine's truth)."""

    kind: str

    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:  # pragma: no cover
        ...

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:  # pragma: no cover
        ...

    def idle_power_w(self, freq_hz: float) -> float:  # pragma: no cover
        ...
