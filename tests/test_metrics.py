"""The scheduler's metrics without a cluster: what `RayMetrics.flush` hands to `ray.util.metrics` (replaced
by a recording fake), and the sliding window's SLO attainment and frames/J."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from actors.metrics import MAX_STREAM_LABELS, RayMetrics, SlidingWindow, WindowSample
from jetfleet.power_states import PowerState


class _Metric:
    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] = (), boundaries=None) -> None:
        self.name, self.tag_keys, self.calls = name, tag_keys, []

    def inc(self, value: float = 1.0, tags: dict | None = None) -> None:
        self.calls.append(("inc", value, dict(tags or {})))

    def set(self, value: float, tags: dict | None = None) -> None:
        self.calls.append(("set", value, dict(tags or {})))

    def observe(self, value: float, tags: dict | None = None) -> None:
        self.calls.append(("observe", value, dict(tags or {})))


@dataclass
class _State:
    power_state: PowerState
    healthy: bool = True


@pytest.fixture
def metrics(monkeypatch):
    from ray.util import metrics as ray_metrics

    created: dict[str, _Metric] = {}

    def factory(name, *args, **kwargs):
        created[name] = _Metric(name, *args, **kwargs)
        return created[name]

    for kind in ("Counter", "Gauge", "Histogram"):
        monkeypatch.setattr(ray_metrics, kind, factory)
    clock = [0.0]
    m = RayMetrics(window_s=10.0, clock=lambda: clock[0])
    return m, created, clock


def _sum(metric: _Metric, **tags) -> float:
    return sum(v for op, v, t in metric.calls if op == "inc" and all(t.get(k) == x for k, x in tags.items()))


def test_answers_are_counted_by_model_stream_and_outcome_and_drops_by_reason(metrics):
    m, created, _ = metrics
    m.answer("completed", "", 4, True, model="resnet18", stream="cam0")
    m.answer("completed", "", 2, False, model="resnet18", stream="cam0")
    m.answer("dropped", "deadline", 3, False, model="resnet18", stream="cam1")
    m.flush()
    frames = created["jetfleet_frames_total"]
    assert _sum(frames, model="resnet18", stream="cam0", outcome="completed") == 6
    assert _sum(created["jetfleet_requests_total"], stream="cam0", outcome="completed") == 2
    assert _sum(created["jetfleet_frames_within_slo_total"], stream="cam0") == 4
    assert _sum(created["jetfleet_drops_total"], reason="deadline") == 1
    m.flush()  # nothing new: nothing counted twice
    assert _sum(frames) == 9


def test_energy_counts_run_deltas_and_survives_a_new_run(metrics):
    m, created, _ = metrics
    states = {"nano0": _State(PowerState.DEEP_IDLE)}
    for run_energy in (10.0, 25.0, 4.0):  # 4 < 25: a new run started, its 4 J are new energy
        m.devices(states, {"nano0": run_energy})
        m.flush()
    assert _sum(created["jetfleet_device_energy_joules_total"], device="nano0") == pytest.approx(29.0)
    depth = [v for op, v, t in created["jetfleet_device_power_state"].calls if t == {"device": "nano0"}]
    assert depth[-1] == 2


def test_the_window_gauges_follow_the_last_window_only(metrics):
    m, created, clock = metrics
    m.devices({}, {"agx0": 0.0})
    m.flush()
    clock[0] = 5.0
    m.answer("completed", "", 10, True, model="r", stream="s")
    m.devices({}, {"agx0": 20.0})
    m.flush()
    fpj = created["jetfleet_frames_per_joule"].calls
    assert fpj[-1][1] == pytest.approx(0.5)
    clock[0] = 30.0  # 25 s later: the window (10 s) holds only this late, SLO-missing traffic
    m.answer("completed", "", 4, False, model="r", stream="s")
    m.devices({}, {"agx0": 28.0})
    m.flush()
    clock[0] = 31.0
    m.answer("completed", "", 4, True, model="r", stream="s")
    m.devices({}, {"agx0": 36.0})
    m.flush()
    assert created["jetfleet_slo_attainment_ratio"].calls[-1][1] == pytest.approx(0.5)
    assert created["jetfleet_frames_per_joule"].calls[-1][1] == pytest.approx(0.5)


def test_client_named_streams_are_capped(metrics):
    m, created, _ = metrics
    for i in range(MAX_STREAM_LABELS + 5):
        m.answer("completed", "", 1, True, model="r", stream=f"s{i}")
    m.flush()
    streams = {t["stream"] for _, _, t in created["jetfleet_frames_total"].calls}
    assert len(streams) == MAX_STREAM_LABELS + 1 and "other" in streams


def test_an_empty_window_has_no_attainment_and_no_frames_per_joule():
    window = SlidingWindow(5.0)
    window.add(WindowSample(0.0, 0, 0, 0, 0.0))
    assert window.slo_attainment() is None and window.frames_per_joule() is None
    window.add(WindowSample(1.0, 0, 0, 0, 3.0))
    assert window.slo_attainment() is None and window.frames_per_joule() == 0.0


def test_the_grafana_dashboard_only_charts_metrics_that_exist():
    """Every jetfleet metric the dashboard queries is one `actors.metrics` exports (Ray adds `ray_`)."""
    import json
    import re
    from pathlib import Path

    import actors.metrics

    root = Path(__file__).resolve().parents[1]
    dashboard = json.loads((root / "docs" / "grafana" / "jetfleet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_bucket$", "", n) for e in exprs for n in re.findall(r"ray_(jetfleet_\w+)", e)}
    exported = set(re.findall(r"^\s+(jetfleet_\w+)", actors.metrics.__doc__, flags=re.MULTILINE))
    assert "jetfleet_frames_per_joule" in used and used <= exported, used - exported
