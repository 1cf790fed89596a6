"""The Jellyfish and Juggler baselines (policies.jellyfish, policies.juggler)."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_harness import decide, view_of

from costmodel.device_models import OracleCostModel
from costmodel.variants import VariantCostModel, get_variant
from jetfleet.catalogue import get_kind
from jetfleet.types import DeviceState, DropReason, Request
from policies.context import with_device_facts
from policies.jellyfish import JellyfishPlanner, JellyfishPolicy, _knapsack
from policies.juggler import JugglerPolicy, JugglerWeights
from policies.queue import RequestQueue
from policies.variants import ClientInfo, StreamPlan

COST = VariantCostModel(OracleCostModel())
VIEW = view_of(COST)  # what a planner reads: the core's cost view
AGX, NX, NANO = (get_kind(k).max_freq_hz for k in ("agx-xavier", "xavier-nx", "jetson-nano"))
GPUS = [
    with_device_facts(DeviceState(name, kind, f))
    for name, kind, f in (("agx0", "agx-xavier", AGX), ("agx1", "agx-xavier", AGX), ("nx0", "xavier-nx", NX))
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([5, 15, 25, 30]), min_size=1, max_size=8), st.integers(0, 120))
def test_knapsack_packs_as_many_frames_per_second_as_brute_force(weights, capacity):
    chosen = _knapsack(weights, capacity)
    assert sum(weights[i] for i in chosen) <= capacity
    best = max(
        (sum(c) for r in range(len(weights) + 1) for c in combinations(weights, r) if sum(c) <= capacity), default=0
    )
    assert sum(weights[i] for i in chosen) == best


def _clients(n, mbps=50.0, fps=25.0, slo_s=0.1):
    return [ClientInfo(f"c{i}", "mobilenetv2", fps, slo_s, mbps) for i in range(n)]


def test_jellyfish_runs_one_model_per_gpu():
    plan = JellyfishPlanner().replan(0.0, _clients(6), GPUS, VIEW)
    assert set(plan.device_model) <= {g.name for g in GPUS}
    for stream, device in plan.device.items():
        assert plan.variant[stream] == plan.device_model[device]


def test_jellyfish_planning_is_seeded():
    a = JellyfishPlanner(seed=4).replan(0.0, _clients(5), GPUS, VIEW)
    b = JellyfishPlanner(seed=4).replan(0.0, _clients(5), GPUS, VIEW)
    assert a.variant == b.variant and a.device == b.device


def test_jellyfish_gives_a_lone_fast_client_the_most_accurate_variant():
    plan = JellyfishPlanner().replan(0.0, _clients(1, mbps=80.0, slo_s=0.15), GPUS, VIEW)
    assert plan.variant["c0"] == "mobilenetv2-1.4-224"


def test_jellyfish_drops_requests_that_cannot_finish_in_time():
    policy = JellyfishPolicy()
    policy.timeline.add(StreamPlan(0.0, {"c0": "mobilenetv2"}, {"c0": "agx0"}, {"agx0": 4}, {"agx0": "mobilenetv2"}))
    queue = RequestQueue(
        [Request(0, 0.0, 1, 0.001, "mobilenetv2", stream="c0"), Request(1, 0.0, 1, 0.1, "mobilenetv2", stream="c0")]
    )
    out = decide(policy, 0.0, queue, GPUS, COST)
    assert out.drops and out.drops[0].request_ids == (0,) and out.drops[0].reason is DropReason.DEADLINE_UNREACHABLE
    assert out.dispatches[0].request_ids == (1,) and out.dispatches[0].model == "mobilenetv2"


def test_juggler_prefers_the_power_efficient_device_by_default():
    devices = [DeviceState("nano0", "jetson-nano", NANO), DeviceState("agx0", "agx-xavier", AGX)]
    queue = RequestQueue([Request(0, 0.0, 1, 5.0, "resnet18")])
    out = decide(JugglerPolicy(JugglerWeights(1.0, 0.0, 0.0)), 0.0, queue, devices, COST)
    chosen = out.dispatches[0].device
    energy = {
        d.kind: COST.predict_grid(d.kind, "resnet18", np.array([f]), np.array([1])).energy_j[0, 0]
        for d, f in ((devices[0], NANO), (devices[1], AGX))
    }
    assert chosen == ("nano0" if energy["jetson-nano"] < energy["agx-xavier"] else "agx0")


def test_juggler_picks_an_accurate_variant_that_still_meets_the_deadline():
    queue = RequestQueue([Request(0, 0.0, 1, 0.02, "mobilenetv2")])
    out = decide(JugglerPolicy(), 0.0, queue, GPUS[:1], COST)
    variant = get_variant(out.dispatches[0].model)
    assert COST.predict_grid("agx-xavier", variant.name, np.array([AGX]), np.array([1])).latency_s[0, 0] <= 0.02


def test_juggler_moves_work_off_a_failed_device():
    devices = [DeviceState("agx0", "agx-xavier", AGX, healthy=False), DeviceState("agx1", "agx-xavier", AGX)]
    queue = RequestQueue([Request(0, 0.0, 1, 1.0, "resnet18")])
    out = decide(JugglerPolicy(), 0.0, queue, devices, COST)
    assert [d.device for d in out.dispatches] == ["agx1"]


def test_juggler_drops_what_no_device_can_finish():
    queue = RequestQueue([Request(0, 0.0, 1, 0.0001, "resnet18")])
    out = decide(JugglerPolicy(), 0.0, queue, GPUS, COST)
    assert out.drops[0].reason is DropReason.DEADLINE_UNREACHABLE and not out.dispatches
