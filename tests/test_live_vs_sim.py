"""Live agrees with simulated: the same workload and policy, replayed over HTTP on the emulated `demo` fleet
and run in the simulator (both consulting the default LightGBM cost model), give frames/J and % frames within
SLO within 5 % of each other.

The live run is time-compressed 5x (devices sleep a fifth of their modelled latency, the scheduler's clock
runs 5x, the load generator sends 5x faster with SLOs divided by 5), which keeps latencies, SLOs and
energies in the scenario's own seconds on both sides. Compression also multiplies the service's own overhead
(each Serve call, ~10-20 ms of wall time on a 2-core machine): at 10x a slow or shared CPU turned it into
~200 ms of scenario time per request and the live run fell 30-50 % behind the simulation (old and new code
alike), so the test compresses less. The workload is the first 120 s of LoudVA's exp1-id0
when ../shared/data is present, else of the generated scenario shipped in workloads/data/.

Known to fail under host load (2026-12-03, a shared 2-core machine with other tenants, and with a busy loop beside
it): the `jetfleet` case came out at 0.70-1.04 frames/J live against 1.284 simulated in about a third of the runs,
on this tree and on the one before it alike. In the failing runs the work moves from nx0 (the simulation's only
worker) to agx0 partway through the run (e.g. 33 then 55 batches, agx0 asleep 53 s of 122 instead of 121), while
the round trips measured stay near those of passing runs (27-47 ms wall); halving the compression to 2.5x did not
stop it under the busy loop. Recording the power planner's active set over loaded runs showed why: in a failing run
the live queue falls behind for a moment (the drain rate it needs reached 42-44 frames/s, above the Xavier NX's 37),
the active set grows to {agx0, nx0} for the 30 s `shrink_after_s`, and in some runs the shrink then keeps the AGX:
the NX's learned latency correction (its batches overran on the loaded host) took its joules per frame from 0.2734
to 0.2862, past the idle AGX's 0.2833. The simulation never falls behind, so it never grows. Breaking near-ties in
the shrink by idle power (tried, not landed: it changed 2 of the 108 fingerprint runs, +2.6 % and -0.3 % frames/J)
removed the second effect, not the first (still 3 failures in 5 loaded runs): the host being too slow for the
compressed replay is the cause, and no policy change can make the live run match a simulation of a faster host.
"""

from __future__ import annotations

import asyncio

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TIME_SCALE = 5.0
WINDOW_S = 120.0
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def workload():
    from workloads.experiment import default_scenario
    from workloads.scenarios import read_scenario

    requests = read_scenario(default_scenario())
    t0 = requests[0].arrival_s
    return [r for r in requests if r.arrival_s - t0 <= WINDOW_S]


@pytest.fixture(scope="module")
def service(ray_cluster):
    from cluster.inventory import load_fleet
    from deployments.app import ServiceConfig, deploy

    config = ServiceConfig(
        load_fleet("demo"), policy="transparent", time_scale=TIME_SCALE, app_name="live-vs-sim", route_prefix="/lvs"
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    yield svc
    svc.delete()


@pytest.mark.parametrize("policy", ["jetfleet", "loudva", "transparent"])
def test_live_matches_the_simulator_within_5_percent(service, workload, policy):
    from jetfleet.errors import UnknownNameError
    from policies.registry import make_policy
    from workloads.experiment import relative_gap, simulate_policy
    from workloads.loadgen import replay

    try:
        make_policy(policy)
    except UnknownNameError:
        pytest.skip(f"policy {policy!r} is not registered in this build")
    service.reset(policy)
    load = asyncio.run(replay(service.url, service.token, workload, time_scale=TIME_SCALE, progress=False))
    live = service.run_report()
    sim = simulate_policy(workload, service.fleet, policy, service.config.cost)
    summary = {
        k: (round(live[k], 4), round(sim[k], 4)) for k in ("frames_per_joule", "pct_frames_within_slo", "energy_j")
    }
    print(f"{policy}: (live, sim) {summary}; client {load.summary()['completed']}/{len(workload)} completed")
    assert live["requests"] == len(workload) and live["open_requests"] == 0
    assert relative_gap(live["frames_per_joule"], sim["frames_per_joule"]) <= TOLERANCE, summary
    assert relative_gap(live["pct_frames_within_slo"], sim["pct_frames_within_slo"]) <= TOLERANCE, summary
