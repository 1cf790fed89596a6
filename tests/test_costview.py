"""CostView: the one keyed cache of cost grids, idle power, learned correction and policy-derived tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costmodel.base import CostGrid
from costmodel.view import CostView, LatencyCorrection
from jetfleet.errors import UnknownNameError

FREQS = (100e6, 200e6, 400e6)


class CountingCost:
    """latency = 0.01 s * batch * 400 MHz / f, energy = 5 W * latency; counts every question."""

    def __init__(self) -> None:
        self.grid_calls: list[tuple[str, str, int]] = []
        self.idle_calls = 0

    def predict_grid(self, kind, model, freqs_hz, batches):
        if kind != "k":
            raise UnknownNameError("device kind", kind, ["k"])
        self.grid_calls.append((kind, model, len(batches)))
        f, b = np.asarray(freqs_hz, float), np.asarray(batches)
        latency = 0.01 * b[None, :] * 400e6 / f[:, None]
        return CostGrid(kind, model, f, b, latency, 5.0 * latency)

    def idle_power_w(self, kind, freq_hz):
        self.idle_calls += 1
        return 1.0 + freq_hz / 1e9


def test_a_grid_is_asked_once_per_kind_model_and_frequency_list():
    """Repeated questions are answered from the cache; another frequency list is another question."""
    cost = CountingCost()
    view = CostView(cost)
    first = view.grid("k", "m", FREQS, 4)
    assert view.grid("k", "m", FREQS, 3) is first
    view.grid("k", "m", FREQS[:2], 4)
    assert cost.grid_calls == [("k", "m", 4), ("k", "m", 4)]
    assert first.latency_s[2, 0] == pytest.approx(0.01)


def test_a_grid_grows_to_at_least_twice_its_size_when_a_larger_batch_is_asked():
    """Asking for more frames than cached re-asks the model once, for at least double the batches."""
    cost = CountingCost()
    view = CostView(cost)
    small = view.grid("k", "m", FREQS, 4)
    grown = view.grid("k", "m", FREQS, 5)
    assert grown.max_frames == 8 and grown.version != small.version
    np.testing.assert_allclose(grown.latency_s[:, :4], small.latency_s)


def test_observed_latency_corrects_only_the_corrected_grid():
    """A batch measured 1.5x slower than predicted scales that cell's latency and energy; raw stays raw."""
    view = CostView(CountingCost())
    raw = view.grid("k", "m", FREQS, 4)
    view.observe("k", "m", FREQS, 200e6, 2, latency_s=1.5 * raw.latency_s[1, 1])
    corrected = view.grid("k", "m", FREQS, 4, corrected=True)
    assert corrected.latency_s[1, 1] == pytest.approx(1.5 * raw.latency_s[1, 1])
    assert corrected.energy_j[1, 1] == pytest.approx(1.5 * raw.energy_j[1, 1])
    assert corrected.latency_s[0, 1] == pytest.approx(1.5 * raw.latency_s[0, 1])  # same batch, other clock
    assert corrected.latency_s[1, 0] == pytest.approx(raw.latency_s[1, 0])  # unseen batch: trust the model
    assert view.grid("k", "m", FREQS, 4) is raw


def test_learning_can_be_switched_off():
    """With learn=False, observations change nothing."""
    view = CostView(CountingCost(), learn=False)
    raw = view.grid("k", "m", FREQS, 4)
    view.observe("k", "m", FREQS, 200e6, 2, latency_s=10.0)
    assert view.grid("k", "m", FREQS, 4, corrected=True) is raw


def test_derived_tables_are_rebuilt_exactly_when_their_grid_changes():
    """A policy's derived value is kept until a new observation changes the corrected grid it came from."""
    view = CostView(CountingCost())
    builds: list[int] = []

    def derived():
        grid = view.grid("k", "m", FREQS, 4, corrected=True)
        return view.derived(("test", "k", "m"), grid, lambda: builds.append(1) or len(builds))

    assert derived() == 1
    assert derived() == 1
    view.observe("k", "m", FREQS, 400e6, 1, latency_s=0.02)
    assert derived() == 2


def test_an_observation_that_changes_no_factor_changes_no_grid():
    """A batch that ran exactly as predicted, after one that already taught that batch size 1, leaves the corrected
    grid, its derived tables and the view's generation as they were; a different ratio changes all three."""
    view = CostView(CountingCost())
    raw = view.grid("k", "m", FREQS, 4)
    builds: list[int] = []

    def derived():
        grid = view.grid("k", "m", FREQS, 4, corrected=True)
        return grid, view.derived(("test", "k", "m"), grid, lambda: builds.append(1) or len(builds))

    view.observe("k", "m", FREQS, 400e6, 2, latency_s=float(raw.latency_s[2, 1]))  # ratio 1: learns the cell
    grid, first = derived()
    generation = view.generation
    for _ in range(3):
        view.observe("k", "m", FREQS, 400e6, 2, latency_s=float(raw.latency_s[2, 1]))
    assert view.generation == generation
    assert derived() == (grid, first)
    view.observe("k", "m", FREQS, 400e6, 2, latency_s=1.2 * float(raw.latency_s[2, 1]))
    assert view.generation > generation
    regrown, second = derived()
    assert second == first + 1
    assert regrown.latency_s[2, 1] > grid.latency_s[2, 1]


_OBSERVATIONS = st.lists(
    st.tuples(
        st.integers(-1, 2),  # clock index (-1: unlisted)
        st.integers(1, 4),  # batch size
        st.sampled_from([1.0, 1.0, 0.5, 1.25, 2.0, 3.0, 1.0 + 2**-52]),  # ratios repeat: most change nothing
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(_OBSERVATIONS)
def test_a_correction_says_changed_exactly_when_a_factor_changed(observations):
    """`LatencyCorrection.update`'s answer is what comparing every factor before and after says, bit for bit."""
    correction = LatencyCorrection(3, 4)
    for freq_index, batch, ratio in observations:
        before = correction.factors().copy()
        changed = correction.update(freq_index, batch, ratio)
        assert changed == (not np.array_equal(before, correction.factors()))


def test_idle_power_is_asked_once_per_kind_and_frequency_list():
    cost = CountingCost()
    view = CostView(cost)
    watts = view.idle_w("k", FREQS)
    assert view.idle_w("k", FREQS) is watts
    assert cost.idle_calls == len(FREQS)
    np.testing.assert_allclose(watts, [1.1, 1.2, 1.4])


def test_an_unknown_kind_is_the_cost_models_error():
    with pytest.raises(UnknownNameError, match="device kind"):
        CostView(CountingCost()).grid("nope", "m", FREQS, 1)
