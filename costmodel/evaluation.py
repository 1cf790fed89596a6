"""How well the LightGBM cost model predicts rows it was not fitted on: splits and MAPE.

Splits of a profile table (each returns train, test):

- `random`: a seeded 80/20 split of the rows.
- `freq`: every third frequency of each device kind held out, in sorted order starting from the second
  (indices 1, 4, 7, ...): interpolation (and, where the last index is held out, extrapolation) in f.
- `device`: one device kind held out entirely; the model only knows it from catalogue specs. The
  evaluation also refits with a seeded 10 % of that device's rows added and scores the other 90 %, which
  shows how much a few measurements of a new device recover.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from costmodel.lgbm import LightGBMCostModel, mape_pct
from jetfleet.catalogue import CATALOGUE, LOUDVA_NAMES
from jetfleet.errors import ConfigError, DataError, UnknownNameError

SPLITS = ("random", "freq", "device")
TEST_FRACTION = 0.2
FEW_SHOT_FRACTION = 0.1


@dataclass
class EvalResult:
    """Errors of one evaluation; `to_dict` is the JSON `jetfleet costmodel eval` writes."""

    split: str
    latency_mape_pct: float
    energy_mape_pct: float
    n_train: int
    n_test: int
    seed: int
    holdout: str | None = None
    per_kind: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> its MAPEs and n_test
    few_shot: dict[str, Any] | None = None  # device split only: refit with 10 % of the held-out rows

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["few_shot"] is None:
            del out["few_shot"]
        return out


def resolve_kind(name: str, profiles: pd.DataFrame | None = None) -> str:
    """A catalogue kind from a kind key or a LoudVA name (AGX, NX, Nano; any case)."""
    aliases = {k.lower(): v for k, v in LOUDVA_NAMES.items()}
    kind = name if name in CATALOGUE else aliases.get(name.lower(), name.lower())
    if kind not in CATALOGUE:
        raise UnknownNameError("device kind", name, list(CATALOGUE) + list(LOUDVA_NAMES))
    if profiles is not None and kind not in set(profiles["kind"]):
        raise DataError(
            f"holdout {name!r} ({kind}) has no rows in the profiles; kinds there: {sorted(set(profiles['kind']))}"
        )
    return kind


def split_random(
    profiles: pd.DataFrame, seed: int = 0, test_fraction: float = TEST_FRACTION
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split: `test_fraction` of the rows to test."""
    order = np.random.default_rng(seed).permutation(len(profiles))
    n_test = int(round(test_fraction * len(profiles)))
    return profiles.iloc[np.sort(order[n_test:])], profiles.iloc[np.sort(order[:n_test])]


def held_out_freqs(profiles: pd.DataFrame) -> dict[str, list[float]]:
    """Per kind, the frequencies the `freq` split holds out: sorted indices 1, 4, 7, ..."""
    return {str(k): sorted(g.unique())[1::3] for k, g in profiles.groupby("kind")["freq_hz"]}


def split_freq(profiles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every third frequency of each kind (from the second, in sorted order) to test."""
    held = held_out_freqs(profiles)
    mask = np.zeros(len(profiles), dtype=bool)
    kinds, freqs = profiles["kind"].to_numpy(), profiles["freq_hz"].to_numpy()
    for kind, fs in held.items():
        mask |= (kinds == kind) & np.isin(freqs, fs)
    return profiles[~mask], profiles[mask]


def split_device(profiles: pd.DataFrame, holdout: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All rows of the `holdout` kind to test, the rest to train."""
    kind = resolve_kind(holdout, profiles)
    mask = (profiles["kind"] == kind).to_numpy()
    return profiles[~mask], profiles[mask]


def split(
    profiles: pd.DataFrame, name: str, *, holdout: str | None = None, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dispatch to one of `SPLITS`; `holdout` is required by, and only allowed with, `device`."""
    if name not in SPLITS:
        raise UnknownNameError("split", name, SPLITS)
    if name == "device":
        if not holdout:
            raise ConfigError("split 'device' needs --holdout NAME (a device kind, or AGX/NX/Nano)")
        return split_device(profiles, holdout)
    if holdout:
        raise ConfigError(f"--holdout {holdout!r} only applies to --split device, not {name!r}")
    return split_random(profiles, seed) if name == "random" else split_freq(profiles)


def score(model: LightGBMCostModel, test: pd.DataFrame) -> tuple[float, float, dict[str, dict[str, float]]]:
    """Latency and energy MAPE on `test`, overall and per kind (with the mean signed error, which shows
    when a small energy error is a latency error cancelled by a power error)."""
    latency, energy = model.predict(test)
    per_kind = {}
    kinds = test["kind"].to_numpy()
    for kind in sorted(set(kinds)):
        m = kinds == kind
        lat_true, en_true = test["latency_s"].to_numpy()[m], test["energy_j"].to_numpy()[m]
        per_kind[str(kind)] = {
            "latency_mape_pct": mape_pct(latency[m], lat_true),
            "energy_mape_pct": mape_pct(energy[m], en_true),
            "latency_bias_pct": float(np.mean(latency[m] / lat_true - 1.0) * 100.0),
            "energy_bias_pct": float(np.mean(energy[m] / en_true - 1.0) * 100.0),
            "n_test": int(m.sum()),
        }
    return mape_pct(latency, test["latency_s"]), mape_pct(energy, test["energy_j"]), per_kind


def evaluate(
    profiles: pd.DataFrame,
    split_name: str,
    *,
    holdout: str | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> EvalResult:
    """Fit on the train part of a split, score the test part; the device split adds the few-shot refit."""
    train, test = split(profiles, split_name, holdout=holdout, seed=seed)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"split {split_name!r} leaves {len(train)} train and {len(test)} test rows")
    model = LightGBMCostModel(seed=seed, **(params or {})).fit(train, source=f"{split_name} train")
    lat, en, per_kind = score(model, test)
    result = EvalResult(split_name, lat, en, len(train), len(test), seed, per_kind=per_kind)
    if split_name == "device":
        result.holdout = resolve_kind(str(holdout))
        result.few_shot = few_shot(model, train, test, seed=seed, params=params)
    return result


def few_shot(
    zero_shot: LightGBMCostModel,
    train: pd.DataFrame,
    held: pd.DataFrame,
    *,
    fraction: float = FEW_SHOT_FRACTION,
    seed: int = 0,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Refit with a seeded `fraction` of the held-out device's rows; score both models on the rest."""
    shots, rest = split_random(held, seed, test_fraction=1.0 - fraction)
    if len(shots) == 0 or len(rest) == 0:
        raise DataError(f"few-shot: {len(held)} held-out rows are too few to take {fraction:.0%} of them")
    zs_lat, zs_en, _ = score(zero_shot, rest)
    model = LightGBMCostModel(seed=seed, **(params or {})).fit(pd.concat([train, shots]), source="few-shot train")
    fs_lat, fs_en, _ = score(model, rest)
    return {
        "fraction": fraction,
        "n_shots": len(shots),
        "n_test": len(rest),
        "latency_mape_pct": fs_lat,
        "energy_mape_pct": fs_en,
        "zero_shot_latency_mape_pct": zs_lat,
        "zero_shot_energy_mape_pct": zs_en,
    }
