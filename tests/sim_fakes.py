"""Stand-ins for the simulator tests: a simple device model, its exact cost model, and fleets.

The tests pin the simulator's and the policies' behaviour, not the calibration, so they use this model
instead of `costmodel.device_models` (whose numbers may be refitted).
"""

from __future__ import annotations

import numpy as np

from cluster.inventory import Fleet, fleet_from_dict
from costmodel.base import CostGrid
from jetfleet.catalogue import get_kind
from jetfleet.types import Decisions, Dispatch, Request
from policies.base import Policy
from policies.context import StepContext


class FakeDeviceModel:
    """latency = (0.02 + 0.005 b) f_max / f; busy power = idle(f) + 10 W (f / f_max) b / (b + 4);
    idle(f) = idle_w (1 + 0.1 (f - f_min) / (f_max - f_min))."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._kind = get_kind(kind)

    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        return (0.02 + 0.005 * batch) * self._kind.max_freq_hz / freq_hz

    def busy_power_w(self, model: str, batch: int, freq_hz: float) -> float:
        return self.idle_power_w(freq_hz) + 10.0 * freq_hz / self._kind.max_freq_hz * batch / (batch + 4)

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        return self.busy_power_w(model, batch, freq_hz) * self.latency_s(model, batch, freq_hz)

    def idle_power_w(self, freq_hz: float) -> float:
        k = self._kind
        span = k.max_freq_hz - k.min_freq_hz
        return k.idle_power_w * (1.0 + 0.1 * ((freq_hz - k.min_freq_hz) / span if span else 0.0))


class FakeCost:
    """The exact cost model of `FakeDeviceModel` (an oracle), as policies consult it."""

    def predict_grid(self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> CostGrid:
        dm = FakeDeviceModel(kind)
        f = np.asarray(freqs_hz, dtype=float)
        b = np.asarray(batches, dtype=int)
        lat = np.array([[dm.latency_s(model, int(x), y) for x in b] for y in f])
        en = np.array([[dm.energy_j(model, int(x), y) for x in b] for y in f])
        return CostGrid(kind, model, f, b, lat, en)

    def idle_power_w(self, kind: str, freq_hz: float) -> float:
        return FakeDeviceModel(kind).idle_power_w(freq_hz)


def fake_models(fleet: Fleet) -> dict[str, FakeDeviceModel]:
    return {d.kind: FakeDeviceModel(d.kind) for d in fleet.devices}


def make_fleet(*kinds: str) -> Fleet:
    """A fleet with one device per kind given, named d0, d1, ..."""
    return fleet_from_dict({"name": "test", "devices": [{"name": f"d{i}", "kind": k} for i, k in enumerate(kinds)]})


def req(i: int, t: float = 0.0, frames: int = 1, slo: float = 5.0, model: str = "inceptionv3") -> Request:
    return Request(i, t, frames, slo, model)


class SendAll(Policy):
    """Everything queued goes to the first idle device, in one batch, at the maximum frequency."""

    name = "send-all"

    def decide(self, ctx: StepContext) -> Decisions:
        out = Decisions()
        for d in ctx.devices:
            if ctx.queue and d.idle(ctx.now_s):
                ids = tuple(r.request_id for r in ctx.queue)
                out.dispatches.append(Dispatch(d.name, ids, d.max_freq_hz, "inceptionv3"))
                break
        return out
