"""The LightGBM cost model: estimator contract, monotone grids, cache, persistence, splits, LoudVA targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from costmodel.base import CostModel
from costmodel.device_models import emulated_profiles
from costmodel.evaluation import evaluate, held_out_freqs, resolve_kind, split, split_freq, split_random
from costmodel.lgbm import LightGBMCostModel, default_cost_model, load, profiling_batches
from costmodel.profiles import read_loudva_profiling
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError, DataError, InvalidRequestError, NotFittedError, UnknownNameError

SMALL = {"n_estimators": 60, "learning_rate": 0.15}


@pytest.fixture(scope="module")
def profiles() -> pd.DataFrame:
    return emulated_profiles(["xavier-nx", "agx-xavier"], ["resnet18", "inceptionv3"])


@pytest.fixture(scope="module")
def fitted(profiles: pd.DataFrame) -> LightGBMCostModel:
    return LightGBMCostModel(**SMALL).fit(profiles)


@pytest.fixture(scope="module")
def loudva(loudva_dir) -> pd.DataFrame:
    return read_loudva_profiling(loudva_dir / "Profiling.csv")


def _rows(kind: str, model: str, freqs, batches) -> pd.DataFrame:
    f, b = np.meshgrid(np.asarray(freqs, float), np.asarray(batches), indexing="ij")
    return pd.DataFrame({"kind": kind, "model": model, "batch": b.ravel(), "freq_hz": f.ravel()})


def test_init_stores_hyper_parameters_as_given():
    """Keyword-only hyper-parameters come back unchanged from get_params."""
    model = LightGBMCostModel(n_estimators=7, num_leaves=5, seed=3)
    assert model.get_params()["n_estimators"] == 7 and model.num_leaves == 5 and model.seed == 3
    with pytest.raises(TypeError):
        LightGBMCostModel(7)  # type: ignore[misc]


def test_use_before_fit_raises_not_fitted():
    """predict, predict_grid and save refuse before fit."""
    model = LightGBMCostModel()
    with pytest.raises(NotFittedError):
        model.predict(_rows("xavier-nx", "resnet18", [1e9], [1]))
    with pytest.raises(NotFittedError):
        model.predict_grid("xavier-nx", "resnet18", np.array([1e9]), np.array([1]))
    with pytest.raises(NotFittedError):
        model.save("/tmp/never-written")


def test_fit_returns_self_with_learned_state(profiles, fitted):
    """fit returns the estimator; learned state ends in an underscore."""
    assert fitted.training_summary_["n_rows"] == len(profiles)
    assert fitted.training_summary_["kinds"] == ["agx-xavier", "xavier-nx"]
    assert hasattr(fitted, "latency_booster_") and hasattr(fitted, "power_coef_")
    assert isinstance(fitted, CostModel)


def test_fit_rejects_tables_without_the_profile_schema(profiles):
    """A table missing columns or with too few rows is a DataError naming the problem."""
    with pytest.raises(DataError, match="missing profile columns"):
        LightGBMCostModel(**SMALL).fit(profiles.drop(columns=["energy_j"]))
    with pytest.raises(DataError, match="at least"):
        LightGBMCostModel(**SMALL).fit(profiles.head(3))


def test_predictions_are_close_on_the_training_devices(profiles, fitted):
    """Even a small fit is within a few percent of the emulated truth it was fitted on."""
    latency, energy = fitted.predict(profiles)
    assert np.median(np.abs(latency / profiles["latency_s"] - 1)) < 0.05
    assert np.median(np.abs(energy / profiles["energy_j"] - 1)) < 0.05


@pytest.mark.parametrize("kind", ["xavier-nx", "orin-nx"])  # orin-nx was never seen in the fit
def test_latency_and_energy_rise_with_batch_in_raw_predictions(fitted, kind):
    """The monotone constraints make raw latency and energy non-decreasing in batch, even on unseen devices."""
    k = get_kind(kind)
    rows = _rows(kind, "resnet18", k.freqs_hz, np.arange(1, k.max_batch + 1))
    latency, energy = (a.reshape(len(k.freqs_hz), k.max_batch) for a in fitted.predict(rows))
    assert np.all(np.diff(latency, axis=1) >= 0)
    assert np.all(np.diff(energy, axis=1) >= 0)


@pytest.mark.parametrize("kind", ["agx-xavier", "jetson-nano", "agx-orin"])
def test_grid_latency_rises_with_batch_and_falls_with_frequency(fitted, kind):
    """The grids policies search are monotone: latency up in batch, down in frequency; energy up in batch."""
    k = get_kind(kind)
    grid = fitted.predict_grid(kind, "inceptionv3", np.array(k.freqs_hz), np.arange(1, k.max_batch + 1))
    assert grid.latency_s.shape == (len(k.freqs_hz), k.max_batch)
    assert np.all(np.diff(grid.latency_s, axis=1) >= 0)
    assert np.all(np.diff(grid.latency_s, axis=0) <= 0)
    assert np.all(np.diff(grid.energy_j, axis=1) >= 0)


def test_grid_agrees_with_row_predictions(fitted):
    """predict_grid is predict on every (f, b), with latency's running minimum over frequency."""
    freqs, batches = np.array(get_kind("xavier-nx").freqs_hz), np.arange(1, 19)
    grid = fitted.predict_grid("xavier-nx", "resnet18", freqs, batches)
    latency, energy = (
        a.reshape(len(freqs), len(batches)) for a in fitted.predict(_rows("xavier-nx", "resnet18", freqs, batches))
    )
    projected = np.minimum.accumulate(latency, axis=0)
    np.testing.assert_allclose(grid.latency_s, projected, rtol=1e-12)
    np.testing.assert_allclose(grid.energy_j, energy * projected / latency, rtol=1e-12)


