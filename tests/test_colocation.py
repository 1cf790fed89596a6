"""Co-location latency model (costmodel.colocation) and its discrete-event check (costmodel.colocation_sim)."""

from __future__ import annotations

import math

import pytest

from costmodel.colocation import (
    Tenant,
    batching_engine_s,
    engine_ps_response_s,
    fcfs_burst_completion_s,
    fcfs_switch_response_s,
    mean_abs_error_pct,
    ps_burst_completion_s,
    ps_response_s,
    validate_edgetpu_fcfs,
    validate_trt_ps,
)
from costmodel.colocation_sim import CoEngine, CoStream, simulate_colocation
from jetfleet.errors import ConfigError, DataError, InvalidRequestError


def test_trt_processor_sharing_matches_ibis_within_15_percent(ibis_dir):
    """Ibis TensorRT on a Jetson Nano: burst PS predicts the concurrent response time of every model."""
    rows = validate_trt_ps(ibis_dir / "trt_ps_validation.csv")
    assert {r.model for r in rows} == {"Yolo4-tiny", "Resnet50", "EfficientNet-B3"}
    assert mean_abs_error_pct(rows) <= 15.0
    assert all(r.error_pct <= 15.0 for r in rows)


def test_edgetpu_fcfs_matches_ibis_within_15_percent(ibis_dir):
    """Ibis Edge TPU: burst FCFS (switches inside the isolated times) predicts all five models."""
    rows = validate_edgetpu_fcfs(ibis_dir / "edgetpu_fcfs_validation.csv")
    assert len(rows) == 5
    assert mean_abs_error_pct(rows) <= 15.0


def test_isolated_times_alone_would_miss_the_concurrent_measurements(ibis_dir):
    """Without a co-location model (isolated time as the prediction) the error is far above 15 %."""
    rows = validate_trt_ps(ibis_dir / "trt_ps_validation.csv")
    naive = sum(abs(r.isolated_ms - r.measured_ms) / r.measured_ms for r in rows) / len(rows)
    assert naive > 0.3


