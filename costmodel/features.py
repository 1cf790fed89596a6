"""Features of the LightGBM cost model: what carries a profile over to devices and frequencies it has not seen.

Every row (device kind, model, batch, GPU frequency) becomes numbers only: no one-hot of the device name,
so an unseen device is described by its catalogue specs and an unseen model by its zoo descriptors.

    device      gpu_cores, mem_bandwidth_gbps, memory_gb, tensor_cores, arch_gen (CUDA compute capability),
                idle_power_w, max_freq_ghz                         (jetfleet.catalogue)
    model       gmacs, params_m, input_hw                          (costmodel.model_zoo)
    operating   freq_ghz, batch
    derived     compute_gcps  = cores * f           giga core-cycles per second: the compute throughput
                batch_gmacs_per_core = batch * gmacs / cores      work of the batch in core-cycles (no f)
                bytes_per_cycle = bandwidth / f     DRAM bytes per GPU cycle: how memory-bound a clock is
                freq_rel      = f / max_freq        where f sits in the device's own DVFS range (voltage)

The estimator also needs two *offsets* (known physics it does not have to learn; see `costmodel.lgbm`):

    latency_offset = log(gmacs / (cores * f))      seconds one frame's MACs take at one MAC per core-cycle
    latency basis  = [1, log gmacs, log params_m, log input_hw]     per-model efficiency, fitted
    power basis    = [1, log f, f / max_freq, log idle_power_w]

`work = batch * gmacs / (cores * f)` is the offset plus log(batch_gmacs_per_core): the latency model sees it
through those two, split so that its monotone constraints stay consistent (see `LATENCY_CONSTRAINTS`).

A CPU has no GPU cores: `compute_units` counts it as `CPU_COMPUTE_UNITS` lanes (an assumed 4-core, 8-wide
FP32 FMA desktop part) so the formulas stay finite; the cost model is only as good on CPUs as its data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from costmodel.model_zoo import ModelInfo, get_model
from jetfleet.catalogue import DeviceKind, get_kind
from jetfleet.errors import DataError

# CUDA compute capability of each architecture: an ordered number, not a one-hot of the name.
ARCH_GENERATION: dict[str, float] = {
    "cpu": 0.0,
    "maxwell": 5.3,  # Jetson Nano (Tegra X1)
    "pascal": 6.2,  # Jetson TX2
    "volta": 7.2,  # Xavier NX / AGX Xavier
    "ampere": 8.7,  # Orin family
    "ada": 8.9,
    "hopper": 9.0,
}
CPU_COMPUTE_UNITS = 32

DEVICE_FEATURES = [
    "gpu_cores",
    "mem_bandwidth_gbps",
    "memory_gb",
    "tensor_cores",
    "arch_gen",
    "idle_power_w",
    "max_freq_ghz",
]
MODEL_FEATURES = ["gmacs", "params_m", "input_hw"]
OPERATING_FEATURES = ["freq_ghz", "batch", "compute_gcps", "batch_gmacs_per_core", "bytes_per_cycle", "freq_rel"]
FEATURE_NAMES = DEVICE_FEATURES + MODEL_FEATURES + OPERATING_FEATURES
N_STATIC = len(DEVICE_FEATURES) + len(MODEL_FEATURES)
_COL = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Monotone constraints (LightGBM: +1 non-decreasing, -1 non-increasing, 0 free) of each target.
# Latency target: log(latency) - latency_offset - model basis = log(core-cycles per MAC of the batch), up to
# a per-model constant. It rises with the batch and the batch's work (more frames), and with the clock
# (memory stalls cost more cycles at a faster clock; so with cores * f and f / max_freq too); more DRAM bytes
# per cycle means fewer stalls. Every constrained feature that moves with batch or f is constrained the way
# batch or f moves it, so the constraints are consistent and latency is non-decreasing in batch by construction.
LATENCY_CONSTRAINTS: dict[str, int] = {
    "batch": 1,
    "batch_gmacs_per_core": 1,
    "freq_ghz": 1,
    "compute_gcps": 1,
    "bytes_per_cycle": -1,
    "freq_rel": 1,
}
# Power target: log(power) - power basis. Busy power rises with the batch (the GPU idles less). Its trend in
# f is the basis; the residual in f has no physical sign, so f features stay free.
POWER_CONSTRAINTS: dict[str, int] = {"batch": 1, "batch_gmacs_per_core": 1}


def constraint_vector(constraints: dict[str, int], names: list[str] | None = None) -> list[int]:
    """LightGBM's `monotone_constraints` list for `names` (default FEATURE_NAMES)."""
    return [int(constraints.get(n, 0)) for n in (names or FEATURE_NAMES)]


def compute_units(kind: DeviceKind) -> float:
    """GPU cores, or `CPU_COMPUTE_UNITS` for a device without a GPU."""
    return float(kind.gpu_cores) if kind.gpu_cores > 0 else float(CPU_COMPUTE_UNITS)


