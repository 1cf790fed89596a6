"""The emulated device models: valid everywhere, monotone, seeded noise, and the oracle cost model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from costmodel.base import CostModel, DeviceModel
from costmodel.device_models import (
    AnalyticDeviceModel,
    NoiseModel,
    OracleCostModel,
    batch_ladder,
    device_model,
    emulated_profiles,
    load_coefficients,
)
from costmodel.model_zoo import MODELS
from costmodel.profiles import PROFILE_COLUMNS, validate_profiles
from jetfleet.catalogue import CATALOGUE
from jetfleet.errors import ConfigError, FrequencyError, InvalidRequestError, UnknownNameError

KINDS = sorted(CATALOGUE)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_is_finite_and_positive_at_every_catalogue_frequency_and_batch(kind: str) -> None:
    """Each kind x zoo model gives finite positive latency, energy and power on its whole catalogue grid."""
    dm = device_model(kind)
    spec = CATALOGUE[kind]
    batches = np.arange(1, spec.max_batch + 1)
    for model in MODELS:
        for grid in (dm.latency_grid(model, spec.freqs_hz, batches), dm.energy_grid(model, spec.freqs_hz, batches)):
            assert grid.shape == (len(spec.freqs_hz), len(batches))
            assert np.all(np.isfinite(grid)) and np.all(grid > 0)
    assert all(dm.idle_power_w(f) > 0 for f in spec.freqs_hz)


@pytest.mark.parametrize("kind", KINDS)
def test_latency_rises_with_batch_and_falls_with_frequency(kind: str) -> None:
    """Monotone in both axes, including batches past the catalogue's max (extrapolation)."""
    dm = device_model(kind)
    spec = CATALOGUE[kind]
    latency = dm.latency_grid("resnet50", spec.freqs_hz, np.arange(1, 2 * spec.max_batch + 1))
    assert np.all(np.diff(latency, axis=1) > 0)
    assert np.all(np.diff(latency, axis=0) < 0)


@pytest.mark.parametrize("kind", KINDS)
def test_busy_power_exceeds_idle_and_idle_does_not_fall_with_frequency(kind: str) -> None:
    dm = device_model(kind)
    freqs = CATALOGUE[kind].freqs_hz
    idle = [dm.idle_power_w(f) for f in freqs]
    assert idle == sorted(idle)
    assert idle[0] == pytest.approx(CATALOGUE[kind].idle_power_w)
    assert idle == pytest.approx([float(dm.coefficients.power.idle_power_w(f)) for f in freqs])
    assert all(dm.busy_power_w("inceptionv3", 1, f) > dm.idle_power_w(f) for f in freqs)


def test_device_model_implements_the_protocol_and_the_noiseless_one_is_cached() -> None:
    dm = device_model("agx-xavier")
    assert isinstance(dm, DeviceModel) and isinstance(dm, AnalyticDeviceModel)
    assert device_model("agx-xavier") is dm
    assert device_model("agx-xavier", noise=NoiseModel()) is not dm


def test_energy_is_busy_power_times_latency() -> None:
    dm = device_model("xavier-nx")
    for model, b, f in [("inceptionv3", 1, 114.75e6), ("yolov4-tiny", 7, 1109.25e6)]:
        assert dm.energy_j(model, b, f) == pytest.approx(dm.busy_power_w(model, b, f) * dm.latency_s(model, b, f))


def test_other_models_scale_inceptionv3_by_their_latency_ratio() -> None:
    dm = device_model("jetson-nano")
    ratios = dm.coefficients.model_ratios
    assert ratios["inceptionv3"] == 1.0
    base = dm.latency_s("inceptionv3", 4, 921.6e6)
    assert dm.latency_s("mobilenetv2", 4, 921.6e6) == pytest.approx(base * ratios["mobilenetv2"])


def test_unknown_kind_and_model_raise_unknown_name_naming_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="agx-xavier"):
        device_model("tpu-v9")
    with pytest.raises(UnknownNameError, match="resnet50"):
        device_model("agx-xavier").latency_s("vgg16", 1, 1377e6)


def test_bad_batch_and_frequency_are_refused() -> None:
    dm = device_model("agx-xavier")
    with pytest.raises(InvalidRequestError):
        dm.latency_s("inceptionv3", 0, 1377e6)
    with pytest.raises(FrequencyError):
        dm.energy_j("inceptionv3", 1, 0.0)
    with pytest.raises(InvalidRequestError):
        dm.latency_grid("inceptionv3", [1377e6], [1, 2.5])


def test_noise_is_seeded_and_deterministic() -> None:
    """Equal seeds draw equal sequences; other seeds and other device names draw others."""

    def draws(noise: NoiseModel) -> list[float]:
        dm = device_model("agx-xavier", noise=noise)
        return [dm.latency_s("inceptionv3", 8, 905.25e6) for _ in range(5)] + [dm.energy_j("resnet50", 2, 1377e6)]

    assert draws(NoiseModel(cv=0.1, seed=7)) == draws(NoiseModel(cv=0.1, seed=7))
    assert draws(NoiseModel(cv=0.1, seed=7)) != draws(NoiseModel(cv=0.1, seed=8))
    noise = NoiseModel(cv=0.1, seed=7)
    assert noise.for_device("agx0") == noise.for_device("agx0")
    assert draws(noise.for_device("agx0")) != draws(noise.for_device("agx1"))


