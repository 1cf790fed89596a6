"""The data path: links in the inventory, frame sizes from the models, transfers in the cost view, the planner's
pace, and the emulated device that waits for its input."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import numpy as np
import pytest
from device_fakes import LinearDeviceModel

from actors.device import DeviceRuntime
from cluster.inventory import DeviceSpec, fleet_from_dict, load_fleet
from costmodel.base import CostGrid
from costmodel.device_models import OracleCostModel
from costmodel.frames import frame_bytes
from costmodel.view import CostView
from jetfleet.catalogue import CATALOGUE, get_kind
from jetfleet.errors import ConfigError
from jetfleet.links import DEFAULT_LINKS, GBE, LINK_SOURCES, LOCAL, TCP_GOODPUT, Link, default_link
from jetfleet.types import Batch, DeviceState, Dispatch, Request
from policies.jetfleet import JetfleetConfig, JetfleetPolicy, PowerConfig
from policies.planning import Margins, derive_tables, overlapped
from simulator.engine import simulate

INCEPTION_FRAME_BYTES = 3 * 299 * 299 * 4  # LoudVA's InceptionV3 input: FP32 3 x 299 x 299


# -- links ------------------------------------------------------------------------------------------------------
def test_gigabit_goodput_is_the_tcp_share_of_the_line_rate_and_one_inception_frame_takes_9_6_ms():
    assert pytest.approx(0.9415, abs=1e-4) == TCP_GOODPUT
    assert GBE.bandwidth_bps == pytest.approx(941.5e6, rel=1e-3)
    assert GBE.transfer_s(INCEPTION_FRAME_BYTES) == pytest.approx(0.0005 + 8 * 1_072_812 / 941.5e6, rel=1e-3)
    assert GBE.transfer_s(INCEPTION_FRAME_BYTES) == pytest.approx(0.0096, abs=1e-4)


def test_nothing_crosses_a_local_link_or_an_empty_batch():
    assert LOCAL.local and LOCAL.transfer_s(10**9) == 0.0
    assert GBE.transfer_s(0) == 0.0
    assert not Link(math.inf, 0.001).local and Link(math.inf, 0.001).transfer_s(1) == pytest.approx(0.001)


@pytest.mark.parametrize("bandwidth, latency", [(0.0, 0.0), (-1.0, 0.0), (math.nan, 0.0), (1e9, -0.1), (1e9, math.inf)])
def test_a_link_refuses_impossible_figures(bandwidth: float, latency: float):
    with pytest.raises(ConfigError, match="link"):
        Link(bandwidth, latency)


@pytest.mark.parametrize("key", sorted(CATALOGUE))
def test_every_kind_has_a_default_link_with_its_source(key: str):
    assert key in DEFAULT_LINKS and LINK_SOURCES[key]
    assert default_link(key) is DEFAULT_LINKS[key]
    if key.startswith(("jetson", "xavier", "agx", "orin")):
        assert not default_link(key).local  # a Jetson is across the network from its controller


# -- the inventory ----------------------------------------------------------------------------------------------
def test_an_inventory_entry_overrides_its_kinds_link():
    fleet = fleet_from_dict(
        {
            "devices": [
                {"name": "a", "kind": "agx-xavier"},
                {"name": "b", "kind": "agx-xavier", "link_mbps": 100},
                {"name": "c", "kind": "agx-xavier", "link_latency_ms": 2},
            ]
        }
    )
    assert fleet.device("a").link == GBE
    assert fleet.device("b").link == Link(100e6, GBE.latency_s)
    assert fleet.device("c").link == Link(GBE.bandwidth_bps, 0.002)


@pytest.mark.parametrize("field, value", [("link_mbps", 0), ("link_mbps", -5), ("link_latency_ms", -1)])
def test_a_bad_link_names_the_file_the_device_and_the_field(tmp_path: Path, field: str, value: float):
    path = tmp_path / "fleet.yaml"
    path.write_text(f"devices:\n  - {{name: a0, kind: agx-xavier, {field}: {value}}}\n")
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "device 'a0'" in message and field in message


# -- frames -----------------------------------------------------------------------------------------------------
def test_a_frame_is_its_models_input_tensor():
    assert frame_bytes("inceptionv3") == INCEPTION_FRAME_BYTES == 1_072_812
    assert frame_bytes("resnet50") == 3 * 224 * 224 * 4
    assert frame_bytes("mobilenetv2-1.0-96") == 3 * 96 * 96 * 4  # a variant ships its own input side
    assert frame_bytes("efficientnet") == frame_bytes("efficientnet-b3")  # a family: its reference variant


# -- the cost view ----------------------------------------------------------------------------------------------
class _Cost:
    """latency = 0.05 s * batch * 400 MHz / f, energy = 5 W * latency; idle 1 W + f / GHz."""

    def predict_grid(self, kind, model, freqs_hz, batches):
        f, b = np.asarray(freqs_hz, float), np.asarray(batches)
        latency = 0.05 * b[None, :] * 400e6 / f[:, None]
        return CostGrid(kind, model, f, b, latency, 5.0 * latency)

    def idle_power_w(self, kind, freq_hz):
        return 1.0 + freq_hz / 1e9


FREQS = (200e6, 400e6)
SLOW = Link(80e6, 0.005)  # 107 ms per inceptionv3 frame


def test_a_linked_grid_adds_each_batchs_transfer_and_the_floor_power_over_it():
    view = CostView(_Cost())
    compute = view.grid("k", "inceptionv3", FREQS, 4)
    linked = view.grid("k", "inceptionv3", FREQS, 4, link=SLOW)
    transfer = np.array([SLOW.transfer_s(b * INCEPTION_FRAME_BYTES) for b in range(1, 5)])
    assert np.allclose(linked.latency_s, compute.latency_s + transfer[None, :])
    floor_w = 1.2  # the lowest idle power of the listed clocks
    assert np.allclose(linked.energy_j, compute.energy_j + floor_w * transfer[None, :])
    assert np.allclose(linked.compute_s(), compute.latency_s)
    assert linked.link == SLOW and compute.link == LOCAL
    assert view.grid("k", "inceptionv3", FREQS, 4, link=SLOW) is linked  # kept


def test_a_transfer_adds_no_energy_above_the_floor_so_no_clock_is_penalised():
    """Marginal joules per frame (above the floor) are the same with and without the link."""
    view = CostView(_Cost())
    idle = view.idle_w("k", FREQS)
    local = derive_tables(view.grid("k", "inceptionv3", FREQS, 4), idle, Margins(), 4)
    linked = derive_tables(view.grid("k", "inceptionv3", FREQS, 4, link=SLOW), idle, Margins(), 4)
    assert np.allclose(linked.marginal_epf_j, local.marginal_epf_j)


def test_derived_tables_are_kept_per_link():
    """The same policy key over two links' grids gives each its own tables, not the other's."""
    view = CostView(_Cost())
    a = view.grid("k", "inceptionv3", FREQS, 2, link=SLOW)
    b = view.grid("k", "inceptionv3", FREQS, 2, link=GBE)
    assert view.derived("key", a, lambda: float(a.latency_s[0, 0])) == pytest.approx(a.latency_s[0, 0])
    assert view.derived("key", b, lambda: float(b.latency_s[0, 0])) == pytest.approx(b.latency_s[0, 0])


def test_latency_of_one_batch_includes_its_transfer():
    view = CostView(_Cost())
    plain = view.latency_s("k", "inceptionv3", FREQS, 400e6, 2)
    assert view.latency_s("k", "inceptionv3", FREQS, 400e6, 2, SLOW) == pytest.approx(
        plain + SLOW.transfer_s(2 * INCEPTION_FRAME_BYTES)
    )


# -- the emulated device ----------------------------------------------------------------------------------------
def _batch(n: int) -> Batch:
    reqs = (Request(1, 0.0, n, 10.0, model="inceptionv3"),)
    return Batch(1, Dispatch("nano0", (1,), get_kind("jetson-nano").max_freq_hz, "inceptionv3"), reqs, 0.0)


def _elapsed(spec: DeviceSpec, n: int) -> tuple[float, float]:
    runtime = DeviceRuntime(spec, speed_factor=1.0, device_model=LinearDeviceModel("jetson-nano"))
    t0 = time.perf_counter()
    run = asyncio.run(runtime.run_batch(_batch(n)))
    assert run.result.ok
    return time.perf_counter() - t0, run.device_latency_s


def test_an_emulated_device_waits_for_its_input_outside_its_measured_latency():
    """Two frames over a 40 Mbit/s link take 0.43 s to arrive: the batch is answered no sooner, and the device's
    own latency (what the cost model learns from) does not include the wait."""
    slow = DeviceSpec(name="nano0", kind="jetson-nano", link_mbps=40, link_latency_ms=1)
    transfer_s = Link(40e6, 0.001).transfer_s(2 * INCEPTION_FRAME_BYTES)
    elapsed_s, device_s = _elapsed(slow, 2)
    assert elapsed_s >= transfer_s + device_s - 0.01
    assert device_s < transfer_s
    local = DeviceSpec(name="nano0", kind="jetson-nano", link_mbps=1e6, link_latency_ms=0)
    assert _elapsed(local, 2)[0] < transfer_s


# -- the planner ------------------------------------------------------------------------------------------------
def test_overlapped_tables_charge_only_the_transfer_that_outlasts_the_lead():
    view = CostView(_Cost())
    linked = view.grid("k", "inceptionv3", FREQS, 4, link=SLOW)
    tables = derive_tables(linked, view.idle_w("k", FREQS), Margins(), 4)
    lead_s = 0.15  # the device is free in 150 ms: one frame's transfer (107 ms) fits, two (0.22 s) do not
    over = overlapped(tables, lead_s)
    hidden = np.minimum(linked.transfer_s, lead_s)
    assert np.allclose(over.latency_s, tables.latency_s - hidden[None, :])
    assert np.allclose(over.padded_s, Margins().padded(over.latency_s))
    assert np.allclose(over.fastest_padded_s, over.padded_s.min(axis=0))
    # Everything else is the source's (shared, read-only); the source is untouched and keeps its own memo.
    assert over.energy_j is tables.energy_j and over.cap == tables.cap and over.transfer_s is tables.transfer_s
    assert not np.allclose(tables.latency_s, over.latency_s) and over.memo is not tables.memo
    assert isinstance(over, type(tables)) and not over.latency_s.flags.writeable
    assert overlapped(tables, 0.0) is tables
    local = derive_tables(view.grid("k", "inceptionv3", FREQS, 4), view.idle_w("k", FREQS), Margins(), 4)
    assert overlapped(local, 1.0) is local


def test_a_lead_that_hides_every_transfer_gets_the_same_overlapped_tables_each_time():
    view = CostView(_Cost())
    linked = view.grid("k", "inceptionv3", FREQS, 4, link=SLOW)
    tables = derive_tables(linked, view.idle_w("k", FREQS), Margins(), 4)
    longest_s = float(linked.transfer_s.max())
    hidden = overlapped(tables, longest_s)
    assert overlapped(tables, longest_s + 5.0) is hidden  # kept with the tables: so is what is derived from them
    assert np.array_equal(hidden.latency_s, tables.latency_s - linked.transfer_s[None, :])
    shorter = overlapped(tables, 0.15)  # a lead some transfer outlasts: worked out for that lead
    assert shorter is not hidden and overlapped(tables, 0.15) is not shorter
    assert np.array_equal(shorter.latency_s, tables.latency_s - np.minimum(linked.transfer_s, 0.15)[None, :])


def test_a_device_behind_a_link_may_take_one_batch_more_than_a_local_one():
    policy = JetfleetPolicy()
    far = DeviceState("a", "agx-xavier", 1e9, link=GBE)
    near = DeviceState("b", "agx-xavier", 1e9)
    assert policy.limit(far) == policy.limit(near) + 1 == 2
    assert JetfleetPolicy(JetfleetConfig(overlap_transfers=False)).limit(far) == 1


def test_the_planner_counts_a_wake_under_way_before_a_batch_starts():
    policy = JetfleetPolicy()
    waking = DeviceState("a", "agx-xavier", 1e9, awake_at_s=12.0)
    assert policy.ready_s(10.0, waking) == pytest.approx(12.0)
    assert policy.ready_s(13.0, waking) == pytest.approx(13.0)


def test_behind_a_link_overlapping_transfers_keeps_a_heavy_load_in_slo():
    """One AGX Xavier behind GbE at 48 frames/s (4-frame requests, 3 s SLOs): one batch at a time leaves the GPU
    idle during every transfer and misses about a fifth of the frames; shipping the next batch while the device
    computes keeps them all."""
    rng = np.random.default_rng(1)
    arrivals = np.cumsum(rng.exponential(1 / 12, 480))
    requests = [Request(i, float(t), 4, 3.0, "inceptionv3") for i, t in enumerate(arrivals)]
    fleet, cost = load_fleet("agx"), OracleCostModel()
    results = {
        overlap: simulate(requests, fleet, JetfleetPolicy(JetfleetConfig(overlap_transfers=overlap)), cost)
        for overlap in (True, False)
    }
    assert results[True].metrics.pct_frames_within_slo == pytest.approx(100.0)
    assert results[False].metrics.pct_frames_within_slo < 90.0
    assert results[True].metrics.frames_per_joule > results[False].metrics.frames_per_joule


def test_the_next_batch_is_sent_to_a_busy_device_shortly_before_its_transfer_must_start():
    """Behind a link, a device computing a batch gets the next one only once the rest of its run is at most the next
    batch's transfer plus a little (committing it earlier would tie the work to this device); until then the policy
    asks to be woken when the transfer must start."""
    from policy_harness import arrive, decide

    from policies.queue import RequestQueue

    slow = Link(80e6, 0.0)  # 4 frames of inceptionv3: 0.43 s
    transfer_s = slow.transfer_s(4 * INCEPTION_FRAME_BYTES)

    def step(busy_for_s: float, slo_s: float):
        policy = JetfleetPolicy(JetfleetConfig(power=PowerConfig(enabled=False)))
        queue = RequestQueue()
        arrive(policy, 0.0, Request(1, 0.0, 4, slo_s, "inceptionv3"), queue)
        device = DeviceState("a", "agx-xavier", 1377e6, busy_until_s=busy_for_s, in_flight=1, link=slow)
        return decide(policy, 0.0, queue, [device], OracleCostModel())

    early = step(2.0, 30.0)
    assert not early.dispatches and early.wake_at_s == pytest.approx(2.0 - transfer_s, abs=0.01)
    in_time = step(transfer_s, 2.0)
    assert [d.request_ids for d in in_time.dispatches] == [(1,)]
