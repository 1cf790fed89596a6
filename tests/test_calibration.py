"""Calibration: the committed coefficients are what the fitting code gives, and they meet the fidelity targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from costmodel.calibration import (
    DERIVATIONS,
    MEASURED_KINDS,
    build_coefficients,
    calibration_report,
    derive_kind,
    fit_kind,
    ibis_nano_trt_ms,
    model_ratio_table,
)
from costmodel.device_models import COEFFICIENTS_PATH, coefficients_from_dict, device_model, emulated_profiles
from costmodel.model_zoo import MODELS
from costmodel.profiles import read_profiles
from jetfleet import cli
from jetfleet.catalogue import CATALOGUE
from jetfleet.errors import DataError

LATENCY_TARGET_PCT, ENERGY_TARGET_PCT = 10.0, 12.0


@pytest.fixture(scope="module")
def refit(loudva_dir: Path) -> dict:
    ibis = loudva_dir.parent / "ibis"
    return build_coefficients(loudva_dir, ibis if ibis.exists() else None, fit_date="test")


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(COEFFICIENTS_PATH.read_text())


def test_committed_coefficients_match_a_fresh_fit(refit: dict, committed: dict) -> None:
    """Refitting from ../shared/data reproduces the committed curves (within 0.5 %) and model ratios."""
    assert set(refit["kinds"]) == set(committed["kinds"]) == set(CATALOGUE)
    for kind, spec in CATALOGUE.items():
        fresh = coefficients_from_dict(kind, refit["kinds"][kind], refit["models"])
        saved = coefficients_from_dict(kind, committed["kinds"][kind], committed["models"])
        b = np.arange(1, spec.max_batch + 1, dtype=float)[None, :]
        f = np.asarray(spec.freqs_hz)[:, None]
        np.testing.assert_allclose(fresh.latency.latency_s(b, f), saved.latency.latency_s(b, f), rtol=5e-3)
        np.testing.assert_allclose(fresh.power.busy_power_w(b, f), saved.power.busy_power_w(b, f), rtol=5e-3)
    for model, rec in committed["models"].items():
        assert refit["models"][model]["latency_ratio"] == pytest.approx(rec["latency_ratio"], rel=1e-4)


def test_committed_json_names_its_source() -> None:
    source = json.loads(COEFFICIENTS_PATH.read_text())["_source"]
    assert "2b4b15efa5231d445b85d500ea5ef51d381a64c3" in source["measurements"]
    assert source["fit_date"] and "jetfleet devices fit" in source["refit"]


def test_every_model_ratio_and_derived_kind_cites_a_source(committed: dict) -> None:
    assert set(committed["models"]) == set(MODELS)
    assert all(rec["source"] for rec in committed["models"].values())
    for kind in set(CATALOGUE) - set(MEASURED_KINDS):
        derivation = committed["kinds"][kind]["derivation"]
        assert derivation["base"] in MEASURED_KINDS
        assert derivation["sources"]["power_budget_w"]


def test_fidelity_targets_are_met_on_profiling_csv(loudva_dir: Path) -> None:
    """Per measured device: latency MAPE <= 10 %, energy MAPE <= 12 % (the committed models)."""
    report = calibration_report(read_profiles(loudva_dir / "Profiling.csv"))
    assert set(report) == set(MEASURED_KINDS)
    for kind, r in report.items():
        assert r["latency_mape_pct"] <= LATENCY_TARGET_PCT, kind
        assert r["energy_mape_pct"] <= ENERGY_TARGET_PCT, kind
    assert sum(r["n_rows"] for r in report.values()) == 2185


def test_energy_folder_gives_the_same_report_as_profiling_csv(loudva_dir: Path) -> None:
    by_csv = calibration_report(read_profiles(loudva_dir / "Profiling.csv"))
    by_dir = calibration_report(read_profiles(loudva_dir / "energy"))
    for kind in by_csv:
        assert by_dir[kind]["n_rows"] == by_csv[kind]["n_rows"]
        assert by_dir[kind]["latency_mape_pct"] == pytest.approx(by_csv[kind]["latency_mape_pct"], abs=0.05)


def test_ibis_ratios_come_from_the_sequential_runs(ibis_dir: Path) -> None:
    ms = ibis_nano_trt_ms(ibis_dir)
    assert set(ms) == {"yolov4-tiny", "resnet50", "efficientnet-b3"}
    assert ms["resnet50"] < ms["efficientnet-b3"]
    table = model_ratio_table(ibis_dir)
    assert table["efficientnet-b3"]["latency_ratio"] / table["resnet50"]["latency_ratio"] == pytest.approx(
        ms["efficientnet-b3"] / ms["resnet50"], rel=1e-4
    )


def test_without_ibis_every_unpublished_model_falls_back_to_gmacs() -> None:
    table = model_ratio_table(None)
    assert set(table) == set(MODELS)
    assert "GMACs" in table["yolov4-tiny"]["source"] and "GMACs" in table["resnet18"]["source"]


def test_a_model_matches_its_own_emulated_profiles_exactly() -> None:
    report = calibration_report(emulated_profiles(models=["inceptionv3", "mobilenetv2"]))
    assert all(r["latency_mape_pct"] < 1e-6 and r["energy_mape_pct"] < 1e-6 for r in report.values())


def test_derived_kind_draws_its_power_budget_and_outruns_its_base_at_full_batch() -> None:
    base = device_model("agx-xavier").coefficients
    orin = derive_kind(base, "agx-orin", DERIVATIONS["agx-orin"])
    spec = CATALOGUE["agx-orin"]
    assert float(orin.power.busy_power_w(spec.max_batch, spec.max_freq_hz)) == pytest.approx(60.0, rel=0.02)
    xavier_full = base.latency.latency_s(128, CATALOGUE["agx-xavier"].max_freq_hz)
    assert float(orin.latency.latency_s(128, spec.max_freq_hz)) < xavier_full / 2


def test_report_refuses_rows_of_a_kind_without_a_model() -> None:
    df = emulated_profiles(kinds=["jetson-nano"], models=["resnet18"]).assign(kind="abacus")
    with pytest.raises(DataError, match="abacus"):
        calibration_report(df)


def _jetfleet(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["jetfleet", *args])
    try:
        cli.main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_calibrate_command_writes_the_documented_json(
    loudva_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "cal.json"
    assert (
        _jetfleet(
            monkeypatch, "devices", "calibrate", "--profiles", str(loudva_dir / "Profiling.csv"), "--json", str(out)
        )
        == 0
    )
    devices = json.loads(out.read_text())["devices"]
    assert set(devices) == set(MEASURED_KINDS)
    assert set(devices["agx-xavier"]) == {"latency_mape_pct", "energy_mape_pct", "n_rows"}


def test_calibrate_command_on_an_emulated_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "emulated.csv"
    emulated_profiles(kinds=["orin-nano"], models=["resnet50"]).to_csv(table, index=False)
    out = tmp_path / "cal.json"
    assert _jetfleet(monkeypatch, "devices", "calibrate", "--profiles", str(table), "--json", str(out)) == 0
    assert json.loads(out.read_text())["devices"]["orin-nano"]["latency_mape_pct"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("content", [None, "a,b\n1,2\n", "\x00\x01garbage"])
def test_calibrate_bad_profiles_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "profiles.csv"
    if content is not None:
        path.write_text(content)
    assert _jetfleet(monkeypatch, "devices", "calibrate", "--profiles", str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "profiles.csv" in err


def test_fit_command_refits_to_a_file(loudva_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "dm.json"
    assert _jetfleet(monkeypatch, "devices", "fit", "--data", str(loudva_dir.parent), "--out", str(out)) == 0
    assert set(json.loads(out.read_text())["kinds"]) == set(CATALOGUE)


def test_list_and_show_commands_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _jetfleet(monkeypatch, "devices", "list") == 0
    assert _jetfleet(monkeypatch, "devices", "show", "orin-nano", "--model", "yolov4-tiny") == 0
    out = capsys.readouterr().out
    assert "orin-nano" in out and "941 Mbit/s" in out  # the kind's default link from the controller
    assert _jetfleet(monkeypatch, "devices", "show", "tpu") == 2


def test_profiles_table_round_trips_through_csv(tmp_path: Path) -> None:
    df = emulated_profiles(kinds=["xavier-nx"], models=["googlenet"])
    df.to_csv(tmp_path / "p.csv", index=False)
    back = read_profiles(tmp_path / "p.csv")
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


@pytest.mark.parametrize("kind", MEASURED_KINDS)
def test_the_form_generalises_to_unseen_frequencies_and_larger_batches(loudva_dir: Path, kind: str) -> None:
    """Fitted without every third frequency (or without the largest 40 % of batches), the held-out rows
    still meet the fidelity targets: the form is not just memorising the sweep."""
    rows = read_profiles(loudva_dir / "Profiling.csv").query("kind == @kind")
    freqs = np.sort(rows["freq_hz"].unique())
    unseen_freq = rows["freq_hz"].isin(freqs[1::3])
    unseen_batch = rows["batch"] > 0.6 * rows["batch"].max()
    for held_out in (unseen_freq, unseen_batch):
        fitted = fit_kind(rows[~held_out], kind, {"inceptionv3": 1.0})
        r = calibration_report(rows[held_out], {kind: fitted})[kind]
        assert r["latency_mape_pct"] <= LATENCY_TARGET_PCT and r["energy_mape_pct"] <= ENERGY_TARGET_PCT
