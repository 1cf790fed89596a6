"""`make gpu-check` (benchmarks/gpu_check.py) against a fake NVML and a fake engine on a fake clock.

The fake engine takes 1 ms + 0.5 ms per frame of fake time; the fake GPU draws 200 W, so its energy counter
advances 200 mJ per fake second. The figures the report must show follow from those two facts.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmarks import gpu_check
from costmodel.factory import make_cost_model

POWER_W = 200.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeNvml:
    """A pynvml stand-in that records every `nvml*` function called, setters included."""

    class NVMLError(Exception):
        pass

    def __init__(self, clock: FakeClock, *, gpus: int = 1, energy_counter: bool = True, init_ok: bool = True):
        self.clock, self.gpus, self.energy_counter, self.init_ok = clock, gpus, energy_counter, init_ok
        self.called: list[str] = []

    def __getattribute__(self, name: str):
        if name.startswith("nvml"):
            object.__getattribute__(self, "called").append(name)
        return object.__getattribute__(self, name)

    def nvmlInit(self):
        if not self.init_ok:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA Fake H200"

    def nvmlSystemGetDriverVersion(self):
        return "570.1"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.energy_counter:
            raise self.NVMLError("Not Supported")
        return round(POWER_W * self.clock.now * 1000)  # mJ, a whole number as NVML gives it

    def nvmlDeviceGetPowerUsage(self, handle):
        return int(POWER_W * 1000)  # mW

    def nvmlDeviceGetClockInfo(self, handle, which):
        return 1980 if which == gpu_check.NVML_CLOCK_SM else 3201

    # clock and power setters: the check must never reach them
    def nvmlDeviceSetGpuLockedClocks(self, handle, lo, hi):
        raise AssertionError("gpu-check set the GPU clocks")

    def nvmlDeviceSetApplicationsClocks(self, handle, mem, sm):
        raise AssertionError("gpu-check set the application clocks")


class FakeEngine:
    """Takes 1 ms + 0.5 ms per frame of fake time per run; counts runs."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.runs, self.closed = clock, [], False

    def input_hw(self, model: str) -> int:
        return 8

    async def run(self, model, frames, n_frames, freq_hz):
        assert frames.shape == (n_frames, 3, 8, 8)
        self.runs.append(n_frames)
        self.clock.now += 0.001 + 0.0005 * n_frames

    def close(self) -> None:
        self.closed = True


def _check(nvml: FakeNvml, clock: FakeClock, engine: FakeEngine, batches=(1, 8)) -> dict:
    return gpu_check.run_check(
        nvml=nvml,
        engine_factory=lambda: (engine, "10.9.0"),
        model="resnet18",
        batches=batches,
        runs=5,
        cost_model="oracle",
        clock=clock,
    )


def test_report_figures_follow_from_the_readings():
    clock = FakeClock()
    engine = FakeEngine(clock)
    report = _check(FakeNvml(clock), clock, engine)
    assert report["gpu"] == {"name": "NVIDIA Fake H200", "index": 0, "driver": "570.1"}
    assert (report["tensorrt"], report["model"], report["device_kind"]) == ("10.9.0", "resnet18", "cuda-gpu")
    assert engine.runs == [1] * 6 + [8] * 6 and engine.closed  # one warm-up + 5 timed runs per size
    oracle = make_cost_model("oracle").predict_grid("cuda-gpu", "resnet18", np.array([1980e6]), np.array([1, 8]))
    rows = zip(report["batches"], (1, 8), oracle.latency_s[0], oracle.energy_j[0], strict=True)
    for row, batch, predicted, predicted_j in rows:
        took = 0.001 + 0.0005 * batch
        assert row["batch"] == batch and row["runs"] == 5
        assert row["measured_latency_s"] == pytest.approx(took)
        assert row["predicted_latency_s"] == pytest.approx(predicted)
        assert row["predicted_over_measured"] == pytest.approx(predicted / took)
        assert row["energy_per_frame_j"] == pytest.approx(POWER_W * took / batch)
        assert row["predicted_energy_per_frame_j"] == pytest.approx(predicted_j / batch)
        assert row["energy_source"] == "nvml-energy-counter"
        assert row["mean_power_w"] == pytest.approx(POWER_W)
        assert tuple(row["sm_clock_mhz"]) == (1980, 1980) and tuple(row["mem_clock_mhz"]) == (3201, 3201)


def test_power_times_time_stands_in_without_an_energy_counter():
    clock = FakeClock()
    report = _check(FakeNvml(clock, energy_counter=False), clock, FakeEngine(clock), batches=(4,))
    (row,) = report["batches"]
    assert row["energy_source"] == "power-x-time"
    assert row["energy_per_frame_j"] == pytest.approx(POWER_W * 0.003 / 4)


def test_never_calls_a_setting_nvml_function():
    clock = FakeClock()
    nvml = FakeNvml(clock)
    _check(nvml, clock, FakeEngine(clock))
    assert nvml.called, "the fake recorded nothing"
    setters = [n for n in nvml.called if re.search(r"Set|Reset|Lock|Apply|Clear", n[4:])]
    assert setters == []


def test_report_is_written_as_json_under_the_gpu_name(tmp_path):
    clock = FakeClock()
    report = _check(FakeNvml(clock), clock, FakeEngine(clock), batches=(2,))
    path = gpu_check.write_report(report, tmp_path)
    assert path.name == "gpu-check-nvidia-fake-h200.json"
    assert json.loads(path.read_text())["batches"][0]["batch"] == 2


@pytest.mark.parametrize(
    ("nvml_kw", "reason"),
    [({"gpus": 0}, "no CUDA GPU at index 0"), ({"init_ok": False}, "NVML cannot start")],
)
def test_no_gpu_is_a_skip_before_any_engine_is_built(nvml_kw, reason):
    clock = FakeClock()
    built = []
    with pytest.raises(gpu_check.Skip, match=reason):
        gpu_check.run_check(
            nvml=FakeNvml(clock, **nvml_kw),
            engine_factory=lambda: built.append(1),
            model="resnet18",
            batches=(1,),
            runs=1,
            cost_model="oracle",
            clock=clock,
        )
    assert built == []


def test_command_without_nvml_says_so_in_one_line_and_exits_0(monkeypatch, tmp_path):
    def no_module(module, why):
        raise gpu_check.Skip(why)

    monkeypatch.setattr(gpu_check, "_import", no_module)
    result = CliRunner().invoke(gpu_check.app, ["--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check skipped: no NVML")
    assert list(tmp_path.iterdir()) == []


def test_command_with_a_gpu_writes_the_report(monkeypatch, tmp_path):
    clock = FakeClock()
    monkeypatch.setattr(gpu_check, "_import", lambda module, why: FakeNvml(clock))
    monkeypatch.setattr(gpu_check, "_real_engine_factory", lambda fp16, mb: lambda: (FakeEngine(clock), "10.9.0"))
    monkeypatch.setattr(gpu_check.time, "perf_counter", clock)
    args = ["--batches", "1,2", "--runs", "3", "--cost-model", "oracle", "--out-dir", str(tmp_path)]
    result = CliRunner().invoke(gpu_check.app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "gpu-check-nvidia-fake-h200.json").read_text())
    assert [r["batch"] for r in report["batches"]] == [1, 2]


def test_bad_batches_are_refused():
    result = CliRunner().invoke(gpu_check.app, ["--batches", "0,4"])
    assert result.exit_code == 2
