"""MLCommons LoadGen as jetfleet's load generator: settings, summary parsing, and a short Server-scenario run
against the demo fleet over HTTP (a reduced minimum duration: NOT a compliant MLPerf run)."""

from __future__ import annotations

import json

import pytest

from jetfleet.errors import ConfigError
from workloads.mlperf_loadgen import LoadGenConfig, loadgen_settings, parse_summary, run_loadgen


def test_unknown_scenario_and_non_positive_rates_are_refused():
    with pytest.raises(ConfigError, match="scenario"):
        LoadGenConfig(scenario="burst")
    with pytest.raises(ConfigError, match="target_qps"):
        LoadGenConfig(target_qps=0)


def test_short_runs_are_labelled_not_compliant():
    assert not LoadGenConfig(min_duration_s=10).compliant_length
    assert LoadGenConfig(min_duration_s=600).compliant_length


def test_summary_of_a_real_loadgen_run_is_parsed(tmp_path):
    """LoadGen's own summary, from a run against an SUT that answers at once."""
    lg = pytest.importorskip("mlperf_loadgen")

    def issue(samples):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(8, 8, lambda _: None, lambda _: None)
    log = lg.LogSettings()
    log.log_output.outdir = str(tmp_path)
    log.log_output.copy_summary_to_stdout = False
    lg.StartTestWithLogSettings(sut, qsl, loadgen_settings(lg, LoadGenConfig(target_qps=100, min_duration_s=0.3)), log)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    summary = parse_summary((tmp_path / "mlperf_log_summary.txt").read_text())
    assert summary["scenario"] == "Server" and summary["result"] in ("VALID", "INVALID")
    assert summary["completed_samples_per_second"] > 0 and summary["min_duration_satisfied"] is True
    assert isinstance(summary["early_stopping_satisfied"], bool)
    assert summary["min_latency_ns"] <= summary["99_00_percentile_latency_ns"] <= summary["max_latency_ns"]


@pytest.mark.ray
@pytest.mark.slow
def test_server_scenario_on_the_demo_fleet_is_valid_with_frames_per_joule(ray_cluster, tmp_path):
    """Not a compliant MLPerf run: ~20 s instead of 600 s (LoadGen's early stopping needs ~460 queries)."""
    pytest.importorskip("mlperf_loadgen")
    from cluster.inventory import load_fleet
    from deployments.app import ServiceConfig, deploy

    config = ServiceConfig(
        load_fleet("demo"), policy="transparent", cost="oracle", app_name="loadgen-test", route_prefix="/lg"
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:
        run = LoadGenConfig(scenario="server", target_qps=25, slo_ms=3000, min_duration_s=5, min_query_count=480)
        report = run_loadgen(svc.url, svc.token, run, tmp_path)
    finally:
        svc.delete()
    assert (tmp_path / "mlperf_log_summary.txt").exists() and (tmp_path / "jetfleet_loadgen.json").exists()
    assert report["compliant"] is False and "not a compliant" in report["note"]
    jf = report["jetfleet"]
    assert report["loadgen"]["result"] == "VALID", (report["loadgen"], jf)
    assert jf["requests"] >= 480 and jf["answers_by_status"] == {"completed": jf["requests"]}
    assert jf["frames_completed"] == jf["requests"] and jf["energy_j"] > 0 and jf["frames_per_j"] > 0
    assert report["loadgen"]["completed_samples_per_second"] == pytest.approx(25, rel=0.2)


def test_an_unreachable_service_is_one_clear_error(tmp_path):
    pytest.importorskip("mlperf_loadgen")
    with pytest.raises(ConfigError, match="127.0.0.1:9"):
        run_loadgen("http://127.0.0.1:9", None, LoadGenConfig(min_duration_s=1), tmp_path)


class FakeService:
    """/v1/fleet with an energy counter that grows 0.5 J per request; /v1/infer drops every 4th request."""

    def __init__(self) -> None:
        import threading

        self.energy_j, self.requests, self.bodies = 0.0, 0, []
        self._lock = threading.Lock()

    def __call__(self, request):
        import httpx

        if request.url.path == "/v1/fleet":
            return httpx.Response(200, json={"devices": [{"run_energy_j": self.energy_j}, {"run_energy_j": None}]})
        body = json.loads(request.content)
        with self._lock:
            self.requests += 1
            self.energy_j += 0.5
            self.bodies.append(body)
            dropped = self.requests % 4 == 0
        if dropped:
            body = {
                "error": "dropped: its deadline passed",
                "status": 503,
                "request_id": "r",
                "reason": "deadline_expired",
            }
            return httpx.Response(503, json=body)
        return httpx.Response(200, json={"status": "completed", "frames": body["frames"]})


@pytest.mark.parametrize("scenario", ["server", "multistream", "offline"])
def test_every_sample_is_answered_and_drops_are_counted_beside_frames_per_joule(tmp_path, scenario):
    pytest.importorskip("mlperf_loadgen")
    import httpx

    service = FakeService()
    config = LoadGenConfig(scenario=scenario, target_qps=200, min_duration_s=0.3, samples=16, slo_ms=1000)
    report = run_loadgen("http://svc", "t", config, tmp_path, transport=httpx.MockTransport(service))
    jf = report["jetfleet"]
    dropped = [b for i, b in enumerate(service.bodies, 1) if i % 4 == 0]
    assert jf["requests"] == service.requests >= 1
    assert jf["answers_by_status"].get("http-503:deadline_expired", 0) == len(dropped)
    assert jf["frames_completed"] == sum(b["frames"] for b in service.bodies) - sum(b["frames"] for b in dropped)
    assert jf["energy_j"] == pytest.approx(0.5 * service.requests)
    assert jf["frames_per_j"] == pytest.approx(jf["frames_completed"] / jf["energy_j"], rel=1e-3)
    assert report["loadgen"]["scenario"].lower() == scenario and (tmp_path / "jetfleet_loadgen.json").exists()
    if scenario == "multistream":
        assert {b["frames"] for b in service.bodies} == {config.multistream_samples}