def device_vector(kind: DeviceKind) -> np.ndarray:
    """The `DEVICE_FEATURES` of one device kind."""
    try:
        arch = ARCH_GENERATION[kind.arch]
    except KeyError:
        raise DataError(
            f"device kind {kind.key!r}: architecture {kind.arch!r} has no generation number; "
            f"known: {sorted(ARCH_GENERATION)}"
        ) from None
    return np.array(
        [
            compute_units(kind),
            kind.mem_bandwidth_gbps,
            kind.memory_gb,
            kind.tensor_cores,
            arch,
            kind.idle_power_w,
            kind.max_freq_hz / 1e9,
        ],
        dtype=float,
    )


def model_vector(model: ModelInfo) -> np.ndarray:
    """The `MODEL_FEATURES` of one model."""
    return np.array([model.gmacs, model.params_m, model.input_hw], dtype=float)


def feature_matrix(static: np.ndarray, freq_hz: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Assemble the (n, len(FEATURE_NAMES)) matrix from per-row static features (n, N_STATIC) and operating points."""
    f_ghz = np.asarray(freq_hz, dtype=float) / 1e9
    b = np.asarray(batch, dtype=float)
    cores, bw = static[:, _COL["gpu_cores"]], static[:, _COL["mem_bandwidth_gbps"]]
    gmacs, fmax = static[:, _COL["gmacs"]], static[:, _COL["max_freq_ghz"]]
    out = np.empty((len(b), len(FEATURE_NAMES)), dtype=float)
    out[:, :N_STATIC] = static
    out[:, _COL["freq_ghz"]] = f_ghz
    out[:, _COL["batch"]] = b
    out[:, _COL["compute_gcps"]] = cores * f_ghz
    out[:, _COL["batch_gmacs_per_core"]] = b * gmacs / cores
    out[:, _COL["bytes_per_cycle"]] = bw / f_ghz
    out[:, _COL["freq_rel"]] = f_ghz / fmax
    return out


def build_features(rows: pd.DataFrame, source: str = "<rows>") -> np.ndarray:
    """Features of rows with columns kind, model, batch, freq_hz; unknown kinds/models raise UnknownNameError."""
    missing = [c for c in ("kind", "model", "batch", "freq_hz") if c not in rows.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing} needed for cost predictions")
    codes, uniq = pd.factorize(pd.MultiIndex.from_frame(rows[["kind", "model"]].astype(str)))
    table = np.vstack([static_vector(k, m) for k, m in uniq]) if len(uniq) else np.empty((0, N_STATIC))
    freq = rows["freq_hz"].to_numpy(dtype=float)
    batch = rows["batch"].to_numpy(dtype=float)
    if len(rows) and (not np.all(freq > 0) or not np.all(batch >= 1)):
        raise DataError(f"{source}: freq_hz must be > 0 and batch >= 1")
    return feature_matrix(table[codes], freq, batch)


def static_vector(kind: str, model: str) -> np.ndarray:
    """Device features followed by model features, for one (kind, model)."""
    return np.concatenate([device_vector(get_kind(kind)), model_vector(get_model(model))])


def grid_features(kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> np.ndarray:
    """Features of the full freqs × batches grid of one (kind, model), frequency-major (row = fi * B + bi)."""
    f = np.repeat(np.asarray(freqs_hz, dtype=float), len(batches))
    b = np.tile(np.asarray(batches, dtype=float), len(freqs_hz))
    static = np.broadcast_to(static_vector(kind, model), (len(f), N_STATIC))
    return feature_matrix(static, f, b)


def latency_offset(x: np.ndarray) -> np.ndarray:
    """log(gmacs / (cores * f)): the seconds one frame's MACs take at one MAC per core-cycle."""
    return np.log(x[:, _COL["gmacs"]] / x[:, _COL["compute_gcps"]])


def latency_basis(x: np.ndarray) -> np.ndarray:
    """[1, log gmacs, log params_m, log input_hw]: how a model's cost per MAC differs, smoothly in its descriptors.

    Constant in batch and f, so it leaves the monotone constraints of the trees intact; without it the
    trees must tell models apart by splits that fight the constraint on batch work.
    """
    return np.column_stack([np.ones(len(x))] + [np.log(x[:, _COL[name]]) for name in ("gmacs", "params_m", "input_hw")])


def power_basis(x: np.ndarray) -> np.ndarray:
    """[1, log f, f / max_freq, log idle_power_w]: the smooth trend of board power that the trees refine.

    Dynamic power is C * V^2 * f and DVFS raises V towards the top of each device's own range, so the
    position in that range (f / max_freq) carries the voltage; idle power carries the board's scale.
    """
    return np.column_stack(
        [
            np.ones(len(x)),
            np.log(x[:, _COL["freq_ghz"]]),
            x[:, _COL["freq_rel"]],
            np.log(x[:, _COL["idle_power_w"]]),
        ]
    )


def kinds_and_models(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Sorted distinct kinds and models of a table."""
    return sorted(map(str, rows["kind"].unique())), sorted(map(str, rows["model"].unique()))
