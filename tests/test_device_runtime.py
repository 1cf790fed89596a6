"""DeviceRuntime: frequency control, measured batches, failures as results, status."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from device_fakes import LinearDeviceModel

from actors.device import BatchRun, DeviceRuntime
from actors.dvfs import EmulatedDvfs
from actors.engines.base import Engine
from cluster.inventory import DeviceSpec
from jetfleet.catalogue import get_kind
from jetfleet.errors import FrequencyError
from jetfleet.types import Batch, Dispatch, Request

NANO = get_kind("jetson-nano")


class CountingDvfs(EmulatedDvfs):
    def __init__(self) -> None:
        super().__init__(NANO, settle_delay_s=0.0)
        self.writes: list[float] = []

    def set_frequency(self, freq_hz: float) -> float:
        out = super().set_frequency(freq_hz)
        self.writes.append(out)
        return out


class BrokenEngine(Engine):
    name = "broken"

    async def run(self, model, frames, n_frames, freq_hz):
        raise RuntimeError("CUDA error: out of memory")


def _runtime(**kw) -> DeviceRuntime:
    spec = DeviceSpec(name="nano0", kind="jetson-nano")
    kw.setdefault("device_model", LinearDeviceModel("jetson-nano"))
    return DeviceRuntime(spec, speed_factor=1000.0, **kw)


def _batch(freq_hz: float, frames=(2, 1), model: str = "mobilenetv2") -> Batch:
    reqs = tuple(Request(i, 0.0, n, 1.0, model=model) for i, n in enumerate(frames))
    return Batch(1, Dispatch("nano0", tuple(r.request_id for r in reqs), freq_hz, model), reqs, 0.0)


def _run(rt: DeviceRuntime, batch: Batch, inputs=None) -> BatchRun:
    return asyncio.run(rt.run_batch(batch, inputs))


def test_batch_reports_modelled_energy_outputs_per_frame_and_its_frequency():
    """The emulated device runs at the batch's frequency, one output per frame, modelled energy."""
    dm = LinearDeviceModel("jetson-nano")
    rt = _runtime(device_model=dm)
    f = NANO.freqs_hz[4]
    run = _run(rt, _batch(f))
    assert run.result.ok and run.result.freq_hz == f and rt.frequency_hz() == f
    assert run.result.n_frames == 3 and len(run.outputs) == 3
    assert run.result.energy_j == pytest.approx(dm.energy_j("mobilenetv2", 3, f))
    assert run.modelled_latency_s == pytest.approx(dm.latency_s("mobilenetv2", 3, f))
    expected = run.result.latency_s + run.modelled_latency_s * (1 - 1 / 1000.0)
    assert run.device_latency_s == pytest.approx(expected)
    assert all(len(o.classes) == 5 and o.scores == tuple(sorted(o.scores, reverse=True)) for o in run.outputs)


def test_unlisted_frequency_fails_the_batch_and_leaves_the_clock():
    """A frequency outside the device's list is a failed result, and nothing is written."""
    dvfs = CountingDvfs()
    rt = _runtime(dvfs=dvfs)
    before = rt.frequency_hz()
    run = _run(rt, _batch(500e6))
    assert not run.result.ok and "FrequencyError" in run.result.error and run.outputs is None
    assert dvfs.writes == [] and rt.frequency_hz() == before


def test_set_frequency_refuses_unlisted_values():
    """set_frequency raises FrequencyError naming the value."""
    rt = _runtime()
    with pytest.raises(FrequencyError, match="123456789"):
        rt.set_frequency(123456789.0)


def test_frequency_is_written_only_when_it_changes():
    """Two batches at the same frequency write the clock once."""
    dvfs = CountingDvfs()
    rt = _runtime(dvfs=dvfs)
    f = NANO.freqs_hz[2]
    _run(rt, _batch(f))
    _run(rt, _batch(f))
    assert dvfs.writes == [f]


def test_engine_failure_is_a_failed_result_and_the_device_is_free_again():
    """An engine exception becomes ok=False with the reason; the device is not left busy."""
    rt = _runtime(engine=BrokenEngine())
    run = _run(rt, _batch(NANO.max_freq_hz))
    assert not run.result.ok and "out of memory" in run.result.error
    assert not rt.status().busy and rt.status().batches_run == 0


