"""Multi-node failover: a device's Ray node is killed under load; every request is answered exactly once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N_REQUESTS = 100
SEND_OVER_S = 2.0
KILL_AFTER_S = 1.0


async def _load_and_kill(url: str, token: str, kill) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"model": "inceptionv3", "slo_ms": 120_000, "frames": 4, "stream": "cam"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=180) as client:

        async def send(i: int) -> httpx.Response:
            await asyncio.sleep(i * SEND_OVER_S / N_REQUESTS)
            return await client.post("/v1/infer", json=body)

        async def killer() -> None:
            await asyncio.sleep(KILL_AFTER_S)
            await asyncio.to_thread(kill)

        *responses, _ = await asyncio.gather(*(send(i) for i in range(N_REQUESTS)), killer())
    return responses


def test_killing_a_device_node_under_load_answers_every_request_once(ray_cluster):
    """Two devices on their own Ray nodes; one node dies mid-run. Each request gets one answer, its batch in
    flight goes back to the queue and is served by the surviving device."""
    from cluster.inventory import fleet_from_dict
    from deployments.app import ServiceConfig, deploy

    node_a = ray_cluster.add_device_node("fa")
    node_b = ray_cluster.add_device_node("fb")
    fleet = fleet_from_dict(
        {"name": "failover", "devices": [{"name": "fa", "kind": "jetson-nano"}, {"name": "fb", "kind": "jetson-nano"}]}
    )
    config = ServiceConfig(
        fleet, policy="transparent", cost="oracle", time_scale=10.0, app_name="failover", route_prefix="/failover"
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:
        nodes = {name: svc.device(name).node.remote().result(timeout_s=30) for name in ("fa", "fb")}
        assert nodes["fa"] == node_a.node_id and nodes["fb"] == node_b.node_id  # pinned by device:<name>
        responses = asyncio.run(_load_and_kill(svc.url, svc.token, lambda: ray_cluster.remove_node(node_a)))
        bodies = [r.json() for r in responses]
        assert all(r.status_code in (200, 503) for r in responses), [r.text for r in responses if r.status_code >= 400]
        ids = [b["request_id"] for b in bodies]  # scheduler ids (int) when completed, request ids (str) when not
        assert len(ids) == len(set(ids))
        assert len(bodies) == N_REQUESTS
        completed = [b for b in bodies if b["status"] == "completed"]
        assert len(completed) >= N_REQUESTS * 0.9
        assert any(b["device"] == "fa" for b in completed) and any(b["device"] == "fb" for b in completed)
        stats = svc.scheduler().stats.remote().result()
        assert stats["submitted"] == N_REQUESTS and stats["open"] == 0
        assert stats["completed"] + sum(stats["dropped_by_reason"].values()) == N_REQUESTS
        report = stats["run"]
        assert report["device_failures"] == 1 and report["requeued"] >= 1
        states = {d["name"]: d["state"] for d in svc.scheduler().fleet_view.remote().result()["devices"]}
        assert states == {"fa": "failed", "fb": "healthy"}
    finally:
        svc.delete()
        ray_cluster.remove_node(node_b)
