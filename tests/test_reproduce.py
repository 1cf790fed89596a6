"""The LoudVA reproduction script: reading LoudVA's measured table and checking the issue's targets."""

from __future__ import annotations

import pytest

from jetfleet.errors import DataError
from simulator.reproduce import MEASURED_POLICY, SimRow, read_measured
from simulator.reproduce_report import check_targets


def _row(fleet: str, policy: str, fpj: float, pct: float, bound_j: float = 900.0) -> SimRow:
    return SimRow(fleet, "oracle", "first-arrival", policy, 10, 1000, int(10 * pct), pct, 1000 / fpj, fpj,
                  1.0, 2.0, 0, bound_j * fpj / 1000, bound_j, 1000, 100.0)  # fmt: skip


def test_reads_loudvas_measured_table(loudva_dir):
    rows = read_measured(loudva_dir / "experiment1_report_aggregated.csv")
    assert {r.name for r in rows} == set(MEASURED_POLICY)
    no_scheduler = next(r for r in rows if r.name == "No Scheduler")
    assert (no_scheduler.frames, no_scheduler.frames_per_joule) == (9035, pytest.approx(0.688))


def test_a_table_without_known_rows_is_a_data_error(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text("scheduler,num_frames\nSomething Else,3\n")
    with pytest.raises(DataError, match="no known scheduler rows"):
        read_measured(path)


def test_targets_report_the_shortfall_and_the_bound():
    rows = [
        _row("agx", "transparent", 0.70, 100.0),
        _row("agx", "loudva", 0.80, 99.0),
        _row("agx", "jetfleet", 0.83, 100.0, bound_j=1150.0),
        _row("loudva-cluster", "loudva", 0.40, 99.0),
        _row("loudva-cluster", "round-robin", 0.36, 100.0),
        _row("loudva-cluster", "jetfleet", 0.42, 100.0),
    ]
    targets = {t.name.split(",")[0]: t for t in check_targets(rows, "oracle")}
    vs_transparent = targets["agx: frames/J >= 1.35 x transparent"]
    assert not vs_transparent.met and "above what any policy can reach" in vs_transparent.note
    assert targets["agx: frames/J >= 1.10 x loudva"].met is False
    assert targets["loudva-cluster: better than loudva on both axes"].met
    assert targets["loudva-cluster: better than round-robin on both axes"].met
