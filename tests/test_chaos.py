"""Chaos: during a paced replay, device replicas and the scheduler are killed at seeded random times. Every request
gets exactly one answer (200, or a 429/503 with its reason; never a 500, never none), request ids never repeat
across the scheduler's restart, and no answer comes later than its deadline plus `LATE_BOUND_S`."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SEED = 12
N_REQUESTS = 150
SEND_OVER_S = 12.0
SLO_MS = 3000
LATE_BOUND_S = 20.0  # a scheduler restart (a new replica, its cost model, its device facts) takes up to ~10 s here
VICTIMS = ("device-agx0", "scheduler", "device-nx0")


def _kill_replica(app: str, deployment: str) -> None:
    """Kill the one replica of `deployment` (its Serve controller starts a new one)."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if name.startswith("SERVE_REPLICA::") and f"{app}#{deployment}#" in name:
            ray.kill(ray.get_actor(name, namespace=actor["namespace"]), no_restart=True)
            return
    raise AssertionError(f"no replica of {deployment} in {app}")


async def _replay_with_kills(url: str, token: str, kills: list[tuple[float, str]], app: str):
    headers = {"Authorization": f"Bearer {token}"}
    body = {"model": "inceptionv3", "slo_ms": SLO_MS, "frames": 1}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:

        async def send(i: int) -> tuple[float, httpx.Response]:
            await asyncio.sleep(i * SEND_OVER_S / N_REQUESTS)
            t0 = time.monotonic()
            response = await client.post("/v1/infer", json=body)
            return time.monotonic() - t0, response

        async def chaos() -> None:
            start = time.monotonic()
            for at_s, victim in kills:
                await asyncio.sleep(max(0.0, start + at_s - time.monotonic()))
                await asyncio.to_thread(_kill_replica, app, victim)

        *answers, _ = await asyncio.gather(*(send(i) for i in range(N_REQUESTS)), chaos())
    return answers


def test_killing_devices_and_the_scheduler_at_random_answers_every_request_once(ray_cluster):
    from cluster.inventory import load_fleet
    from deployments.app import ServiceConfig, deploy

    rng = random.Random(SEED)
    kills = sorted(zip(sorted(rng.uniform(1.0, SEND_OVER_S - 3.0) for _ in VICTIMS), VICTIMS, strict=True))
    config = ServiceConfig(load_fleet("demo"), cost="oracle", time_scale=10.0, app_name="chaos", route_prefix="/chaos")
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:
        answers = asyncio.run(_replay_with_kills(svc.url, svc.token, kills, "chaos"))
        statuses = [r.status_code for _, r in answers]
        bodies = [r.json() for _, r in answers]
        assert len(answers) == N_REQUESTS and set(statuses) <= {200, 429, 503}, sorted(set(statuses))
        # Served answers carry the scheduler's request id (an int); error bodies the ingress's X-Request-Id (a str).
        ids = [b["request_id"] for b, s in zip(bodies, statuses, strict=True) if s == 200]
        assert len(ids) == len(set(ids))  # no id answered twice, none reused by the restarted scheduler
        error_ids = [b["request_id"] for b, s in zip(bodies, statuses, strict=True) if s != 200]
        assert len(error_ids) == len(set(error_ids))
        late_s = max(wall_s - SLO_MS / 1e3 for wall_s, _ in answers)
        completed = sum(s == 200 for s in statuses)
        print(f"kills {kills}; statuses {dict((s, statuses.count(s)) for s in set(statuses))}; latest {late_s:.2f} s")
        assert late_s <= LATE_BOUND_S
        assert completed >= N_REQUESTS / 3
        # Not asserted here: a request sent right after killing the scheduler a second time, after this replay,
        # went unanswered for 60 s in three runs on 2026-12-02 (a known bug, issue 12's note); on a fresh service
        # a scheduler kill is answered (tests/test_http_hostile.py, tests/test_hosts.py).
    finally:
        svc.delete()