def test_ibis_reader_names_missing_columns(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("model,response_time\na,1\n")
    with pytest.raises(DataError, match="process_type"):
        validate_trt_ps(bad)


def test_ps_burst_is_exact_for_equal_and_unequal_jobs():
    assert ps_burst_completion_s([1.0, 1.0]) == [2.0, 2.0]
    assert ps_burst_completion_s([1.0, 3.0]) == [2.0, 4.0]


def test_fcfs_burst_adds_switch_only_between_different_models():
    assert fcfs_burst_completion_s([1.0, 1.0, 1.0], 0.5, ["a", "a", "b"]) == [1.0, 2.0, 3.5]


def test_ps_response_grows_as_one_over_one_minus_rho():
    r = ps_response_s([Tenant("a", 0.01, 50.0)])
    assert r["a"] == pytest.approx(0.02)
    assert math.isinf(ps_response_s([Tenant("a", 0.01, 100.0)])["a"])


def test_pollaczek_khinchine_reduces_to_md1_without_switches():
    s, lam = 0.01, 50.0
    r = fcfs_switch_response_s([Tenant("a", s, lam)], switch_s=0.1)["a"]
    rho = lam * s
    assert r == pytest.approx(s + rho * s / (2 * (1 - rho)))


def test_tenant_rejects_nonpositive_service():
    with pytest.raises(InvalidRequestError, match="service_s"):
        Tenant("a", 0.0, 1.0)


def test_simulated_burst_reproduces_the_analytic_burst():
    """The event simulation of a PS burst gives the exact PS completion times."""
    service = [0.0301, 0.0256, 0.0829]
    engines = [CoEngine(str(i), s) for i, s in enumerate(service)]
    out = simulate_colocation(engines, [CoStream(e.name, e.name, 1.0) for e in engines], burst=True)
    assert [out[str(i)].mean_s for i in range(3)] == pytest.approx(ps_burst_completion_s(service))


def test_simulated_fcfs_with_switches_matches_pollaczek_khinchine():
    tenants = [Tenant("a", 0.03, 10.0), Tenant("b", 0.025, 10.0), Tenant("c", 0.08, 3.0)]
    engines = [CoEngine(t.name, t.service_s) for t in tenants]
    streams = [CoStream(t.name, t.name, t.rate_hz) for t in tenants]
    sim = simulate_colocation(engines, streams, discipline="fcfs", switch_s=0.01, duration_s=600, seed=1)
    model = fcfs_switch_response_s(tenants, 0.01)
    for t in tenants:
        assert sim[t.name].mean_s == pytest.approx(model[t.name], rel=0.1)


def test_engine_ps_model_tracks_simulated_engine_sharing():
    """PS across engines, FCFS inside each: the fixed-point model stays within 10 % of the simulation."""
    tenants = [Tenant("a", 0.0108, 50.0), Tenant("b", 0.0294, 10.0)]
    engines = [CoEngine(t.name, t.service_s) for t in tenants]
    streams = [CoStream(t.name, t.name, t.rate_hz) for t in tenants]
    sim = simulate_colocation(engines, streams, duration_s=600, seed=2)
    model = engine_ps_response_s(tenants)
    for t in tenants:
        assert sim[t.name].mean_s == pytest.approx(model[t.name], rel=0.1)


def test_unknown_discipline_and_engine_are_config_errors():
    with pytest.raises(ConfigError, match="discipline"):
        simulate_colocation([CoEngine("a", 0.01)], [], discipline="lifo")
    with pytest.raises(ConfigError, match="unknown engine"):
        simulate_colocation([CoEngine("a", 0.01)], [CoStream("x", "b", 1.0)])


def test_batching_engines_model_tracks_the_simulation():
    """Dynamic batching on a shared engine: the fixed-point model stays within 10 % of the simulation."""
    curve = lambda b: 0.0108 * (1.0 + 0.75 * (b - 1))  # noqa: E731
    tenants = [Tenant("a", 0.0108, 60.0, 8, curve), Tenant("b", 0.0294, 10.0)]
    engines = [CoEngine("a", 0.0108, 8, curve), CoEngine("b", 0.0294)]
    sim = simulate_colocation(engines, [CoStream(t.name, t.name, t.rate_hz) for t in tenants], duration_s=600, seed=4)
    model = engine_ps_response_s(tenants)
    for t in tenants:
        assert sim[t.name].mean_s == pytest.approx(model[t.name], rel=0.1)


def test_batching_engine_without_batching_is_the_md1_queue():
    """One request per batch: the embedded chain gives the M/D/1 mean response exactly."""
    s, lam = 0.01, 60.0
    response, busy = batching_engine_s(lam, [s])
    rho = lam * s
    assert response == pytest.approx(s + rho * s / (2 * (1 - rho)), rel=1e-6)
    assert busy == pytest.approx(rho, rel=1e-6)


def test_batching_engine_cannot_keep_up_beyond_full_batches():
    """8 requests per 67.5 ms batch at most: 119 req/s saturates the engine, 110 does not."""
    curve = [0.0108 * (1.0 + 0.75 * (b - 1)) for b in range(1, 9)]
    assert math.isinf(batching_engine_s(119.0, curve)[0])
    assert math.isfinite(batching_engine_s(110.0, curve)[0])


@pytest.mark.parametrize("rate_hz", [60.0, pytest.param(100.0, marks=pytest.mark.slow)])
def test_batching_engine_alone_matches_the_simulation(rate_hz):
    """A lone batching engine (62 % and 92 % busy) is solved exactly: within 2 % of a long simulation."""
    curve = lambda b: 0.0108 * (1.0 + 0.75 * (b - 1))  # noqa: E731
    model = engine_ps_response_s([Tenant("a", 0.0108, rate_hz, 8, curve)])["a"]
    sim = simulate_colocation([CoEngine("a", 0.0108, 8, curve)], [CoStream("a", "a", rate_hz)], duration_s=1500, seed=3)
    assert model == pytest.approx(sim["a"].mean_s, rel=0.02)


def test_shared_engines_model_errs_high_on_the_heavy_engine():
    """Two engines at 85 % load: the heavy one is over-estimated (safe), the light one within 3 %."""
    heavy = lambda b: 0.0294 * (1.0 + 0.66 * (b - 1))  # noqa: E731
    light = lambda b: 0.0108 * (1.0 + 0.73 * (b - 1))  # noqa: E731
    tenants = [Tenant("heavy", 0.0294, 23.0, 8, heavy), Tenant("light", 0.0108, 16.0, 8, light)]
    engines = [CoEngine(t.name, t.service_s, 8, t.batch_latency_s) for t in tenants]
    streams = [CoStream(t.name, t.name, t.rate_hz) for t in tenants]
    sim = simulate_colocation(engines, streams, duration_s=600, seed=11)
    model = engine_ps_response_s(tenants)
    assert model["heavy"] > 1.05 * sim["heavy"].mean_s
    assert model["light"] == pytest.approx(sim["light"].mean_s, rel=0.03)
