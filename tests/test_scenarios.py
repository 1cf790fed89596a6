"""LoudVA scenario files and the synthetic arrival generators."""

from __future__ import annotations

import pytest

from jetfleet.errors import ConfigError, DataError
from workloads.arrivals import bursty, poisson
from workloads.scenarios import read_scenario

HEADER = "Time,Frames After Filter,Camera Index,Throughput,latency_constraint\n"


def _write(tmp_path, body, header=HEADER):
    path = tmp_path / "s.csv"
    path.write_text(header + body)
    return path


def test_experiment1_scenarios_hold_the_reports_totals(loudva_dir):
    """The 6 Experiment 1 scenarios: 2,237 requests and 9,035 frames, as LoudVA's report counts them."""
    workloads = [read_scenario(p) for p in sorted((loudva_dir / "scenarios").glob("exp1-id*.csv"))]
    assert len(workloads) == 6
    assert sum(len(w) for w in workloads) == 2237
    assert sum(r.n_frames for w in workloads for r in w) == 9035


def test_rows_become_requests(tmp_path):
    path = _write(tmp_path, "3.5,3,0,0.6,6\n4.5,6,1,1.8,11\n")
    a, b = read_scenario(path, id_offset=10)
    assert (a.request_id, a.arrival_s, a.n_frames, a.slo_s, a.stream) == (10, 3.5, 3, 6.0, "camera0")
    assert (b.request_id, b.stream, b.deadline_s) == (11, "camera1", 15.5)


def test_missing_column_is_named(tmp_path):
    path = _write(tmp_path, "1,2,0,0.5\n", header="Time,Frames After Filter,Camera Index,Throughput\n")
    with pytest.raises(DataError, match=r"s\.csv: missing columns \['latency_constraint'\]"):
        read_scenario(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,0,0,0.5,4", r"row 2, column 'Frames After Filter': '0' must be >= 1"),
        ("1,2,0,0.5,zero", r"row 2, column 'latency_constraint': 'zero' is not a number"),
        ("1,2,0,0.5,0", r"row 2, column 'latency_constraint': '0' must be > 0"),
        ("-1,2,0,0.5,4", r"row 2, column 'Time': '-1' must be >= 0"),
        ("1,2.5,0,0.5,4", r"row 2, column 'Frames After Filter': '2.5' must be a whole number"),
    ],
)
def test_bad_values_name_file_row_and_column(tmp_path, row, message):
    path = _write(tmp_path, f"0.5,1,0,0.1,3\n{row}\n")
    with pytest.raises(DataError, match=message):
        read_scenario(path)


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="no such scenario file"):
        read_scenario(tmp_path / "nope.csv")


def test_poisson_is_seeded_sorted_and_near_its_rate():
    a = poisson(50.0, 100.0, seed=3, frames=(1, 4), slo_s=(0.5, 2.0), streams=3)
    assert a == poisson(50.0, 100.0, seed=3, frames=(1, 4), slo_s=(0.5, 2.0), streams=3)
    assert a != poisson(50.0, 100.0, seed=4, frames=(1, 4), slo_s=(0.5, 2.0), streams=3)
    assert 4500 < len(a) < 5500
    assert all(x.arrival_s <= y.arrival_s for x, y in zip(a, a[1:], strict=False))
    assert {r.n_frames for r in a} == {1, 2, 3, 4} and {r.stream for r in a} == {"stream0", "stream1", "stream2"}


def test_bursty_keeps_the_mean_rate_and_bunches_arrivals():
    rs = bursty(20.0, 200.0, seed=1, burst_factor=8.0, on_fraction=0.2, period_s=10.0)
    assert 3600 < len(rs) < 4400
    in_burst = sum(1 for r in rs if r.arrival_s % 10.0 < 2.0)
    assert in_burst / len(rs) > 0.6  # 20 % of the time holds 8 / (8 * 0.2 + 0.8) = 2/3 of the arrivals


def test_generator_arguments_are_checked():
    with pytest.raises(ConfigError):
        poisson(0.0, 10.0)
    with pytest.raises(ConfigError):
        bursty(1.0, 10.0, on_fraction=1.5)
