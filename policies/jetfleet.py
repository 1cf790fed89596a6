"""`jetfleet`: the project's own policy, the default. Energy-aware like LoudVA, without LoudVA's blind spots.

Each `decide`:

1. **Candidates.** The earliest-deadline-first head of the queue (`candidates`), per model family. Requests
   no healthy device can finish in time any more, counting each device's real `busy_until_s` and clock, are
   *late*: they are served in spare capacity (`late="serve"`, the default) or dropped with
   `DEADLINE_UNREACHABLE` (`late="drop"`). Nothing is dropped silently.
2. **Assignment.** Free devices (healthy, fewer than `max_in_flight` batches) are grouped by (kind, model
   variant, clock); within a group the earliest-free, then least-recently-used twin goes first, so no twin
   starves. Each group's first device proposes a plan (`choose_batch`: `policies.planning.plan_batch`,
   every request in the batch and the ones behind it in time); the plan that costs the fewest marginal
   joules per frame (above the idle floor) wins, its requests leave the candidate set; repeat while devices
   and candidates remain.
3. **Guard.** When no other free device could take it, a batch must end early enough for the device to
   serve the tightest request that may arrive meanwhile: the tightest SLO seen in `guard_window_s`, or a
   1-frame request with SLO `guard_slo_s` until something tighter was seen.
4. **Waiting.** `should_wait` holds a plan back while the expected arrivals (an exponentially weighted frame
   rate) would grow the batch enough to lower its marginal energy per frame, only until the plan's *latest
   safe dispatch* (from the cost model, margins included), and not once the stream has been quiet for
   `quiet_after_s`. Any arrival or completion re-plans earlier.
5. **Parking.** An idle device clocked above its lowest-idle-power frequency is down-clocked after
   `park_after_s` (the idle baseline is most of a Jetson's energy).
6. **Learning.** `observe` compares each finished batch's latency with the cost model's prediction and
   corrects later predictions for that batch size (`policies.planning.LatencyCorrection`).

Extension points for the overload and model-variant layers: override `candidates` (stream priorities,
bounded queues), `handle_late` (shedding), `variant_for` (model variant per family and device), or
`choose_batch` (the (device, frequency, batch) choice for a candidate set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice

import numpy as np

from cluster.catalogue import get_kind
from costmodel.base import CostModel
from jetfleet.errors import JetfleetError
from jetfleet.types import BatchResult, Decisions, DeviceState, Dispatch, Drop, DropReason, Request, SetFrequency
from policies.arrivals import ArrivalStats
from policies.base import Policy
from policies.jetfleet_parts import (
    DeviceGroup,
    JetfleetConfig,
    LateMode,
    _by_family,
    _Candidates,
    _device_for,
    _ParkGuard,
    _plan_key,
    _representatives,
    _Step,
    _wake_before,
)
from policies.planning import (
    BatchPlan,
    GridCache,
    GridTables,
    IdlePowerFn,
    default_idle_power_w,
    plan_batch,
)
from policies.queue import RequestQueue
from policies.registry import register

__all__ = ["DeviceGroup", "JetfleetConfig", "JetfleetPolicy", "LateMode"]


class JetfleetPolicy(Policy):
    """See the module docstring. `idle_power_w(kind, freq_hz)` overrides where idle board power comes from."""

    name = "jetfleet"

    def __init__(self, config: JetfleetConfig | None = None, *, idle_power_w: IdlePowerFn | None = None) -> None:
        self.config = config or JetfleetConfig()
        self._idle_power_override = idle_power_w
        self._grids: GridCache | None = None
        self._grids_cost: int | None = None  # id() of the cost model the grid cache belongs to
        self.arrivals = ArrivalStats(self.config.rate_halflife_s, self.config.guard_window_s)
        self._use_seq = 0
        self._last_use: dict[str, int] = {}  # device -> sequence number of its last dispatch
        self._settle_s: dict[str, float] = {}  # device -> when a clock change this policy asked for settles
        self._park: dict[str, tuple[float, dict[float, float]]] = {}  # kind -> (park freq, idle W per freq)
        self._flying: dict[tuple[str, int], tuple[str, str]] = {}  # (device, first request) -> (kind, model)
        self._park_dirty = True  # a device may have become idle since the last parking scan
        self._park_next_s = -math.inf  # when the next idle device reaches park_after_s
        self._held_before: set[str] = set()
        self._member_cache: dict[tuple, dict[tuple[str, str], list[DeviceState]]] = {}
        self._guard_cache: dict[tuple, tuple[GridTables, tuple]] = {}  # see `_guarded`
        self._floor_cache: dict[int, tuple[GridTables, list[float]]] = {}  # see `_epf_floor`

    # -- the Policy contract ----------------------------------------------------------------------
    def admit(self, now_s: float, request: Request, queue: RequestQueue) -> list[Drop]:
        self.arrivals.observe(request, now_s)
        return []

    def observe(self, result: BatchResult) -> None:
        """Learn from the measured latency of a finished batch how far the cost model is off (`learn_latency`)."""
        if not result.request_ids:
            return
        self._park_dirty = True
        flying = self._flying.pop((result.device, result.request_ids[0]), None)
        if flying is not None and result.ok and self._grids is not None:
            self._grids.observe(*flying, result.freq_hz, result.n_frames, result.latency_s)

    def decide(self, now_s: float, queue: RequestQueue, devices: Sequence[DeviceState], cost: CostModel) -> Decisions:
        step = _Step(now_s, cost, Decisions())
        healthy = [d for d in devices if d.healthy]
        if queue and healthy:
            on_time, past_due = self.candidates(now_s, queue, healthy)
            for family, requests in _by_family(on_time).items():
                self._serve_family(step, family, requests, healthy)
            late = past_due + step.late
            if late:
                self.handle_late(step, late, healthy)
        self._park_idle(step, healthy)
        step.out.wake_at_s = step.wake_s if math.isfinite(step.wake_s) else None
        return step.out

    # -- extension points -------------------------------------------------------------------------
    def candidates(
        self, now_s: float, queue: RequestQueue, devices: Sequence[DeviceState]
    ) -> tuple[list[Request], list[Request]]:
        """(candidates not yet due, EDF order; requests already past their deadline), both bounded in size.

        Past-due requests are fetched only as far as this decision can act on them: all (bounded) when they
        are dropped, else those old enough to expire plus, when a device is free to run them, a window more.
        """
        cfg = self.config
        on_time = list(islice(queue.by_deadline(now_s), cfg.window))
        n_due = queue.count_due_before(now_s)
        if not n_due:
            return on_time, []
        expiring = queue.count_due_before(now_s - cfg.late_expire_s)
        any_free = any(d.in_flight < cfg.max_in_flight for d in devices)
        take = n_due if cfg.late == "drop" else max(cfg.window if any_free else 0, expiring)
        if not take:
            return on_time, []
        return on_time, list(islice(queue.by_deadline(), min(n_due, take, cfg.max_late_per_decision)))

    def variant_for(self, family: str, device: DeviceState) -> str | None:
        """The model (variant) `device` would run for `family`; None when it cannot serve the family."""
        return family if not device.models or family in device.models else None

    def choose_batch(
        self,
        step: _Step,
        group: DeviceGroup,
        device: DeviceState,
        cands: _Candidates,
        alive: np.ndarray,
        fleet_fps: float,
        guard: tuple[float, int] | None = None,
    ) -> BatchPlan | None:
        """The (frequency, batch) `device` of `group` should run from the alive candidates; None if none fits.

        `fleet_fps` is the whole fleet's best throughput, frames per second. `guard` = (slo_s, n_frames) of a
        request that may arrive any moment with nothing else free to take it: the batch then must end early
        enough for the device to serve that request in time as well.
        """
        t = group.tables
        pos = cands.alive_positions(alive)[: t.cap + self.config.lookahead]
        ready_s = self._ready_s(step.now_s, device)
        budget_s, best, inv_best, best_min, overhead_s = self._guarded(t, group.change_delay_s, guard)
        # How fast the work left behind drains: this device at the clock it picks, plus the others at their best.
        others_fps = max(0.0, fleet_fps - 1.0 / t.s_per_frame)
        # Clocks at which the fleet keeps up with the arrivals with headroom (the queue is not all there is).
        need_fps = self.arrivals.frames_per_s(cands.family, step.now_s) / self.config.max_utilisation
        drain_fps = inv_best + others_fps
        return plan_batch(
            t,
            ready_s=ready_s,
            freq_index=t.freq_index(device.freq_hz),
            change_delay_s=group.change_delay_s,
            frames=cands.frames[pos],
            deadlines_s=cands.deadlines_s[pos],
            positions=pos,
            behind_s_per_frame=1.0 / drain_fps,
            behind_overhead_s=overhead_s,
            behind_share=1.0 / (1.0 + others_fps * best_min),
            finish_limit_s=None if budget_s is None else ready_s + budget_s,
            clock_ok=drain_fps >= need_fps,
        )

    def _guarded(
        self, t: GridTables, change_delay_s: float, guard: tuple[float, int] | None
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, float, np.ndarray]:
        """(budget_s, best, 1 / best, best.min(), padded_s[:, 0] - best) of `choose_batch` for (tables, guard):
        they depend on nothing else, so they are computed once per (tables, change delay, guard) and kept."""
        key = (id(t), change_delay_s, guard)
        hit = self._guard_cache.get(key)
        if hit is not None and hit[0] is t:
            return hit[1]
        budget_s = None  # (F,) longest batch that leaves room for the guard request
        per_frame = t.per_frame_s
        if guard is not None:
            slo_s, n = guard
            n = min(n, t.max_frames)
            budget_s = slo_s - np.minimum(t.padded_s[:, n - 1], change_delay_s + t.fastest_padded_s[n - 1])
            # Behind this batch the device runs batches no longer than the guard allows.
            per_frame = np.where(t.padded_s[:, : t.cap] <= budget_s[:, None], per_frame, np.inf)
            per_frame[:, 0] = t.per_frame_s[:, 0]
        best = per_frame.min(axis=1)
        value = (budget_s, best, 1.0 / best, float(best.min()), t.padded_s[:, 0] - best)
        if len(self._guard_cache) > 256:
            self._guard_cache.clear()
        self._guard_cache[key] = (t, value)
        return value

    def should_wait(self, step: _Step, plan: BatchPlan, tables: GridTables, family: str, left_behind: int = 0) -> bool:
        """Hold `plan` back while arrivals expected before its latest safe start would make it cheaper per frame.

        Only a batch that took all the queued work (`left_behind` == 0 frames left) can grow by waiting: one that
        left work behind was cut by deadlines, the guard or the cap, and waiting would only push work later."""
        horizon_s = _wake_before(plan) - max(step.now_s, plan.start_s)
        if plan.overloaded or horizon_s < self.config.min_wait_s or plan.n_frames >= tables.cap or left_behind > 0:
            return False
        if step.now_s - self.arrivals.last_arrival_s(family) >= self.config.quiet_after_s:
            return False  # the stream went quiet: nothing is coming to share the batch
        grown = min(tables.cap, plan.n_frames + int(self.arrivals.frames_per_s(family, step.now_s) * horizon_s))
        if grown <= plan.n_frames:
            return False
        return tables.marginal_epf_j[plan.freq_index, grown - 1] < plan.marginal_epf_j * (1.0 - self.config.wait_gain)

    def handle_late(self, step: _Step, late: list[Request], devices: Sequence[DeviceState]) -> None:
        """Requests no device can finish in time: drop them, or run them on devices with nothing better to do."""
        expire_s = step.now_s - self.config.late_expire_s
        expired = [r for r in late if r.deadline_s < expire_s]
        if self.config.late == "drop" or expired:
            gone = late if self.config.late == "drop" else expired
            reason = DropReason.DEADLINE_UNREACHABLE if self.config.late == "drop" else DropReason.DEADLINE_EXPIRED
            step.out.drops.append(Drop(tuple(r.request_id for r in gone), reason, "no device can finish it in time"))
            if self.config.late == "drop":
                return
            late = [r for r in late if r.deadline_s >= expire_s]
        limit, busy = self.config.max_in_flight, step.taken.union(step.held)
        if not any(d.in_flight < limit and d.name not in busy for d in devices):
            return  # no device left to run late work in this decision
        for family, requests in _by_family(late).items():
            self._serve_late(step, family, requests, devices)

    # -- on-time work -----------------------------------------------------------------------------
    def _serve_family(self, step: _Step, family: str, requests: list[Request], devices: Sequence[DeviceState]) -> None:
        cands = _Candidates.of(requests, family)
        groups = self._groups(step, family, devices, int(cands.frames.max()))
        if not groups:
            step.out.drops.append(Drop(tuple(cands.ids.tolist()), DropReason.NO_DEVICE, f"nothing serves {family}"))
            return
        alive = self._reachable(step.now_s, cands, groups)
        if not alive.all():
            step.late += [r for r, ok in zip(requests, alive.tolist(), strict=True) if not ok]
        fleet_fps = sum(g.frames_per_s for g in groups)
        free = [g for g in groups if g.free]
        tightest = self._guard(family, step.now_s)
        capable = self._guard_capable(step.now_s, free, tightest)
        while free and alive.any():
            best = self._best_plan(step, free, cands, alive, fleet_fps, tightest, capable)
            if best is None:
                return
            _, plan, group, rep = best
            device = _device_for(group, rep, plan, self._ready_s, step.now_s)
            group.free.remove(device)
            capable.discard(device.name)
            left_behind = int(cands.frames[alive].sum()) - plan.n_frames
            alive[plan.positions] = False
            if self.should_wait(step, plan, group.tables, family, left_behind):
                # Hold the batch for this device. Other devices go on only for requests that come before it in
                # deadline order (those this device cannot finish in time); the rest is planned at the next event.
                quiet_s = self.arrivals.last_arrival_s(family) + self.config.quiet_after_s
                step.wake(min(_wake_before(plan), quiet_s))
                step.held[device.name] = plan.latest_dispatch_s
                alive &= cands.deadlines_s < cands.deadlines_s[plan.positions[0]]
            else:
                self._dispatch(step, device, group.variant, plan, cands, "on time")
            free = [g for g in free if g.free]
        if free and len(requests) >= self.config.window and not alive.any():
            step.wake(step.now_s)  # the window ran dry with devices still free: look again at once

    def _best_plan(
        self,
        step: _Step,
        free: list[DeviceGroup],
        cands: _Candidates,
        alive: np.ndarray,
        fleet_fps: float,
        tightest: tuple[float, int] | None,
        capable: set[str],
    ) -> tuple[tuple, BatchPlan, DeviceGroup, DeviceState] | None:
        """(key, plan, group, device) of the best plan of the free groups' representatives (lowest `_plan_key`, the
        first in group and representative order on ties); None when no device can take any candidate.

        Groups are planned cheapest energy floor (`_epf_floor`) first, and a group whose floor is above the best
        plan so far is not planned at all: none of its plans could win. The choice is the one of planning all."""
        best: tuple[tuple, BatchPlan, DeviceGroup, DeviceState] | None = None
        order: Sequence[int] = range(len(free))
        # A subclass's plans may cost anything; one group has nothing to skip.
        prune = type(self).choose_batch is JetfleetPolicy.choose_batch and len(free) > 1
        floors: list[float] = []
        if prune:
            n_alive = int(cands.frames[alive].sum())
            floors = [self._epf_floor(g.tables, n_alive) for g in free]
            order = sorted(order, key=floors.__getitem__)
        for gi in order:
            group = free[gi]
            if prune and best is not None and best[0][0][0] == 0 and floors[gi] > best[0][0][1]:
                continue
            for ri, rep in enumerate(_representatives(group.free, self.config.clocks_per_kind)):
                # Keep one free device able to serve the tightest request that may arrive next.
                guard = tightest if tightest is not None and not (capable - {rep.name}) else None
                plan = self.choose_batch(step, group, rep, cands, alive, fleet_fps, guard)
                if plan is not None:
                    key = (_plan_key(plan, self._last_use.get(rep.name, -1)), gi, ri)
                    if best is None or key < best[0]:
                        best = (key, plan, group, rep)
        return best

    def _epf_floor(self, t: GridTables, n_frames: int) -> float:
        """round(lowest marginal J/frame of `t` over batches of at most `n_frames`, 6): no plan of at most that many
        frames costs less, so a group whose floor exceeds the best plan's `_plan_key` energy cannot win."""
        hit = self._floor_cache.get(id(t))
        if hit is None or hit[0] is not t:
            if len(self._floor_cache) > 256:
                self._floor_cache.clear()
            floors = [round(float(x), 6) for x in np.minimum.accumulate(t.marginal_epf_j.min(axis=0))]
            hit = self._floor_cache[id(t)] = (t, floors)
        return hit[1][min(max(n_frames, 1), len(hit[1])) - 1]

    def _guard(self, family: str, now_s: float) -> tuple[float, int] | None:
        """(slo_s, n_frames) of the tightest request that may arrive next: seen lately, or the configured prior."""
        seen = self.arrivals.tightest(family, now_s)
        prior = self.config.guard_slo_s
        if prior is None or (seen is not None and seen[0] <= prior):
            return seen
        return (prior, 1)

    def _guard_capable(self, now_s: float, groups: list[DeviceGroup], guard: tuple[float, int] | None) -> set[str]:
        """Up to two free devices that could serve the guard request (slo_s, n_frames) in time if it arrived now
        (all the planner needs to know is whether one other than the device it plans for exists)."""
        out: set[str] = set()
        if guard is None:
            return out
        slo_s, n = guard
        for g in groups:
            b = min(n, g.tables.max_frames) - 1
            switch_s = g.change_delay_s + float(g.tables.fastest_padded_s[b])
            for d in g.free:
                fi = g.tables.freq_index(d.freq_hz)
                serve_s = min(switch_s, float(g.tables.padded_s[fi, b])) if fi >= 0 else switch_s
                if self._ready_s(now_s, d) + serve_s <= now_s + slo_s:
                    out.add(d.name)
                    if len(out) >= 2:
                        return out
        return out

    def _reachable(self, now_s: float, cands: _Candidates, groups: list[DeviceGroup]) -> np.ndarray:
        """Which candidates some healthy device (busy ones included, at their real free time) can finish in time."""
        ok = np.zeros(len(cands.ids), dtype=bool)
        b = cands.frames - 1
        limit_s = cands.deadlines_s + 1e-6
        for g in groups:
            t = g.tables
            ready_min = min(g.ready_by_clock.values())
            # A candidate is reachable when any way of serving it finishes in time: test the ways one after the
            # other (switching clocks, then each clock as it is) and stop once every candidate is.
            ok |= ready_min + g.change_delay_s + t.fastest_padded_s[b] <= limit_s
            if ok.all():
                break
            clocks = [fi for fi in g.ready_by_clock if fi >= 0]
            if clocks:
                ready = np.array([g.ready_by_clock[fi] for fi in clocks])
                ok |= (ready[:, None] + t.padded_s[clocks][:, b] <= limit_s).any(axis=0)
                if ok.all():
                    break
        return ok

    def _groups(self, step: _Step, family: str, devices: Sequence[DeviceState], min_frames: int) -> list[DeviceGroup]:
        """Healthy devices able to serve `family`, grouped by (kind, variant); free ones earliest-ready first,
        then least recently used."""
        grids = self._grid_cache(step.cost)
        by_key = self._members(family, devices)
        now_s, limit, taken, last_use = step.now_s, self.config.max_in_flight, step.taken, self._last_use
        settle, inf = self._settle_s, math.inf
        out: list[DeviceGroup] = []
        for key, members in by_key.items():
            group = self._new_group(step, *key, min_frames, grids)
            if group is None:  # the cost model knows nothing of this (kind, variant)
                continue
            group.frames_per_s = len(members) * group.fps
            clock_index, by_clock = group.tables.clock_index, group.ready_by_clock
            free: list[tuple[float, int, str, DeviceState]] = []
            append, use_of, by_clock_get = free.append, last_use.get, by_clock.get
            for d in members:
                in_flight, name = d.in_flight, d.name
                ready_s = d.busy_until_s if in_flight and d.busy_until_s > now_s else now_s  # as _ready_s
                if settle:
                    ready_s = max(ready_s, settle.get(name, -inf))
                fi = clock_index.get(d.freq_hz)
                if fi is None:
                    fi = group.tables.freq_index(d.freq_hz)
                if ready_s < by_clock_get(fi, inf):
                    by_clock[fi] = ready_s
                if in_flight < limit and name not in taken:
                    append((ready_s, use_of(name, -1), name, d))
            free.sort()  # names are unique: the devices themselves are never compared
            group.free = [f[3] for f in free]
            out.append(group)
        return out

    def _members(self, family: str, devices: Sequence[DeviceState]) -> dict[tuple[str, str], list[DeviceState]]:
        """The devices able to serve `family` per (kind, variant), in device order.

        Cached per (family, device set) unless a subclass decides variants itself (they may change over time)."""
        cacheable = type(self).variant_for is JetfleetPolicy.variant_for
        key = (family, tuple(map(id, devices)))
        if cacheable and key in self._member_cache:
            return self._member_cache[key]
        by_key: dict[tuple[str, str], list[DeviceState]] = {}
        for d in devices:
            v = self.variant_for(family, d)
            if v is not None:
                by_key.setdefault((d.kind, v), []).append(d)
        if cacheable:
            if len(self._member_cache) > 64:
                self._member_cache.clear()
            self._member_cache[key] = by_key
        return by_key

    def _new_group(self, step: _Step, kind: str, variant: str, min_frames: int, grids: GridCache) -> DeviceGroup | None:
        try:
            tables = grids.get(step.cost, kind, variant, min_frames)
        except JetfleetError:
            return None
        return DeviceGroup(kind, variant, tables, get_kind(kind).freq_change_delay_s)

    def _dispatch(
        self, step: _Step, device: DeviceState, variant: str, plan: BatchPlan, cands: _Candidates, why: str
    ) -> None:
        ids = tuple(cands.ids[plan.positions].tolist())
        mode = "overload: max throughput" if plan.overloaded else f"{plan.marginal_epf_j:.3f} J/frame above idle"
        step.out.dispatches.append(
            Dispatch(
                device.name,
                ids,
                plan.freq_hz,
                variant,
                predicted_latency_s=plan.latency_s,
                predicted_energy_j=plan.energy_j,
                reason=f"jetfleet {why}: {plan.n_frames} frames, {mode}",
            )
        )
        step.taken.add(device.name)
        self._flying[(device.name, ids[0])] = (device.kind, variant)
        self._use_seq += 1
        self._last_use[device.name] = self._use_seq
        if abs(plan.freq_hz - device.freq_hz) >= 1.0:
            self._settle_s.pop(device.name, None)

    # -- late work --------------------------------------------------------------------------------
    def _serve_late(self, step: _Step, family: str, requests: list[Request], devices: Sequence[DeviceState]) -> None:
        """Run late requests on free devices, in batches short enough not to block on-time work."""
        late = sorted(requests, key=lambda r: (r.deadline_s, r.request_id))
        cands = _Candidates.of(late, family)
        alive = np.ones(len(late), dtype=bool)
        for group in self._groups(step, family, devices, int(cands.frames.max())):
            for device in list(group.free):
                if not alive.any():
                    return
                until_s = min(step.now_s + self.config.late_batch_max_s, step.held.get(device.name, math.inf))
                pos = np.flatnonzero(alive)
                plan = plan_batch(
                    group.tables,
                    ready_s=self._ready_s(step.now_s, device),
                    freq_index=group.tables.freq_index(device.freq_hz),
                    change_delay_s=group.change_delay_s,
                    frames=cands.frames[pos],
                    deadlines_s=np.full(len(pos), until_s),
                    positions=pos,
                    behind_s_per_frame=group.tables.per_frame_s[:, 0],
                )
                if plan is not None:
                    self._dispatch(step, device, group.variant, plan, cands, "late")
                    alive[plan.positions] = False

    # -- idle devices -----------------------------------------------------------------------------
    def _park_idle(self, step: _Step, devices: Sequence[DeviceState]) -> None:
        """Down-clock devices idle for `park_after_s` to their lowest-idle-power frequency.

        The scan over devices runs only when it can find something: after a completion (`observe`), when the
        set of devices held for a batch changed, or when a device's parking time comes."""
        held = set(step.held)
        if not (self._park_dirty or held != self._held_before or step.now_s >= self._park_next_s):
            step.wake(self._park_next_s)
            return
        self._park_dirty, self._held_before, self._park_next_s = False, held, math.inf
        for name in [n for n, t in self._settle_s.items() if t <= step.now_s]:
            del self._settle_s[name]  # settled: keep the dict small, it is read for every device
        now_s, taken = step.now_s, step.taken
        # d.idle(now_s), inlined: this scans the whole fleet.
        idle = [
            d
            for d in devices
            if d.in_flight == 0 and d.busy_until_s <= now_s and d.name not in taken and d.name not in held
        ]
        guard = _ParkGuard(self, step, idle)
        park = self._park
        for d in idle:
            hit = park.get(d.kind)
            park_hz, idle_w = hit if hit is not None else self._park_point(step.cost, d.kind)
            if abs(d.freq_hz - park_hz) < 1.0 or idle_w.get(d.freq_hz, math.inf) - idle_w[park_hz] < 1e-3:
                continue
            idle_since_s = max(d.last_busy_s, d.busy_until_s)
            if step.now_s - idle_since_s < self.config.park_after_s:
                self._park_next_s = min(self._park_next_s, idle_since_s + self.config.park_after_s)
            elif guard.may_park(d, park_hz):
                step.out.frequency_changes.append(SetFrequency(d.name, park_hz, "jetfleet: park idle device"))
                self._settle_s[d.name] = step.now_s + get_kind(d.kind).freq_change_delay_s
        step.wake(self._park_next_s)

    def _park_point(self, cost: CostModel, kind: str) -> tuple[float, dict[float, float]]:
        hit = self._park.get(kind)
        if hit is None:
            idle = self._idle_power(cost)
            idle_w = {f: idle(kind, f) for f in get_kind(kind).freqs_hz}
            hit = self._park[kind] = (min(idle_w, key=lambda f: (idle_w[f], f)), idle_w)
        return hit

    # -- helpers ----------------------------------------------------------------------------------
    def _ready_s(self, now_s: float, device: DeviceState) -> float:
        busy_s = device.busy_until_s if device.in_flight else now_s
        return max(now_s, busy_s, self._settle_s.get(device.name, -math.inf))

    def _grid_cache(self, cost: CostModel) -> GridCache:
        if self._grids is None or self._grids_cost != id(cost):
            self._grids = GridCache(self._idle_power(cost), self.config.margins, learn=self.config.learn_latency)
            self._grids_cost = id(cost)
            self._park.clear()
        return self._grids

    def _idle_power(self, cost: CostModel) -> IdlePowerFn:
        if self._idle_power_override is not None:
            return self._idle_power_override
        from_cost = getattr(cost, "idle_power_w", None)
        return from_cost if callable(from_cost) else default_idle_power_w


@register("jetfleet")
def _make_jetfleet(arg: str | None) -> Policy:
    """`jetfleet` (late requests served in spare capacity) or `jetfleet:drop` (late ones dropped)."""
    if arg is None:
        return JetfleetPolicy()
    if arg in ("serve", "drop"):
        return JetfleetPolicy(JetfleetConfig(late=arg))
    raise ValueError(f"unknown jetfleet option {arg!r}; expected 'serve' or 'drop'")
