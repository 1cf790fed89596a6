"""Stand-ins shared by the device-side tests: a linear device model and recording fakes.

The tests pin the runtime's behaviour, not the calibration, so they use this simple model instead of
`costmodel.device_models` (whose numbers may be refitted).
"""

from __future__ import annotations

from costmodel.model_zoo import get_model
from jetfleet.catalogue import get_kind


class LinearDeviceModel:
    """latency = (a + b·batch·gmacs) · f_max / f; power = idle + 2 W · f / f_max while busy."""

    def __init__(self, kind: str, a_s: float = 0.002, b_s: float = 0.001) -> None:
        self.kind = kind
        self._kind = get_kind(kind)
        self.a_s, self.b_s = a_s, b_s
        self.calls: list[tuple[str, int, float]] = []

    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        self.calls.append((model, batch, freq_hz))
        return (self.a_s + self.b_s * batch * get_model(model).gmacs) * self._kind.max_freq_hz / freq_hz

    def busy_power_w(self, model: str, batch: int, freq_hz: float) -> float:
        get_model(model)
        return self.idle_power_w(freq_hz) + 2.0 * freq_hz / self._kind.max_freq_hz

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        return self.busy_power_w(model, batch, freq_hz) * self.latency_s(model, batch, freq_hz)

    def idle_power_w(self, freq_hz: float) -> float:
        return self._kind.idle_power_w
