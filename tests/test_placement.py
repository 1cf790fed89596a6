"""Placement of apps onto a fleet (cluster.placement, cluster.apps, `jetfleet place`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster.apps import apps_from_dict, load_apps
from cluster.inventory import fleet_from_dict, load_fleet
from cluster.placement import place, run_placement
from jetfleet.cli import app as cli_app
from jetfleet.errors import ConfigError, UnknownNameError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
NANOS = fleet_from_dict(
    {"name": "two", "devices": [{"name": "n0", "kind": "jetson-nano"}, {"name": "n1", "kind": "jetson-nano"}]}
)


def _apps(*entries, **top):
    return apps_from_dict(
        {
            "memory": {"reserve_mb": {"jetson-nano": 1024}, "engine_mb": {"resnet18": 700}},
            "service_ms": {"jetson-nano": {"resnet18": 10.834}},
            "overhead_ms": 10,
            "apps": list(entries),
            **top,
        }
    )


def test_knapsack_respects_memory_and_ignores_load():
    """first-fit puts 3 ResNet18 containers (750 MB each) per Nano: 2458 MB usable."""
    hosts = place(_apps({"model": "resnet18", "rate_hz": 10, "slo_ms": 100, "count": 8}), NANOS, "first-fit")
    assert [len(h.apps) for h in hosts] == [3, 3]
    assert all(h.used_mb <= h.usable_mb for h in hosts)


def test_model_method_shares_one_engine_per_model():
    hosts = place(_apps({"model": "resnet18", "rate_hz": 10, "slo_ms": 100, "count": 8}), NANOS, "model")
    assert sum(len(h.apps) for h in hosts) == 8
    busiest = max(hosts, key=lambda h: len(h.apps))
    assert busiest.used_mb == pytest.approx(700 + 50 * len(busiest.apps))


def test_model_method_refuses_what_would_break_the_slo():
    """A 10 ms SLO cannot be met by an 11 ms model: nothing is hosted."""
    hosts = place(_apps({"model": "resnet18", "rate_hz": 10, "slo_ms": 10}), NANOS, "model")
    assert not any(h.apps for h in hosts)


def test_ibis_setup_model_hosts_more_than_first_fit_without_violations():
    config, fleet = load_apps(CONFIGS / "apps-ibis.yaml"), load_fleet(CONFIGS / "fleet-ibis.yaml")
    ff = run_placement(config, fleet, "first-fit", duration_s=40)
    model = run_placement(config, fleet, "model", duration_s=40)
    assert model.violations == 0
    assert model.hosted >= 2.0 * ff.hosted


def test_heterogeneous_fleet_memory_only_packing_violates_slos():
    config, fleet = load_apps(CONFIGS / "apps-hetero.yaml"), load_fleet(CONFIGS / "fleet-hetero.yaml")
    ff = run_placement(config, fleet, "first-fit", duration_s=40)
    model = run_placement(config, fleet, "model", duration_s=40)
    assert ff.violations > 0 and model.violations == 0
    assert model.hosted_without_violation > ff.hosted_without_violation


def test_violations_come_from_the_simulation_not_the_model():
    """Overloading one Nano by hand: the simulated mean exceeds the SLO, so it is a violation."""
    config = _apps({"model": "resnet18", "rate_hz": 80, "slo_ms": 100, "count": 3})
    result = run_placement(config, NANOS, "first-fit", duration_s=40)
    assert result.violations == 3
    assert all(o.simulated_mean_ms > o.slo_ms for o in result.outcomes)


def test_unknown_method_and_bad_app_are_named():
    with pytest.raises(UnknownNameError, match="placement method"):
        place(_apps({"model": "resnet18", "rate_hz": 1, "slo_ms": 100}), NANOS, "random")
    with pytest.raises(ConfigError, match=r"app #1 \(resnet18\): field 'rate_hz'"):
        _apps({"model": "resnet18", "rate_hz": -1, "slo_ms": 100})
    with pytest.raises(ConfigError, match="neither a zoo model nor a variant"):
        _apps({"model": "alexnet", "rate_hz": 1, "slo_ms": 100})


def test_place_cli_writes_hosted_violations_and_assignment(tmp_path):
    out = tmp_path / "place.json"
    result = CliRunner().invoke(
        cli_app,
        [
            "place",
            "--apps",
            str(CONFIGS / "apps-ibis.yaml"),
            "--fleet",
            str(CONFIGS / "fleet-ibis.yaml"),
            "--method",
            "model",
            "--duration-s",
            "30",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"hosted", "violations", "assignment"} <= set(data)
    assert data["hosted"] == sum(v is not None for v in data["assignment"].values())
