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

Under host load (2026-12-03, a shared 2-core machine with other tenants, and with a busy loop beside it) the
`jetfleet` case used to fail in about a third of the runs (4 of 5 with the busy loop): 0.70-1.04 frames/J live
against 1.284 simulated. The cause was the policy, not only the host: a loaded host delivers the arrivals bunched
(the client's sends and the ingress's batched submissions), and simulating the arrivals as the scheduler received
them reproduced the collapse (0.73-0.81) in half the runs. A burst made the active set grow from {nx0} to
{agx0, nx0}; 30 s later the shrink dropped the device least efficient at full load, chosen with whatever was queued
at that moment (the NX, once its learned latency correction made it 1 % worse than the AGX, or whichever device
alone could drain the queue), and a device napping in deep idle when it left the set stayed there (5.3 W for the
AGX). The power rules now choose who leaves by the watts the smaller set draws at the forecast, idle power
included, let the device a burst woke leave 5 s after it, and wake a napping device that left the set to suspend
it (`tests/test_power_consolidation.py`, `docs/power-states.md`). With the busy loop beside it: 8 runs at 1.204-
1.254 frames/J live against 1.284 (gaps 2.4-6.2 %, 2 of 8 over the 5 %), the AGX running 1-2 batches; the rest of
the gap is the slower host itself (batches overrun their model, the scheduler decides later), which no policy can
remove from a 5x compressed replay. A fresh-clone `.ci/run` on this shared machine then failed it once more: 1.1965
against 1.2841 (6.8 %), 725 J against 684, the 41 J about what waking the AGX for one burst and holding it 5 s costs.
Not waking devices that cannot be up before a burst's first deadline (the AGX needs 2 s out of suspend; the burst was
due in 1.4 s) removed that too in simulation (jittered demo runs 1.269-1.284), but was not landed: it changed which
device the next forecast growth picked on LoudVA's exp1-id0 4x (see `docs/power-states.md`, "tried").
Then (2026-12-03, afternoon) the drain rate that makes the set grow became the demand bound of the queue's deadlines
(a bunch due over the next 1-5 s no longer reads as a burst the NX cannot drain), and growth beyond one device ranks
by the joules per frame at the device's share of the forecast (which fixed the exp1-id0 knock-on). With the busy loop
beside it, 8 runs: 1.242-1.264 frames/J live against 1.284 (gaps 1.5-3.3 %); the tree before failed 4 of 8 the same
hour (gaps 5.8-12.3 %).
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
