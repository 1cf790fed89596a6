"""Cost-model speed and accuracy: what a scheduling decision pays to ask the LightGBM model for a grid.

Figures:
- `fit_s`: fitting on LoudVA's Profiling.csv (when ../shared/data is there) and `default_cost_model()`
  (every DVFS kind x every zoo model, emulated).
- `grid`: `predict_grid` for a full grid (AGX Xavier: 14 frequencies x 128 batches = 1,792 points), cold
  (cache cleared before each call: features + one LightGBM call per target) and warm (cache hit), per call.
- `eval`: the three splits' MAPEs on LoudVA (random, freq, Nano held out with its few-shot refit).
- `projection`: how many points of the default model's grids the running minimum over frequency changes;
  `vs_oracle_*`: the default model's grids against the device models its profiles were emulated from.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np


def _time_grid(model: Any, kind: str, name: str, batches: np.ndarray, cold_reps: int, warm_reps: int) -> dict:
    from jetfleet.catalogue import get_kind

    freqs = np.array(get_kind(kind).freqs_hz, dtype=float)
    cold = []
    for _ in range(cold_reps):
        model.clear_cache()
        t0 = time.perf_counter()
        model.predict_grid(kind, name, freqs, batches)
        cold.append(time.perf_counter() - t0)
    model.predict_grid(kind, name, freqs, batches)
    t0 = time.perf_counter()
    for _ in range(warm_reps):
        model.predict_grid(kind, name, freqs, batches)
    warm_s = (time.perf_counter() - t0) / warm_reps
    return {
        "kind": kind,
        "model": name,
        "grid_points": int(len(freqs) * len(batches)),
        "shape": [len(freqs), len(batches)],
        "cold_ms_median": statistics.median(cold) * 1e3,
        "cold_ms_min": min(cold) * 1e3,
        "warm_us": warm_s * 1e6,
        "cold_reps": cold_reps,
        "warm_reps": warm_reps,
    }


def _grid_checks(model: Any) -> dict:
    """On every kind x zoo model full grid (every batch up to the kind's largest): the points where raw
    latency rises with frequency (which `predict_grid`'s running minimum changes) and the MAPE against
    the oracle (the device models the emulated profiles came from)."""
    from costmodel.device_models import OracleCostModel
    from costmodel.model_zoo import MODELS
    from jetfleet.catalogue import CATALOGUE

    oracle = OracleCostModel()
    changed = total = 0
    worst = 0.0
    gaps: dict[str, list[np.ndarray]] = {"latency": [], "energy": []}
    for kind in CATALOGUE.values():
        freqs, batches = np.array(kind.freqs_hz), np.arange(1, kind.max_batch + 1)
        for name in MODELS:
            latency = model.predict(_grid_rows(kind.key, name, freqs, batches))[0].reshape(len(freqs), len(batches))
            rise = np.diff(latency, axis=0) / latency[:-1]
            changed += int((rise > 0).sum())
            worst = max(worst, float(rise.max(initial=0.0)))
            total += latency.size
            ours, truth = (
                model.predict_grid(kind.key, name, freqs, batches),
                oracle.predict_grid(kind.key, name, freqs, batches),
            )
            gaps["latency"].append(np.abs(ours.latency_s / truth.latency_s - 1).ravel())
            gaps["energy"].append(np.abs(ours.energy_j / truth.energy_j - 1).ravel())
    return {
        "projection": {"points_changed": changed, "points": total, "largest_rise_pct": worst * 100},
        "vs_oracle_latency_mape_pct": float(np.mean(np.concatenate(gaps["latency"])) * 100),
        "vs_oracle_energy_mape_pct": float(np.mean(np.concatenate(gaps["energy"])) * 100),
    }


def _grid_rows(kind: str, name: str, freqs: np.ndarray, batches: np.ndarray) -> Any:
    import pandas as pd

    f, b = np.meshgrid(freqs, batches, indexing="ij")
    return pd.DataFrame({"kind": kind, "model": name, "batch": b.ravel(), "freq_hz": f.ravel()})


def _loudva_figures(quick: bool, reps: tuple[int, int]) -> dict:
    from costmodel.evaluation import evaluate
    from costmodel.lgbm import LightGBMCostModel
    from costmodel.profiles import loudva_data_dir, read_loudva_profiling

    root = loudva_data_dir()
    if root is None:
        return {"note": "../shared/data/loudva is absent: LoudVA figures skipped"}
    table = read_loudva_profiling(root / "Profiling.csv")
    t0 = time.perf_counter()
    model = LightGBMCostModel().fit(table)
    out: dict[str, Any] = {"rows": len(table), "fit_s": time.perf_counter() - t0}
    out["grid"] = _time_grid(model, "agx-xavier", "inceptionv3", np.arange(1, 129), *reps)
    splits = [("random", None), ("freq", None)] + ([] if quick else [("device", "Nano")])
    out["eval"] = {}
    for split, holdout in splits:
        result = evaluate(table, split, holdout=holdout, seed=0).to_dict()
        result.pop("per_kind")
        out["eval"][split if holdout is None else f"{split}:{holdout}"] = result
    return out


def run(quick: bool = False) -> dict:
    """Time fitting and grid queries; score the LoudVA splits when the data is there."""
    from costmodel.lgbm import _default_cost_model, default_cost_model

    reps = (5, 2_000) if quick else (30, 50_000)
    figures: dict[str, Any] = {"loudva": _loudva_figures(quick, reps)}
    _default_cost_model.cache_clear()
    t0 = time.perf_counter()
    model = default_cost_model()
    figures["default_model"] = {
        "fit_s": time.perf_counter() - t0,
        "rows": model.training_summary_["n_rows"],
        "in_sample_latency_mape_pct": model.training_summary_["in_sample_latency_mape_pct"],
        "in_sample_energy_mape_pct": model.training_summary_["in_sample_energy_mape_pct"],
        "grid": _time_grid(model, "agx-orin", "resnet50", np.arange(1, 129), *reps),
    }
    if not quick:
        figures["default_model"].update(_grid_checks(model))
    _print(figures)
    return figures


def _print(figures: dict) -> None:
    lv = figures["loudva"]
    if "grid" in lv:
        g = lv["grid"]
        print(f"   LoudVA fit {lv['fit_s']:.2f} s on {lv['rows']} rows")
        print(
            f"   predict_grid {g['kind']} {g['shape'][0]}x{g['shape'][1]}: cold {g['cold_ms_median']:.2f} ms, "
            f"warm {g['warm_us']:.2f} us per call"
        )
        for name, r in lv["eval"].items():
            print(f"   eval {name}: latency {r['latency_mape_pct']:.2f} %, energy {r['energy_mape_pct']:.2f} %")
    d = figures["default_model"]
    g = d["grid"]
    print(f"   default_cost_model fit {d['fit_s']:.2f} s on {d['rows']} emulated rows")
    if "vs_oracle_latency_mape_pct" in d:
        print(
            f"   default grids vs oracle: latency {d['vs_oracle_latency_mape_pct']:.2f} %, "
            f"energy {d['vs_oracle_energy_mape_pct']:.2f} %"
        )
    print(
        f"   predict_grid {g['kind']} {g['shape'][0]}x{g['shape'][1]}: "
        f"cold {g['cold_ms_median']:.2f} ms, warm {g['warm_us']:.2f} us"
    )
