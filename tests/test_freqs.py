"""`jetfleet.freqs.listed_index`: the table it keeps per frequency list answers as scanning the list does."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jetfleet import freqs
from jetfleet.freqs import listed_index


def _scan(freqs_hz, freq_hz) -> int:
    return next((i for i, f in enumerate(freqs_hz) if abs(f - freq_hz) < 1.0), -1)


hz = st.floats(min_value=1e6, max_value=2e9, allow_nan=False)


@given(st.lists(hz, min_size=1, max_size=16, unique=True), st.lists(st.floats(-2.0, 2.0), max_size=8))
def test_listed_index_answers_as_a_scan(values, offsets):
    listed = tuple(sorted(values))
    asked = list(listed) + [f + o for f in listed for o in offsets] + [0.0, 3e9]
    for f in asked:
        assert listed_index(listed, f) == _scan(listed, f)
        assert listed_index(list(listed), f) == _scan(listed, f)  # a list (mutable) is scanned, not tabled


def test_a_listed_value_close_below_an_earlier_one_finds_the_earlier():
    listed = (100e6, 100e6 + 0.5, 200e6)  # two entries within 1 Hz: the first wins, as the scan's
    assert listed_index(listed, 100e6 + 0.5) == 0
    assert listed_index(listed, np.float64(200e6)) == 2
    assert listed_index(listed, 200_000_000) == 2  # an int equal to a listed float
    assert listed_index(listed, 300e6) == -1


def test_the_tables_start_over_past_their_bound():
    freqs._TABLES.clear()
    for i in range(freqs._MAX_TABLES + 5):
        assert listed_index((float(i), float(i) + 10.0), float(i) + 10.0) == 1
    assert len(freqs._TABLES) <= freqs._MAX_TABLES
