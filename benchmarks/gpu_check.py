"""`make gpu-check`: a TensorRT engine on this machine's CUDA GPU, measured against the cost model.

    python -m benchmarks.gpu_check [--model resnet18] [--batches 1,4,16,32] [--runs 20] [--cost-model lgbm]

Builds the TensorRT engine (`actors.engines.tensorrt_engine`) for a model of the repository (a built-in
model's network is exported to ONNX from code; no downloads), runs each batch size `runs` times after a
warm-up, and reads NVML around each size: the total-energy counter (else power x time), board power, SM and
memory clocks. It compares the measured latency per batch with the cost model's prediction for the
catalogue's `cuda-gpu` kind at the SM clock seen, and writes `docs/hardware/gpu-check-<gpu>.json`.

NVML is only read: the check never sets clocks, power limits or any other GPU setting, so what it measures
is the GPU as its owner left it (the report records the clocks seen). Without NVML, a GPU, TensorRT or a
CUDA build of torch it prints one line saying which and exits 0. `nvml`, `engine` and `clock` are injectable,
which is how tests/test_gpu_check.py checks the logic without a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import typer

from costmodel.factory import make_cost_model
from jetfleet.errors import DeviceError

KIND = "cuda-gpu"
REPORT_DIR = Path(__file__).resolve().parent.parent / "docs" / "hardware"
NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2  # pynvml's NVML_CLOCK_SM / NVML_CLOCK_MEM


class Skip(Exception):
    """The check cannot run here (no NVML, GPU, TensorRT or CUDA torch); its message says which."""


@dataclass(frozen=True)
class Reading:
    """One NVML read: the energy counter (None where the GPU has none), power and clocks."""

    at_s: float
    energy_mj: int | None
    power_w: float
    sm_mhz: int
    mem_mhz: int


@dataclass(frozen=True)
class BatchFigures:
    """What one batch size measured, next to what the cost model predicted."""

    batch: int
    runs: int
    measured_latency_s: float  # median over runs
    measured_latency_p90_s: float
    predicted_latency_s: float
    predicted_over_measured: float
    energy_per_frame_j: float
    predicted_energy_per_frame_j: float  # board energy, idle included, as the cost model counts it
    energy_source: str  # "nvml-energy-counter" | "power-x-time"
    mean_power_w: float
    sm_clock_mhz: tuple[int, int]  # (min, max) seen around the runs
    mem_clock_mhz: tuple[int, int]


class NvmlReader:
    """Read-only NVML access to one GPU: identity, energy counter, power and clocks."""

    def __init__(self, nvml: Any, index: int = 0) -> None:
        self.nvml, self.index = nvml, index
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as e:
            raise Skip(f"NVML cannot start (no NVIDIA driver?): {e}") from None
        if nvml.nvmlDeviceGetCount() <= index:
            raise Skip(f"no CUDA GPU at index {index} (NVML sees {nvml.nvmlDeviceGetCount()})")
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)

    def identity(self) -> dict[str, Any]:
        n = self.nvml
        return {"name": _text(n.nvmlDeviceGetName(self.handle)), "index": self.index,
                "driver": _text(n.nvmlSystemGetDriverVersion())}  # fmt: skip

    def read(self, clock: Callable[[], float]) -> Reading:
        n = self.nvml
        try:
            energy: int | None = int(n.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except n.NVMLError:
            energy = None  # pre-Volta GPUs have no energy counter; power x time stands in
        return Reading(
            at_s=clock(),
            energy_mj=energy,
            power_w=float(n.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0,
            sm_mhz=int(n.nvmlDeviceGetClockInfo(self.handle, NVML_CLOCK_SM)),
            mem_mhz=int(n.nvmlDeviceGetClockInfo(self.handle, NVML_CLOCK_MEM)),
        )

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()


async def measure_batch(
    engine: Any, model: str, batch: int, runs: int, reader: NvmlReader, clock: Callable[[], float]
) -> tuple[list[float], Reading, Reading]:
    """Per-run latencies of `runs` batches of `batch` frames (after one warm-up), and NVML read around them."""
    hw = engine.input_hw(model)
    frames = np.random.default_rng(batch).standard_normal((batch, 3, hw, hw), dtype=np.float32)
    await engine.run(model, frames, batch, 0.0)  # warm-up: first-run allocations are not serving cost
    before = reader.read(clock)
    latencies = []
    for _ in range(runs):
        start = clock()
        await engine.run(model, frames, batch, 0.0)
        latencies.append(clock() - start)
    return latencies, before, reader.read(clock)


def batch_figures(
    batch: int, latencies: Sequence[float], before: Reading, after: Reading, predicted: tuple[float, float]
) -> BatchFigures:
    """Figures of one batch size from its latencies, the NVML reads around them and the predicted
    (latency_s, energy_j) of one batch."""
    predicted_s, predicted_j = predicted
    elapsed = after.at_s - before.at_s
    mean_power = (before.power_w + after.power_w) / 2
    if before.energy_mj is not None and after.energy_mj is not None:
        energy_j, source = (after.energy_mj - before.energy_mj) / 1000.0, "nvml-energy-counter"
    else:
        energy_j, source = mean_power * elapsed, "power-x-time"
    measured = statistics.median(latencies)
    return BatchFigures(
        batch=batch,
        runs=len(latencies),
        measured_latency_s=measured,
        measured_latency_p90_s=float(np.percentile(latencies, 90)),
        predicted_latency_s=predicted_s,
        predicted_over_measured=predicted_s / measured if measured > 0 else float("nan"),
        energy_per_frame_j=energy_j / (batch * len(latencies)),
        predicted_energy_per_frame_j=predicted_j / batch,
        energy_source=source,
        mean_power_w=mean_power,
        sm_clock_mhz=(min(before.sm_mhz, after.sm_mhz), max(before.sm_mhz, after.sm_mhz)),
        mem_clock_mhz=(min(before.mem_mhz, after.mem_mhz), max(before.mem_mhz, after.mem_mhz)),
    )


def run_check(
    *,
    nvml: Any,
    engine_factory: Callable[[], tuple[Any, str]],
    model: str,
    batches: Sequence[int],
    runs: int,
    cost_model: str,
    index: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """The report: GPU identity, versions, and per batch size measured vs predicted latency and energy.

    `engine_factory` gives the engine and the TensorRT version; it is called once a GPU is found."""
    reader = NvmlReader(nvml, index)
    try:
        gpu = reader.identity()
        engine, trt_version = engine_factory()
        costs = make_cost_model(cost_model, where="--cost-model")
        rows = []
        for batch in batches:
            latencies, before, after = asyncio.run(measure_batch(engine, model, batch, runs, reader, clock))
            sm_hz = np.array([(before.sm_mhz + after.sm_mhz) / 2 * 1e6])
            grid = costs.predict_grid(KIND, model, sm_hz, np.array([batch]))
            predicted = float(grid.latency_s[0, 0]), float(grid.energy_j[0, 0])
            rows.append(batch_figures(batch, latencies, before, after, predicted))
        engine.close()
    finally:
        reader.close()
    return {
        "generated_by": "python -m benchmarks.gpu_check (make gpu-check)",
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "gpu": gpu,
        "tensorrt": trt_version,
        "model": model,
        "device_kind": KIND,
        "cost_model": cost_model,
        "note": "NVML read only; clocks are as the GPU's owner left them (see sm_clock_mhz per batch)",
        "batches": [asdict(r) for r in rows],
    }


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Write `report` as docs/hardware/gpu-check-<gpu name>.json; the path written."""
    slug = re.sub(r"[^a-z0-9]+", "-", report["gpu"]["name"].lower()).strip("-") or "gpu"
    path = out_dir / f"gpu-check-{slug}.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _import(module: str, why: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise Skip(why) from None


