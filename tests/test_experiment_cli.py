"""`python -m workloads.experiment` parses the options its Ray-job users pass (typer, as every command)."""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace

from typer.testing import CliRunner

from workloads import experiment


def test_options_reach_the_service_and_the_runs(monkeypatch, tmp_path):
    seen: dict = {}

    @contextlib.contextmanager
    def fake_open_service(fleet, **kw):
        seen["service"] = (fleet, kw)
        yield SimpleNamespace(url="http://x", fleet=SimpleNamespace(name=fleet), time_scale=kw["time_scale"])

    def fake_run(service, requests, policies, *, compare_sim, payload):
        seen["run"] = (list(requests), list(policies), compare_sim, payload)
        return [{"policy": p} for p in policies]

    monkeypatch.setattr("deployments.runner.open_service", fake_open_service)
    monkeypatch.setattr(experiment, "load_workload", lambda paths: [f"req:{p}" for p in paths])
    monkeypatch.setattr(experiment, "run_policies", fake_run)
    monkeypatch.setattr(experiment, "print_table", lambda rows: None)
    out = tmp_path / "r.json"
    args = ["--fleet", "agx", "--scenario", "a.csv", "--scenario", "b.csv", "--policy", "loudva", "--time-scale", "5"]
    args += ["--payload", "images", "--no-sim", "--port", "8123", "--cost-model", "oracle", "--json", str(out)]
    result = CliRunner().invoke(experiment.app, args)
    assert result.exit_code == 0, result.output
    assert seen["service"] == ("agx", {"policy": "loudva", "time_scale": 5.0, "port": 8123, "cost": "oracle"})
    assert seen["run"] == (["req:a.csv", "req:b.csv"], ["loudva"], False, "images")
    assert json.loads(out.read_text()) == {"results": [{"policy": "loudva"}]}


def test_defaults_are_jetfleet_and_transparent_with_the_simulator(monkeypatch):
    seen: dict = {}

    @contextlib.contextmanager
    def fake_open_service(fleet, **kw):
        seen["service"] = (fleet, kw)
        yield SimpleNamespace(url="http://x", fleet=SimpleNamespace(name=fleet), time_scale=kw["time_scale"])

    monkeypatch.setattr("deployments.runner.open_service", fake_open_service)
    monkeypatch.setattr(experiment, "load_workload", lambda paths: list(paths))
    monkeypatch.setattr(
        experiment, "run_policies", lambda s, r, p, *, compare_sim, payload: seen.update(run=(p, compare_sim, payload))
    )
    monkeypatch.setattr(experiment, "print_table", lambda rows: None)
    result = CliRunner().invoke(experiment.app, [])
    assert result.exit_code == 0, result.output
    assert seen["service"] == ("demo", {"policy": "jetfleet", "time_scale": 20.0, "port": 0, "cost": "lgbm"})
    assert seen["run"] == (["jetfleet", "transparent"], True, "frames")