def test_noise_has_mean_one_and_the_requested_spread() -> None:
    dm = device_model("agx-xavier", noise=NoiseModel(cv=0.1, power_cv=0.0, seed=1))
    expected = dm.expected_latency_s("inceptionv3", 8, 905.25e6)
    samples = np.array([dm.latency_s("inceptionv3", 8, 905.25e6) for _ in range(4000)]) / expected
    assert samples.mean() == pytest.approx(1.0, abs=0.01)
    assert samples.std() == pytest.approx(0.1, rel=0.1)


def test_zero_noise_equals_the_noiseless_model() -> None:
    noisy = device_model("orin-nx", noise=NoiseModel(cv=0.0, power_cv=0.0))
    clean = device_model("orin-nx")
    assert noisy.batch_cost("resnet18", 5, 612e6) == clean.batch_cost("resnet18", 5, 612e6)


def test_batch_cost_energy_lasts_as_long_as_the_noisy_run() -> None:
    """With no power noise, energy / latency is exactly the busy power whatever the latency draw."""
    dm = device_model("agx-xavier", noise=NoiseModel(cv=0.2, power_cv=0.0, seed=3))
    latency, energy = dm.batch_cost("inceptionv3", 16, 1377e6)
    assert latency != pytest.approx(dm.expected_latency_s("inceptionv3", 16, 1377e6))
    assert energy / latency == pytest.approx(dm.busy_power_w("inceptionv3", 16, 1377e6))


def test_bad_noise_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        NoiseModel(cv=-0.1)


def test_oracle_grid_equals_pointwise_values_and_is_cached() -> None:
    oracle = OracleCostModel()
    assert isinstance(oracle, CostModel)
    freqs = np.array(CATALOGUE["xavier-nx"].freqs_hz)
    batches = np.array([1, 2, 5, 18])
    grid = oracle.predict_grid("xavier-nx", "resnet50", freqs, batches)
    dm = device_model("xavier-nx")
    for fi, f in enumerate(freqs):
        for bi, b in enumerate(batches):
            assert grid.latency_s[fi, bi] == pytest.approx(dm.latency_s("resnet50", int(b), f), rel=1e-12)
            assert grid.energy_j[fi, bi] == pytest.approx(dm.energy_j("resnet50", int(b), f), rel=1e-12)
    assert oracle.predict_grid("xavier-nx", "resnet50", freqs.copy(), batches.copy()) is grid
    assert grid.lookup(freqs[3], 5) == (grid.latency_s[3, 2], grid.energy_j[3, 2])
    with pytest.raises(ValueError):
        grid.latency_s[0, 0] = 1.0


def test_oracle_unknown_kind_raises() -> None:
    with pytest.raises(UnknownNameError):
        OracleCostModel().predict_grid("abacus", "resnet50", np.array([1e9]), np.array([1]))


def test_emulated_profiles_default_covers_every_dvfs_kind_and_zoo_model_in_the_schema() -> None:
    df = emulated_profiles()
    assert list(df.columns) == PROFILE_COLUMNS
    validate_profiles(df, "emulated")
    assert set(df["kind"]) == {k for k, d in CATALOGUE.items() if d.has_dvfs}
    assert set(df["model"]) == set(MODELS)
    assert set(df["source"]) == {"emulated"}
    nano = df[(df["kind"] == "jetson-nano") & (df["model"] == "inceptionv3")]
    assert set(nano["freq_hz"]) == set(CATALOGUE["jetson-nano"].freqs_hz)
    assert nano["batch"].max() == CATALOGUE["jetson-nano"].max_batch
    assert np.allclose(df["energy_j"], df["power_w"] * df["latency_s"])


def test_emulated_profiles_with_noise_are_reproducible_under_a_seed() -> None:
    kw = {"kinds": ["agx-orin"], "models": ["resnet50"], "batches": [1, 4]}
    a = emulated_profiles(**kw, noise=NoiseModel(seed=5))
    b = emulated_profiles(**kw, noise=NoiseModel(seed=5))
    clean = emulated_profiles(**kw)
    assert a.equals(b)
    assert not np.allclose(a["latency_s"], clean["latency_s"])


def test_batch_ladder_is_ascending_and_ends_at_max_batch() -> None:
    assert batch_ladder(1) == [1]
    assert batch_ladder(13) == [1, 2, 3, 4, 6, 8, 12, 13]
    ladder = batch_ladder(128)
    assert ladder == sorted(set(ladder)) and ladder[0] == 1 and ladder[-1] == 128


def test_bad_coefficients_file_is_a_config_error_naming_the_file(tmp_path) -> None:
    path = tmp_path / "dm.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="dm.json"):
        load_coefficients(path)
    path.write_text(json.dumps({"kinds": {"agx-xavier": {"latency": {}}}, "models": {}}))
    with pytest.raises(ConfigError, match="agx-xavier"):
        load_coefficients(path)
