"""Placement of apps onto a fleet (cluster.placement, cluster.apps, `jetfleet place`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster.apps import apps_from_dict, load_apps
from cluster.inventory import fleet_from_dict, load_fleet
from cluster.placement import DEFAULT_MARGIN, place, run_placement
from cluster.placement_cli import DEFAULT_MARGIN as CLI_MARGIN
from costmodel.colocation import validate_trt_ps
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


@pytest.mark.slow
def test_ibis_setup_model_hosts_2_3x_first_fit_without_violations():
    """The issue's target, judged by the 300 s simulation (the CLI's default check)."""
    config, fleet = load_apps(CONFIGS / "apps-ibis.yaml"), load_fleet(CONFIGS / "fleet-ibis.yaml")
    ff = run_placement(config, fleet, "first-fit")
    model = run_placement(config, fleet, "model")
    assert ff.violations == 0 and model.violations == 0
    assert model.hosted >= 2.3 * ff.hosted


@pytest.mark.slow
def test_heterogeneous_fleet_memory_only_packing_violates_slos():
    config, fleet = load_apps(CONFIGS / "apps-hetero.yaml"), load_fleet(CONFIGS / "fleet-hetero.yaml")
    ff = run_placement(config, fleet, "first-fit", duration_s=60)
    model = run_placement(config, fleet, "model")
    assert ff.violations > 0 and model.violations == 0
    assert model.hosted_without_violation > ff.hosted_without_violation


def test_admission_protects_the_apps_already_on_a_device():
    """4 ResNet50 apps fill a Nano to its SLO; a ResNet18 app would meet its own SLO there but push the
    ResNet50 apps over theirs, so it is refused (one device: it goes unplaced)."""
    one = fleet_from_dict({"name": "one", "devices": [{"name": "n0", "kind": "jetson-nano"}]})
    config = _apps(
        {"model": "resnet50", "rate_hz": 10, "slo_ms": 150, "count": 4},
        {"model": "resnet18", "rate_hz": 10, "slo_ms": 100},
        memory={"reserve_mb": {"jetson-nano": 1024}, "engine_mb": {"resnet18": 700, "resnet50": 965}},
        service_ms={"jetson-nano": {"resnet18": 10.834, "resnet50": 29.412}},
    )
    hosts = place(config, one, "model")
    assert [a.model for a in hosts[0].apps] == ["resnet50"] * 4
    alone = place(_apps({"model": "resnet18", "rate_hz": 10, "slo_ms": 100}), one, "model")
    assert len(alone[0].apps) == 1


def test_admission_is_by_predicted_slo_not_a_load_cap():
    """Without a cap one engine takes ResNet18 apps up to its SLO; Ibis's 80 % cap stops earlier."""
    config = _apps({"model": "resnet18", "rate_hz": 10, "slo_ms": 100, "count": 20})
    one = fleet_from_dict({"name": "one", "devices": [{"name": "n0", "kind": "jetson-nano"}]})
    by_slo = run_placement(config, one, "model", duration_s=200)
    capped = run_placement(config, one, "model", max_utilisation=0.8, duration_s=200)
    assert capped.hosted < by_slo.hosted
    assert by_slo.violations == 0


def test_default_margin_covers_the_ps_model_error_on_ibis_data(ibis_dir):
    """The margin's hardware part (3.7 %) is the largest error of PS against Ibis's Nano measurements."""
    worst_pct = max(r.error_pct for r in validate_trt_ps(ibis_dir / "trt_ps_validation.csv"))
    assert worst_pct == pytest.approx(3.7, abs=0.05)
    assert worst_pct <= 100 * DEFAULT_MARGIN
    assert CLI_MARGIN == DEFAULT_MARGIN


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
    with pytest.raises(ConfigError, match=r"--margin.*1\.5"):
        place(_apps({"model": "resnet18", "rate_hz": 1, "slo_ms": 100}), NANOS, "model", margin=1.5)


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
