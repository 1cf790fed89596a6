"""The reserve (policies/jetfleet/reserve.py): when room is kept for tight work, which devices keep it, what they
rescue; and the arrival statistic it reads (`ArrivalStats.hardest`).

Hand-built tables, one clock, no margins: a *worker* kind serving b frames in 0.1 + 0.1 b s with batches of up to 4
(a full batch takes 0.5 s), and a *fast* kind serving b frames in 0.05 + 0.05 b s. A 2 s SLO: 12 frames take a worker
1.3 s alone, 1.8 s after a full batch (it may wait for one); 16 frames take it 1.7 s alone, 2.2 s after one (they need
an idle device), and the fast kind 0.85 s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from costmodel.view import RawGrid
from jetfleet.power_states import PowerState
from jetfleet.types import DeviceState, Request
from policies.arrivals import ArrivalStats
from policies.jetfleet.reserve import choose_reserve, fastest_row_s, fastest_s, rescue_due, twin_groups
from policies.planning import GridTables, Margins, derive_tables

FREQ_HZ = 1e9
WORKER_IDLE_W, FAST_IDLE_W = 2.0, 6.0


def _tables(kind: str, base_s: float, per_frame_s: float, cap: int, idle_w: float) -> GridTables:
    batches = np.arange(1, 33)
    latency = (base_s + per_frame_s * batches)[None, :]
    grid = RawGrid(kind, "m", np.array([FREQ_HZ]), latency, latency * (idle_w + 5.0), (1, -1))
    return derive_tables(grid, np.array([idle_w]), Margins(0.0, 0.0), max_batch=cap)


WORKER = _tables("worker", 0.1, 0.1, 4, WORKER_IDLE_W)
FAST = _tables("fast", 0.05, 0.05, 32, FAST_IDLE_W)


def _device(name: str, kind: str, asleep: bool = False) -> DeviceState:
    state = PowerState.SUSPENDED if asleep else PowerState.IDLE
    return DeviceState(name, kind, FREQ_HZ, freqs_hz=(FREQ_HZ,), freq_change_delay_s=0.0, power_state=state)


def _fleet(n_workers: int, fast: list[tuple[str, bool]]) -> list[tuple[DeviceState, GridTables]]:
    workers = [(_device(f"w{i:02d}", "worker"), WORKER) for i in range(n_workers)]
    return workers + [(_device(name, "fast", asleep), FAST) for name, asleep in fast]


def _choose(usable, hardest, *, current=frozenset(), size=2, share=0.1, keep_w=4.0):
    active = frozenset(d.name for d, _ in usable if d.kind == "worker")
    return choose_reserve(twin_groups(usable), active, current, hardest, size, share, lambda d, t: keep_w)


def test_the_hand_built_tables_are_what_the_cases_assume():
    device = _device("w", "worker")
    assert fastest_s(WORKER, 12, 0.0, FREQ_HZ) == pytest.approx(1.3)
    assert fastest_s(WORKER, 16, 0.0, FREQ_HZ) == pytest.approx(1.7)
    assert float(WORKER.padded_s[0, WORKER.cap - 1]) == pytest.approx(0.5)
    assert fastest_s(FAST, 16, 0.0, FREQ_HZ) == pytest.approx(0.85)
    assert fastest_s(WORKER, 40, 0.0, device.freq_hz) == math.inf  # more than the tables hold


def test_the_fastest_row_is_fastest_for_each_request_at_any_clock_and_delay():
    """The rescue's row answers what `fastest_s` answers one request at a time: at a listed clock, at an
    unlisted one (a clock change is then the only way), and beyond the tables' largest batch (inf)."""
    batches = np.arange(1, 9)
    freqs = np.array([0.5e9, 1e9])
    latency = np.stack([0.2 + 0.2 * batches, 0.1 + 0.1 * batches])
    grid = RawGrid("two-clock", "m", freqs, latency, latency * 7.0, (1, -1))
    tables = derive_tables(grid, np.array([2.0, 3.0]), Margins(0.01, 0.05), max_batch=4)
    frames = np.array([1, 3, 8, 9, 40, 2])
    for freq_hz in (0.5e9, 1e9, 0.7e9):
        for delay_s in (0.0, 0.3):
            for _ in range(2):  # the second time from the tables' memo
                row = fastest_row_s(tables, delay_s, freq_hz)
                got = [row[min(int(n), len(row)) - 1] for n in frames]
                want = [fastest_s(tables, int(n), delay_s, freq_hz) for n in frames]
                np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(fastest_row_s(tables, 0.0, 1e9)) == 9 and math.isinf(fastest_row_s(tables, 0.0, 1e9)[-1])


def test_no_reserve_while_a_worker_could_serve_the_hardest_arrival_after_its_batch():
    usable = _fleet(40, [("f0", False), ("f1", False)])
    assert _choose(usable, (2.0, 12)) == frozenset()
    assert _choose(usable, None) == frozenset()


def test_a_heavy_tight_arrival_gets_fast_devices_awake_ones_first_then_by_name():
    usable = _fleet(40, [("f2", True), ("f1", False), ("f0", True), ("f3", False)])
    assert _choose(usable, (2.0, 16)) == {"f1", "f3"}
    assert _choose(usable, (2.0, 16), size=3, share=0.2) == {"f1", "f3", "f0"}


