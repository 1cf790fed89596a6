"""Bandwidth traces, trace files and upload times (workloads.network)."""

from __future__ import annotations

import numpy as np
import pytest

from costmodel.variants import frame_bits
from jetfleet.errors import ConfigError, DataError
from workloads.network import (
    STEP_LEVELS_MBPS,
    BandwidthTrace,
    load_trace,
    lte_trace,
    make_trace,
    step_trace,
    upload_time_s,
    wifi_trace,
)


def test_wifi_trace_has_wifi_range_and_mean():
    values = np.concatenate([wifi_trace(600, seed=s).values_mbps for s in range(8)])
    assert values.min() >= 13.0 and values.max() <= 91.0
    assert 45.0 <= values.mean() <= 59.0


def test_lte_trace_has_lte_uplink_range_and_mean():
    values = np.concatenate([lte_trace(600, seed=s).values_mbps for s in range(8)])
    assert values.min() >= 3.0 and values.max() <= 26.0
    assert 12.5 <= values.mean() <= 17.5


def test_traces_are_seeded():
    assert np.array_equal(wifi_trace(60, seed=3).values_mbps, wifi_trace(60, seed=3).values_mbps)
    assert not np.array_equal(lte_trace(60, seed=3).values_mbps, lte_trace(60, seed=4).values_mbps)


def test_step_trace_walks_the_staircase_and_repeats():
    trace = step_trace(hold_s=5.0)
    assert [trace.at(5.0 * i + 1) for i in range(7)] == list(STEP_LEVELS_MBPS)
    assert trace.at(35.0 + 1) == 20.0


def test_upload_time_spans_a_bandwidth_change():
    trace = BandwidthTrace("two", np.array([10.0, 5.0]), step_s=1.0)
    # 0.5 s at 10 Mbit/s moves 5 Mbit; the remaining 1 Mbit takes 0.2 s at 5 Mbit/s
    assert upload_time_s(trace, 0.5, 6e6) == pytest.approx(0.7)


def test_smaller_variants_upload_faster():
    assert frame_bits(160) < frame_bits(224) < frame_bits(416)
    trace = step_trace()
    assert upload_time_s(trace, 0.0, frame_bits(224)) == pytest.approx(frame_bits(224) / 20e6)


def test_load_trace_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# Mbit/s per second\n12.5\n\n 7 # low\n")
    trace = load_trace(path)
    assert trace.values_mbps.tolist() == [12.5, 7.0]
    assert make_trace(str(path)).mean_mbps == pytest.approx(9.75)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("12\nfast\n", r"t.txt:2: expected one bandwidth value"),
        ("3\n-1\n", r"t.txt:2: .*positive"),
        ("#\n", "no bandwidth values"),
    ],
)
def test_load_trace_errors_name_file_and_line(tmp_path, text, match):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_trace(path)


def test_load_trace_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_trace(tmp_path / "none.txt")


def test_unknown_trace_name_lists_known():
    with pytest.raises(ConfigError, match="wifi, lte, step"):
        make_trace("satellite")
