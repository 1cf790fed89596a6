"""costmodel.factory.make_cost_model: one name means one cost model everywhere."""

from __future__ import annotations

import pytest

from costmodel import lgbm
from costmodel.device_models import OracleCostModel
from costmodel.factory import make_cost_model
from jetfleet.errors import UnknownNameError


def test_oracle_is_the_device_models():
    assert isinstance(make_cost_model("oracle"), OracleCostModel)


def test_lgbm_is_the_default_fitted_model(monkeypatch):
    sentinel = object()
    monkeypatch.setattr(lgbm, "default_cost_model", lambda: sentinel)
    assert make_cost_model("lgbm") is sentinel


def test_a_directory_loads_a_saved_model(monkeypatch, tmp_path):
    monkeypatch.setattr(lgbm, "load", lambda d: ("loaded", d))
    assert make_cost_model(str(tmp_path)) == ("loaded", str(tmp_path))


def test_names_win_over_a_directory_of_the_same_name(monkeypatch, tmp_path):
    (tmp_path / "oracle").mkdir()
    monkeypatch.chdir(tmp_path)
    assert isinstance(make_cost_model("oracle"), OracleCostModel)


def test_unknown_name_names_the_value_where_and_the_choices(tmp_path):
    with pytest.raises(UnknownNameError) as err:
        make_cost_model(str(tmp_path / "nope"), where="--cost-model")
    msg = str(err.value)
    assert "nope" in msg and "--cost-model" in msg and "lgbm" in msg and "oracle" in msg
    assert isinstance(err.value, KeyError)  # existing `except KeyError` handlers keep working


def test_empty_name_is_rejected():
    with pytest.raises(UnknownNameError):
        make_cost_model("")
