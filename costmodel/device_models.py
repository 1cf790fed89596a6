"""Emulated device models: the modelled truth of every device kind, calibrated on real Jetsons.

One `AnalyticDeviceModel` per device kind answers what a batch of `batch` frames of a model costs at a GPU
frequency `f`. Its coefficients come from `costmodel/data/device_models.json`, written by
`costmodel.calibration` (refit with `jetfleet devices fit`).

Latency (seconds per batch) of InceptionV3, the model LoudVA measured:

    latency(b, f) = (c_fix + c_frame * b**k) * f_ref / f  +  (m_fix + m_frame * b**k)
                    `-------- compute: GPU cycles -------'    `--- memory: DRAM-bound ---'

The compute part is work counted in GPU cycles, so it scales with 1/f; the memory part is bound by the
(unscaled) DRAM clock and does not move with the GPU clock. Both have a per-batch part (layer launches,
weights read once per batch) and a per-frame part growing as b**k (k < 1: larger batches use the GPU
better). Fitted on LoudVA's rows this reaches 2-3 % MAPE on each measured device.

Board power while a batch runs (watts):

    busy_power(b, f) = idle(f) + util(b) * (p_static + p_lin * u + p_volt * u * (V(u)**2 - 1) / (V(1)**2 - 1))
    u = f / f_ref,   V(u) = 1 + s * max(0, u - u_knee),   util(b) = b / (b + b_half)

Dynamic CMOS power is C * f * V**2. Jetson DVFS tables hold the voltage flat at low clocks and raise it
above a knee, so power is linear in f below `u_knee` and grows faster above it. `p_static` is the busy but
frequency-independent part (CPU running the server, memory controller); `p_volt` is the extra power the
voltage rise costs at the top clock (normalised so that `s` only shapes the curve). `util(b)` is the fraction of time
the GPU is busy: with one frame in flight the GPU idles between requests; larger batches keep it busy.

Idle power (watts), from the catalogue's idle figure measured by LoudVA at the lowest clock:

    idle(f) = idle_w * (1 + idle_slope * (f - f_min) / (f_ref - f_min)),   idle_slope = 0.10

LoudVA logged idle power only at the lowest clock; the 10 % rise at the highest clock is an assumption
(leakage and clock-tree power rise with the DVFS voltage) and is documented in the JSON.

Energy per batch = busy_power * latency: board energy including the idle baseline, as LoudVA's is.

Other models scale InceptionV3's latency by a per-model ratio (published figures; see the JSON `models`
section for each source; a model-repository model without one scales ResNet-50's by GMACs); power is
taken as the device's, so energy scales with latency. Kinds LoudVA did
not measure (the Orin family, a CUDA GPU, a CPU) are derived from a measured kind by spec ratios (see the
JSON `kinds.<kind>.derivation`).

The optional `NoiseModel` adds seeded multiplicative run-to-run variation to `latency_s`, `energy_j` and
`batch_cost`; the grids (`latency_grid`, `energy_grid`) and `OracleCostModel` stay noiseless.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from costmodel.base import CostGrid
from costmodel.model_zoo import MODELS, get_model
from costmodel.profiles import PROFILE_COLUMNS
from jetfleet.catalogue import CATALOGUE, DeviceKind, get_kind
from jetfleet.errors import ConfigError, DataError, FrequencyError, InvalidRequestError, UnknownNameError

COEFFICIENTS_PATH = Path(__file__).parent / "data" / "device_models.json"
BASE_MODEL = "inceptionv3"  # the model whose curves were measured; other models are scaled from it
RATIO_ANCHOR = "resnet50"  # models without a published latency figure scale this one's by GMACs

__all__ = [
    "COEFFICIENTS_PATH",
    "AnalyticDeviceModel",
    "KindCoefficients",
    "LatencyCoeffs",
    "NoiseModel",
    "OracleCostModel",
    "PowerCoeffs",
    "batch_ladder",
    "device_model",
    "emulated_profiles",
    "load_coefficients",
]


@dataclass(frozen=True)
class LatencyCoeffs:
    """Latency curve of InceptionV3 on one kind; see the module docstring for the form."""

    f_ref_hz: float  # reference GPU frequency (the kind's highest)
    fixed_compute_s: float  # per-batch compute time at f_ref
    frame_compute_s: float  # per-frame compute time at f_ref (times b**k)
    fixed_memory_s: float  # per-batch frequency-independent time
    frame_memory_s: float  # per-frame frequency-independent time (times b**k)
    batch_exponent: float  # k

    def latency_s(self, batch: Any, freq_hz: Any) -> Any:
        """Seconds per batch; numpy-broadcasts over `batch` and `freq_hz`."""
        work = np.power(np.asarray(batch, dtype=float), self.batch_exponent)
        compute = (self.fixed_compute_s + self.frame_compute_s * work) * (self.f_ref_hz / np.asarray(freq_hz, float))
        return compute + self.fixed_memory_s + self.frame_memory_s * work

    def latency_at(self, batch: float, freq_hz: float) -> float:
        """`latency_s` for one point, in plain floats (the simulator's hot path)."""
        work = float(batch) ** self.batch_exponent
        compute = (self.fixed_compute_s + self.frame_compute_s * work) * (self.f_ref_hz / freq_hz)
        return compute + self.fixed_memory_s + self.frame_memory_s * work


@dataclass(frozen=True)
class PowerCoeffs:
    """Board power of one kind, idle and busy; see the module docstring for the form."""

    f_ref_hz: float  # reference frequency: u = f / f_ref
    f_min_hz: float  # lowest catalogue frequency, where the idle figure was measured
    idle_w: float  # idle board power at f_min (catalogue)
    idle_slope: float  # relative idle rise from f_min to f_ref
    static_w: float  # busy, frequency-independent power at full utilisation
    linear_w: float  # dynamic power at u = 1 with the voltage at its floor
    voltage_w: float  # extra dynamic power at u = 1 from the voltage rise above the knee
    voltage_slope: float  # s: relative voltage rise per unit of u above the knee (shape only, > 0)
    knee: float  # u_knee
    half_batch: float  # b_half: batch at which the GPU is half busy

    def idle_power_w(self, freq_hz: Any) -> Any:
        span = self.f_ref_hz - self.f_min_hz
        rel = (np.asarray(freq_hz, float) - self.f_min_hz) / span if span > 0 else 0.0
        return self.idle_w * (1.0 + self.idle_slope * np.clip(rel, 0.0, None))

    def busy_power_w(self, batch: Any, freq_hz: Any) -> Any:
        u = np.asarray(freq_hz, float) / self.f_ref_hz
        volt = 1.0 + self.voltage_slope * np.maximum(0.0, u - self.knee)
        top = (1.0 + self.voltage_slope * (1.0 - self.knee)) ** 2 - 1.0
        dynamic = self.static_w + self.linear_w * u + self.voltage_w * u * (volt**2 - 1.0) / top
        b = np.asarray(batch, dtype=float)
        return self.idle_power_w(freq_hz) + dynamic * b / (b + self.half_batch)

    def idle_at(self, freq_hz: float) -> float:
        """`idle_power_w` for one point, in plain floats."""
        span = self.f_ref_hz - self.f_min_hz
        rel = max(0.0, (freq_hz - self.f_min_hz) / span) if span > 0 else 0.0
        return self.idle_w * (1.0 + self.idle_slope * rel)

    def busy_power_at(self, batch: float, freq_hz: float) -> float:
        """`busy_power_w` for one point, in plain floats."""
        u = freq_hz / self.f_ref_hz
        volt = 1.0 + self.voltage_slope * max(0.0, u - self.knee)
        top = (1.0 + self.voltage_slope * (1.0 - self.knee)) ** 2 - 1.0
        dynamic = self.static_w + self.linear_w * u + self.voltage_w * u * (volt * volt - 1.0) / top
        return self.idle_at(freq_hz) + dynamic * batch / (batch + self.half_batch)


@dataclass(frozen=True)
class KindCoefficients:
    """Everything a device model of one kind needs: latency and power curves and per-model ratios."""

    kind: str
    latency: LatencyCoeffs
    power: PowerCoeffs
    model_ratios: Mapping[str, float]  # latency(model) / latency(inceptionv3) on this kind
    origin: str = "fit"  # "fit" (measured by LoudVA) or "derived:<base kind>"


@dataclass(frozen=True)
class NoiseModel:
    """Seeded multiplicative run-to-run variation: each draw multiplies by a mean-1 lognormal factor.

    `cv` is the coefficient of variation of latency; energy gets the same latency factor (a slower run
    lasts longer) times an independent power factor of `power_cv`. Two models built from equal
    NoiseModels draw identical sequences; use `for_device(name)` to give each device its own stream.
    """

    cv: float = 0.05
    power_cv: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0.0 <= self.cv < 1.0 and 0.0 <= self.power_cv < 1.0):
            raise ConfigError(f"noise: cv and power_cv must be in [0, 1), got cv={self.cv}, power_cv={self.power_cv}")

    def for_device(self, name: str) -> NoiseModel:
        """A copy whose seed also depends on `name` (stable across runs and Python versions)."""
        return replace(self, seed=(self.seed * 1_000_003 + zlib.crc32(name.encode())) % 2**32)

    def generator(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    @staticmethod
    def factor(rng: np.random.Generator, cv: float, size: int | None = None) -> Any:
        """Lognormal factor(s) with mean 1 and coefficient of variation `cv`."""
        if cv == 0:
            return 1.0 if size is None else np.ones(size)
        sigma = math.sqrt(math.log1p(cv * cv))
        return np.exp(rng.normal(-0.5 * sigma * sigma, sigma, size))


def gmacs_ratio(model_ratios: Mapping[str, float], gmacs: float, kind: str = "", model: str = "") -> float:
    """Latency ratio of a model without a published figure (a repository model): ResNet-50's ratio scaled
    by GMACs, the rule `costmodel.calibration.model_ratio_table` applies to built-in models without one."""
    if RATIO_ANCHOR not in model_ratios:
        raise UnknownNameError(f"model on {kind}", model, model_ratios)
    return model_ratios[RATIO_ANCHOR] * gmacs / get_model(RATIO_ANCHOR).gmacs


@dataclass
class AnalyticDeviceModel:
    """The modelled truth of one device kind (implements `costmodel.base.DeviceModel`).

    Point queries (`latency_s`, `energy_j`, `batch_cost`) draw noise when a `NoiseModel` is set; the
    vectorised grids are always the noiseless expectation.
    """

    kind: str
    coefficients: KindCoefficients
    device_kind: DeviceKind
    noise: NoiseModel | None = None
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.noise is not None:
            self._rng = self.noise.generator()

    # --- noiseless building blocks -------------------------------------------------------------
    def _ratio(self, model: str) -> float:
        try:
            return self.coefficients.model_ratios[model]
        except KeyError:
            pass
        info = get_model(model)  # unknown to the zoo and every used repository: UnknownNameError
        return gmacs_ratio(self.coefficients.model_ratios, info.gmacs, self.kind, model)

    def _check(self, batch: int, freq_hz: float) -> None:
        if int(batch) != batch or batch < 1:
            raise InvalidRequestError(f"{self.kind}: batch must be an integer >= 1, got {batch!r}")
        if not (freq_hz > 0 and math.isfinite(freq_hz)):
            raise FrequencyError(f"{self.kind}: frequency must be a positive number of Hz, got {freq_hz!r}")

    def expected_latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        """Noiseless seconds per batch."""
        self._check(batch, freq_hz)
        return self._ratio(model) * self.coefficients.latency.latency_at(batch, freq_hz)

    def busy_power_w(self, model: str, batch: int, freq_hz: float) -> float:
        """Mean board power while the batch runs (idle baseline included), noiseless."""
        self._ratio(model)
        self._check(batch, freq_hz)
        return self.coefficients.power.busy_power_at(batch, freq_hz)

    def expected_energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        """Noiseless board joules per batch (idle baseline included)."""
        return self.busy_power_w(model, batch, freq_hz) * self.expected_latency_s(model, batch, freq_hz)

    def idle_power_w(self, freq_hz: float) -> float:
        """Board power with nothing running at GPU frequency `freq_hz`."""
        return self.coefficients.power.idle_at(freq_hz)

    # --- the DeviceModel protocol (noisy when a NoiseModel is set) ------------------------------
    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        """Seconds per batch (one noise draw when noisy)."""
        value = self.expected_latency_s(model, batch, freq_hz)
        if self._rng is None:
            return value
        return value * float(NoiseModel.factor(self._rng, self.noise.cv))

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        """Board joules per batch, idle baseline included (one noise draw when noisy)."""
        value = self.expected_energy_j(model, batch, freq_hz)
        if self._rng is None:
            return value
        latency_factor = NoiseModel.factor(self._rng, self.noise.cv)
        return value * float(latency_factor * NoiseModel.factor(self._rng, self.noise.power_cv))

    def batch_cost(self, model: str, batch: int, freq_hz: float) -> tuple[float, float]:
        """(latency_s, energy_j) of one run with consistent noise: the energy lasts as long as the run."""
        latency = self.expected_latency_s(model, batch, freq_hz)
        power = self.busy_power_w(model, batch, freq_hz)
        if self._rng is None:
            return latency, power * latency
        latency *= float(NoiseModel.factor(self._rng, self.noise.cv))
        return latency, power * float(NoiseModel.factor(self._rng, self.noise.power_cv)) * latency

    # --- vectorised, noiseless -------------------------------------------------------------------
    def latency_grid(self, model: str, freqs_hz: Sequence[float], batches: Sequence[int]) -> np.ndarray:
        """Seconds per batch, shape (len(freqs_hz), len(batches))."""
        f, b = _grid_axes(self.kind, freqs_hz, batches)
        return self._ratio(model) * self.coefficients.latency.latency_s(b[None, :], f[:, None])

    def power_grid(self, model: str, freqs_hz: Sequence[float], batches: Sequence[int]) -> np.ndarray:
        """Busy board watts, shape (len(freqs_hz), len(batches))."""
        self._ratio(model)
        f, b = _grid_axes(self.kind, freqs_hz, batches)
        return self.coefficients.power.busy_power_w(b[None, :], f[:, None])

    def energy_grid(self, model: str, freqs_hz: Sequence[float], batches: Sequence[int]) -> np.ndarray:
        """Board joules per batch, shape (len(freqs_hz), len(batches))."""
        return self.power_grid(model, freqs_hz, batches) * self.latency_grid(model, freqs_hz, batches)


def _grid_axes(kind: str, freqs_hz: Sequence[float], batches: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(freqs_hz, dtype=float).reshape(-1)
    b = np.asarray(batches, dtype=float).reshape(-1)
    if f.size == 0 or b.size == 0:
        raise InvalidRequestError(f"{kind}: empty frequency or batch axis")
    if not np.all(np.isfinite(f) & (f > 0)):
        raise FrequencyError(f"{kind}: frequencies must be positive Hz, got {f.tolist()}")
    if not np.all((b >= 1) & (b == np.round(b))):
        raise InvalidRequestError(f"{kind}: batches must be integers >= 1, got {b.tolist()}")
    return f, b


# --- coefficients ------------------------------------------------------------------------------------
def coefficients_from_dict(kind: str, raw: Mapping[str, Any], models: Mapping[str, Any]) -> KindCoefficients:
    """Build one kind's coefficients from its JSON record and the JSON `models` section."""
    try:
        ratios = {name: float(m["latency_ratio"]) for name, m in models.items()}
        ratios.update({name: float(v) for name, v in raw.get("model_ratio_overrides", {}).items()})
        return KindCoefficients(
            kind=kind,
            latency=LatencyCoeffs(**raw["latency"]),
            power=PowerCoeffs(**raw["power"]),
            model_ratios=ratios,
            origin=str(raw.get("origin", "fit")),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"device model coefficients of {kind!r}: bad or missing field: {e}") from None


def load_coefficients(path: str | Path = COEFFICIENTS_PATH) -> dict[str, KindCoefficients]:
    """Read a coefficients JSON (default: the committed one) into per-kind coefficients."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read device model coefficients: {e}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(raw, dict) or "kinds" not in raw or "models" not in raw:
        raise ConfigError(f"{path}: expected top-level 'kinds' and 'models' sections")
    return {kind: coefficients_from_dict(kind, rec, raw["models"]) for kind, rec in raw["kinds"].items()}


@lru_cache(maxsize=1)
def _committed() -> dict[str, KindCoefficients]:
    return load_coefficients(COEFFICIENTS_PATH)


@cache
def _noiseless(kind: str) -> AnalyticDeviceModel:
    coeffs = _committed()
    if kind not in coeffs:
        raise UnknownNameError("device kind", kind, coeffs)
    return AnalyticDeviceModel(kind=kind, coefficients=coeffs[kind], device_kind=get_kind(kind))


def device_model(kind: str, *, noise: NoiseModel | None = None) -> AnalyticDeviceModel:
    """The committed model of `kind`; the noiseless one is cached and shared, a noisy one is new each call."""
    base = _noiseless(kind)
    if noise is None:
        return base
    return AnalyticDeviceModel(kind=kind, coefficients=base.coefficients, device_kind=base.device_kind, noise=noise)


class OracleCostModel:
    """A perfect predictor: the noiseless device models behind the `CostModel` protocol.

    Grids are cached per (kind, model, freqs, batches); their arrays are read-only.
    """

    def __init__(self, coefficients: Mapping[str, KindCoefficients] | None = None) -> None:
        self._coefficients = coefficients
        self._cache: dict[tuple[str, str, bytes, bytes], CostGrid] = {}

    def _model(self, kind: str) -> AnalyticDeviceModel:
        if self._coefficients is None:
            return device_model(kind)
        if kind not in self._coefficients:
            raise UnknownNameError("device kind", kind, self._coefficients)
        return AnalyticDeviceModel(kind=kind, coefficients=self._coefficients[kind], device_kind=get_kind(kind))

    def idle_power_w(self, kind: str, freq_hz: float) -> float:
        """Board power of `kind` idle at GPU frequency `freq_hz`, from the same device model (policies use it)."""
        return float(self._model(kind).idle_power_w(freq_hz))

    def predict_grid(self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> CostGrid:
        f = np.asarray(freqs_hz, dtype=float).reshape(-1)
        b = np.asarray(batches, dtype=int).reshape(-1)
        key = (kind, model, f.tobytes(), b.tobytes())
        grid = self._cache.get(key)
        if grid is None:
            dm = self._model(kind)
            latency = dm.latency_grid(model, f, b)
            energy = dm.energy_grid(model, f, b)
            for a in (f, b, latency, energy):
                a.flags.writeable = False
            grid = CostGrid(kind=kind, model=model, freqs_hz=f, batches=b, latency_s=latency, energy_j=energy)
            self._cache[key] = grid
        return grid


def batch_ladder(max_batch: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to and including `max_batch`."""
    ladder = [b for b in (1, 2, 3) if b <= max_batch]
    step = 4
    while step <= max_batch:
        ladder += [b for b in (step, step * 3 // 2) if b <= max_batch]
        step *= 2
    if ladder[-1] != max_batch:
        ladder.append(max_batch)
    return sorted(set(ladder))


def emulated_profiles(
    kinds: Iterable[str] | None = None,
    models: Iterable[str] | None = None,
    *,
    freqs_hz: Sequence[float] | None = None,
    batches: Sequence[int] | None = None,
    noise: NoiseModel | None = None,
) -> pd.DataFrame:
    """A profile table (schema of `costmodel.profiles`, source "emulated") from the device models.

    Defaults: every catalogue kind with DVFS, every zoo model, each kind's catalogue frequencies and
    `batch_ladder(max_batch)`. With `noise`, every row gets its own seeded draw.
    """
    kinds = [k for k, d in CATALOGUE.items() if d.has_dvfs] if kinds is None else list(kinds)
    models = list(MODELS) if models is None else list(models)
    rng = noise.generator() if noise is not None else None
    frames = []
    for kind in kinds:
        dm = device_model(kind)
        f = np.asarray(freqs_hz if freqs_hz is not None else dm.device_kind.freqs_hz, dtype=float)
        b = np.asarray(batches if batches is not None else batch_ladder(dm.device_kind.max_batch), dtype=int)
        for model in models:
            latency = dm.latency_grid(model, f, b)
            power = dm.power_grid(model, f, b)
            if rng is not None:
                latency = latency * NoiseModel.factor(rng, noise.cv, latency.size).reshape(latency.shape)
                power = power * NoiseModel.factor(rng, noise.power_cv, power.size).reshape(power.shape)
            ff, bb = np.meshgrid(f, b, indexing="ij")
            frames.append(
                pd.DataFrame(
                    {
                        "kind": kind,
                        "model": model,
                        "batch": bb.ravel(),
                        "freq_hz": ff.ravel(),
                        "latency_s": latency.ravel(),
                        "energy_j": (latency * power).ravel(),
                        "power_w": power.ravel(),
                        "source": "emulated",
                    }
                )
            )
    if not frames:
        raise DataError("emulated_profiles: no kinds or no models given")
    return pd.concat(frames, ignore_index=True)[PROFILE_COLUMNS]
