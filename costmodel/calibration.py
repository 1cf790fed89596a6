"""Fit the device models to measurements and check them: the code behind `device_models.json`.

- `fit_kind`: least-squares fit of the latency and power forms of `costmodel.device_models` to one
  kind's measured InceptionV3 rows (LoudVA). Residuals are relative (log ratio), so the fit minimises
  what MAPE measures.
- `derive_kind`: a kind LoudVA did not measure, from a measured one, by spec ratios (GPU FP32 work per
  cycle, memory bandwidth, module power budget); each figure cites its source in `DERIVATIONS`.
- `model_ratio_table`: per-model latency ratios to InceptionV3 from published figures (`MODEL_RATIO_SOURCES`),
  Ibis's measured Jetson Nano TensorRT times, or GMACs where nothing is published.
- `build_coefficients`: all of the above as the JSON document committed as `costmodel/data/device_models.json`.
- `calibration_report`: the MAPE of a set of device models against a measured profile table.

Nothing here reads a clock: the fit date is an argument.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from costmodel.device_models import (
    BASE_MODEL,
    AnalyticDeviceModel,
    KindCoefficients,
    LatencyCoeffs,
    PowerCoeffs,
    device_model,
)
from costmodel.model_zoo import BUILTIN_MODELS, get_model
from costmodel.profiles import read_loudva_profiling
from jetfleet.catalogue import CATALOGUE, DeviceKind, get_kind
from jetfleet.errors import DataError

LOUDVA_SOURCE = "github.com/iloudaros/LoudVA @ 2b4b15efa5231d445b85d500ea5ef51d381a64c3 (MIT), Profiling.csv"
IBIS_SOURCE = "github.com/umassos/ibis @ ac0f8d73a7e979edd0418b7a29f88235795f70a7 (MIT), trt_ps_validation.csv"
IDLE_SLOPE = 0.10  # assumed relative idle-power rise from the lowest to the highest GPU clock (not measured)
MEASURED_KINDS = ("agx-xavier", "xavier-nx", "jetson-nano")


@dataclass(frozen=True)
class Derivation:
    """How a kind LoudVA did not measure is derived from a measured `base` kind."""

    base: str
    power_budget_w: float  # module power at full clock and full batch (data sheet)
    flops_per_cycle: float | None = None  # FP32 flops per clock; None: 2 x catalogue gpu_cores (FMA)
    arch_efficiency: float = 1.0  # achieved fraction of peak relative to the base's architecture
    sources: Mapping[str, str] | None = None


_ARCH_EFF_NOTE = "assumed 1.0 (same achieved fraction of peak FP32 as Volta); no per-model published figure at hand"
DERIVATIONS: dict[str, Derivation] = {
    "orin-nano": Derivation(
        base="xavier-nx",
        power_budget_w=15.0,
        sources={
            "power_budget_w": "NVIDIA Jetson Orin Nano 8GB data sheet: 7 W / 15 W power modes",
            "arch_efficiency": _ARCH_EFF_NOTE,
        },
    ),
    "orin-nx": Derivation(
        base="agx-xavier",
        power_budget_w=25.0,
        sources={
            "power_budget_w": "NVIDIA Jetson Orin NX 16GB data sheet: 10 W / 15 W / 25 W power modes",
            "arch_efficiency": _ARCH_EFF_NOTE,
        },
    ),
    "agx-orin": Derivation(
        base="agx-xavier",
        power_budget_w=60.0,
        sources={
            "power_budget_w": "NVIDIA Jetson AGX Orin 64GB data sheet: 15 W to 60 W power modes",
            "arch_efficiency": _ARCH_EFF_NOTE,
        },
    ),
    "cuda-gpu": Derivation(
        base="agx-xavier",
        power_budget_w=700.0,
        sources={
            "power_budget_w": "NVIDIA H100 SXM data sheet: up to 700 W TDP",
            "arch_efficiency": _ARCH_EFF_NOTE,
        },
    ),
    "cpu": Derivation(
        base="agx-xavier",
        power_budget_w=65.0,
        flops_per_cycle=128.0,
        arch_efficiency=1.0,
        sources={
            "power_budget_w": "assumed 65 W TDP desktop 4-core CPU",
            "flops_per_cycle": "4 cores x 2 AVX2 FMA units x 8 FP32 lanes x 2 flops; assumed CPU",
            "arch_efficiency": "assumed 1.0: CPU reaches the same fraction of peak as the GPU; not measured",
        },
    ),
}

_KERAS = (
    "keras.io/api/applications, 'Time (ms) per inference step (GPU)': ResNet50 4.6, InceptionV3 6.9, MobileNetV2 3.8"
)
# Published latency figures relative to InceptionV3. Ibis's Nano TensorRT times (YOLOv4-tiny, ResNet50,
# EfficientNet-B3) are chained to InceptionV3 through the Keras ResNet50/InceptionV3 ratio.
KERAS_GPU_MS = {"inceptionv3": 6.9, "resnet50": 4.6, "mobilenetv2": 3.8}
IBIS_NAMES = {"Yolo4-tiny": "yolov4-tiny", "Resnet50": "resnet50", "EfficientNet-B3": "efficientnet-b3"}


# --- fitting -------------------------------------------------------------------------------------
def _mape_pct(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted / measured - 1.0)) * 100.0)


def fit_latency(batch: np.ndarray, freq_hz: np.ndarray, latency_s: np.ndarray, f_ref_hz: float) -> LatencyCoeffs:
    """Fit the latency form (log-space least squares, positive coefficients via exp)."""
    from scipy.optimize import least_squares

    def coeffs(p: np.ndarray) -> LatencyCoeffs:
        c_fix, c_frame, m_fix, m_frame = np.exp(p[:4])
        return LatencyCoeffs(f_ref_hz, c_fix, c_frame, m_fix, m_frame, float(p[4]))

    def residual(p: np.ndarray) -> np.ndarray:
        return np.log(coeffs(p).latency_s(batch, freq_hz)) - np.log(latency_s)

    scale = float(np.median(latency_s[batch == batch.min()] * freq_hz[batch == batch.min()] / f_ref_hz))
    start = np.array([np.log(scale / 2), np.log(scale / 2), np.log(scale / 20), np.log(scale / 20), 0.9])
    lower, upper = [-20.0] * 4 + [0.3], [5.0] * 4 + [1.5]
    fit = least_squares(residual, start, bounds=(lower, upper), x_scale="jac")
    c = coeffs(fit.x)
    return LatencyCoeffs(*(float(v) for v in asdict(c).values()))


def fit_power(
    batch: np.ndarray, freq_hz: np.ndarray, power_w: np.ndarray, kind: DeviceKind, f_ref_hz: float
) -> PowerCoeffs:
    """Fit the busy-power form with the catalogue idle power fixed (log-space least squares)."""
    from scipy.optimize import least_squares

    def coeffs(q: np.ndarray) -> PowerCoeffs:
        return PowerCoeffs(f_ref_hz, kind.min_freq_hz, kind.idle_power_w, IDLE_SLOPE, *(float(v) for v in q))

    def residual(q: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(coeffs(q).busy_power_w(batch, freq_hz), 1e-6)) - np.log(power_w)

    span = float(np.median(power_w)) - kind.idle_power_w
    start = np.array([0.2 * span, 0.8 * span, 0.2 * span, 1.0, 0.5, 1.0])
    lower = [0.0, 0.0, 0.0, 0.05, 0.05, 0.01]
    upper = [10 * span + 1, 10 * span + 1, 10 * span + 1, 20.0, 0.95, 50.0]
    fit = least_squares(residual, np.clip(start, lower, upper), bounds=(lower, upper), x_scale="jac")
    return coeffs(fit.x)


def fit_kind(df: pd.DataFrame, kind: str, model_ratios: Mapping[str, float]) -> KindCoefficients:
    """Fit one measured kind on its InceptionV3 rows of a profile table."""
    rows = df[(df["kind"] == kind) & (df["model"] == BASE_MODEL)]
    if len(rows) < 12:
        raise DataError(f"fit {kind}: need at least 12 {BASE_MODEL} rows, the table has {len(rows)}")
    device = get_kind(kind)
    b = rows["batch"].to_numpy(float)
    f = rows["freq_hz"].to_numpy(float)
    latency = fit_latency(b, f, rows["latency_s"].to_numpy(float), device.max_freq_hz)
    power = fit_power(b, f, (rows["energy_j"] / rows["latency_s"]).to_numpy(float), device, device.max_freq_hz)
    return KindCoefficients(kind=kind, latency=latency, power=power, model_ratios=dict(model_ratios), origin="fit")


def _flops_per_cycle(kind: DeviceKind, derivation: Derivation | None = None) -> float:
    if derivation is not None and derivation.flops_per_cycle is not None:
        return derivation.flops_per_cycle
    return 2.0 * kind.gpu_cores


def derive_kind(base: KindCoefficients, kind: str, derivation: Derivation) -> KindCoefficients:
    """A kind from a measured base by spec ratios.

    Per-batch compute takes the same number of GPU cycles (it is latency-bound: layer after layer);
    per-frame compute scales with FP32 work per cycle; memory time scales with DRAM bandwidth; dynamic
    power is scaled so that full clock and full batch draw the module's power budget.
    """
    target, src = get_kind(kind), get_kind(base.kind)
    lat = base.latency
    clock = lat.f_ref_hz / target.max_freq_hz
    width = _flops_per_cycle(src) / (_flops_per_cycle(target, derivation) * derivation.arch_efficiency)
    memory = src.mem_bandwidth_gbps / target.mem_bandwidth_gbps
    latency = LatencyCoeffs(
        f_ref_hz=target.max_freq_hz,
        fixed_compute_s=lat.fixed_compute_s * clock,
        frame_compute_s=lat.frame_compute_s * clock * width,
        fixed_memory_s=lat.fixed_memory_s * memory,
        frame_memory_s=lat.frame_memory_s * memory,
        batch_exponent=lat.batch_exponent,
    )
    p = base.power
    base_peak = float(p.busy_power_w(src.max_batch, p.f_ref_hz)) - float(p.idle_power_w(p.f_ref_hz))
    target_idle_peak = target.idle_power_w * (1.0 + (IDLE_SLOPE if target.max_freq_hz > target.min_freq_hz else 0.0))
    scale = max(derivation.power_budget_w - target_idle_peak, 0.1) / base_peak
    power = PowerCoeffs(
        f_ref_hz=target.max_freq_hz,
        f_min_hz=target.min_freq_hz,
        idle_w=target.idle_power_w,
        idle_slope=IDLE_SLOPE,
        static_w=p.static_w * scale,
        linear_w=p.linear_w * scale,
        voltage_w=p.voltage_w * scale,
        voltage_slope=p.voltage_slope,
        knee=p.knee,
        half_batch=p.half_batch,
    )
    return KindCoefficients(kind, latency, power, dict(base.model_ratios), origin=f"derived:{base.kind}")


# --- model ratios --------------------------------------------------------------------------------
def ibis_nano_trt_ms(ibis_dir: str | Path) -> dict[str, float]:
    """Median sequential (run-alone) response time in ms per model from Ibis's Jetson Nano TensorRT runs."""
    path = Path(ibis_dir) / "trt_ps_validation.csv"
    try:
        raw = pd.read_csv(path, skipinitialspace=True)
    except (OSError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    if not {"model", "process_type", "response_time"} <= set(raw.columns):
        raise DataError(f"{path}: expected columns model, process_type, response_time")
    seq = raw[raw["process_type"] == "Sequential"]
    medians = seq.groupby("model")["response_time"].median()
    return {IBIS_NAMES[m]: float(v) for m, v in medians.items() if m in IBIS_NAMES}


def model_ratio_table(ibis_dir: str | Path | None) -> dict[str, dict[str, Any]]:
    """Latency of each zoo model relative to InceptionV3, with the source of each figure."""
    anchor = KERAS_GPU_MS["resnet50"] / KERAS_GPU_MS["inceptionv3"]
    table: dict[str, dict[str, Any]] = {
        BASE_MODEL: {"latency_ratio": 1.0, "source": f"measured: {LOUDVA_SOURCE}"},
        "resnet50": {"latency_ratio": anchor, "source": _KERAS},
        "mobilenetv2": {"latency_ratio": KERAS_GPU_MS["mobilenetv2"] / KERAS_GPU_MS["inceptionv3"], "source": _KERAS},
    }
    if ibis_dir is not None:
        ms = ibis_nano_trt_ms(ibis_dir)
        for model in ("yolov4-tiny", "efficientnet-b3"):
            table[model] = {
                "latency_ratio": anchor * ms[model] / ms["resnet50"],
                "source": f"Ibis Jetson Nano TensorRT sequential median {model} {ms[model]:.2f} ms / resnet50 "
                f"{ms['resnet50']:.2f} ms ({IBIS_SOURCE}), times the Keras resnet50/inceptionv3 ratio",
            }
    r50 = get_model("resnet50")
    for name, info in BUILTIN_MODELS.items():
        if name not in table:
            table[name] = {
                "latency_ratio": anchor * info.gmacs / r50.gmacs,
                "source": f"scaled by GMACs from resnet50 ({info.gmacs} / {r50.gmacs} GMACs); no published figure",
            }
    for rec in table.values():
        rec["latency_ratio"] = round(float(rec["latency_ratio"]), 6)
    return dict(sorted(table.items()))


# --- the committed document ---------------------------------------------------------------------
def _sig(value: float, digits: int = 8) -> float:
    """Round to `digits` significant digits (tiny values become 0): a readable, stable JSON."""
    value = float(value)
    return 0.0 if abs(value) < 1e-12 else float(f"{value:.{digits}g}")


def _kind_record(c: KindCoefficients, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"origin": c.origin}
    rec.update(extra)
    rec["latency"] = {k: _sig(v) for k, v in asdict(c.latency).items()}
    rec["power"] = {k: _sig(v) for k, v in asdict(c.power).items()}
    return rec


def build_coefficients(loudva_dir: str | Path, ibis_dir: str | Path | None, fit_date: str) -> dict[str, Any]:
    """Fit the measured kinds, derive the others and return the JSON document (see module docstring)."""
    profiling = Path(loudva_dir) / "Profiling.csv"
    df = read_loudva_profiling(profiling)
    models = model_ratio_table(ibis_dir)
    ratios = {m: r["latency_ratio"] for m, r in models.items()}
    fitted = {kind: fit_kind(df, kind, ratios) for kind in MEASURED_KINDS}
    report = calibration_report(df, fitted)
    kinds: dict[str, Any] = {}
    for kind in CATALOGUE:
        if kind in fitted:
            kinds[kind] = _kind_record(fitted[kind], fit=report[kind])
            continue
        d = DERIVATIONS[kind]
        derived = derive_kind(fitted[d.base], kind, d)
        derivation = {
            "base": d.base,
            "power_budget_w": d.power_budget_w,
            "flops_per_cycle": _flops_per_cycle(get_kind(kind), d),
            "arch_efficiency": d.arch_efficiency,
            "sources": {
                "specs": "jetfleet/catalogue.py (gpu_cores, mem_bandwidth_gbps, freqs_hz)",
                **(d.sources or {}),
            },
        }
        kinds[kind] = _kind_record(derived, derivation=derivation)
    return {
        "_source": {
            "measurements": LOUDVA_SOURCE + " (AGX Xavier, Xavier NX, Jetson Nano; InceptionV3)",
            "model_ratios": IBIS_SOURCE if ibis_dir is not None else "no Ibis data: GMACs fallback",
            "fit_date": fit_date,
            "fitted_by": "costmodel/calibration.py (scipy least_squares on log residuals)",
            "refit": "jetfleet devices fit --data ../shared/data --out costmodel/data/device_models.json",
            "idle_slope": f"{IDLE_SLOPE}: assumed relative idle-power rise from lowest to highest GPU clock",
            "form": "see the docstring of costmodel/device_models.py",
        },
        "kinds": kinds,
        "models": models,
    }


def write_coefficients(document: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --- checking -------------------------------------------------------------------------------------
def calibration_report(
    df: pd.DataFrame, coefficients: Mapping[str, KindCoefficients] | None = None
) -> dict[str, dict[str, Any]]:
    """Per kind in `df`: latency and energy MAPE (%) of the device models against the measured rows.

    Uses the committed models unless `coefficients` is given. Rows of kinds without a model raise DataError.
    """
    out: dict[str, dict[str, Any]] = {}
    for kind, rows in df.groupby("kind", sort=True):
        if coefficients is None:
            if kind not in CATALOGUE:
                raise DataError(f"profiles: device kind {kind!r} has no device model; known: {sorted(CATALOGUE)}")
            dm = device_model(str(kind))
        else:
            if kind not in coefficients:
                raise DataError(f"profiles: device kind {kind!r} has no device model; known: {sorted(coefficients)}")
            dm = AnalyticDeviceModel(str(kind), coefficients[kind], get_kind(str(kind)))
        lat = np.empty(len(rows))
        energy = np.empty(len(rows))
        for model, idx in rows.groupby("model").indices.items():
            g = rows.iloc[idx]
            b, f = g["batch"].to_numpy(float), g["freq_hz"].to_numpy(float)
            dm.expected_latency_s(str(model), 1, float(f[0]))  # validates the model name
            lat[idx] = dm.coefficients.model_ratios[model] * dm.coefficients.latency.latency_s(b, f)
            energy[idx] = lat[idx] * dm.coefficients.power.busy_power_w(b, f)
        out[str(kind)] = {
            "latency_mape_pct": round(_mape_pct(lat, rows["latency_s"].to_numpy(float)), 3),
            "energy_mape_pct": round(_mape_pct(energy, rows["energy_j"].to_numpy(float)), 3),
            "n_rows": int(len(rows)),
        }
    return out
