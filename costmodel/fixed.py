"""A device with a fixed service time per frame: the device and cost model of scenarios given in service times.

InferEdgeOrchestrator's overload scenarios give each task a service time (detector 8 ms, classifier 45 ms)
rather than a device and a DNN. `FixedServiceModel` models exactly that: a batch of `b` frames of a model
takes `b * service_s[model]` at any frequency (no batching benefit, as in InferEdge), the board draws
`busy_power_w` while it runs and the catalogue's idle power otherwise. It is both the simulator's truth
(`DeviceModel`) and what the policy consults (`CostModel`), so predictions are exact and a comparison of
policies on it differs only by scheduling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from costmodel.base import CostGrid
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class FixedServiceModel:
    """`latency_s = batch * service_s[model]` on device kind `kind`, whatever the frequency."""

    kind: str
    service_s: Mapping[str, float] = field(default_factory=dict)  # per model, seconds per frame
    busy_power_w: float = 15.0  # board power while a batch runs
    idle_w: float | None = None  # idle board power; None: the catalogue's figure for `kind`

    def __post_init__(self) -> None:
        get_kind(self.kind)
        for model, s in self.service_s.items():
            if not s > 0:
                raise ConfigError(f"fixed-service model: service time of {model!r} must be > 0, got {s}")
        if not self.busy_power_w > 0:
            raise ConfigError(f"fixed-service model: busy_power_w must be > 0, got {self.busy_power_w}")

    def _service(self, model: str) -> float:
        try:
            return self.service_s[model]
        except KeyError:
            raise UnknownNameError(f"model of the fixed-service {self.kind} device", model, self.service_s) from None

    # -- DeviceModel --------------------------------------------------------------------------------
    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        return batch * self._service(model)

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        return self.busy_power_w * self.latency_s(model, batch, freq_hz)

    def idle_power_w(self, freq_hz: float) -> float:
        return self.idle_w if self.idle_w is not None else get_kind(self.kind).idle_power_w

    # -- CostModel ----------------------------------------------------------------------------------
    def predict_grid(self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> CostGrid:
        if kind != self.kind:
            raise UnknownNameError("device kind of this fixed-service model", kind, [self.kind])
        freqs = np.asarray(freqs_hz, dtype=float)
        b = np.asarray(batches)
        latency = np.outer(np.ones(len(freqs)), b * self._service(model))
        return CostGrid(kind, model, freqs, b, latency, latency * self.busy_power_w)


class FixedServiceCost:
    """A CostModel over several device kinds, each a `FixedServiceModel`."""

    def __init__(self, models: Mapping[str, FixedServiceModel]) -> None:
        self.models = dict(models)

    def predict_grid(self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> CostGrid:
        try:
            m = self.models[kind]
        except KeyError:
            raise UnknownNameError("device kind of this fixed-service fleet", kind, self.models) from None
        return m.predict_grid(kind, model, freqs_hz, batches)

    def idle_power_w(self, kind: str, freq_hz: float) -> float:
        """Idle board power of `kind` (the signature policies use to ask a cost model for idle power)."""
        try:
            return self.models[kind].idle_power_w(freq_hz)
        except KeyError:
            raise UnknownNameError("device kind of this fixed-service fleet", kind, self.models) from None
