"""Power meters: emulated (device model), jtop (sampled board power) and NVML (energy counter), with fakes."""

from __future__ import annotations

import math
import types

import pytest
from device_fakes import LinearDeviceModel

from actors.power import BatchHint, EmulatedPowerMeter, JtopPowerMeter, NvmlPowerMeter, integrate
from jetfleet.errors import DeviceError

F = 921.6e6


def test_emulated_meter_reports_the_engines_modelled_energy():
    """With the emulated engine's modelled energy, the meter reports exactly that, whatever the wall time."""
    meter = EmulatedPowerMeter(LinearDeviceModel("jetson-nano"))
    meter.start()
    reading = meter.stop(0.001, BatchHint("resnet18", 4, F, modelled_energy_j=2.0, modelled_latency_s=0.5))
    assert (reading.energy_j, reading.power_w, reading.duration_s) == (2.0, 4.0, 0.001)


def test_emulated_meter_prices_a_real_engines_time_with_busy_power():
    """Without modelled energy, energy = the kind's busy power × the measured duration."""
    dm = LinearDeviceModel("cpu")
    meter = EmulatedPowerMeter(dm)
    meter.start()
    reading = meter.stop(0.25, BatchHint("resnet18", 2, 2.4e9))
    assert reading.energy_j == pytest.approx(dm.busy_power_w("resnet18", 2, 2.4e9) * 0.25)


def test_emulated_meter_prices_unknown_networks_as_the_proxy_model():
    """A network the model zoo does not know (a test CNN) is priced like the proxy model."""
    dm = LinearDeviceModel("cpu")
    meter = EmulatedPowerMeter(dm, proxy_model="mobilenetv2")
    meter.start()
    reading = meter.stop(1.0, BatchHint("tiny-cnn", 1, 2.4e9))
    assert reading.power_w == pytest.approx(dm.busy_power_w("mobilenetv2", 1, 2.4e9))


def test_emulated_meter_idles_at_the_models_idle_power():
    """power_w() between batches is the device model's idle power."""
    assert EmulatedPowerMeter(LinearDeviceModel("agx-xavier")).power_w(F) == 5.9


def test_integrate_is_the_trapezoid_rule_scaled_to_the_batch():
    """Samples 0→10 W over 1 s give 5 J; the mean power is applied to the batch's own duration."""
    reading = integrate([(0.0, 0.0), (0.5, 5.0), (1.0, 10.0)], duration_s=2.0)
    assert reading.power_w == pytest.approx(5.0) and reading.energy_j == pytest.approx(10.0)
    assert reading.samples == 3
    with pytest.raises(DeviceError):
        integrate([(0.0, 1.0)], 1.0)


class FakeJtop:
    """jtop's interface as jetson-stats 4 exposes it: start(), power['tot']['power'] in mW, close()."""

    def __init__(self, mw: float = 7500.0, tot: bool = True) -> None:
        self.mw, self.tot, self.started, self.closed = mw, tot, False, False

    def start(self):
        self.started = True

    @property
    def power(self):
        return {"tot": {"power": self.mw, "avg": self.mw}} if self.tot else {"rail": {}}

    def close(self):
        self.closed = True


def test_jtop_meter_integrates_board_power():
    """A steady 7.5 W board over a 0.2 s batch is 1.5 J."""
    jt = FakeJtop(7500.0)
    meter = JtopPowerMeter(jtop_factory=lambda: jt, interval_s=0.001)
    meter.start()
    reading = meter.stop(0.2, BatchHint("resnet18", 1, F))
    meter.close()
    assert jt.started and jt.closed and reading.samples >= 2
    assert reading.energy_j == pytest.approx(1.5) and meter.power_w(F) == 7.5


def test_jtop_without_total_power_is_a_device_error():
    """A jtop that reports no 'tot' board power raises DeviceError."""
    meter = JtopPowerMeter(jtop_factory=lambda: FakeJtop(tot=False))
    with pytest.raises(DeviceError, match="tot"):
        meter.power_w(F)


def test_jtop_service_down_is_a_device_error():
    """When the jtop service cannot be reached the meter says so."""

    def broken():
        raise ConnectionRefusedError("jtop.service is not active")

    with pytest.raises(DeviceError, match="jtop service"):
        JtopPowerMeter(jtop_factory=broken)


class NVMLError(Exception):
    pass


def fake_nvml(counter_mj: list[int], fail: bool = False):
    def energy(handle):
        if fail:
            raise NVMLError("Not Supported")
        return counter_mj.pop(0)

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=lambda h: 61500,
    )


def test_nvml_meter_uses_the_energy_counter_difference():
    """Energy is the counter's difference in mJ, converted to J; power is NVML's mW reading."""
    meter = NvmlPowerMeter(nvml=fake_nvml([1_000_000, 1_012_500]))
    meter.start()
    reading = meter.stop(0.05, BatchHint("resnet18", 8, 1.98e9))
    assert reading.energy_j == pytest.approx(12.5) and reading.power_w == pytest.approx(250.0)
    assert meter.power_w(1.98e9) == 61.5


def test_nvml_meter_errors_are_device_errors():
    """No counter (pre-Volta) or stop without start raise DeviceError."""
    with pytest.raises(DeviceError, match="Not Supported"):
        NvmlPowerMeter(nvml=fake_nvml([], fail=True)).start()
    meter = NvmlPowerMeter(nvml=fake_nvml([5]))
    with pytest.raises(DeviceError, match="without start"):
        meter.stop(1.0, BatchHint("resnet18", 1, 1e9))
    assert math.isnan(BatchHint("m", 1, 1.0).modelled_energy_j)
