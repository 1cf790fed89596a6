"""Soak: resident memory of every jetfleet process under steady load (issue 12: memory must not grow with requests).

The `demo` fleet (four emulated devices, 100x time compression so the devices are never the bottleneck) behind
the HTTP API with the service's defaults (`jetfleet` under SLO admission, the LightGBM cost model) takes a
steady paced load of 1-frame inceptionv3 requests (SLO 2 s) for `duration_s` (20 minutes; `--quick` 2). The RSS
of each Serve replica (ingress, scheduler, one per device) and of the HTTP proxy is read with psutil after a
warm-up (the first requests load the cost model and fill caches) and at the end. Goal: growth <= 20 MB per
process. Ray runs with token authentication on, no dashboard, 2 CPUs.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

GOAL_GROWTH_MB = 20.0
APP = "soak"
BODY = {"model": "inceptionv3", "slo_ms": 2000, "frames": 1}
# Clients in flight: jetfleet holds a request up to its SLO to batch it with the next ones, so a paced client waits
# ~2 s per answer; 100 of them, each sending every 2.5 s, keep the 40 requests/s (8 did only 4/s).
WORKERS = 100


def _processes(app: str) -> dict[str, int]:
    """{name: pid} of the app's Serve replicas (by deployment name), of the host actors they own (the scheduler's
    and each device's: where the scheduler and the devices really run, `deployments.hosts`; numbered in pid order,
    their titles do not name the device) and of Serve's HTTP proxy, found by the process titles Ray gives its
    workers (`ray::ServeReplica:<app>:<deployment>...`, `ray::SchedulerHost...`; no dashboard needed)."""
    import psutil

    out: dict[str, int] = {}
    device_hosts: list[int] = []
    prefix = f"ray::ServeReplica:{app}:"
    for proc in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or ())
        if title.startswith(prefix):
            out[title[len(prefix) :].split(".")[0].split()[0]] = proc.info["pid"]
        elif title.startswith("ray::ProxyActor"):
            out["proxy"] = proc.info["pid"]
        elif title.startswith("ray::SchedulerHost"):
            out["scheduler-host"] = proc.info["pid"]
        elif title.startswith("ray::DeviceHost"):
            device_hosts.append(proc.info["pid"])
    out.update({f"device-host-{i}": pid for i, pid in enumerate(sorted(device_hosts), start=1)})
    return out


def _rss_mb(pids: dict[str, int]) -> dict[str, float | None]:
    import psutil

    out: dict[str, float | None] = {}
    for name, pid in pids.items():
        try:
            out[name] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except psutil.Error:
            out[name] = None  # the process is gone (a replica restarted): reported, never hidden
    return out


def _growth(start_mb: float | None, end_mb: float | None) -> float | None:
    return None if start_mb is None or end_mb is None else round(end_mb - start_mb, 1)


async def _paced_load(url: str, token: str | None, rate_per_s: float, seconds: float, workers: int) -> dict[str, int]:
    """`workers` clients, each sending one request every `workers / rate_per_s` seconds: HTTP status counts."""
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps(BODY)
    counts: dict[str, int] = {}
    period_s = workers / rate_per_s
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(base_url=url.rstrip("/") + "/", headers=headers) as session:

        async def worker(offset_s: float) -> None:
            await asyncio.sleep(offset_s)
            next_s = time.monotonic()
            while next_s < deadline and time.monotonic() < deadline:  # slow answers must not stretch the run
                try:
                    async with session.post("v1/infer", data=body) as resp:
                        await resp.read()
                        key = str(resp.status)
                except aiohttp.ClientError as e:
                    key = type(e).__name__
                counts[key] = counts.get(key, 0) + 1
                next_s += period_s
                await asyncio.sleep(max(0.0, next_s - time.monotonic()))

        await asyncio.gather(*(worker(i * period_s / workers) for i in range(workers)))
    return counts


def run(quick: bool = False) -> dict[str, Any]:
    import ray
    from ray import serve

    from cluster.inventory import load_fleet
    from cluster.local import free_port, start_in_process
    from deployments.app import ServiceConfig, deploy

    warmup_s, duration_s, rate_per_s = (20.0, 120.0, 40.0) if quick else (60.0, 1200.0, 40.0)
    fleet = load_fleet("demo")
    start_in_process(fleet)
    try:
        config = ServiceConfig(fleet, app_name=APP, route_prefix="/soak", time_scale=100.0)
        service = deploy(config, http_port=free_port())
        pids = _processes(APP)
        warm = asyncio.run(_paced_load(service.url, service.token, rate_per_s, warmup_s, WORKERS))
        start = _rss_mb(pids)
        counts = asyncio.run(_paced_load(service.url, service.token, rate_per_s, duration_s, WORKERS))
        end = _rss_mb(pids)
        stats = service.scheduler().stats.remote().result()
        service.delete()
    finally:
        serve.shutdown()
        ray.shutdown()
    growth = {k: _growth(start[k], end.get(k)) for k in start}
    requests = sum(counts.values())
    return {
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "rate_per_s": rate_per_s,
        "requests": requests,
        "http_status": counts,
        "warmup_http_status": warm,
        "rss_start_mb": start,
        "rss_end_mb": end,
        "rss_growth_mb": growth,
        "goal_growth_mb": GOAL_GROWTH_MB,
        "within_goal": all(g is not None and g <= GOAL_GROWTH_MB for g in growth.values()),
        "scheduler_submitted": stats["submitted"],
        "scheduler_open": stats["open"],
        "run_window": stats["run"].get("window"),
    }