def _real_engine_factory(fp16: bool, max_batch: int) -> Callable[[], tuple[Any, str]]:
    def factory() -> tuple[Any, str]:
        from actors.engines.tensorrt_engine import BuildOptions, TensorRTEngine

        trt = _import("tensorrt", "TensorRT is not installed (pip install -e '.[tensorrt]')")
        try:
            engine = TensorRTEngine(trt=trt, build=BuildOptions(max_batch=max_batch, fp16=fp16), device_kind=KIND)
        except DeviceError as e:  # torch without CUDA
            raise Skip(str(e)) from None
        return engine, str(trt.__version__)

    return factory


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    model: str = typer.Option("resnet18", help="a model of the repository"),
    batches: str = typer.Option("1,4,16,32", help="batch sizes, comma-separated"),
    runs: int = typer.Option(20, min=1, help="timed runs per batch size"),
    cost_model: str = typer.Option("lgbm", help="lgbm | oracle | a saved LightGBM model's directory"),
    index: int = typer.Option(0, min=0, help="NVML index of the GPU"),
    fp16: bool = typer.Option(True, help="build the plan with FP16 kernels"),
    out_dir: Path = typer.Option(REPORT_DIR, help="where the JSON report goes"),
) -> None:
    """Measure a TensorRT engine on this GPU against the cost model; exit 0 with a reason where there is none."""
    try:
        sizes = sorted({int(b) for b in batches.split(",")})
    except ValueError:
        raise typer.BadParameter(f"--batches must be integers, got {batches!r}") from None
    if not sizes or sizes[0] < 1:
        raise typer.BadParameter(f"--batches must be sizes >= 1, got {batches!r}")
    try:
        nvml = _import("pynvml", "no NVML: nvidia-ml-py is not installed (pip install -e '.[tensorrt]')")
        report = run_check(
            nvml=nvml,
            engine_factory=_real_engine_factory(fp16, max(sizes)),
            model=model,
            batches=sizes,
            runs=runs,
            cost_model=cost_model,
            index=index,
        )
    except Skip as e:
        print(f"gpu-check skipped: {e}")
        return
    path = write_report(report, out_dir)
    print(f"{report['gpu']['name']} (driver {report['gpu']['driver']}, TensorRT {report['tensorrt']}), {model}:")
    for r in report["batches"]:
        print(
            f"  batch {r['batch']:>3}: measured {r['measured_latency_s'] * 1e3:7.2f} ms, predicted"
            f" {r['predicted_latency_s'] * 1e3:7.2f} ms; {r['energy_per_frame_j'] * 1e3:7.2f} mJ/frame (predicted"
            f" {r['predicted_energy_per_frame_j'] * 1e3:.2f}),"
            f" SM {r['sm_clock_mhz'][0]}-{r['sm_clock_mhz'][1]} MHz"
        )
    print(f"report: {path}", file=sys.stderr)


if __name__ == "__main__":
    app()
