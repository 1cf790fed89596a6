"""`jetfleet report --events FILE`: per-stream executed, drops by reason, p95 latency and budget misses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from jetfleet.errors import DataError
from jetfleet.telemetry import DecisionEvent, JsonlEventWriter
from simulator.overload import events_stream_stats
from simulator.overload_cli import app


def _arrival(t, rid, stream, slo):
    return DecisionEvent(t, "arrival", request_ids=(rid,), streams=(stream,), detail={"arrival_s": t, "slo_s": slo})


def _events() -> list[DecisionEvent]:
    return [
        _arrival(0.0, 1, "cam", 0.1),
        _arrival(0.0, 2, "cam", 0.1),
        _arrival(0.0, 3, "cam", 0.1),
        _arrival(0.01, 4, "bg", 1.0),
        _arrival(0.02, 5, "bg", 1.0),
        _arrival(0.03, 6, "bg", 1.0),
        DecisionEvent(0.0, "dispatch", "edf", (1, 2), ("cam", "cam"), device="d0"),
        DecisionEvent(0.05, "complete", "", (1, 2), ("cam", "cam"), device="d0"),
        DecisionEvent(0.05, "shed", "shed", (4,), ("bg",), protected_stream="cam"),
        DecisionEvent(0.05, "drop", "queue_full", (5,), ("bg",)),
        DecisionEvent(0.2, "complete", "", (3,), ("cam",), device="d0"),  # 200 ms: misses its 100 ms budget
        DecisionEvent(0.3, "complete", "", (6,), ("bg",), device="d0"),
    ]


def _write(path, events) -> None:
    with JsonlEventWriter(path) as w:
        for e in events:
            w(e)


def test_events_give_executed_drops_by_reason_p95_and_misses_per_stream():
    stats = events_stream_stats(json.loads(e.to_json()) for e in _events())
    cam, bg = stats["cam"], stats["bg"]
    assert (cam.offered, cam.executed, cam.dropped, cam.budget_misses, cam.within_budget) == (3, 3, 0, 1, 2)
    assert cam.p95_latency_ms == pytest.approx(200.0) and cam.p50_latency_ms == pytest.approx(50.0)
    assert (bg.executed, bg.dropped, bg.dropped_by_reason) == (1, 2, {"shed": 1, "queue_full": 1})
    assert bg.p95_latency_ms == pytest.approx(270.0) and bg.budget_misses == 0


def test_a_drop_without_a_reason_counts_as_unexplained_and_an_open_request_as_unanswered():
    events = [_arrival(0.0, 1, "a", 1.0), _arrival(0.0, 2, "a", 1.0), DecisionEvent(0.1, "drop", "", (1,), ("a",))]
    st = events_stream_stats(json.loads(e.to_json()) for e in events)["a"]
    assert st.dropped_by_reason == {"unexplained": 1} and st.unanswered == 1


def test_report_prints_the_table_and_writes_json(tmp_path):
    events, out = tmp_path / "ev.jsonl", tmp_path / "r.json"
    _write(events, _events())
    result = CliRunner().invoke(app, ["report", "--events", str(events), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "cam" in result.output and "queue_full 1" in result.output
    data = json.loads(out.read_text())["streams"]
    assert data["bg"]["dropped_by_reason"] == {"queue_full": 1, "shed": 1}
    assert data["cam"]["budget_misses"] == 1


def test_report_rejects_a_line_that_is_not_an_event(tmp_path):
    events = tmp_path / "ev.jsonl"
    events.write_text(_events()[0].to_json() + "\n{not json\n")
    result = CliRunner().invoke(app, ["report", "--events", str(events)])
    assert isinstance(result.exception, DataError) and "line 2" in str(result.exception)
