"""Overhead of the live path, and the policy's decision time with a long queue.

- `http`: requests per second through HTTP -> ingress -> scheduler actor -> device deployment (one emulated
  device whose engine takes no time: speed factor 1e6), against a plain Ray Serve deployment whose
  `@serve.batch` method does the same echo, both deployed in one Ray cluster and measured side by side, in
  pairs of rounds, by the same closed-loop client (aiohttp, `concurrency` requests in flight). The policy
  is `transparent` (send what waits to the idle device at once), so the figure is the mechanism's cost, not a
  policy's choice to wait. Goal (issue 9): ratio >= 0.9.
  `ratio` is the median of the pairs' ratios: on a shared 2-core machine one round's rate swings by a third
  with what else runs, and the two rounds of a pair see the same spell. The pairs alternate which path goes
  first (ABBA), so a spell that starts or ends within a pair favours neither. The pooled ratio (all requests
  of one path over all of the other's) is reported beside it.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


@dataclass
class SideBySide:
    """jetfleet's path and the echo, served by one local cluster (`serving_side_by_side`)."""

    base_url: str
    service: Any  # deployments.app.Service
    concurrency: int
    paths: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (path, bearer token)

    def round(self, name: str, seconds: float) -> tuple[int, int]:
        """One closed-loop round against `name`'s path: requests answered 200, and the others."""
        path, token = self.paths[name]
        return asyncio.run(_closed_loop(self.base_url, path, token, self.concurrency, seconds))


@contextmanager
def serving_side_by_side(concurrency: int) -> Iterator[SideBySide]:
    """A local Ray cluster serving jetfleet's path (one emulated AGX Xavier whose engine takes no time, the
    `transparent` policy) and the `@serve.batch` echo, both warmed up; shut down on exit."""
    import ray
    from ray import serve

    from cluster.local import free_port, start_in_process
    from deployments.app import ServiceConfig, deploy

    fleet = fleet_from_dict({"name": "bench", "devices": [{"name": "agx0", "kind": "agx-xavier"}]})
    start_in_process(fleet)
    try:
        config = ServiceConfig(
            fleet,
            policy="transparent",
            cost="oracle",
            app_name="bench-jetfleet",
            route_prefix="/jf",
            device_speed_factor=1e6,
        )
        service = deploy(config, http_port=free_port())
        serve.run(_echo_app(), name="bench-echo", route_prefix="/echo")
        both = SideBySide(service.url.removesuffix("/jf"), service, concurrency)
        both.paths = {"jetfleet": ("/jf/v1/infer", service.token), "echo": ("/echo", None)}
        for name in both.paths:
            both.round(name, 1.0)  # warm up
        yield both
        service.delete()
        serve.delete("bench-echo")
    finally:
        serve.shutdown()
        ray.shutdown()


def abba(pairs: int) -> Iterator[str]:
    """The order of the rounds: jetfleet then echo, echo then jetfleet, and so on (`pairs` of each)."""
    for pair in range(pairs):
        yield from ("jetfleet", "echo") if pair % 2 == 0 else ("echo", "jetfleet")


def http_overhead(quick: bool = False) -> dict[str, Any]:
    """Side-by-side requests/s of jetfleet's path and a plain @serve.batch echo (see the module docstring)."""
    concurrency, seconds, pairs = (32, 3.0, 2) if quick else (64, 5.0, 8)
    rates: dict[str, list[float]] = {"jetfleet": [], "echo": []}
    errors = 0
    with serving_side_by_side(concurrency) as both:
        for name in abba(pairs):
            ok, bad = both.round(name, seconds)
            rates[name].append(ok / seconds)
            errors += bad
        stats = both.service.scheduler().stats.remote().result()
    ours, plain = rates["jetfleet"], rates["echo"]
    return {
        "jetfleet_rps": round(statistics.median(ours), 1),
        "serve_batch_echo_rps": round(statistics.median(plain), 1),
        **paired_ratios(ours, plain),
        "goal_ratio": 0.9,
        "rounds_jetfleet_rps": [round(x, 1) for x in ours],
        "rounds_echo_rps": [round(x, 1) for x in plain],
        "concurrency": concurrency,
        "seconds_per_round": seconds,
        "http_errors": errors,
        "scheduler_completed": stats["completed"],
        "scheduler_decisions": stats["decisions"],
    }


def paired_ratios(ours: list[float], plain: list[float]) -> dict[str, Any]:
    """`ratio`: the median of the per-pair ratios ours/plain (pairs whose plain rate is 0 left out; None when
    none is left); `pooled_ratio`: all of ours over all of plain; `pair_ratios`: each pair's, in order."""
    pairs = [a / b for a, b in zip(ours, plain, strict=True) if b > 0]
    return {
        "ratio": round(statistics.median(pairs), 3) if pairs else None,
        "pooled_ratio": round(sum(ours) / sum(plain), 3) if sum(plain) > 0 else None,
        "pair_ratios": [round(r, 3) for r in pairs],
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