def test_grid_is_cached_and_read_only(fitted):
    """A second query for the same grid returns the same object; its arrays cannot be written."""
    freqs, batches = np.array([5e8, 9e8]), np.array([1, 2, 4])
    first = fitted.predict_grid("xavier-nx", "resnet18", freqs, batches)
    assert fitted.predict_grid("xavier-nx", "resnet18", freqs.copy(), [1, 2, 4]) is first
    with pytest.raises(ValueError):
        first.latency_s[0, 0] = 0.0
    fitted.clear_cache()
    assert fitted.predict_grid("xavier-nx", "resnet18", freqs, batches) is not first


def test_grid_rejects_unsorted_or_empty_axes(fitted):
    """Axes must be ascending and non-empty."""
    with pytest.raises(InvalidRequestError, match="ascending"):
        fitted.predict_grid("xavier-nx", "resnet18", np.array([9e8, 5e8]), np.array([1]))
    with pytest.raises(InvalidRequestError, match="ascending"):
        fitted.predict_grid("xavier-nx", "resnet18", np.array([5e8]), np.array([4, 2]))
    with pytest.raises(InvalidRequestError, match="empty"):
        fitted.predict_grid("xavier-nx", "resnet18", np.array([]), np.array([1]))


def test_unknown_kind_or_model_names_the_known_ones(fitted):
    """Names outside the catalogue or the zoo raise UnknownNameError."""
    with pytest.raises(UnknownNameError, match="device kind 'tx2'"):
        fitted.predict_grid("tx2", "resnet18", np.array([5e8]), np.array([1]))
    with pytest.raises(UnknownNameError, match="model 'vgg'"):
        fitted.predict(_rows("xavier-nx", "vgg", [5e8], [1]))


def test_save_load_round_trip_predicts_identically(fitted, profiles, tmp_path):
    """A saved model loads back (method and module function) and predicts exactly the same."""
    fitted.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["costmodel.json", "latency.txt", "power.txt"]
    for back in (LightGBMCostModel.load(tmp_path / "m"), load(tmp_path / "m")):
        assert back.get_params() == fitted.get_params()
        for a, b in zip(back.predict(profiles), fitted.predict(profiles), strict=True):
            np.testing.assert_array_equal(a, b)
        g1 = back.predict_grid("orin-nx", "resnet50", np.array([3e8, 9e8]), np.arange(1, 9))
        g2 = fitted.predict_grid("orin-nx", "resnet50", np.array([3e8, 9e8]), np.arange(1, 9))
        np.testing.assert_array_equal(g1.energy_j, g2.energy_j)


def test_load_rejects_folders_that_are_not_models(tmp_path):
    """A missing folder, a folder without costmodel.json, or a foreign JSON is a ConfigError."""
    with pytest.raises(ConfigError, match="no such cost-model folder"):
        LightGBMCostModel.load(tmp_path / "absent")
    with pytest.raises(ConfigError, match="costmodel.json is missing"):
        LightGBMCostModel.load(tmp_path)
    (tmp_path / "costmodel.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not a jetfleet-lgbm-costmodel"):
        LightGBMCostModel.load(tmp_path)


