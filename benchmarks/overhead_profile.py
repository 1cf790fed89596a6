"""Where the live path's CPU goes: per-process CPU per request of jetfleet's path and of the `@serve.batch`
echo, side by side in one cluster, as `bench_overhead` sets them up (psutil; not part of `make bench`).

    python -m benchmarks.overhead_profile [ROUNDS] [SECONDS] [CONCURRENCY]      (defaults 5 6 64)

Prints the requests/s of each round (ROUNDS pairs, ABBA order), the paired and pooled ratios (as
`bench_overhead` reports them), and per process (Serve proxy, ingress, scheduler and device replicas and
hosts, echo, Ray's own) milliseconds of CPU per completed request. It starts a local Ray cluster of its own.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PROCESS_KEYS = (
    "ProxyActor",
    "ingress",
    "scheduler",
    "device-agx0",
    "DeviceHost",
    "SchedulerHost",
    "echo",
    "raylet",
    "gcs_server",
    "ServeController",
)


def _processes() -> dict[str, list[Any]]:
    import psutil

    out: dict[str, list[Any]] = {}
    for p in psutil.Process().children(recursive=True):  # this run's cluster only (started in-process)
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        key = next((k for k in PROCESS_KEYS if k in cmd), None)
        if key is not None:
            out.setdefault(key, []).append(p)
    return out


def _cpu_s(processes: dict[str, list[Any]]) -> dict[str, float]:
    import psutil

    totals: dict[str, float] = {}
    for key, group in processes.items():
        total = 0.0
        for p in group:
            try:
                t = p.cpu_times()
            except psutil.Error:  # a process that ended meanwhile
                continue
            total += t.user + t.system
        totals[key] = total
    me = psutil.Process().cpu_times()
    totals["client(driver)"] = me.user + me.system
    return totals


def profile(rounds: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """`rounds` pairs of rounds of both paths (ABBA order); requests/s per round, the paired ratios, and CPU ms
    per request per process."""
    from benchmarks.bench_overhead import abba, paired_ratios, serving_side_by_side

    with serving_side_by_side(concurrency) as both:
        processes = _processes()
        cpu: dict[str, dict[str, float]] = {name: {} for name in both.paths}
        done = dict.fromkeys(both.paths, 0)
        rates: dict[str, list[float]] = {name: [] for name in both.paths}
        for name in abba(rounds):
            before = _cpu_s(processes)
            ok, _ = both.round(name, seconds)
            after = _cpu_s(processes)
            done[name] += ok
            rates[name].append(round(ok / seconds, 1))
            for key, value in after.items():
                cpu[name][key] = cpu[name].get(key, 0.0) + value - before.get(key, 0.0)
    per_request = {
        name: {k: round(v / max(done[name], 1) * 1e3, 2) for k, v in sorted(cpu[name].items(), key=lambda kv: -kv[1])}
        for name in cpu
    }
    return {
        "rounds_rps": rates,
        **paired_ratios(rates["jetfleet"], rates["echo"]),
        "cpu_ms_per_request": per_request,
        "cpu_ms_per_request_total": {name: round(sum(v.values()), 2) for name, v in per_request.items()},
    }


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:4]]
    rounds, seconds, concurrency = (args + [5, 6, 64][len(args) :])[:3]
    print(json.dumps(profile(int(rounds), seconds, int(concurrency)), indent=2))
