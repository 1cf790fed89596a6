"""The overhead benchmark's statistic: the median of paired ratios, robust to one round in a slow spell."""

import pytest

from benchmarks.bench_overhead import paired_ratios


def test_one_slow_round_moves_the_pooled_ratio_not_the_median() -> None:
    ours = [100.0, 95.0, 30.0, 98.0, 101.0]  # the third jetfleet round ran while something else took the CPU
    plain = [105.0, 100.0, 104.0, 103.0, 106.0]
    figures = paired_ratios(ours, plain)
    assert figures["ratio"] == pytest.approx(0.951, abs=1e-3)
    assert figures["pooled_ratio"] == pytest.approx(424 / 518, abs=1e-3)
    assert figures["pair_ratios"][2] == pytest.approx(0.288, abs=1e-3)


def test_pairs_with_no_plain_requests_are_left_out() -> None:
    assert paired_ratios([10.0, 20.0], [0.0, 40.0])["pair_ratios"] == [0.5]
    assert paired_ratios([10.0], [0.0]) == {"ratio": None, "pooled_ratio": None, "pair_ratios": []}


def test_rounds_must_pair_up() -> None:
    with pytest.raises(ValueError):
        paired_ratios([1.0, 2.0], [1.0])