def test_default_cost_model_is_fitted_once_per_process():
    """default_cost_model fits on emulated profiles and returns the same object for the same arguments."""
    first = default_cost_model(kinds=["jetson-nano"], models=["resnet18"])
    assert default_cost_model(kinds=["jetson-nano"], models=["resnet18"]) is first
    assert first.training_summary_["kinds"] == ["jetson-nano"]
    grid = first.predict_grid("jetson-nano", "resnet18", np.array(get_kind("jetson-nano").freqs_hz), np.arange(1, 14))
    assert np.all(grid.latency_s > 0) and np.all(grid.energy_j > 0)


def test_profiling_batches_are_dense_then_geometric():
    """Every batch to 8, then ~19 % steps, ending at the kind's largest batch."""
    assert profiling_batches(5) == [1, 2, 3, 4, 5]
    ladder = profiling_batches(128)
    assert ladder[:8] == list(range(1, 9)) and ladder[-1] == 128
    assert max(b / a for a, b in zip(ladder[7:], ladder[8:], strict=False)) < 1.3


# --- splits -----------------------------------------------------------------------------------------
def test_freq_split_holds_out_every_third_frequency_from_the_second():
    """Sorted indices 1, 4, 7, ... of each kind go to test; nothing else does."""
    rows = pd.concat(
        [
            _rows("xavier-nx", "resnet18", np.arange(1, 9) * 1e8, [1, 2]),
            _rows("jetson-nano", "resnet18", [3e8, 1e8, 2e8], [1]),
        ]
    )
    assert held_out_freqs(rows) == {"jetson-nano": [2e8], "xavier-nx": [2e8, 5e8, 8e8]}
    train, test = split_freq(rows)
    assert len(train) + len(test) == len(rows)
    assert sorted(set(test["freq_hz"])) == [2e8, 5e8, 8e8] and set(test[test.kind == "jetson-nano"]["freq_hz"]) == {2e8}


def test_random_split_is_seeded_80_20(profiles):
    """The same seed gives the same split; a fifth of the rows go to test."""
    a_train, a_test = split_random(profiles, seed=4)
    b_train, b_test = split_random(profiles, seed=4)
    assert a_test.index.equals(b_test.index) and len(a_test) == round(0.2 * len(profiles))
    assert not a_test.index.equals(split_random(profiles, seed=5)[1].index)


def test_device_split_accepts_loudva_names(profiles):
    """NX and xavier-nx name the same kind; unknown or absent names are one-line errors."""
    assert resolve_kind("NX") == resolve_kind("nx") == "xavier-nx"
    train, test = split(profiles, "device", holdout="NX")
    assert set(test["kind"]) == {"xavier-nx"} and "xavier-nx" not in set(train["kind"])
    with pytest.raises(UnknownNameError):
        resolve_kind("tx2")
    with pytest.raises(DataError, match="no rows"):
        split(profiles, "device", holdout="Nano")
    with pytest.raises(ConfigError, match="needs --holdout"):
        split(profiles, "device")
    with pytest.raises(UnknownNameError, match="unknown split"):
        split(profiles, "diagonal")


# --- the targets on LoudVA's measurements ------------------------------------------------------------
def test_random_split_meets_5_percent_on_loudva(loudva):
    """Random 80/20: latency and energy MAPE <= 5 %."""
    result = evaluate(loudva, "random", seed=0)
    assert result.latency_mape_pct <= 5.0 and result.energy_mape_pct <= 5.0
    assert result.n_train + result.n_test == len(loudva)


def test_freq_split_meets_8_percent_on_loudva(loudva):
    """Every third frequency held out: latency and energy MAPE <= 8 %."""
    result = evaluate(loudva, "freq")
    assert result.latency_mape_pct <= 8.0 and result.energy_mape_pct <= 8.0


@pytest.mark.slow
def test_nano_held_out_is_reported_and_few_rows_recover_it(loudva):
    """Trained on AGX + NX only, Nano is reported; 10 % of its rows bring latency error down."""
    result = evaluate(loudva, "device", holdout="Nano").to_dict()
    assert result["holdout"] == "jetson-nano" and result["n_test"] == (loudva["kind"] == "jetson-nano").sum()
    shot = result["few_shot"]
    assert shot["n_shots"] + shot["n_test"] == result["n_test"]
    assert shot["latency_mape_pct"] < shot["zero_shot_latency_mape_pct"]
