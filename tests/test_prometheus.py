"""Prometheus metrics end to end: a served fleet's scheduler exports through Ray's metrics agent, and the
head's scrape endpoint parses with `prometheus_client`'s own parser. Ray's agent exports every ~10 s, so the
test polls (bounded) until the figures it looks for are there."""

from __future__ import annotations

import time
import urllib.request

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]
parser = pytest.importorskip("prometheus_client.parser")

STREAM = "prom-cam"
SCRAPE_DEADLINE_S = 90.0


def _scrape(url: str) -> dict[str, list]:
    """Metric family name -> its samples, parsed by prometheus_client."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {f.name: f.samples for f in parser.text_string_to_metric_families(text)}


def _ready(families: dict[str, list]) -> bool:
    frames = families.get("ray_jetfleet_frames", [])
    fpj = families.get("ray_jetfleet_frames_per_joule", [])
    return any(s.labels.get("stream") == STREAM for s in frames) and any(s.value > 0 for s in fpj)


def test_the_head_exports_jetfleet_metrics_that_prometheus_can_parse(ray_cluster):
    from cluster.inventory import fleet_from_dict
    from cluster.local import metrics_url
    from deployments.app import ServiceConfig, deploy

    fleet = fleet_from_dict({"name": "prom", "devices": [{"name": "nx0", "kind": "xavier-nx"}]})
    config = ServiceConfig(fleet, policy="transparent", cost="oracle", app_name="prom-test", route_prefix="/prom")
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:
        headers = {"Authorization": f"Bearer {svc.token}"}
        body = {"model": "resnet18", "slo_ms": 30_000, "frames": 2, "stream": STREAM}
        with httpx.Client(base_url=svc.url, headers=headers, timeout=60) as c:
            for _ in range(3):
                assert c.post("/v1/infer", json=body).status_code == 200
        url = metrics_url()
        assert url is not None and url.endswith("/metrics")
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        families = _scrape(url)
        while not _ready(families) and time.monotonic() < deadline:
            time.sleep(2.0)
            with httpx.Client(base_url=svc.url, headers=headers, timeout=60) as c:  # keep the window fed
                c.post("/v1/infer", json=body)
            families = _scrape(url)
        assert _ready(families), sorted(n for n in families if "jetfleet" in n)
        completed = [
            s
            for s in families["ray_jetfleet_frames"]
            if s.labels.get("stream") == STREAM and s.labels["outcome"] == "completed" and s.name.endswith("_total")
        ]
        assert completed and all(s.labels["model"] == "resnet18" for s in completed)
        assert sum(s.value for s in completed) >= 6
        states = [s for s in families["ray_jetfleet_device_power_state"] if s.labels["device"] == "nx0"]
        assert states and all(0 <= s.value <= 4 for s in states)
        assert any(s.labels["device"] == "nx0" and s.value > 0 for s in families["ray_jetfleet_device_energy_joules"])
        assert any(0 <= s.value <= 1 for s in families["ray_jetfleet_slo_attainment_ratio"])
        assert "ray_jetfleet_decision_seconds" in families
    finally:
        svc.delete()
