"""The batch planner on its own: `plan_batch` (reference and compiled) over small hand-built tables, answers
worked out by hand.

Two clocks, batches of 1..4 frames, no safety margins, an idle floor of 10 W (marginal J/frame in brackets):

    slow (100 MHz): latency 0.2 0.3 0.4 0.5 s   energy 3.0 4.4 5.8 7.0 J   [1.0 0.7 0.6 0.5]
    fast (200 MHz): latency 0.1 0.15 0.2 0.25 s energy 2.5 3.9 5.0 6.1 J   [1.5 1.2 1.0 0.9]

So above the floor the slow clock is cheaper per frame at every batch size, and bigger batches are cheaper;
counting the idle floor too (total J/frame), the fast clock would win every time. Requests are one
frame each unless a case says otherwise; the device is free at t = 0. The only catalogue figure used is the
jetson-nano's max_batch (13), which the 4-column tables cap at 4. The requests left behind drain at each
clock's full-batch rate (0.125 and 0.0625 s/frame). A plan's latest dispatch is its slack: the earlier of the
head's deadline and the latest finish that still lets the requests behind run as real batches (at the plan's
clock or the fast one), less the plan's finish.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from costmodel.view import RawGrid
from jetfleet.catalogue import get_kind
from policies import planning
from policies.planning import GridTables, Margins, derive_tables, plan_batch_reference

# Both planners answer every case: the numpy reference, and the compiled kernel when numba is installed.
PLANNERS = {"reference": plan_batch_reference} | (
    {"compiled": planning.plan_batch_compiled} if planning.KERNEL is not None else {}
)

SLOW, FAST = 0, 1


def _tables() -> GridTables:
    freqs_hz = np.array([100e6, 200e6])
    latency_s = np.array([[0.2, 0.3, 0.4, 0.5], [0.1, 0.15, 0.2, 0.25]])
    energy_j = np.array([[3.0, 4.4, 5.8, 7.0], [2.5, 3.9, 5.0, 6.1]])
    grid = RawGrid("jetson-nano", "m", freqs_hz, latency_s, energy_j, (1, -1))
    return derive_tables(grid, np.full(2, 10.0), Margins(0.0, 0.0), max_batch=get_kind("jetson-nano").max_batch)


TABLES = _tables()
BEHIND_S_PER_FRAME = np.array([0.125, 0.0625])  # each clock's seconds per frame at the full batch


def test_the_hand_built_tables_are_what_the_cases_assume():
    """Marginal J/frame is the energy above the 10 W floor per frame; the cap is the table width."""
    np.testing.assert_allclose(TABLES.marginal_epf_j[SLOW], [1.0, 0.7, 0.6, 0.5])
    np.testing.assert_allclose(TABLES.marginal_epf_j[FAST], [1.5, 1.2, 1.0, 0.9])
    np.testing.assert_allclose(TABLES.fastest_padded_s, [0.1, 0.15, 0.2, 0.25])
    assert TABLES.cap == 4 and TABLES.floor_w == 10.0 and TABLES.s_per_frame == pytest.approx(0.0625)


class Case(NamedTuple):
    deadlines_s: list[float]
    clock: int  # the device's clock now (index)
    change_delay_s: float = 0.0
    frames: list[int] | None = None  # frames per request, 1 each when None
    finish_limit_s: float | None = None  # the same limit for every clock
    # expected plan: window positions, frames, clock, start, latest dispatch, overloaded
    positions: list[int] | None = None
    n_frames: int = 0
    freq_index: int = 0
    start_s: float = 0.0
    latest_dispatch_s: float = 0.0
    overloaded: bool = False


CASES = {
    # Loose deadlines: the slow clock's batch of 4 is the cheapest cell of the grid.
    "everything fits: one batch takes all, at the cheapest clock": Case(
        [10.0] * 4, clock=SLOW, positions=[0, 1, 2, 3], n_frames=4, freq_index=SLOW, latest_dispatch_s=9.5
    ),
    # Head due at 0.2 s, the slow clock 5 s away: fast batches of 1..3 finish by 0.2 s, 4 frames take 0.25 s.
    "a tight head deadline limits the batch": Case(
        [0.2, 10.0, 10.0, 10.0], clock=FAST, change_delay_s=5.0,
        positions=[0, 1, 2], n_frames=3, freq_index=FAST, latest_dispatch_s=0.0,
    ),
    # Running fast now, but slow finishes 2 frames by 0.3 s for 0.7 J/frame against 1.2 J/frame fast (in total
    # J/frame, idle included, fast would win: 1.95 against 2.2).
    "a lower clock is chosen when the deadlines allow it": Case(
        [0.3, 0.3], clock=FAST, positions=[0, 1], n_frames=2, freq_index=SLOW, latest_dispatch_s=0.0
    ),
    # Slow x2 would be cheapest, but the two requests behind it (due 0.3 s too) could not finish after 0.3 s.
    "the requests behind the batch must stay feasible": Case(
        [0.3] * 4, clock=FAST, positions=[0, 1, 2, 3], n_frames=4, freq_index=FAST, latest_dispatch_s=0.05
    ),
    # Slow x2 ends at 0.3 s; at 0.0625 s/frame the third request (due 0.38 s) would be done at 0.3625 s, but
    # run as a real batch of one it takes 0.1 s even at the fast clock: too late. Fast x3 (1.0 J/frame) goes.
    "the requests behind are checked as real batches": Case(
        [0.3, 0.3, 0.38], clock=FAST, positions=[0, 1, 2], n_frames=3, freq_index=FAST, latest_dispatch_s=0.1
    ),
    # Slow x1 (head due at 0.2 s) and fast x3 both cost 1.0 J/frame: the tie goes to the larger batch.
    "a near-tie in J/frame goes to the larger batch": Case(
        [0.2, 10.0, 10.0], clock=FAST, positions=[0, 1, 2], n_frames=3, freq_index=FAST, latest_dispatch_s=0.0
    ),
    # Eight frames due at 0.3 s: no batch protects the rest, so the best frames/s (fast x4: 16/s) goes.
    "overloaded: the highest-throughput batch, flagged": Case(
        [0.3] * 8, clock=SLOW, positions=[0, 1, 2, 3], n_frames=4, freq_index=FAST, overloaded=True
    ),
    # Free again by 0.35 s: slow x2 (0.3 s, 0.7 J/frame) beats every fast batch; slow x4 would end at 0.5 s.
    "a finish limit cuts the batch": Case(
        [10.0] * 4, clock=SLOW, finish_limit_s=0.35,
        positions=[0, 1], n_frames=2, freq_index=SLOW, latest_dispatch_s=9.55,
    ),
    # No batch ends by 0.05 s; the limit yields to the earliest finish any batch has (fast x1 at 0.1 s).
    "an unreachable finish limit comes as close as it can": Case(
        [10.0] * 4, clock=SLOW, finish_limit_s=0.05,
        positions=[0], n_frames=1, freq_index=FAST, latest_dispatch_s=9.7,
    ),
    # Switching to slow costs 0.5 s: the batch starts at 0.5 s and ends at 1.0 s.
    "the change delay is charged when switching clocks": Case(
        [10.0] * 4, clock=FAST, change_delay_s=0.5,
        positions=[0, 1, 2, 3], n_frames=4, freq_index=SLOW, start_s=0.5, latest_dispatch_s=9.0,
    ),
    # Slow x4 ends at 0.5 s from now, but at 1.0 s after the 0.5 s switch: past 0.6 s, so stay fast.
    "a switch the deadline cannot afford keeps the clock": Case(
        [0.6] * 4, clock=FAST, change_delay_s=0.5,
        positions=[0, 1, 2, 3], n_frames=4, freq_index=FAST, latest_dispatch_s=0.35,
    ),
    # Frames 2 + 2 reach the cap of 4; the third request (1 frame) waits for the next batch.
    "the batch takes whole requests up to the cap": Case(
        [10.0] * 3, clock=SLOW, frames=[2, 2, 1],
        positions=[0, 1], n_frames=4, freq_index=SLOW, latest_dispatch_s=9.4,
    ),
    # Due at 0.05 s, the head cannot finish even alone at the fast clock (0.1 s): skipped, the rest planned.
    "a request no clock can finish in time is skipped": Case(
        [0.05, 10.0, 10.0], clock=SLOW, positions=[1, 2], n_frames=2, freq_index=SLOW, latest_dispatch_s=9.7
    ),
    "nothing can finish in time: no plan": Case([0.05, 0.05], clock=FAST),
    "no candidates: no plan": Case([], clock=FAST),
}  # fmt: skip


@pytest.mark.parametrize("plan_batch", PLANNERS.values(), ids=PLANNERS.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan_batch(case: Case, plan_batch):
    frames = np.array(case.frames or [1] * len(case.deadlines_s), dtype=np.int64)
    limit = None if case.finish_limit_s is None else np.full(len(TABLES.freqs_hz), case.finish_limit_s)
    plan = plan_batch(
        TABLES,
        ready_s=0.0,
        freq_index=case.clock,
        change_delay_s=case.change_delay_s,
        frames=frames,
        deadlines_s=np.array(case.deadlines_s, dtype=float),
        positions=np.arange(len(frames)),
        behind_s_per_frame=BEHIND_S_PER_FRAME,
        finish_limit_s=limit,
    )
    if case.positions is None:
        assert plan is None
        return
    assert plan is not None
    got = (plan.positions.tolist(), plan.n_frames, plan.freq_index, plan.overloaded)
    assert got == (case.positions, case.n_frames, case.freq_index, case.overloaded)
    n, f = case.n_frames - 1, case.freq_index
    assert plan.freq_hz == TABLES.freqs_hz[f] and plan.start_s == pytest.approx(case.start_s)
    assert plan.latency_s == TABLES.latency_s[f, n] and plan.energy_j == TABLES.energy_j[f, n]
    assert plan.marginal_epf_j == TABLES.marginal_epf_j[f, n]
    assert plan.finish_s == pytest.approx(case.start_s + TABLES.latency_s[f, n])
    assert plan.latest_dispatch_s == pytest.approx(case.latest_dispatch_s, abs=1e-9)
