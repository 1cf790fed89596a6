"""The plain Ray actors behind the Serve replicas (`deployments.hosts`): a device's or the scheduler's host
that dies is restarted by Serve (the replica's health check fails), and the live path finds the new host;
every request sent meanwhile gets one answer."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BODY = {"model": "inceptionv3", "slo_ms": 60_000, "frames": 2, "stream": "cam"}


@pytest.fixture(scope="module")
def service(ray_cluster):
    """Two emulated devices on the head node (nano0, nano1), `transparent`, 10x time compression."""
    from cluster.inventory import fleet_from_dict
    from deployments.app import ServiceConfig, deploy

    fleet = fleet_from_dict(
        {"name": "hosts", "devices": [{"name": n, "kind": "jetson-nano"} for n in ("nano0", "nano1")]}
    )
    config = ServiceConfig(
        fleet, policy="transparent", cost="oracle", time_scale=10.0, app_name="hosts", route_prefix="/hosts"
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    yield svc
    svc.delete()


async def _send(url: str, token: str, n: int, over_s: float) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:

        async def one(i: int) -> httpx.Response:
            await asyncio.sleep(i * over_s / n)
            return await c.post("/v1/infer", json=BODY)

        return await asyncio.gather(*(one(i) for i in range(n)))


def _actor_id(handle) -> str:
    return handle._actor_id.hex()


def _wait_for(predicate, timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the deployment may be restarting
            pass
        time.sleep(0.5)
    return False


def test_a_dead_device_host_fails_over_and_comes_back_in_a_new_replica(service):
    import ray

    old = service.device("nano0").host.remote().result(timeout_s=30)
    ray.kill(old, no_restart=True)
    responses = asyncio.run(_send(service.url, service.token, 40, 2.0))
    bodies = [r.json() for r in responses]
    assert all(r.status_code in (200, 503) for r in responses), [r.text for r in responses if r.status_code >= 400]
    assert len({b["request_id"] for b in bodies}) == 40  # one answer each
    assert sum(b["status"] == "completed" for b in bodies) >= 36  # nano1 serves what nano0 cannot

    def nano0_healthy_in_a_new_host() -> bool:
        new = service.device("nano0").host.remote().result(timeout_s=10)
        devices = service.scheduler().fleet_view.remote().result(timeout_s=10)["devices"]
        return _actor_id(new) != _actor_id(old) and {d["name"]: d["state"] for d in devices}["nano0"] == "healthy"

    assert _wait_for(nano0_healthy_in_a_new_host), "Serve did not restart nano0, or the scheduler did not restore it"
    assert service.scheduler().stats.remote().result()["run"]["device_failures"] >= 1
    again = asyncio.run(_send(service.url, service.token, 20, 1.0))
    assert all(r.status_code == 200 for r in again), [r.text for r in again if r.status_code != 200]


def test_a_dead_scheduler_host_is_restarted_and_the_ingress_finds_the_new_one(service):
    import ray

    old = service.scheduler().host.remote().result(timeout_s=30)
    ray.kill(old, no_restart=True)
    first = asyncio.run(_send(service.url, service.token, 5, 0.1))
    assert all(r.status_code in (200, 503) for r in first)  # answered (an error at worst), never hung

    def answered_by_a_new_host() -> bool:
        new = service.scheduler().host.remote().result(timeout_s=10)
        return (
            _actor_id(new) != _actor_id(old)
            and asyncio.run(_send(service.url, service.token, 1, 0))[0].status_code == 200
        )

    assert _wait_for(answered_by_a_new_host), "the scheduler was not restarted, or the ingress kept the dead host"
