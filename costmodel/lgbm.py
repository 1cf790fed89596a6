"""The LightGBM cost model: latency and energy per batch for any (device kind, model, batch, GPU frequency).

`LightGBMCostModel` is a scikit-learn style estimator (`fit` -> self, learned state ends in `_`, `predict`
refuses before `fit`) and implements the `CostModel` protocol of `costmodel.base`, which is what policies
consult on every decision. Features (`costmodel.features`) are catalogue specs, zoo descriptors, frequency
and batch -- numbers only -- so the model carries over to devices, frequencies and models it was not fitted on.

What it predicts, and why that shape:

- latency: log(latency_s) = log(gmacs / (cores * f)) + v . [1, log gmacs, log params_m, log input_hw] + F(x).
  The offset is the physics the trees need not learn (a frame's MACs at one MAC per core-cycle); the basis
  (least squares on the training rows) is how a model's cost per MAC differs, smoothly in its descriptors,
  so unseen models get a sensible level; F is log core-cycles per MAC of the batch, which is
  nearly flat in f (LoudVA: +20 % from 115 to 1377 MHz while latency falls 10x). Trees are piecewise
  constant, so a frequency between two fitted ones gets a neighbour's F, and the offset supplies the exact
  1/f trend: held-out frequencies cost ~2 % instead of the 6-30 % a plain log-latency target gives.
  Logs make the squared loss a relative one, which is what MAPE and the policies care about.
- energy = latency * power, power modelled as log(power_w) = w . [1, log f, f/f_max, log idle_power_w] + G(x).
  The basis (least squares on the training rows) is the trend of CMOS power C*V^2*f under DVFS (the voltage
  follows the position f/f_max in the device's own range) and the scale of the board (its idle power, from
  the catalogue); G refines it. Power is far smoother than energy per batch, which swings with the batch
  and is U-shaped in f. (On a validation split inside LoudVA's training rows, f/f_max beat log-linear and
  log-quadratic trends in f: power MAPE 3.9 % vs 4.8 %.)

Monotone constraints (`costmodel.features.LATENCY_CONSTRAINTS` / `POWER_CONSTRAINTS`):

- F rises with batch and batch work (batch * gmacs / cores), with f, cores * f and f / f_max (stalls cost
  more cycles at a faster clock), and falls with DRAM bytes per cycle: every constrained feature that moves
  with batch or f is constrained the way batch or f moves it, so the constraints are consistent. Neither
  offset nor basis holds the batch, so predicted latency is non-decreasing in batch by construction.
- G rises with batch and batch work (a busier GPU draws more); its terms in f are free (the basis carries
  the trend). So energy = latency * power is non-decreasing in batch by construction.
- In f, latency = exp(F) / f falls only while the fitted cycles grow slower than the clock -- physics, but
  not something LightGBM can enforce on a sum with an offset. `predict_grid` therefore takes a running
  minimum of latency over ascending frequency. It changes nothing where the fit obeys physics (no point of
  the LoudVA fit's grids; ~0.25 % of `default_cost_model`'s, by at most ~2 %, counted by
  benchmarks/bench_costmodel.py), and makes the grids policies search exactly monotone. `predict` returns
  the raw fit.

A variant with batch work unconstrained fitted the emulated fleet's random split better (1.3 % vs 2.3 %)
but its raw latency fell by up to 25 % from one batch to the next; it was dropped for the consistent one.

`predict_grid` answers a whole F x B grid with one LightGBM call per target and caches the grid per
(kind, model, frequencies, batches); a hit is a dictionary lookup. `save` / `load` write LightGBM text
model files plus a JSON of parameters, features and the training summary (no pickle).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from costmodel import features as feat
from costmodel.base import CostGrid
from costmodel.device_models import device_model, emulated_profiles
from costmodel.profiles import validate_profiles
from jetfleet.catalogue import CATALOGUE, get_kind
from jetfleet.errors import ConfigError, DataError, InvalidRequestError, JetfleetError, NotFittedError

FORMAT = "jetfleet-lgbm-costmodel"
FORMAT_VERSION = 1
MIN_ROWS = 10


class LightGBMCostModel:
    """Latency (s per batch) and energy (J per batch) of (kind, model, batch, freq_hz), fitted on profiles.

    Hyper-parameters are LightGBM's, shared by the latency and the power booster. The defaults are fixed
    settings checked only on validation splits inside LoudVA's training rows (never the test rows): 300
    rounds at 0.1 match 600 at 0.05 there (within 0.05 points) at half the fit and cold-grid time.
    `cache_size` bounds the number of grids kept.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.1,
        num_leaves: int = 31,
        min_child_samples: int = 5,
        monotone: bool = True,
        n_jobs: int = 1,
        seed: int = 0,
        cache_size: int = 4096,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.monotone = monotone
        self.n_jobs = n_jobs
        self.seed = seed
        self.cache_size = cache_size

    # --- scikit-learn surface ---------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, as given to `__init__`."""
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "monotone": self.monotone,
            "n_jobs": self.n_jobs,
            "seed": self.seed,
            "cache_size": self.cache_size,
        }

    def __repr__(self) -> str:
        return f"LightGBMCostModel({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def fit(self, profiles: pd.DataFrame, source: str = "<profiles>") -> LightGBMCostModel:
        """Fit on a profile table (schema of `costmodel.profiles`); returns self."""
        self._check_params()
        df = validate_profiles(profiles, source)
        if len(df) < MIN_ROWS:
            raise DataError(f"{source}: {len(df)} profile rows; the cost model needs at least {MIN_ROWS}")
        x = feat.build_features(df, source)
        latency = df["latency_s"].to_numpy()
        power = df["energy_j"].to_numpy() / latency  # so that latency * power reproduces energy_j exactly
        log_cycles = np.log(latency) - feat.latency_offset(x)
        self.latency_coef_ = np.linalg.lstsq(feat.latency_basis(x), log_cycles, rcond=None)[0]
        basis = feat.power_basis(x)
        self.power_coef_ = np.linalg.lstsq(basis, np.log(power), rcond=None)[0]
        residual = log_cycles - feat.latency_basis(x) @ self.latency_coef_
        self.latency_booster_ = self._train(x, residual, feat.LATENCY_CONSTRAINTS)
        self.power_booster_ = self._train(x, np.log(power) - basis @ self.power_coef_, feat.POWER_CONSTRAINTS)
        self.feature_names_ = list(feat.FEATURE_NAMES)
        kinds, models = feat.kinds_and_models(df)
        pred_latency, pred_energy = self._predict_x(x)
        self.training_summary_ = {
            "n_rows": len(df),
            "kinds": kinds,
            "models": models,
            "sources": sorted(map(str, df["source"].unique())),
            "in_sample_latency_mape_pct": mape_pct(pred_latency, latency),
            "in_sample_energy_mape_pct": mape_pct(pred_energy, df["energy_j"].to_numpy()),
        }
        self._grid_cache: dict[tuple[str, str, bytes, bytes], CostGrid] = {}
        return self

    def predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(latency_s, energy_j) per batch for rows with columns kind, model, batch, freq_hz."""
        self._check_fitted()
        return self._predict_x(feat.build_features(rows))

    # --- CostModel protocol -----------------------------------------------------------------------
    def idle_power_w(self, kind: str, freq_hz: float) -> float:
        """Board power of `kind` idle at `freq_hz` (policies use it): the calibrated device curve of
        `costmodel.device_models`, else the catalogue's figure for kinds it has no curve for."""
        try:
            return float(device_model(kind).idle_power_w(freq_hz))
        except JetfleetError:
            return get_kind(kind).idle_power_w

    def predict_grid(self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> CostGrid:
        """Costs of every (frequency, batch) of one kind and model; cached, arrays read-only.

        `freqs_hz` and `batches` must be ascending. Latency is made exactly non-increasing in frequency
        (running minimum; see the module docstring); energy is latency times the predicted power.
        """
        try:
            cache = self._grid_cache
        except AttributeError:
            raise NotFittedError("LightGBMCostModel.predict_grid called before fit (or load)") from None
        f = np.asarray(freqs_hz, dtype=float).reshape(-1)
        b = np.asarray(batches, dtype=np.int64).reshape(-1)
        key = (kind, model, f.tobytes(), b.tobytes())
        grid = cache.get(key)
        if grid is None:
            grid = self._compute_grid(kind, model, f.copy(), b.copy())
            if len(cache) >= max(1, self.cache_size):
                cache.pop(next(iter(cache)))
            cache[key] = grid
        return grid

    def clear_cache(self) -> None:
        """Forget every cached grid (benchmarks time cold queries with it)."""
        self._check_fitted()
        self._grid_cache.clear()

    # --- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write `latency.txt`, `power.txt` (LightGBM text models) and `costmodel.json` under `directory`."""
        self._check_fitted()
        out = Path(directory)
        try:
            out.mkdir(parents=True, exist_ok=True)
            self.latency_booster_.save_model(str(out / "latency.txt"))
            self.power_booster_.save_model(str(out / "power.txt"))
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "params": self.get_params(),
                "features": self.feature_names_,
                "latency_offset": "log(gmacs / (gpu_cores * freq_ghz))",
                "latency_basis": ["1", "log gmacs", "log params_m", "log input_hw"],
                "latency_coef": [float(c) for c in self.latency_coef_],
                "latency_constraints": feat.LATENCY_CONSTRAINTS if self.monotone else {},
                "power_basis": ["1", "log freq_ghz", "freq_rel", "log idle_power_w"],
                "power_coef": [float(c) for c in self.power_coef_],
                "power_constraints": feat.POWER_CONSTRAINTS if self.monotone else {},
                "training": self.training_summary_,
                "lightgbm_version": _lightgbm().__version__,
            }
            (out / "costmodel.json").write_text(json.dumps(meta, indent=2) + "\n")
        except OSError as e:
            raise ConfigError(f"{out}: cannot write the cost model: {e}") from None
        return out

    @classmethod
    def load(cls, directory: str | Path) -> LightGBMCostModel:
        """Read a model written by `save`; the result predicts exactly what the saved one did."""
        path = Path(directory)
        meta = read_metadata(path)
        if meta["features"] != feat.FEATURE_NAMES:
            raise ConfigError(
                f"{path}: saved with features {meta['features']}, this jetfleet builds {feat.FEATURE_NAMES}; retrain"
            )
        lgb = _lightgbm()
        model = cls(**meta["params"])
        try:
            model.latency_booster_ = lgb.Booster(model_file=str(path / "latency.txt"))
            model.power_booster_ = lgb.Booster(model_file=str(path / "power.txt"))
        except lgb.basic.LightGBMError as e:
            raise ConfigError(f"{path}: cannot read a LightGBM model file: {str(e).splitlines()[0]}") from None
        model.latency_coef_ = np.asarray(meta["latency_coef"], dtype=float)
        model.power_coef_ = np.asarray(meta["power_coef"], dtype=float)
        model.feature_names_ = list(meta["features"])
        model.training_summary_ = dict(meta["training"])
        model._grid_cache = {}
        return model

    # --- internals ----------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.n_estimators < 1 or self.num_leaves < 2 or self.min_child_samples < 1 or self.learning_rate <= 0:
            raise ConfigError(f"LightGBMCostModel: invalid hyper-parameters {self.get_params()}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "latency_booster_"):
            raise NotFittedError("LightGBMCostModel is not fitted: call fit(profiles) or LightGBMCostModel.load(dir)")

    def _train(self, x: np.ndarray, y: np.ndarray, constraints: dict[str, int]) -> Any:
        lgb = _lightgbm()
        params = {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if self.monotone:
            params["monotone_constraints"] = feat.constraint_vector(constraints)
            params["monotone_constraints_method"] = "advanced"
        data = lgb.Dataset(x, label=y, feature_name=feat.FEATURE_NAMES, params={"verbosity": -1})
        return lgb.train(params, data, num_boost_round=self.n_estimators)

    def _predict_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        latency, power = self._latency_power(x)
        return latency, latency * power

    def _latency_power(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_latency = feat.latency_offset(x) + feat.latency_basis(x) @ self.latency_coef_
        latency = np.exp(self.latency_booster_.predict(x, num_threads=1) + log_latency)
        power = np.exp(self.power_booster_.predict(x, num_threads=1) + feat.power_basis(x) @ self.power_coef_)
        return latency, power

    def _compute_grid(self, kind: str, model: str, f: np.ndarray, b: np.ndarray) -> CostGrid:
        if f.size == 0 or b.size == 0:
            raise InvalidRequestError(f"{kind}/{model}: empty frequency or batch axis")
        if not (np.all(f > 0) and np.all(np.diff(f) > 0)):
            raise InvalidRequestError(f"{kind}/{model}: frequencies must be positive and ascending, got {f.tolist()}")
        if not (np.all(b >= 1) and np.all(np.diff(b) > 0)):
            raise InvalidRequestError(f"{kind}/{model}: batches must be >= 1 and ascending, got {b.tolist()}")
        latency, power = self._latency_power(feat.grid_features(kind, model, f, b))
        latency = np.minimum.accumulate(latency.reshape(f.size, b.size), axis=0)
        energy = latency * power.reshape(f.size, b.size)
        for a in (f, b, latency, energy):
            a.flags.writeable = False
        return CostGrid(kind=kind, model=model, freqs_hz=f, batches=b, latency_s=latency, energy_j=energy)


def mape_pct(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(predicted / measured - 1.0)) * 100.0)


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The `costmodel.json` of a saved model; ConfigError naming the folder when it is not one."""
    path = Path(directory)
    meta_path = path / "costmodel.json"
    if not path.is_dir():
        raise ConfigError(f"{path}: no such cost-model folder (write one with `jetfleet costmodel train`)")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not a cost-model folder: costmodel.json is missing") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{meta_path}: cannot read: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{meta_path}: not a {FORMAT} file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    missing = [k for k in ("params", "features", "latency_coef", "power_coef", "training") if k not in meta]
    if missing:
        raise ConfigError(f"{meta_path}: missing fields {missing}")
    return meta


def load(directory: str | Path) -> LightGBMCostModel:
    """`LightGBMCostModel.load(directory)`: a saved model back (what `deployments` calls with a folder)."""
    return LightGBMCostModel.load(directory)


def profiling_batches(max_batch: int) -> list[int]:
    """Batches a fleet profile sweeps: every batch up to 8, then steps of 2**(1/4) (~19 %) to `max_batch`.

    Denser than `costmodel.device_models.batch_ladder` (steps of 1.5-2x) because trees interpolate in
    steps: on the emulated fleet this halves the error at batches between profiled ones (grid MAPE
    against the oracle 6.4 % -> 3.4 %) for 40 % more rows.
    """
    batches = set(range(1, min(max_batch, 8) + 1))
    b = 8.0
    while b < max_batch:
        b *= 2**0.25
        batches.add(min(max_batch, int(round(b))))
    return sorted(batches)


@lru_cache(maxsize=8)
def _default_cost_model(kinds: tuple[str, ...] | None, models: tuple[str, ...] | None) -> LightGBMCostModel:
    names = list(CATALOGUE) if kinds is None else list(kinds)
    profiles = pd.concat(
        [emulated_profiles([k], models, batches=profiling_batches(get_kind(k).max_batch)) for k in names],
        ignore_index=True,
    )
    return LightGBMCostModel().fit(profiles, source="emulated_profiles")


def default_cost_model(kinds: list[str] | None = None, models: list[str] | None = None) -> LightGBMCostModel:
    """A model fitted on the emulated profiles of `kinds` x `models` (default: every catalogue kind, the CPU
    included, and every zoo model), at each kind's catalogue frequencies and `profiling_batches`; fitted
    once per process. Against the oracle on full grids (every batch up to each kind's largest) it is off
    by 3.5 % on the DVFS kinds and 7.6 % on the CPU (213 % when the CPU is left out of the fit).

    The equivalent of profiling the fleet: what the simulator's policies consult by default.
    """
    return _default_cost_model(
        None if kinds is None else tuple(kinds),
        None if models is None else tuple(models),
    )


def _lightgbm() -> Any:
    import lightgbm

    return lightgbm
