"""`jetfleet costmodel eval|train|info|predict`: JSON keys, the saved model, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from costmodel.device_models import emulated_profiles
from costmodel.lgbm import LightGBMCostModel
from costmodel.profiles import read_profiles
from jetfleet import cli

runner = CliRunner()


@pytest.fixture(scope="module")
def profile_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "profiles.csv"
    emulated_profiles(["xavier-nx", "jetson-nano"], ["resnet18"]).to_csv(path, index=False)
    return path


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the console entry point (which turns JetfleetError into `error: ...`, exit 2)."""
    monkeypatch.setattr(sys, "argv", ["jetfleet", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("split_args", [["--split", "random", "--seed", "3"], ["--split", "freq"]])
def test_eval_writes_the_json_keys_tools_read(profile_csv, tmp_path, split_args):
    """eval writes latency_mape_pct, energy_mape_pct, n_train and n_test (plus a per-kind breakdown)."""
    out = tmp_path / "eval.json"
    result = runner.invoke(
        cli.app, ["costmodel", "eval", "--profiles", str(profile_csv), *split_args, "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"latency_mape_pct", "energy_mape_pct", "n_train", "n_test"} <= set(data)
    assert data["n_train"] + data["n_test"] == len(read_profiles(profile_csv))
    assert set(data["per_kind"]) == {"xavier-nx", "jetson-nano"}


def test_eval_device_split_reports_the_few_shot_recovery(profile_csv, tmp_path):
    """The device split adds the refit with 10 % of the held-out device's rows."""
    out = tmp_path / "eval.json"
    args = ["costmodel", "eval", "--profiles", str(profile_csv), "--split", "device", "--holdout", "Nano"]
    result = runner.invoke(cli.app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["holdout"] == "jetson-nano"
    assert {"latency_mape_pct", "energy_mape_pct", "n_shots", "zero_shot_latency_mape_pct"} <= set(data["few_shot"])


def test_train_writes_a_model_that_loads_back(profile_csv, tmp_path):
    """train saves a folder; LightGBMCostModel.load predicts what a model fitted in-process predicts."""
    out = tmp_path / "model"
    result = runner.invoke(cli.app, ["costmodel", "train", "--profiles", str(profile_csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = read_profiles(profile_csv)
    loaded = LightGBMCostModel.load(out)
    for a, b in zip(loaded.predict(table), LightGBMCostModel().fit(table).predict(table), strict=True):
        np.testing.assert_array_equal(a, b)
    info = runner.invoke(cli.app, ["costmodel", "info", str(out)])
    assert json.loads(info.output)["training"]["n_rows"] == len(table)
    pred = runner.invoke(
        cli.app, ["costmodel", "predict", str(out), "--kind", "xavier-nx", "--batch", "4", "--freq-mhz", "510"]
    )
    assert pred.exit_code == 0, pred.output
    assert json.loads(pred.output)["latency_s"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profiles", "/no/such.csv", "--split", "random"], "/no/such.csv: no such file"),
        (["--split", "diagonal"], "unknown split 'diagonal'"),
        (["--split", "device"], "needs --holdout"),
        (["--split", "device", "--holdout", "tx2"], "unknown device kind 'tx2'"),
        (["--split", "device", "--holdout", "AGX"], "has no rows in the profiles"),
        (["--split", "random", "--holdout", "NX"], "only applies to --split device"),
    ],
)
def test_eval_bad_arguments_are_one_line_errors(monkeypatch, capsys, profile_csv, args, message):
    """A bad path, split or holdout exits 2 with one `error: ...` line naming the value."""
    if "--profiles" not in args:
        args = ["--profiles", str(profile_csv), *args]
    code, err = _main(monkeypatch, capsys, "costmodel", "eval", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_loading_a_folder_that_is_not_a_model_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    """info/predict on a folder without costmodel.json name the folder."""
    code, err = _main(monkeypatch, capsys, "costmodel", "info", str(tmp_path))
    assert code == 2 and "costmodel.json is missing" in err and err.count("\n") == 1
