"""Overhead of the live path, and the policy's decision time with a long queue.

- `http`: requests per second through HTTP -> ingress -> scheduler actor -> device deployment (one emulated
  device whose engine takes no time: speed factor 1e6), against a plain Ray Serve deployment whose
  `@serve.batch` method does the same echo, both deployed in one Ray cluster and measured side by side, in
  alternating rounds, by the same closed-loop client (aiohttp, `concurrency` requests in flight). The policy
  is `transparent` (send what waits to the idle device at once), so the figure is the mechanism's cost, not a
  policy's choice to wait. Goal (issue 9): ratio >= 0.9.
- `decision`: wall time of one `Policy.decide` with 10,000 requests queued (SLOs 1-20 s, 1-8 frames) on the
  `loudva-cluster` fleet with every device idle, per policy, consulting the default LightGBM cost model (as the
  service does): p50 and p99 over repeated calls on the same queue. Goal for `jetfleet`: p99 <= 1 ms.

Ray runs with token authentication on, no dashboard, 2 CPUs and a 200 MB object store.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import numpy as np

from cluster.inventory import fleet_from_dict, load_fleet
from jetfleet.types import DeviceState, Request

ECHO_BODY = {"model": "inceptionv3", "slo_ms": 10000, "frames": 1}


def _echo_app() -> Any:
    from ray import serve
    from starlette.requests import Request as HttpRequest
    from starlette.responses import JSONResponse

    @serve.deployment(name="echo", max_ongoing_requests=4096, ray_actor_options={"num_cpus": 0})
    class Echo:
        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
        async def echo(self, bodies: list[dict]) -> list[dict]:
            return [{"status": "completed", "frames": b.get("frames", 1)} for b in bodies]

        async def __call__(self, request: HttpRequest) -> JSONResponse:
            return JSONResponse(await self.echo(await request.json()))

    return Echo.bind()


async def _closed_loop(url: str, path: str, token: str | None, concurrency: int, seconds: float) -> tuple[int, int]:
    """Requests completed (HTTP 200) and failed by `concurrency` looping clients in `seconds`."""
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(ECHO_BODY)
    done = failed = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, headers=headers, connector=connector) as session:

        async def worker() -> None:
            nonlocal done, failed
            while time.monotonic() < deadline:
                async with session.post(path, data=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, failed


def http_overhead(quick: bool = False) -> dict[str, Any]:
    """Side-by-side requests/s of jetfleet's path and a plain @serve.batch echo (see the module docstring)."""
    import ray
    from ray import serve

    from cluster.local import free_port, start_in_process
    from deployments.app import ServiceConfig, deploy

    fleet = fleet_from_dict({"name": "bench", "devices": [{"name": "agx0", "kind": "agx-xavier"}]})
    start_in_process(fleet)
    try:
        port = free_port()
        config = ServiceConfig(
            fleet,
            policy="transparent",
            cost="oracle",
            app_name="bench-jetfleet",
            route_prefix="/jf",
            device_speed_factor=1e6,
        )
        service = deploy(config, http_port=port)
        serve.run(_echo_app(), name="bench-echo", route_prefix="/echo")
        base = service.url.removesuffix("/jf")
        concurrency, seconds, rounds = (32, 3.0, 2) if quick else (64, 8.0, 3)
        asyncio.run(_closed_loop(base, "/jf/v1/infer", service.token, concurrency, 1.0))  # warm up both
        asyncio.run(_closed_loop(base, "/echo", None, concurrency, 1.0))
        ours, plain, errors = [], [], 0
        for _ in range(rounds):
            ok, bad = asyncio.run(_closed_loop(base, "/jf/v1/infer", service.token, concurrency, seconds))
            ours.append(ok / seconds)
            errors += bad
            ok, bad = asyncio.run(_closed_loop(base, "/echo", None, concurrency, seconds))
            plain.append(ok / seconds)
            errors += bad
        stats = service.scheduler().stats.remote().result()
        service.delete()
        serve.delete("bench-echo")
    finally:
        serve.shutdown()
        ray.shutdown()
    jf, echo = statistics.mean(ours), statistics.mean(plain)
    return {
        "jetfleet_rps": round(jf, 1),
        "serve_batch_echo_rps": round(echo, 1),
        "ratio": round(jf / echo, 3) if echo else None,
        "goal_ratio": 0.9,
        "rounds_jetfleet_rps": [round(x, 1) for x in ours],
        "rounds_echo_rps": [round(x, 1) for x in plain],
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "http_errors": errors,
        "scheduler_completed": stats["completed"],
        "scheduler_decisions": stats["decisions"],
    }


def _queue_of(n: int, seed: int = 0) -> list[Request]:
    rng = np.random.default_rng(seed)
    arrivals = np.sort(rng.uniform(0.0, 10.0, n))
    return [
        Request(i, float(t), int(rng.integers(1, 9)), float(rng.uniform(1.0, 20.0)), stream=f"camera{i % 4}")
        for i, t in enumerate(arrivals)
    ]


def decision_time(policies: tuple[str, ...], n_queued: int = 10_000, calls: int = 300) -> dict[str, Any]:
    """p50/p99 wall time of `decide` with `n_queued` requests queued and every device idle."""
    from costmodel.factory import make_cost_model
    from jetfleet.errors import UnknownNameError
    from policies.queue import RequestQueue
    from policies.registry import make_policy

    fleet = load_fleet("loudva-cluster")
    cost = make_cost_model("lgbm")
    queue = RequestQueue(_queue_of(n_queued))
    now_s = 10.0
    out: dict[str, Any] = {"n_queued": n_queued, "fleet": fleet.name, "calls": calls}
    for name in policies:
        try:
            out[name] = _decide_times(make_policy(name), fleet, queue, cost, now_s, calls)
        except UnknownNameError:
            out[name] = "not registered"
        except Exception as e:  # noqa: BLE001 - one broken policy must not hide the others' figures
            out[name] = f"failed: {type(e).__name__}: {e}"
    out["goal_p99_ms"] = 1.0
    return out


def _decide_times(policy: Any, fleet: Any, queue: Any, cost: Any, now_s: float, calls: int) -> dict[str, float]:
    from benchmarks.preloaded import preloaded_core
    from jetfleet.catalogue import get_kind

    devices = [DeviceState(d.name, d.kind, get_kind(d.kind).max_freq_hz, now_s, 0, now_s) for d in fleet.devices]
    core = preloaded_core(policy, cost, devices, list(queue))
    times = []
    for i in range(calls):
        ctx = core.context(now_s + i * 1e-4)
        t0 = time.perf_counter()
        policy.decide(ctx)
        times.append(time.perf_counter() - t0)
    arr = np.array(times[min(10, calls // 10) :]) * 1e3
    p50, p99 = np.percentile(arr, [50, 99]).tolist()
    return {"p50_ms": round(p50, 4), "p99_ms": round(p99, 4)}


def run(quick: bool = False) -> dict[str, Any]:
    decision = decision_time(("jetfleet", "loudva", "transparent"), calls=100 if quick else 300)
    http = http_overhead(quick)
    for key, value in (("http", http), ("decision", decision)):
        print(f"   {key}: {json.dumps(value)}", flush=True)
    return {"http": http, "decision": decision}
