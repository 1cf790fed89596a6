"""Overload protection by default, live (issue 12, finding 4): 48 clients asking inceptionv3 within 100 ms of a
service started without a stream config get 429s with a Retry-After, hopeless requests are dropped early, and
most of what is served is served within SLO."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLIENTS = 48
SECONDS = 4.0
BODY = {"model": "inceptionv3", "slo_ms": 100, "frames": 1}


async def _closed_loop(url: str, token: str) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {token}"}
    responses: list[httpx.Response] = []
    deadline = time.monotonic() + SECONDS
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def client_loop() -> None:
            while time.monotonic() < deadline:
                responses.append(await client.post("/v1/infer", json=BODY))

        await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    return responses


def test_many_clients_with_a_tight_slo_get_429s_and_what_is_served_is_within_slo(ray_cluster):
    from cluster.inventory import load_fleet
    from deployments.app import ServiceConfig, deploy

    config = ServiceConfig(load_fleet("demo"), cost="oracle", app_name="overload", route_prefix="/overload")
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:
        responses = asyncio.run(_closed_loop(svc.url, svc.token))
        stats = svc.scheduler().stats.remote().result()
    finally:
        svc.delete()
    statuses = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    served = [r.json() for r in responses if r.status_code == 200]
    print(f"{len(responses)} answers: {dict((s, statuses.count(s)) for s in set(statuses))}; policy {stats['policy']}")
    assert set(statuses) <= {200, 429, 503}
    assert refused and all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    # Without admission every request was accepted and none served within SLO (p99 2.5 s; issue 12). Now the
    # scheduler counts the round trips it measures (`actors.round_trip`): on a busy 2-core machine they are
    # 60-80 ms, so a 100 ms SLO is mostly refused, and what is served is served within SLO. How many are served
    # depends on the machine's load (0-9 of ~200 here), so the test bounds the late ones, not the served ones.
    late = [b for b in served if not b["within_slo"]]
    assert len(late) <= max(2, len(served) // 2), [b["timing_ms"] for b in late]
    assert max(r.elapsed.total_seconds() for r in responses) < 5.0  # no answer waits behind a hopeless queue
    assert stats["policy"] == "slo:jetfleet" and stats["open"] == 0