def test_the_members_so_far_stay_while_they_still_serve_it():
    usable = _fleet(40, [("f0", False), ("f1", False), ("f2", True)])
    assert _choose(usable, (2.0, 16), current=frozenset({"f2"})) == {"f2", "f0"}


def test_the_reserve_is_as_large_as_its_price_allows():
    """The budget is `share` of the active set's idle power: 40 workers x 2 W x 10 % = 8 W, two devices at 4 W."""
    usable = _fleet(40, [("f0", False), ("f1", False)])
    assert len(_choose(usable, (2.0, 16))) == 2
    assert _choose(usable, (2.0, 16), keep_w=5.0) == {"f0"}  # 8 W pays for one
    assert _choose(_fleet(10, [("f0", False), ("f1", False)]), (2.0, 16)) == frozenset()  # 2 W pays for none


def test_no_reserve_when_nothing_outside_the_active_set_serves_it_in_time():
    usable = _fleet(40, [("f0", False), ("f1", False)])
    assert _choose(usable, (0.5, 16)) == frozenset()  # the fast kind takes 0.85 s
    assert _choose(usable[:3], (2.0, 16), size=3) == frozenset()  # a fleet no larger than the reserve


def _request(i: int, arrival_s: float, frames: int, slo_s: float) -> Request:
    return Request(i, arrival_s, frames, slo_s)


def test_a_request_is_rescued_once_its_slack_on_the_reserve_is_down_to_the_rescue_slack():
    """Deadlines 2, 3 and 1.5 s; the reserve serves each in 1 s; slack 0.5 s: due at 0.5, 1.5 and 0 s."""
    waiting = [_request(1, 0.0, 8, 2.0), _request(2, 0.0, 8, 3.0), _request(3, 0.0, 8, 1.5), _request(4, 0.0, 8, 2.0)]
    serve_s = {1: 1.0, 2: 1.0, 3: 1.0, 4: math.inf}  # request 4: no reserve device can serve it
    due, next_s = rescue_due(waiting, 0.2, serve_s, 0.5)
    assert [r.request_id for r in due] == [3]
    assert next_s == pytest.approx(0.5)
    due, next_s = rescue_due(waiting, 0.6, serve_s, 0.5)
    assert [r.request_id for r in due] == [1, 3] and next_s == pytest.approx(1.5)


def test_a_request_late_by_the_padded_estimate_is_still_due_but_not_one_past_its_deadline():
    waiting = [_request(1, 0.0, 8, 2.0), _request(2, 0.0, 8, 1.0)]
    due, next_s = rescue_due(waiting, 1.5, {1: 1.0, 2: 0.2}, 0.5)
    assert [r.request_id for r in due] == [1] and next_s == math.inf


def test_hardest_is_the_tightest_slo_with_the_most_frames_in_the_window():
    stats = ArrivalStats(halflife_s=10.0, window_s=60.0)
    for i, (t, frames, slo) in enumerate([(0, 5, 6.0), (1, 30, 6.0), (2, 4, 2.0), (3, 9, 2.0), (4, 2, 2.0)]):
        stats.observe(_request(i, t, frames, slo), float(t))
    assert stats.hardest("inceptionv3", 4.0) == (2.0, 9)
    assert stats.hardest("inceptionv3", 62.5) == (2.0, 9)  # the 9-frame one (t = 3) is still in the window
    assert stats.hardest("inceptionv3", 63.5) == (2.0, 2)  # it left; the 2-frame one (t = 4) is the hardest left
    assert stats.hardest("inceptionv3", 64.5) is None
    assert stats.hardest("other", 4.0) is None


def test_the_rescue_slack_counts_in_whether_a_worker_could_wait_for_it():
    """12 frames: a worker takes 1.3 s alone, 1.8 s after a full batch: with 0.5 s of rescue slack to spare, 2.3 s."""
    usable = _fleet(40, [("f0", False), ("f1", False)])
    active = frozenset(d.name for d, _ in usable if d.kind == "worker")
    groups = twin_groups(usable)
    assert choose_reserve(groups, active, frozenset(), (2.0, 12), 2, 0.1, lambda d, t: 4.0, 0.5) == {"f0", "f1"}


def _reference_choice(usable, active, current, hardest, size):
    """The reserve's order worked out over every device (what `choose_reserve` does per group of twins)."""
    slo_s, n_frames = hardest
    able = [
        (s, d.name, d)
        for d, t in usable
        if d.name not in active and (s := fastest_s(t, n_frames, 0.0, d.max_freq_hz)) <= slo_s
    ]
    able.sort(key=lambda a: (a[1] not in current, a[0], not a[2].power_state.awake, a[1]))
    return [name for _, name, _ in able[:size]]


@pytest.mark.parametrize("seed", range(20))
def test_the_choice_per_group_of_twins_is_the_choice_over_every_device(seed):
    rng = np.random.default_rng(seed)
    fast = [(f"f{i:02d}", bool(rng.integers(2))) for i in rng.permutation(12)]
    usable = _fleet(40, fast)
    active = frozenset(d.name for d, _ in usable if d.kind == "worker" or rng.random() < 0.2)
    current = frozenset(name for name, _ in fast if rng.random() < 0.15)
    size = int(rng.integers(1, 4))
    chosen = choose_reserve(twin_groups(usable), active, current, (2.0, 16), size, 1.0, lambda d, t: 0.0)
    assert chosen == frozenset(_reference_choice(usable, active, current, (2.0, 16), size))