def test_wrong_number_of_inputs_fails_the_batch():
    """Inputs must give one frame per frame of the batch."""
    rt = _runtime()
    run = _run(rt, _batch(NANO.max_freq_hz), inputs=[np.zeros((3, 8, 8), np.float32)])
    assert not run.result.ok and "1 input frames for a batch of 3" in run.result.error


def test_outputs_are_deterministic_functions_of_the_inputs():
    """The same frames give the same pseudo-outputs; different frames differ."""
    rt = _runtime()
    a = [np.full((3, 8, 8), v, np.float32) for v in (0.0, 1.0, 2.0)]
    first = _run(rt, _batch(NANO.max_freq_hz), a).outputs
    again = _run(rt, _batch(NANO.max_freq_hz), a).outputs
    assert first == again and first[0] != first[1]


def test_status_counts_batches_frames_and_energy():
    """status() adds up what ran and reports idle power when idle."""
    rt = _runtime()
    r1 = _run(rt, _batch(NANO.max_freq_hz))
    r2 = _run(rt, _batch(NANO.min_freq_hz, frames=(4,)))
    st = rt.status()
    assert (st.name, st.kind, st.batches_run, st.frames_run) == ("nano0", "jetson-nano", 2, 7)
    assert st.energy_j == pytest.approx(r1.result.energy_j + r2.result.energy_j)
    assert st.freq_hz == NANO.min_freq_hz and st.power_w == NANO.idle_power_w and not st.busy


def test_concurrent_batches_run_one_at_a_time():
    """Batches sent together do not overlap on one device."""
    rt = _runtime()

    async def both():
        return await asyncio.gather(rt.run_batch(_batch(NANO.max_freq_hz)), rt.run_batch(_batch(NANO.max_freq_hz)))

    a, b = asyncio.run(both())
    first, second = sorted((a.result, b.result), key=lambda r: r.started_s)
    assert second.started_s >= first.finished_s


def test_speed_factor_comes_from_the_inventory_options():
    """options.speed_factor sets the compression when the caller gives none."""
    spec = DeviceSpec(name="nano0", kind="jetson-nano", options={"speed_factor": 50})
    rt = DeviceRuntime(spec, device_model=LinearDeviceModel("jetson-nano"))
    assert rt.speed_factor == 50 and rt.dvfs.settle_delay_s == pytest.approx(NANO.freq_change_delay_s / 50)


def test_torch_device_measures_wall_time_and_prices_it_with_the_cpu_power_model():
    """A torch device on the CPU: real outputs, measured latency, energy = modelled busy power × latency."""
    pytest.importorskip("torch")
    spec = DeviceSpec(name="cpu0", kind="cpu", engine="torch", options={"model_map": {"mobilenetv2": "tiny-cnn"}})
    dm = LinearDeviceModel("cpu")
    rt = DeviceRuntime(spec, device_model=dm)
    f = get_kind("cpu").max_freq_hz
    reqs = (Request(7, 0.0, 2, 1.0, model="mobilenetv2"),)
    batch = Batch(1, Dispatch("cpu0", (7,), f, "mobilenetv2"), reqs, 0.0)
    frames = [np.random.default_rng(i).standard_normal((3, 64, 64), dtype=np.float32) for i in range(2)]
    run = _run(rt, batch, frames)
    assert run.result.ok and len(run.outputs) == 2 and run.outputs[0] != run.outputs[1]
    assert run.result.latency_s > 0 and run.device_latency_s == run.result.latency_s
    power = dm.busy_power_w("mobilenetv2", 2, f)
    assert run.result.energy_j == pytest.approx(power * run.result.latency_s)


def test_status_while_busy_reports_the_batchs_modelled_power():
    """During a batch an emulated device reports its modelled busy power, not idle power."""
    dm = LinearDeviceModel("jetson-nano", a_s=0.05)  # 50 ms: the batch surely sleeps
    spec = DeviceSpec(name="nano0", kind="jetson-nano")
    rt = DeviceRuntime(spec, speed_factor=1.0, device_model=dm)
    f = NANO.max_freq_hz

    async def peek():
        task = asyncio.create_task(rt.run_batch(_batch(f)))
        for _ in range(2000):  # its input first crosses the Nano's GbE link (~15 ms), then it computes
            if rt.status().busy:
                break
            await asyncio.sleep(0.001)
        seen = rt.status()
        await task
        return seen

    seen = asyncio.run(peek())
    assert seen.busy and seen.power_w == pytest.approx(dm.busy_power_w("mobilenetv2", 3, f))
    assert rt.status().power_w == NANO.idle_power_w
