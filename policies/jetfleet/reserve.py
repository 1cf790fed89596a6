"""The reserve: a few devices kept awake, idle and at their top clock for tight work the active set cannot serve in
time. Pure, side-effect free.

Consolidation sizes the active set for the forecast *rate*; a burst (a camera's 60 frames under a 2 s SLO) asks for
*room*: an idle device fast enough to serve it alone. The always-awake fleet has hundreds idle; a consolidated one
has its active devices busy, and a sleeping device takes seconds to wake. The reserve keeps that room, priced:

- **When.** Only while no device of the active set could serve the hardest tight arrival of the guard window
  (`ArrivalStats.hardest`: the tightest SLO, the most frames) within its SLO after finishing a full batch, with the
  rescue slack (`PowerConfig.rescue_slack_s`) to spare: active devices are busy most of the time (consolidation
  keeps them near `max_utilisation`), so such an arrival needs an idle one. And only as many devices (up to
  `PowerConfig.reserve`) as `PowerConfig.reserve_share` of the active set's idle power pays for: room is cheap in a
  large fleet and dear in a small one (one AGX Xavier kept awake for a burst every 30 s cost a 4-device fleet half its
  frames per joule).
- **Which.** Devices outside the active set able to serve that arrival: the members so far while they still are (a
  reserve that moves puts one device to sleep and wakes another), then the fastest, awake ones before sleeping ones
  of the same speed (then by name): in a Jetson fleet, AGX Xaviers.
- **What they run.** Only rescues: a queued on-time request that no worker took in this decision and whose slack on
  a reserve device (its deadline less the reserve's fastest time for it) is down to `PowerConfig.rescue_slack_s`,
  and requests no worker can reach at all. The workers get every request first; a reserve device is back in the
  pool as soon as its batch ends.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from jetfleet.types import DeviceState, Request
from policies.planning import GridTables, efficient_clock

__all__ = ["TwinGroup", "choose_reserve", "fastest_row_s", "fastest_s", "rescue_due", "twin_groups"]


def fastest_s(tables: GridTables, n_frames: int, change_delay_s: float, freq_hz: float) -> float:
    """Seconds an idle device of `tables` at `freq_hz` takes to serve `n_frames` alone at its fastest clock (a clock
    change counted when it is not there): inf when it cannot serve that many in one batch."""
    if n_frames > tables.max_frames:
        return math.inf
    b = n_frames - 1
    fi = tables.freq_index(freq_hz)
    at_clock = float(tables.padded_s[fi, b]) if fi >= 0 else math.inf
    return min(at_clock, change_delay_s + float(tables.fastest_padded_s[b]))


def fastest_row_s(tables: GridTables, change_delay_s: float, freq_hz: float) -> list[float]:
    """`fastest_s` for 1, 2, ... frames (index n - 1), then inf (more frames than one batch holds): the row for n
    frames is `row[min(n, len(row)) - 1]`. Worked out once per (tables, clock, change delay): the rescue asks it in
    most decisions, for one or two reserve devices and a few requests, where list look-ups beat array calls."""
    key = ("reserve-fastest", freq_hz, change_delay_s)
    row = tables.memo.get(key)
    if row is None:
        fi = tables.freq_index(freq_hz)
        switch = change_delay_s + tables.fastest_padded_s[: tables.max_frames]
        alone = np.minimum(tables.padded_s[fi, : tables.max_frames], switch) if fi >= 0 else switch
        row = tables.memo[key] = [*alone.tolist(), math.inf]
    return row


def _full_batch_s(tables: GridTables) -> float:
    """Padded seconds of a full batch at the clock the planner prefers: how long a busy device may take to free."""
    return float(tables.padded_s[efficient_clock(tables), tables.cap - 1])


@dataclass(frozen=True)
class TwinGroup:
    """Usable devices that answer alike here: the same tables and top clock (a fleet has a few such groups)."""

    tables: GridTables
    max_freq_hz: float
    members: tuple[DeviceState, ...]  # in usable order
    names: frozenset[str]


def twin_groups(usable: Sequence[tuple[DeviceState, GridTables]]) -> list[TwinGroup]:
    """`usable` grouped into `TwinGroup`s, in order of first appearance."""
    by_key: dict[tuple[int, float], tuple[GridTables, list[DeviceState]]] = {}
    for d, t in usable:
        by_key.setdefault((id(t), d.max_freq_hz), (t, []))[1].append(d)
    return [
        TwinGroup(t, freq_hz, tuple(members), frozenset(d.name for d in members))
        for (_, freq_hz), (t, members) in by_key.items()
    ]


def _first_outside(g: TwinGroup, active: frozenset[str], current: frozenset[str], size: int) -> list[DeviceState]:
    """The members of `g` outside `active` that could take one of the first `size` places of the reserve's order:
    those in `current`, and the first `size` awake and `size` asleep ones by name (one pass over the group)."""
    kept, awake, asleep = [], [], []
    for d in g.members:
        if d.name in active:
            continue
        if d.name in current:
            kept.append(d)
        else:
            (awake if d.power_state.awake else asleep).append(d)
    by_name = lambda d: d.name  # noqa: E731
    return kept + heapq.nsmallest(size, awake, key=by_name) + heapq.nsmallest(size, asleep, key=by_name)


def choose_reserve(
    groups: Sequence[TwinGroup],
    active: frozenset[str],
    current: frozenset[str],
    hardest: tuple[float, int] | None,
    size: int,
    share: float,
    keep_w: Callable[[DeviceState, GridTables], float],
    slack_s: float = 0.0,
) -> frozenset[str]:
    """The reserve for this decision (see the module docstring) among the usable devices, as `twin_groups`;
    `current`: the reserve so far. `keep_w(d, t)`: the watts that keeping `d` awake and idle costs over letting it
    sleep; `slack_s`: the rescue slack. Work per group, and per device only for a few candidates of each."""
    if hardest is None or size <= 0 or sum(len(g.members) for g in groups) <= size:
        return frozenset()
    slo_s, n_frames = hardest
    alone = [fastest_s(g.tables, n_frames, 0.0, g.max_freq_hz) for g in groups]
    candidates = []
    for g, s in zip(groups, alone, strict=True):
        if s <= slo_s:
            candidates += [(s, d.name, d, g.tables) for d in _first_outside(g, active, current, size)]
    # Members stay while they still serve it (a reserve that moves sends one device to sleep and wakes another), then
    # the fastest; of equally fast ones, an awake device before a sleeping one.
    candidates.sort(key=lambda a: (a[1] not in current, a[0], not a[2].power_state.awake, a[1]))
    chosen = candidates[:size]
    if not chosen:
        return frozenset()  # nothing outside the active set serves it
    working = [(g, s, len(g.names & active)) for g, s in zip(groups, alone, strict=True)]
    if any(n and s + _full_batch_s(g.tables) + slack_s <= slo_s for g, s, n in working):
        return frozenset()  # a worker could still serve it after the batch it is running, with slack to spare
    budget_w = share * sum(n * float(g.tables.idle_w.min()) for g, _, n in working)
    kept: list[str] = []
    for _, name, d, t in chosen:  # as many as the budget pays for
        budget_w -= keep_w(d, t)
        if budget_w < 0:
            break
        kept.append(name)
    return frozenset(kept)


def rescue_due(
    requests: Sequence[Request], now_s: float, serve_s: dict[int, float], slack_s: float
) -> tuple[list[Request], float]:
    """(the requests a reserve device must take now, when to look again for the rest). `serve_s`: request id -> the
    reserve's fastest seconds for it (inf: it cannot serve it)."""
    due, next_s = [], math.inf
    for r in requests:
        alone_s = serve_s.get(r.request_id, math.inf)
        if not math.isfinite(alone_s):
            continue
        latest_s = r.deadline_s - alone_s  # the latest start on an idle reserve device (padded: it may still make it)
        if r.deadline_s <= now_s:
            continue  # past due: the late path has it
        if latest_s - slack_s <= now_s:
            due.append(r)
        else:
            next_s = min(next_s, latest_s - slack_s)
    return due, next_s
