"""The SC7 sensitivity grids: the varied suspend state, and the tables docs/power-states.md shows."""

from __future__ import annotations

import pytest

from jetfleet.catalogue import get_kind
from jetfleet.power_states import PowerState
from simulator.power_sensitivity import TRANSITION_S, suspended_variant, transitions_markdown


def _suspended(states):
    return next(s for s in states if s.state is PowerState.SUSPENDED)


def test_the_varied_suspend_changes_only_what_is_asked_and_pays_idle_power_in_its_transitions():
    kind = get_kind("agx-xavier")
    catalogue = _suspended(kind.power_states)
    lo, _ = catalogue.ranges["board_power_w"]
    varied = _suspended(suspended_variant("agx-xavier", 0.1, "lo", entry_s=0.25))
    assert (varied.entry_s, varied.exit_s, varied.board_power_w) == pytest.approx((0.25, 0.1, lo))
    assert varied.entry_energy_j == pytest.approx((kind.idle_power_w - lo) * 0.25)
    assert varied.exit_energy_j == pytest.approx((kind.idle_power_w - lo) * 0.1)
    kept = _suspended(suspended_variant("agx-xavier", 2.0, "cat"))
    assert kept.entry_s == pytest.approx(catalogue.entry_s) and kept.board_power_w == pytest.approx(
        catalogue.board_power_w
    )
    others = [s for s in suspended_variant("agx-xavier", 0.1, "lo", 0.1) if s.state is not PowerState.SUSPENDED]
    assert others == [s for s in kind.power_states if s.state is not PowerState.SUSPENDED]


def test_the_transition_table_has_a_row_per_entry_and_a_column_per_wake_latency():
    cells = [
        {"entry_s": e, "wake_s": w, "frames_per_joule": 1.0 + e + w / 10, "pct_frames_within_slo": 99.5}
        for e in TRANSITION_S
        for w in TRANSITION_S
    ]
    doc = {"fleet": "agx", "awake": {"frames_per_joule": 0.5}, "transitions": cells}
    lines = transitions_markdown(doc).splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| entry")]
    assert len(rows) == len(TRANSITION_S)
    assert rows[0].startswith("| 1 | 2.100 (4.20x), 99.50 %")  # entry 1 s, wake 1 s: 1 + 1 + 0.1 frames/J
    assert rows[-1].endswith("1.110 (2.22x), 99.50 % |")  # entry 0.1 s, wake 0.1 s
