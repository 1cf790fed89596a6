"""Model variants (costmodel.variants), the stream planner and policy (policies.variants), the experiment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from policy_harness import view_of

from cluster.inventory import fleet_from_dict
from costmodel.device_models import OracleCostModel, device_model
from costmodel.model_zoo import MODELS
from costmodel.variants import (
    FAMILIES,
    VARIANTS,
    VariantCostModel,
    VariantDeviceModel,
    family_variants,
    get_variant,
    reference_variant,
    resolve,
)
from jetfleet.catalogue import get_kind
from jetfleet.errors import UnknownNameError
from jetfleet.types import DeviceState, Request
from policies.context import with_device_facts
from policies.variants import (
    ClientInfo,
    JetfleetVariantPlanner,
    JetfleetVariantsPolicy,
    PlanTimeline,
    StreamPlan,
    credited_accuracy,
)

AGX = get_kind("agx-xavier").max_freq_hz
DEVICES = [
    with_device_facts(DeviceState("agx0", "agx-xavier", AGX)),
    with_device_facts(DeviceState("nx0", "xavier-nx", get_kind("xavier-nx").max_freq_hz)),
]
COST = VariantCostModel(OracleCostModel())
VIEW = view_of(COST)  # what a planner reads: the core's cost view


def test_every_variant_scales_a_zoo_model_and_names_its_source():
    for v in VARIANTS.values():
        assert v.base in MODELS
        assert v.source and 0 < v.accuracy_pct < 100 and v.latency_scale > 0


def test_within_a_family_more_accuracy_costs_more():
    for family, variants in FAMILIES.items():
        if family == "resnet":  # each ResNet is its own base: its cost comes from the device models
            continue
        scales = [v.latency_scale for v in variants]
        accuracy = [v.accuracy_pct for v in variants]
        assert scales == sorted(scales) and accuracy == sorted(accuracy), family


def test_family_names_resolve_to_their_reference_variant():
    assert reference_variant("efficientnet").name == "efficientnet-b3"
    assert resolve("mobilenetv2").input_hw == 224
    assert resolve("inceptionv3") is None
    with pytest.raises(UnknownNameError, match="model variant"):
        get_variant("efficientnet-b9")


def test_variant_device_model_scales_latency_and_energy_of_its_base():
    base = device_model("agx-xavier")
    wrapped = VariantDeviceModel(base)
    v = get_variant("efficientnet-b0")
    assert wrapped.latency_s(v.name, 4, AGX) == pytest.approx(v.latency_scale * base.latency_s(v.base, 4, AGX))
    assert wrapped.energy_j(v.name, 4, AGX) == pytest.approx(v.latency_scale * base.energy_j(v.base, 4, AGX))
    assert wrapped.latency_s("efficientnet", 1, AGX) == pytest.approx(base.latency_s("efficientnet-b3", 1, AGX))


def test_variant_cost_model_grid_matches_the_device_model():
    grid = COST.predict_grid("agx-xavier", "mobilenetv2-1.0-128", np.array([AGX]), np.array([1, 2]))
    truth = VariantDeviceModel(device_model("agx-xavier"))
    assert grid.latency_s[0, 1] == pytest.approx(truth.latency_s("mobilenetv2-1.0-128", 2, AGX))


def test_credit_is_capped_by_the_uploaded_resolution():
    assert credited_accuracy("mobilenetv2", "mobilenetv2-1.0-128") == get_variant("mobilenetv2-1.0-128").accuracy_pct
    assert credited_accuracy("mobilenetv2-1.0-96", "mobilenetv2") == get_variant("mobilenetv2-1.0-96").accuracy_pct


def test_timeline_gives_the_plan_in_force():
    timeline = PlanTimeline()
    timeline.add(StreamPlan(0.0, {"c0": "a"}))
    timeline.add(StreamPlan(0.5, {"c0": "b"}))
    assert timeline.variant_at("c0", 0.49) == "a" and timeline.variant_at("c0", 0.5) == "b"
    assert timeline.at(-1.0) is None


def _clients(n, mbps, fps=25.0, slo_s=0.1):
    return [ClientInfo(f"c{i}", "mobilenetv2", fps, slo_s, mbps) for i in range(n)]


def test_planner_gives_more_bandwidth_at_least_as_much_accuracy():
    planner = JetfleetVariantPlanner()
    slow = planner.replan(0.0, _clients(1, 2.0, slo_s=0.075), DEVICES, VIEW)
    fast = planner.replan(0.0, _clients(1, 80.0, slo_s=0.075), DEVICES, VIEW)
    acc = lambda plan: get_variant(plan.variant["c0"]).accuracy_pct  # noqa: E731
    assert acc(fast) >= acc(slow)
    assert acc(fast) == max(v.accuracy_pct for v in family_variants("mobilenetv2"))


def test_planner_trades_accuracy_for_capacity_under_load():
    planner = JetfleetVariantPlanner()
    few = planner.replan(0.0, _clients(1, 50.0), DEVICES, VIEW)
    many = planner.replan(0.0, _clients(16, 50.0), DEVICES, VIEW)
    mean = lambda plan: np.mean([get_variant(v).accuracy_pct for v in plan.variant.values()])  # noqa: E731
    assert mean(many) < mean(few)


def test_planner_falls_back_to_the_cheapest_variant_when_nothing_fits():
    plan = JetfleetVariantPlanner().replan(0.0, _clients(1, 0.1, slo_s=0.02), DEVICES, VIEW)
    assert plan.variant["c0"] == family_variants("mobilenetv2")[0].name


def test_policy_serves_the_variant_planned_at_capture_time():
    from simulator.engine import simulate

    fleet = fleet_from_dict({"name": "one", "devices": [{"name": "agx0", "kind": "agx-xavier"}]})
    policy = JetfleetVariantsPolicy()
    policy.timeline.add(StreamPlan(0.0, {"c0": "mobilenetv2-1.0-128"}, kinds={"mobilenetv2-1.0-128": ("agx-xavier",)}))
    policy.timeline.add(StreamPlan(1.0, {"c0": "mobilenetv2-1.0-192"}, kinds={"mobilenetv2-1.0-192": ("agx-xavier",)}))
    requests = [Request(i, 0.1 + 0.4 * i, 1, 0.1, model="mobilenetv2", stream="c0", upload_s=0.01) for i in range(4)]
    truth = {"agx-xavier": VariantDeviceModel(device_model("agx-xavier"))}
    result = simulate(requests, fleet, policy, COST, device_models=truth)
    served = {o.request_id: o.model for o in result.outcomes}
    assert served[0] == served[1] == "mobilenetv2-1.0-128"
    assert served[3] == "mobilenetv2-1.0-192"


def test_experiment_point_counts_every_captured_frame():
    from cluster.inventory import load_fleet
    from simulator.variants_experiment import DEFAULT_FLEET, GridPoint, run_point

    fleet = load_fleet(DEFAULT_FLEET)
    for name in ("jetfleet-variants", "jellyfish"):
        row = run_point(GridPoint(1, 15.0, 0.15, "step"), name, fleet=fleet, duration_s=4.0)
        assert row.frames == 60
        assert row.within_slo + row.client_drops + row.server_drops <= row.frames
        assert 0.0 <= row.miss_rate <= 1.0
        assert 60.0 <= row.accuracy_pct <= 75.0
        assert row.energy_j > 0 and not math.isnan(row.j_per_frame)


def test_without_client_reports_the_policy_replans_on_its_own_timer():
    """Live there are no client reports: every `replan_every_s` the policy plans from the streams its arrivals
    showed (frame rate, SLO, uplink), through `wake_at_s` and `absorb`, and serves the planned variants."""
    from cluster.inventory import load_fleet
    from jetfleet.types import OutcomeStatus
    from simulator.engine import simulate

    fleet = load_fleet("configs/fleet-variants.yaml")
    models = {d.kind: VariantDeviceModel(device_model(d.kind)) for d in fleet.devices}
    requests = [Request(i, i / 25.0, 1, 0.1, model="mobilenetv2", stream=f"c{i % 4}") for i in range(250)]
    policy = JetfleetVariantsPolicy(replan_every_s=0.5)
    result = simulate(requests, fleet, policy, VariantCostModel(OracleCostModel()), device_models=models)
    times = [p.time_s for p in policy.timeline.plans]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) >= 15 and all(gap == pytest.approx(0.5, abs=0.05) for gap in gaps)
    assert set(policy.timeline.plans[-1].variant) == {"c0", "c1", "c2", "c3"}
    served = {b.model for b in result.batches}
    assert served <= {v.name for v in family_variants("mobilenetv2")} | {"mobilenetv2"}
    assert any(m != "mobilenetv2" for m in served)  # planned variants, not the family name, ran
    assert sum(o.status is OutcomeStatus.COMPLETED for o in result.outcomes) >= 0.95 * len(requests)
