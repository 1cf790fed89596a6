"""Stream configs: parsing, validation messages that name the stream and the field, bounds, arrivals."""

from __future__ import annotations

import json

import pytest

from jetfleet.errors import ConfigError
from policies.streams import DropPolicy, StreamSet, stream_set_from_dict, stream_set_from_text
from workloads.streams import ArrivalSpec, arrival_spec_from_dict, load_stream_set, stream_arrivals

TWO = {
    "streams": [
        {"name": "detector", "priority": 100, "budget_ms": 80, "rate_fps": 15, "queue_limit": 24},
        {"name": "classifier", "priority": 20, "budget_ms": 250, "group": "cams", "min_share": 0.1},
        {"name": "tracker", "priority": 60, "budget_ms": 150, "group": "cams"},
    ],
    "groups": [{"name": "cams", "queue_limit": 8, "drop_policy": "drop_low_priority"}],
    "floor": {"window_s": 3.0, "max_wait_s": 0.5},
}


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as e:
        stream_set_from_dict(raw, "cfg.json")
    return str(e.value)


def _with(**fields) -> dict:
    raw = json.loads(json.dumps(TWO))
    raw["streams"][0].update(fields)
    return raw


def test_config_parses_streams_groups_and_floor():
    s = stream_set_from_dict(TWO, "cfg.json")
    assert s.names() == ["detector", "classifier", "tracker"]
    assert s.get("detector").budget_s == pytest.approx(0.08)
    assert s.get("detector").drop_policy is DropPolicy.DROP_OLDEST
    assert s.share_window_s == 3.0 and s.floor_max_wait_s == 0.5
    assert s.min_share("classifier") == 0.1 and s.min_share("unknown") == 0.0


def test_yaml_and_json_text_give_the_same_config():
    yaml_text = "streams:\n  - {name: a, priority: 3, queue_limit: 2, drop_policy: drop_newest}\n"
    json_text = json.dumps({"streams": [{"name": "a", "priority": 3, "queue_limit": 2, "drop_policy": "drop_newest"}]})
    assert stream_set_from_text(yaml_text).streams == stream_set_from_text(json_text).streams


def test_a_bad_field_names_the_stream_and_the_field():
    msg = _error(_with(priority="high"))
    assert "cfg.json" in msg and "stream 'detector'" in msg and "'priority'" in msg and "'high'" in msg


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"prio": 1}, ["stream 'detector'", "unknown field 'prio'"]),
        ({"drop_policy": "drop_random"}, ["'drop_policy'", "drop_low_priority"]),
        ({"budget_ms": -5}, ["'budget_ms'", "> 0"]),
        ({"queue_limit": 0}, ["'queue_limit'", ">= 1"]),
        ({"min_share": 1.5}, ["'min_share'", "[0, 1)"]),
        ({"group": "nope"}, ["'group'", "unknown group 'nope'"]),
    ],
)
def test_each_invalid_field_is_reported_with_its_name(fields, words):
    msg = _error(_with(**fields))
    for w in words:
        assert w in msg


def test_a_stream_in_a_group_cannot_have_its_own_limit():
    raw = json.loads(json.dumps(TWO))
    raw["streams"][1]["queue_limit"] = 4
    assert "stream 'classifier'" in _error(raw) and "bounded by the group" in _error(raw)


def test_duplicate_stream_names_are_rejected():
    raw = {"streams": [{"name": "a"}, {"name": "a"}]}
    assert "stream 'a'" in _error(raw) and "twice" in _error(raw)


def test_unknown_top_level_field_is_rejected_unless_the_caller_owns_it():
    assert "unknown top-level field 'arrivals'" in _error({**TWO, "arrivals": {}})
    stream_set_from_dict({**TWO, "arrivals": {}}, "cfg", extra_keys=["arrivals"])


def test_bounds_are_per_stream_per_group_or_none():
    s = stream_set_from_dict(TWO)
    assert s.bound_of("detector").limit == 24 and s.bound_of("detector").streams == {"detector"}
    group = s.bound_of("classifier")
    assert group == s.bound_of("tracker")
    assert group.limit == 8 and group.streams == {"classifier", "tracker"}
    assert group.drop_policy is DropPolicy.DROP_LOW_PRIORITY
    assert StreamSet().bound_of("anything") is None


def test_request_defaults_fill_priority_and_budget_from_the_stream():
    s = stream_set_from_dict(TWO)
    assert s.request_defaults("detector", None, None) == (100, pytest.approx(0.08))
    assert s.request_defaults("detector", 7, 1.0) == (7, 1.0)
    assert s.request_defaults("unknown", None, None) == (0, None)


def test_load_stream_set_reads_a_file_and_names_it_in_errors(tmp_path):
    good = tmp_path / "s.yaml"
    good.write_text("streams:\n  - {name: a, priority: 1}\n")
    assert load_stream_set(good).names() == ["a"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"streams": [{"name": "a", "frames": 0}]}))
    with pytest.raises(ConfigError, match=r"bad.json: stream 'a': field 'frames'"):
        load_stream_set(bad)
    with pytest.raises(ConfigError, match="no such"):
        load_stream_set(tmp_path / "missing.json")


def test_lockstep_arrivals_interleave_streams_in_config_order():
    raw = {"streams": [{"name": "d", "priority": 9, "budget_ms": 80}, {"name": "c", "budget_ms": 250}]}
    s = stream_set_from_dict(raw)
    reqs = stream_arrivals(s, ArrivalSpec("lockstep", frames_per_stream=3, interval_ms=10))
    assert [(r.request_id, r.stream, round(r.arrival_s, 3)) for r in reqs] == [
        (0, "d", 0.0),
        (1, "c", 0.0),
        (2, "d", 0.01),
        (3, "c", 0.01),
        (4, "d", 0.02),
        (5, "c", 0.02),
    ]
    assert reqs[0].priority == 9 and reqs[0].slo_s == pytest.approx(0.08) and reqs[1].slo_s == pytest.approx(0.25)


def test_periodic_and_poisson_arrivals_follow_each_stream_rate():
    s = stream_set_from_dict({"streams": [{"name": "a", "budget_ms": 50, "rate_fps": 10}]})
    periodic = stream_arrivals(s, ArrivalSpec("periodic", frames_per_stream=4))
    assert [round(r.arrival_s, 3) for r in periodic] == [0.0, 0.1, 0.2, 0.3]
    poisson = stream_arrivals(s, ArrivalSpec("poisson", duration_s=20.0), seed=3)
    assert 140 < len(poisson) < 260
    assert poisson == stream_arrivals(s, ArrivalSpec("poisson", duration_s=20.0), seed=3)


def test_arrivals_need_a_budget_and_a_valid_spec():
    s = stream_set_from_dict({"streams": [{"name": "a"}]})
    with pytest.raises(ConfigError, match="stream 'a': field 'budget_ms'"):
        stream_arrivals(s, ArrivalSpec())
    with pytest.raises(ConfigError, match="field 'pattern'"):
        arrival_spec_from_dict({"pattern": "bursts"}, "cfg")
    with pytest.raises(ConfigError, match="field 'interval_ms'"):
        arrival_spec_from_dict({"interval_ms": 0}, "cfg")
