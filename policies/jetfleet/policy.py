"""`JetfleetPolicy`: the project's own policy, the default. Energy-aware like LoudVA, without LoudVA's blind spots.

Each `decide`:

1. **Candidates.** The earliest-deadline-first head of the queue (`candidates`), per model family. Requests
   no healthy device can finish in time any more, counting each device's real `busy_until_s` and clock, are
   *late*: they are served in spare capacity (`late="serve"`, the default) or dropped with
   `DEADLINE_UNREACHABLE` (`late="drop"`). Nothing is dropped silently.
2. **Assignment.** Free devices (healthy, fewer than `max_in_flight` batches) are grouped by (kind, model
   variant, own facts) (`policies.jetfleet.groups`); each group's first device at each of its clocks proposes a
   plan (`choose_batch`: `policies.planning.plan_batch`, every request in the batch and the ones behind it in
   time); the plan the `Objective` scores lowest wins (`policies.jetfleet.objective`; energy per frame above
   idle by default), its requests leave the candidate set; repeat while devices and candidates remain.
3. **Guard.** A batch leaves room for the tightest request that may arrive (`policies.jetfleet.guard`).
4. **Waiting.** `should_wait` holds a plan back while the expected arrivals (an exponentially weighted frame
   rate) would lower its score enough, only until the plan's *latest safe dispatch* (from the cost model,
   margins included), and not once the stream has been quiet for `quiet_after_s`.
5. **Parking.** Idle devices go to their lowest-idle-power clock (`policies.jetfleet.parking`).
6. **Power states.** Devices outside the active set sleep; active ones nap between batches when the gap pays
   for the transitions; sleeping ones are woken before queued work needs them (`policies.jetfleet.power`).
   Steps 1-5 see only awake devices. `JetfleetConfig(power=PowerConfig(enabled=False))` keeps the fleet awake.
7. **Learning.** Plans read the core's cost view with its learned latency correction (`learn_latency`).

`decide` changes nothing. The policy's memory — arrival statistics, each device's last use, clock changes and
wakes still settling, the parking scan, the active set — changes only in `absorb` (what the core applied) and `observe`.

Extension points for the model-variant layer: `variant_for` (model variant per family and device) and
`choose_batch` (the (device, frequency, batch) choice for a candidate set).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from costmodel.view import CostView
from jetfleet.errors import ConfigError, JetfleetError
from jetfleet.types import (
    Applied,
    BatchResult,
    Decisions,
    DeviceState,
    Dispatch,
    Drop,
    DropReason,
    Request,
    SetFrequency,
)
from policies.arrivals import ArrivalStats
from policies.base import Policy
from policies.context import StepContext, device_grid
from policies.jetfleet.candidates import Candidates, by_family, split_by_family
from policies.jetfleet.config import JetfleetConfig
from policies.jetfleet.groups import DeviceGroup, GroupKey, device_for, group_key, representatives
from policies.jetfleet.guard import Guard, ParkGuard, capable_devices, guard_budget, guard_request
from policies.jetfleet.objective import floor, plan_key
from policies.jetfleet.parking import Parking, ParkScan
from policies.jetfleet.power import Demand, PowerConfig, PowerMemo, PowerPlanner
from policies.jetfleet.reserve import fastest_row_s, rescue_due
from policies.jetfleet.step import Step
from policies.planning import BatchPlan, GridTables, derive_tables, overlapped, plan_batch
from policies.registry import register

__all__ = ["JetfleetPolicy"]
# A batch queued behind a running one (`overlap_transfers`) is sent at most this long before its input's transfer
# must start. Sent any earlier, it is tied to that device while another might free first; sent just in time (5 ms),
# a decision that comes late loses the overlap. Measured on the 100-device `bench_simulator` workload, the 200-camera
# diurnal day and Experiment 1 at 8x (frames/J, % in SLO): 5 ms 1.887/94.5, 1.160/99.64, 2.658/99.98; 0.1 s
# 1.937/96.1, 1.133/99.63, 2.675/99.98; 0.5 s 1.991/97.2, 1.165/99.67, 2.696/99.98; unbounded 1.950/97.3,
# 1.058/99.44, 2.649/99.97. Experiment 1 itself moved by less than 0.005 frames/J and 0.01 points across them.
_LEAD_SLACK_S = 0.5


class JetfleetPolicy(Policy):
    """See the module docstring."""

    name = "jetfleet"

    def __init__(self, config: JetfleetConfig | None = None) -> None:
        self.config = config or JetfleetConfig()
        self.objective = self.config.objective
        self.arrivals = ArrivalStats(self.config.rate_halflife_s, self.config.guard_window_s)
        self.parking = Parking(self.config.park_after_s)
        self.power = PowerPlanner(self.config.power)
        self._use_seq = 0
        self._last_use: dict[str, int] = {}  # device -> sequence number of its last applied dispatch
        self._settle: dict[str, tuple[float, float]] = {}  # device -> (settled at, clock) of an applied change
        self._settle_rev = 0  # counts changes to `_settle` (what `_ready_part` keeps is valid while it stands)
        self._tables: dict[GroupKey, tuple[CostView, int, GridTables]] = {}  # a memo of `tables`
        self._members: tuple[Sequence[DeviceState], dict[str, dict[GroupKey, list[DeviceState]]]] | None = None
        self._healthy_view: tuple[Sequence[DeviceState], Sequence[DeviceState]] | None = None
        self._awake_view: tuple[Sequence[DeviceState], frozenset[str], list[DeviceState]] | None = None
        self._power_view: _PowerView | None = None  # a memo of `_with_tables`
        self._reserve_view: tuple | None = None  # a memo of `_split_reserve`
        self._not_busy_view: tuple | None = None  # a memo of `_not_busy`
        self._idle_splits: tuple[Sequence[DeviceState], dict[int, tuple]] | None = None  # a memo of `_idle_split`
        self._group_orders: dict[GroupKey, _GroupOrder] = {}  # what `_groups` keeps per group between decisions
        self._tables_stored = 0  # tables `_tables_of` stored so far: `_with_tables` knows that none changed

    # -- the Policy contract ----------------------------------------------------------------------
    def absorb(self, applied: Applied) -> None:
        """Remember what was applied: arrivals, which devices ran what, clock changes, the parking scan."""
        for request in (*applied.admitted, *applied.refused):  # offered load: a refused arrival is demand too
            self.arrivals.observe(request, applied.now_s)
        for d in applied.dispatches:
            self._use_seq += 1
            self._last_use[d.device] = self._use_seq
            settling = self._settle.get(d.device)
            if settling is not None and abs(settling[1] - d.freq_hz) >= 1.0:
                del self._settle[d.device]  # a new clock change: the dispatch's start already pays its delay
                self._settle_rev += 1
        for change in applied.frequency_changes:
            settled_s = change.settled_s if math.isfinite(change.settled_s) else applied.now_s
            self._settle[change.device] = (settled_s, change.freq_hz)
            self._settle_rev += 1
        for power in applied.power_changes:
            self.parking.invalidate()
            if power.state.awake and math.isfinite(power.settled_s):
                self._settle[power.device] = (power.settled_s, math.nan)  # a wake: ready once it completes
                self._settle_rev += 1
        if self._settle and (applied.dispatches or applied.frequency_changes):
            for name in [n for n, (t, _) in self._settle.items() if t <= applied.now_s]:
                del self._settle[name]  # settled: keep the dict small, it is read for every device
                self._settle_rev += 1
        memo = applied.memo
        if isinstance(memo, tuple) and len(memo) == 2:
            memo, power_memo = memo
            if isinstance(power_memo, PowerMemo):
                self.power.absorb(power_memo)
        if isinstance(memo, ParkScan):
            self.parking.absorb(memo)

    def observe(self, result: BatchResult) -> None:
        if result.request_ids:
            self.parking.invalidate()

    def decide(self, ctx: StepContext) -> Decisions:
        step = Step(ctx, Decisions())
        healthy = self._healthy(ctx.devices)
        awake = self._awake(healthy, ctx.asleep)
        # Power changes a wrapper drops (`StepContext.power_control`) would leave devices held back from work awake.
        power_on = self.config.power.enabled and ctx.power_control
        workers, reserve = self._split_reserve(awake) if power_on else (awake, [])
        if ctx.queue and awake:
            step.window, families = split_by_family(self.candidates(ctx, awake))
            for cands in families.values():
                if workers:
                    self._serve_family(step, cands, workers)
            if reserve:
                self._rescue(step, reserve)
            late = self.past_due(step, workers) + step.late
            if late:
                self.handle_late(step, late, workers)
        park = self._park_idle(step, workers)
        if reserve:
            self._ready_reserve(step, reserve)
        step.out.memo = park
        if power_on:
            step.out.memo = (park, self._plan_power(step, healthy))
        if step.relook and step.out.dispatches:
            # Only when this decision took work: a window that ran dry of requests no device can reach in time
            # (waiting for wakes, say) looks the same a microsecond later, and looking again at once then spun the
            # simulator through 658,397 decisions for 3,022 requests on a 1,000-device fleet (and would spin the
            # live scheduler's loop); the next arrival, completion or timer looks again instead.
            step.wake(step.now_s)
        step.run_deferred()
        step.out.wake_at_s = step.wake_s if math.isfinite(step.wake_s) else None
        return step.out

    def _healthy(self, devices: Sequence[DeviceState]) -> Sequence[DeviceState]:
        """The healthy devices: the core's own sequence when all are (what is derived from it is kept:
        `_members_of`), the same list while the core hands the same sequence (`StepContext`: a new one whenever a
        device's health changed)."""
        hit = self._healthy_view
        if hit is not None and hit[0] is devices:
            return hit[1]
        healthy = [d for d in devices if d.healthy]
        self._healthy_view = (devices, devices if len(healthy) == len(devices) else healthy)
        return self._healthy_view[1]

    # -- workers and the reserve (policies.jetfleet.reserve) ----------------------------------------
    def _split_reserve(self, awake: Sequence[DeviceState]) -> tuple[Sequence[DeviceState], list[DeviceState]]:
        """(the workers: awake devices of the active set, which take any work; the awake ones in reserve, which take
        rescues: `policies.jetfleet.reserve`). An awake device outside both takes no new work: it finishes what it
        runs and the power rules put it to sleep. (Given work, a device dropped from the active set while busy stayed
        busy and awake for good: on the 1,000-device day 12 such devices ran all day beside the active set.)"""
        power = self.config.power
        names = self.power.reserve if power.enabled else frozenset()
        active = self.power.active if power.enabled and power.consolidate else frozenset()
        if not names and not active:
            return awake, []
        hit = self._reserve_view  # the same lists while neither changes (`_members_of` keys on the sequence)
        if hit is None or hit[0] is not awake or hit[1] is not names or hit[2] is not active:
            workers = [d for d in awake if d.name not in names and (not active or d.name in active)]
            hit = self._reserve_view = (awake, names, active, workers, [d for d in awake if d.name in names])
        return hit[3], hit[4]

    def _rescue(self, step: Step, reserve: list[DeviceState]) -> None:
        """Give the idle reserve devices what is due for rescue (`reserve.rescue_due`): queued on-time requests no
        worker took whose slack on a reserve device is down to `rescue_slack_s`, and the ones no worker can reach."""
        now_s = step.now_s
        free = [d for d in reserve if not d.in_flight and d.awake_at_s <= now_s and d.name not in step.taken]
        if not free:
            return
        sent = {i for d in step.out.dispatches for i in d.request_ids}
        window = step.window.requests if step.window is not None else []
        waiting = [r for r in window if r.request_id not in sent] if sent else list(window)
        unreachable = {r.request_id for r in step.late}
        if unreachable:
            in_window = {r.request_id for r in window}
            waiting += [r for r in step.late if r.request_id not in sent and r.request_id not in in_window]
        serve_s = self._reserve_serve_s(step, waiting, free)
        due, next_s = rescue_due(waiting, now_s, serve_s, self.config.power.rescue_slack_s)
        if unreachable:
            due_ids = {r.request_id for r in due}
            due += [r for r in waiting if r.request_id in unreachable and r.request_id not in due_ids]
        step.wake(next_s)
        if not due:
            return
        before = len(step.out.dispatches)
        for family, requests in by_family(due).items():
            edf = sorted(requests, key=lambda r: (r.deadline_s, r.request_id))
            self._serve_family(step, Candidates.of(edf, family), free, may_wait=False)  # at their slack limit
            sent = {i for d in step.out.dispatches[before:] for i in d.request_ids}
            left = [r for r in edf if r.request_id not in sent]
            idle = [d for d in free if d.name not in step.taken]
            if left and idle and self.config.late == "serve":
                # Late by the padded estimate only: an idle reserve device at its top clock is their best chance (the
                # always-awake fleet gives them an idle AGX Xavier the same way, through its late path).
                self._serve_late(step, family, left, idle)
        rescued = {i for d in step.out.dispatches[before:] for i in d.request_ids}
        late: dict[int, Request] = {}  # the reserve's planning may have found some unreachable again: once each
        for r in step.late:
            if r.request_id not in rescued:
                late.setdefault(r.request_id, r)
        step.late = list(late.values())

    def _reserve_serve_s(self, step: Step, waiting: list[Request], free: list[DeviceState]) -> dict[int, float]:
        """Request id -> the fastest seconds an idle reserve device of `free` serves it in alone (inf: none can); one
        tables look-up per device and family, not per request (a window holds up to `window` requests)."""
        serve_s: dict[int, float] = {}
        for family, requests in by_family(waiting).items():
            most = max(r.n_frames for r in requests)
            rows = []
            for d in free:
                variant = self.variant_for(family, d, step.now_s)
                if variant is None:
                    continue
                try:
                    t = self.tables(step.ctx, d, variant, most)
                except JetfleetError:
                    continue
                rows.append(fastest_row_s(t, d.freq_change_delay_s, d.freq_hz))
            by_frames: dict[int, float] = {}  # requests of one size share their time (most windows hold few sizes)
            for r in requests:
                n = r.n_frames
                fastest_s = by_frames.get(n)
                if fastest_s is None:
                    fastest_s = by_frames[n] = min((row[min(n, len(row)) - 1] for row in rows), default=math.inf)
                serve_s[r.request_id] = fastest_s
        return serve_s

    def _ready_reserve(self, step: Step, reserve: list[DeviceState]) -> None:
        """Keep idle reserve devices at their top clock: a tight request then pays no clock change."""
        for d in reserve:
            if d.in_flight or d.name in step.taken or d.freq_hz == d.max_freq_hz or d.awake_at_s > step.now_s:
                continue
            if d.name in self._settle:
                continue
            step.out.frequency_changes.append(SetFrequency(d.name, d.max_freq_hz, "jetfleet: reserve at its top clock"))

    # -- power states -------------------------------------------------------------------------------
    def _awake(self, devices: Sequence[DeviceState], asleep: frozenset[str] | None) -> Sequence[DeviceState]:
        """The awake devices (waking ones included): the only ones batches and clock changes may go to. The same
        sequence object while every device is awake, and while the same ones sleep (kept for `_members_of`).
        `asleep`: the context's names of the devices not awake, None when it did not say."""
        if asleep is None:
            asleep = frozenset(d.name for d in devices if not d.power_state.awake)
        if not asleep:
            return devices
        hit = self._awake_view
        if hit is not None and hit[0] is devices and (hit[1] is asleep or hit[1] == asleep):
            return hit[2]
        awake = [d for d in devices if d.name not in asleep]
        self._awake_view = (devices, asleep, awake)
        return awake

    def _plan_power(self, step: Step, devices: Sequence[DeviceState]) -> PowerMemo | None:
        """Propose sleeps and wakes (`policies.jetfleet.power`); returns the planner's memo for `absorb`."""
        ctx, now_s = step.ctx, step.now_s
        window = step.window  # the same window as `candidates`' on-time one, unless a subclass chose another
        if window is None or type(self).candidates is not JetfleetPolicy.candidates:
            window = Candidates.of(list(islice(ctx.queue.by_deadline(now_s), self.config.window)), "")
        head = ctx.queue.earliest()
        families = self.arrivals.families
        family = head.model if head is not None else (families[0] if families else None)
        if family is None:
            return None
        guards = [g for f in families if (g := guard_request(self.arrivals, self.config.power.guard_slo_s, f, now_s))]
        guard = min(guards) if guards else None
        hardest = self.arrivals.hardest(family, now_s)
        demand = Demand(
            hardest=hardest,
            now_s=now_s,
            rate_fps=sum(self.arrivals.frames_per_s(f, now_s) for f in families),
            requests_per_s=self.arrivals.requests_per_s(now_s),
            queued_frames=ctx.queue.frames,
            late=ctx.queue.count_due_before(now_s) > 0,
            deadlines_s=window.deadlines_s,
            frames=window.frames,
            guard_slo_s=guard[0] if guard is not None else None,
            guard_frames=guard[1] if guard is not None else 1,
            max_utilisation=self.config.max_utilisation,
        )

        taken = step.taken
        changes, wake_s, memo = self.power.plan(
            self._with_tables(ctx, family, devices),
            demand,
            lambda d: d.in_flight > 0 or d.name in taken,
            step.held,
            ctx.asleep,
            ctx.busy,
        )
        step.out.power_changes += changes
        sleeping = {c.device for c in changes if not c.state.awake}
        if sleeping and step.out.frequency_changes:  # a device put to sleep is not parked as well
            step.out.frequency_changes = [c for c in step.out.frequency_changes if c.device not in sleeping]
        step.wake(wake_s)
        return memo

    # -- extension points -------------------------------------------------------------------------
    def candidates(self, ctx: StepContext, devices: Sequence[DeviceState]) -> list[Request]:
        """The candidates not yet due: the earliest-deadline-first head of the queue, at most `window` of them."""
        return list(islice(ctx.queue.by_deadline(ctx.now_s), self.config.window))

    def past_due(self, step: Step, devices: Sequence[DeviceState]) -> list[Request]:
        """Requests already past their deadline, EDF order, fetched (after the on-time work is planned) only as far
        as this decision can act on them: all (bounded) when they are dropped, else those old enough to expire plus,
        when a device is still free to run them, a window more. Most decisions with a backlog have none left free,
        and then only the expired ones are read."""
        cfg, queue, now_s = self.config, step.ctx.queue, step.now_s
        n_due = queue.count_due_before(now_s)
        if not n_due:
            return []
        expiring = queue.count_due_before(now_s - cfg.late_expire_s)
        take = n_due if cfg.late == "drop" else max(cfg.window if self._any_free(step, devices) else 0, expiring)
        if not take:
            return []
        return list(islice(queue.by_deadline(), min(n_due, take, cfg.max_late_per_decision)))

    def _any_free(self, step: Step, devices: Sequence[DeviceState]) -> bool:
        """Whether a device may still take a batch in this decision (not given one, none held back for it)."""
        taken, held = step.taken, step.held
        return any(d.in_flight < self.limit(d) and d.name not in taken and d.name not in held for d in devices)

    def limit(self, device: DeviceState) -> int:
        """Batches `device` may hold at once: `max_in_flight`, one more behind a network link when transfers may
        overlap computing (`JetfleetConfig.overlap_transfers`). Asked once per group of devices (`GroupKey`, whose
        members share their link)."""
        limit = self.config.max_in_flight
        return limit + 1 if self.config.overlap_transfers and not device.link.local else limit

    def variant_for(self, family: str, device: DeviceState, now_s: float) -> str | None:
        """The model (variant) `device` would run for `family` at `now_s`; None when it cannot serve the family."""
        return family if not device.models or family in device.models else None

    def choose_batch(
        self,
        step: Step,
        group: DeviceGroup,
        device: DeviceState,
        cands: Candidates,
        alive: np.ndarray,
        fleet_fps: float,
        guard: Guard | None = None,
    ) -> BatchPlan | None:
        """The (frequency, batch) `device` of `group` should run from the alive candidates; None if none fits.

        `fleet_fps` is the whole fleet's best throughput, frames per second. `guard` = (slo_s, n_frames) of a
        request that may arrive any moment with nothing else free to take it: the batch then must end early
        enough for the device to serve that request in time as well.
        """
        if device.in_flight and not device.link.local:
            longest_s = self._longest_lead_s(group.tables, cands, alive)
            if device.busy_until_s - step.now_s > longest_s + _LEAD_SLACK_S:
                # Too early to queue behind the running batch whatever batch it finds (`_batch_for`): only the wake
                # that batch asks for counts, and only if it is the decision's earliest (`Step.defer`). A third of
                # the plans on the 100-device workload.
                earliest_s = device.busy_until_s - longest_s
                step.defer(earliest_s, lambda: self._batch_for(step, group, device, cands, alive, fleet_fps, guard))
                return None
        return self._batch_for(step, group, device, cands, alive, fleet_fps, guard)

    def _longest_lead_s(self, tables: GridTables, cands: Candidates, alive: np.ndarray) -> float:
        """The longest transfer of a batch `choose_batch` may plan (transfers grow with frames): a prefix of the alive
        candidates it looks at, no larger than the tables' cap unless its first request alone is; inf with no link."""
        if tables.transfer_s is None:
            return math.inf
        total, most = cands.alive_head_frames(alive, tables.cap + self.config.lookahead)
        if not total:
            return math.inf
        largest = min(total, max(tables.cap, most), tables.max_frames)
        return float(tables.transfer_s[largest - 1])

    def _batch_for(
        self,
        step: Step,
        group: DeviceGroup,
        device: DeviceState,
        cands: Candidates,
        alive: np.ndarray,
        fleet_fps: float,
        guard: Guard | None,
    ) -> BatchPlan | None:
        """`choose_batch`'s plan, planned now; it changes nothing in the decision but its wake time."""
        t = group.tables
        pos, frames, deadlines_s = cands.alive_head(alive, t.cap + self.config.lookahead)
        ready_s = self.ready_s(step.now_s, device)
        remaining_s = -1.0  # >= 0: planning a batch to queue behind the running one
        if device.in_flight and not device.link.local:  # its input crosses while the batch before it runs
            remaining_s = max(0.0, device.busy_until_s - step.now_s)
            t = overlapped(t, remaining_s)
            # Queued behind a running batch, it inherits that batch's prediction error: pad what is left of it.
            ready_s += self.config.margins.abs_s + self.config.margins.rel * remaining_s
        budget_s, best, inv_best, best_min, overhead_s = guard_budget(t, group.change_delay_s, guard)
        # How fast the work left behind drains: this device at the clock it picks, plus the others at their best.
        others_fps = max(0.0, fleet_fps - 1.0 / t.s_per_frame)
        # Clocks at which the fleet keeps up with the arrivals with headroom (the queue is not all there is).
        need_fps = self.arrivals.frames_per_s(cands.family, step.now_s) / self.config.max_utilisation
        drain_fps = inv_best + others_fps
        plan = plan_batch(
            t,
            ready_s=ready_s,
            freq_index=t.freq_index(device.freq_hz),
            change_delay_s=group.change_delay_s,
            frames=frames,
            deadlines_s=deadlines_s,
            positions=pos,
            behind_s_per_frame=1.0 / drain_fps,
            behind_overhead_s=overhead_s,
            behind_share=1.0 / (1.0 + others_fps * best_min),
            # A tight request may arrive now: it waits for whatever delays this batch (the batch before it, a wake,
            # a clock change settling) and the batch itself, so the room is counted from now.
            finish_limit_s=None if budget_s is None else step.now_s + budget_s,
            clock_ok=drain_fps >= need_fps,
            score=self.objective.table(t),
        )
        if plan is not None and remaining_s >= 0 and t.transfer_s is not None:
            lead_s = float(t.transfer_s[plan.n_frames - 1])
            if remaining_s > lead_s + _LEAD_SLACK_S:  # too early: committing it now would only tie it to this device
                step.wake(device.busy_until_s - lead_s)
                return None
        return plan

    def should_wait(self, step: Step, plan: BatchPlan, tables: GridTables, family: str, left_behind: int = 0) -> bool:
        """Hold `plan` back while arrivals expected before its latest safe start would lower its score enough.

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
        score = self.objective.table(tables)
        return bool(score[plan.freq_index, grown - 1] < plan.score * (1.0 - self.config.wait_gain))  # not a numpy bool

    def handle_late(self, step: Step, late: list[Request], devices: Sequence[DeviceState]) -> None:
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
        if not self._any_free(step, devices):
            return  # no device left to run late work in this decision
        for family, requests in by_family(late).items():
            self._serve_late(step, family, requests, devices)

    def ready_s(self, now_s: float, device: DeviceState) -> float:
        """When `device` is free, awake (a wake under way completes first) and any clock change applied to it has
        settled."""
        busy_s = device.busy_until_s if device.in_flight else now_s
        settling = self._settle.get(device.name)
        settled_s = settling[0] if settling is not None else -math.inf
        return max(now_s, busy_s, settled_s, device.awake_at_s) + device.round_trip_s

    def tables(self, ctx: StepContext, device: DeviceState, variant: str, min_frames: int = 1) -> GridTables:
        """The planner's tables of `variant` on `device`'s kind and clocks, kept in the cost view (and here, per
        group, while the view's `generation` stands still: the look-up in the view hashes frequency lists)."""
        return self._tables_of(ctx, group_key(device, variant), device, min_frames)

    def _tables_of(self, ctx: StepContext, key: GroupKey, device: DeviceState, min_frames: int = 1) -> GridTables:
        """`tables` for the group `key` that `device` belongs to (the key already in hand)."""
        variant = key[1]
        cost = ctx.cost
        hit = self._tables.get(key)
        if hit is not None and hit[0] is cost and hit[1] == cost.generation and hit[2].max_frames >= min_frames:
            return hit[2]
        grid = device_grid(cost, device, variant, min_frames, corrected=self.config.learn_latency)
        idle_w = cost.idle_w(device.kind, device.freqs_hz)
        tables = cost.derived(
            ("jetfleet-tables", *key, self.config.margins, self.config.learn_latency),
            grid,
            lambda: derive_tables(grid, idle_w, self.config.margins, device.max_batch),
        )
        self._tables[key] = (cost, cost.generation, tables)
        self._tables_stored += 1
        return tables

    # -- on-time work -----------------------------------------------------------------------------
    def _serve_family(
        self, step: Step, cands: Candidates, devices: Sequence[DeviceState], may_wait: bool = True
    ) -> None:
        family, requests = cands.family, cands.requests
        groups = self._groups(step, family, devices, cands.most_frames)
        if not groups:
            step.out.drops.append(Drop(tuple(cands.ids.tolist()), DropReason.NO_DEVICE, f"nothing serves {family}"))
            return
        alive = self._reachable(step.now_s, cands, groups)
        # Counted, not reduced: a numpy reduction costs a microsecond or so even on a handful of candidates.
        n_alive = int(np.count_nonzero(alive))
        if n_alive < len(requests):
            step.late += [requests[i] for i in np.flatnonzero(~alive).tolist()]
        alive_frames = cands.total_frames if n_alive == len(requests) else int(cands.frames[alive].sum())
        fleet_fps = sum(g.frames_per_s for g in groups)
        free = [g for g in groups if g.free]
        tightest = guard_request(self.arrivals, self.config.guard_slo_s, family, step.now_s)
        capable = capable_devices(step.now_s, free, tightest, self.ready_s)
        # `alive` is never changed in place, only replaced (`Candidates.alive_positions` caches by identity).
        while free and n_alive:
            best = self._best_plan(step, free, cands, alive, alive_frames, fleet_fps, tightest, capable)
            if best is None:
                return
            _, plan, group, rep = best
            device = device_for(group, rep, plan, self.ready_s, step.now_s)
            if device.round_trip_s > 0:  # the plan starts after the round trip; a dispatch must leave before it
                plan = dataclasses.replace(plan, latest_dispatch_s=plan.latest_dispatch_s - device.round_trip_s)
            group.take(device)
            capable.discard(device.name)
            left_behind = alive_frames - plan.n_frames  # a plan's frames are those of its positions
            alive = alive.copy()
            alive[plan.positions] = False
            if may_wait and self.should_wait(step, plan, group.tables, family, left_behind):
                # Hold the batch for this device. Other devices go on only for requests that come before it in
                # deadline order (those this device cannot finish in time); the rest is planned at the next event.
                quiet_s = self.arrivals.last_arrival_s(family) + self.config.quiet_after_s
                step.wake(min(_wake_before(plan), quiet_s))
                step.held[device.name] = plan.latest_dispatch_s
                alive = alive & (cands.deadlines_s < cands.deadlines_s[plan.positions[0]])
                n_alive = int(np.count_nonzero(alive))
                alive_frames = int(cands.frames[alive].sum()) if n_alive else 0
            else:
                self._dispatch(step, device, group.variant, plan, cands, "on time")
                n_alive -= len(plan.positions)
                alive_frames = left_behind
            free = [g for g in free if g.free]
        if free and len(requests) >= self.config.window and not n_alive:
            step.relook = True  # the window ran dry with devices still free: look again at once (see `decide`)

    def _best_plan(
        self,
        step: Step,
        free: list[DeviceGroup],
        cands: Candidates,
        alive: np.ndarray,
        alive_frames: int,
        fleet_fps: float,
        tightest: Guard | None,
        capable: set[str],
    ) -> tuple[tuple, BatchPlan, DeviceGroup, DeviceState] | None:
        """(key, plan, group, device) of the best plan of the free groups' representatives (lowest `plan_key`, the
        first in group and representative order on ties); None when no device can take any candidate.

        Groups are planned lowest objective floor first, and a group whose floor is above the best plan so far is
        not planned at all, nor a representative whose best possible key (its group's floor, its last use) already
        loses: none of their plans could win. The choice is the one of planning all."""
        best: tuple[tuple, BatchPlan, DeviceGroup, DeviceState] | None = None
        order: Sequence[int] = range(len(free))
        # A subclass's plans may score anything.
        prune = type(self).choose_batch is JetfleetPolicy.choose_batch
        floors: list[float] = []
        if prune:
            floors = [floor(self.objective, g.tables, alive_frames) for g in free]
            if len(free) > 1:
                order = sorted(order, key=floors.__getitem__)
        for gi in order:
            group = free[gi]
            if prune and best is not None and best[0][0][0] == 0 and floors[gi] > best[0][0][1]:
                continue
            for ri, rep in enumerate(representatives(group.free, self.config.clocks_per_kind, group.n_clocks)):
                last_use = self._last_use.get(rep.name, -1)
                # No plan of `rep` keys below ((0, the group's floor, its last use), gi, ri): skip it when that already
                # loses to the best. Only for a device not planning behind a running batch, whose planning may ask for
                # a wake (`choose_batch`): skipping those could change when the policy looks again. A quarter of the
                # plans on the 100-device workload, once the first device found a plan at its group's floor.
                if (
                    prune
                    and best is not None
                    and (not rep.in_flight or rep.link.local)
                    and ((0, floors[gi], last_use), gi, ri) > best[0]
                ):
                    continue
                # Keep one free device able to serve the tightest request that may arrive next.
                guard = tightest if tightest is not None and not (capable - {rep.name}) else None
                plan = self.choose_batch(step, group, rep, cands, alive, fleet_fps, guard)
                if plan is not None:
                    key = (plan_key(plan, last_use), gi, ri)
                    if best is None or key < best[0]:
                        best = (key, plan, group, rep)
        return best

    def _reachable(self, now_s: float, cands: Candidates, groups: list[DeviceGroup]) -> np.ndarray:
        """Which candidates some healthy device (busy ones included, at their real free time) can finish in time."""
        ok: np.ndarray | None = None  # the first group's test is the first answer (no all-False array to `or` into)
        b = cands.frames - 1
        limit_s = cands.deadlines_s + 1e-6
        n = len(b)
        for g in groups:
            t = g.tables
            ready_min = min(g.ready_by_clock.values())
            # A candidate is reachable when any way of serving it finishes in time: test the ways one after the
            # other (switching clocks, then each clock as it is) and stop once every candidate is.
            switched = ready_min + g.change_delay_s + t.fastest_padded_s[b] <= limit_s
            ok = switched if ok is None else ok | switched
            if np.count_nonzero(ok) == n:  # a microsecond cheaper than `ok.all()`
                break
            clocks = [fi for fi in g.ready_by_clock if fi >= 0]
            if len(clocks) == 1:  # the common case (a group's devices at one clock): the same test, one row
                ok |= g.ready_by_clock[clocks[0]] + t.padded_s[clocks[0]][b] <= limit_s
            elif clocks:
                ready = np.array([g.ready_by_clock[fi] for fi in clocks])
                ok |= (ready[:, None] + t.padded_s[clocks][:, b] <= limit_s).any(axis=0)
            if clocks and np.count_nonzero(ok) == n:
                break
        return ok if ok is not None else np.zeros(len(cands.ids), dtype=bool)

    def _groups(self, step: Step, family: str, devices: Sequence[DeviceState], min_frames: int) -> list[DeviceGroup]:
        """Healthy devices able to serve `family`, grouped by `GroupKey`; free ones earliest-ready first, then least
        recently used."""
        now_s, taken, last_use = step.now_s, step.taken, self._last_use
        settle, inf = self._settle, math.inf
        busy_names = step.ctx.busy
        version = step.ctx.state_version
        out: list[DeviceGroup] = []
        for key, members in self._members_of(family, devices, now_s).items():
            try:
                tables = self._tables_of(step.ctx, key, members[0], min_frames)
            except JetfleetError:  # the cost model knows nothing of this (kind, variant)
                continue
            group = DeviceGroup(key[0], key[1], tables, key[4])
            group.frames_per_s = len(members) * group.fps
            limit = self.limit(members[0])  # the members share their link, all `limit` reads
            stamp = (version, busy_names, self._use_seq, self._settle_rev, limit)
            kept = self._group_orders.get(key) if version is not None and not taken else None
            if (
                kept is not None
                and kept.members is members
                and kept.stamp == stamp
                and kept.since_s <= now_s < kept.until_s
            ):
                group.free = list(kept.free)
                group.ready_by_clock = {fi: now_s if fi in kept.idle_clocks else t for fi, t in kept.by_clock.items()}
                group.n_clocks = kept.n_clocks
                out.append(group)
                continue
            free: list[tuple[float, int, str, DeviceState]] = []
            use_of = last_use.get
            # Earliest ready per clock, first by clock value (few distinct ones), then by clock index.
            by_hz: dict[float, float] = {}
            idle, working = self._idle_split(devices, members, busy_names)
            # Busy members, and idle ones with a clock change or a wake settling, go through `_ready_part`.
            fast = not any(d.round_trip_s or d.awake_at_s > now_s for d in idle)
            if fast:
                if settle and any(d.name in settle for d in idle):
                    working = working + [d for d in idle if d.name in settle]
                    idle = [d for d in idle if d.name not in settle]
                # Idle devices are ready now, the earliest possible: one entry per clock, and no settling to read.
                by_hz = dict.fromkeys({d.freq_hz for d in idle}, now_s)
                free = [(now_s, use_of(d.name, -1), d.name, d) for d in idle if d.name not in taken]
                members_read = working
            else:
                members_read = members
            part_hz, part_free, until_s, at_now = self._ready_part(step, members_read, limit)
            for hz, ready_s in part_hz.items():  # lowers an idle clock's entry only if ready before now: never
                if ready_s < by_hz.get(hz, inf):
                    by_hz[hz] = ready_s
            free += part_free
            group.n_clocks = len(by_hz)  # every member's clock (ready times are finite), the free ones' among them
            by_clock, clock_index = group.ready_by_clock, tables.clock_index
            idle_clocks: set[int] = set()
            for hz, ready_s in by_hz.items():
                fi = clock_index.get(hz)
                if fi is None:
                    fi = tables.freq_index(hz)
                if ready_s < by_clock.get(fi, inf):  # unlisted clocks all map to -1
                    by_clock[fi] = ready_s
                if ready_s == now_s:
                    idle_clocks.add(fi)
            free.sort()  # names are unique: the devices themselves are never compared
            group.free = [f[3] for f in free]
            if version is not None and not taken:
                if fast and not at_now:
                    # Every time in it but now stands until `until_s`: the order too (ready now sorts first).
                    order = _GroupOrder(members, stamp, now_s, until_s, tuple(group.free), dict(by_clock), idle_clocks)
                    order.n_clocks = group.n_clocks
                    self._group_orders[key] = order
                else:
                    self._group_orders.pop(key, None)
            out.append(group)
        return out

    def _ready_part(
        self, step: Step, members: list[DeviceState], limit: int
    ) -> tuple[dict[float, float], list[tuple[float, int, str, DeviceState]], float, bool]:
        """For `members`: (clock -> earliest ready time, the free ones as (ready time, last use, name, device)), by the
        rule of `ready_s`; then until when every comparison of a member's time with now comes out the same (the
        earliest of those times still ahead), and whether any member is ready at now itself (its time moves with
        now). `_groups` keeps an order while neither changes it."""
        now_s, taken, settle = step.now_s, step.taken, self._settle
        by_hz: dict[float, float] = {}
        free: list[tuple[float, int, str, DeviceState]] = []
        append, use_of, by_hz_get, inf = free.append, self._last_use.get, by_hz.get, math.inf
        until_s, at_now = inf, False
        for d in members:
            in_flight, name = d.in_flight, d.name
            busy_s, awake_s = d.busy_until_s, d.awake_at_s
            ready_s = busy_s if in_flight and busy_s > now_s else now_s  # as ready_s()
            if awake_s > ready_s:  # waking: its first batch starts once it is awake
                ready_s = awake_s
            if settle:
                settling = settle.get(name)
                if settling is not None:
                    ready_s = max(ready_s, settling[0])
                    if settling[0] > now_s:
                        until_s = min(until_s, settling[0])
            if ready_s == now_s:
                at_now = True
            if in_flight and now_s < busy_s < until_s:
                until_s = busy_s
            if now_s < awake_s < until_s:
                until_s = awake_s
            ready_s += d.round_trip_s
            if ready_s < by_hz_get(d.freq_hz, inf):
                by_hz[d.freq_hz] = ready_s
            if in_flight < limit and name not in taken:
                append((ready_s, use_of(name, -1), name, d))
        return by_hz, free, until_s, at_now

    def _idle_split(
        self, devices: Sequence[DeviceState], members: list[DeviceState], busy: frozenset[str] | None
    ) -> tuple[list[DeviceState], list[DeviceState]]:
        """(the members of a group with no batch in flight, those with some), in member order; kept per member list
        while the core hands the same busy set (`StepContext.busy`), which most decisions do. `devices`: the sequence
        the members were grouped from (the memo starts over when it changes)."""
        if busy is None:
            return [d for d in members if not d.in_flight], [d for d in members if d.in_flight]
        memo = self._idle_splits
        if memo is None or memo[0] is not devices:
            memo = self._idle_splits = (devices, {})
        hit = memo[1].get(id(members))
        if hit is None or hit[0] is not members or hit[1] is not busy:
            idle = [d for d in members if d.name not in busy]
            hit = memo[1][id(members)] = (members, busy, idle, [d for d in members if d.name in busy])
        return hit[2], hit[3]

    def _with_tables(
        self, ctx: StepContext, family: str, devices: Sequence[DeviceState]
    ) -> list[tuple[DeviceState, GridTables]]:
        """(device, its planner tables for `family`) of the devices able to serve it, in device order: the power
        planner's view of the fleet. The same list object while the device sequence, the family and every group's
        tables stay the same (a fleet of 100 devices has a handful of groups; asking per device cost more than the
        rest of a decision)."""
        memo = self._power_view
        cacheable = type(self).variant_for is JetfleetPolicy.variant_for
        if cacheable and memo is not None and memo.devices is devices and memo.family == family:
            if memo.stamp == (ctx.cost, ctx.cost.generation, self._tables_stored):
                return memo.usable  # no table can have changed: skip the look-ups
            members, reps = memo.members, memo.reps
        else:
            members, reps = self._power_members(family, devices, ctx.now_s)
        tables: list[GridTables | None] = []
        for key, rep in reps:
            try:
                tables.append(self._tables_of(ctx, key, rep))
            except JetfleetError:  # the cost model knows nothing of this (kind, variant)
                tables.append(None)
        if (
            memo is not None
            and memo.members is members
            and all(a is b for a, b in zip(memo.tables, tables, strict=True))
        ):
            usable = memo.usable
        else:
            usable = [(d, t) for d, gi in members if (t := tables[gi]) is not None]
        if cacheable:
            stamp = (ctx.cost, ctx.cost.generation, self._tables_stored)
            self._power_view = _PowerView(devices, family, members, reps, tables, usable, stamp)
        return usable

    def _power_members(
        self, family: str, devices: Sequence[DeviceState], now_s: float
    ) -> tuple[list[tuple[DeviceState, int]], list[tuple[GroupKey, DeviceState]]]:
        """(each device able to serve `family` with the index of its group, in device order; each group's key and
        first device): `_with_tables`' view of the fleet before the tables are looked up."""
        members: list[tuple[DeviceState, int]] = []
        index: dict[GroupKey, int] = {}
        reps: list[tuple[GroupKey, DeviceState]] = []
        for d in devices:
            variant = self.variant_for(family, d, now_s)
            if variant is not None:
                key = group_key(d, variant)
                gi = index.get(key)
                if gi is None:
                    gi = index[key] = len(reps)
                    reps.append((key, d))
                members.append((d, gi))
        return members, reps

    def _members_of(
        self, family: str, devices: Sequence[DeviceState], now_s: float
    ) -> dict[GroupKey, list[DeviceState]]:
        """The devices able to serve `family` per `GroupKey`, in device order.

        Kept while the core hands the same device sequence (`StepContext`: a new one when facts or health changed;
        held here, so its identity is never reused) unless a subclass decides variants itself (they may change
        over time)."""
        cacheable = type(self).variant_for is JetfleetPolicy.variant_for
        if cacheable and self._members is not None and self._members[0] is devices:
            hit = self._members[1].get(family)
            if hit is not None:
                return hit
        by_key: dict[GroupKey, list[DeviceState]] = {}
        for d in devices:
            v = self.variant_for(family, d, now_s)
            if v is not None:
                by_key.setdefault(group_key(d, v), []).append(d)
        if cacheable:
            if self._members is None or self._members[0] is not devices:
                self._members = (devices, {})
            self._members[1][family] = by_key
        return by_key

    def _dispatch(
        self, step: Step, device: DeviceState, variant: str, plan: BatchPlan, cands: Candidates, why: str
    ) -> None:
        ids = tuple(cands.ids[plan.positions].tolist())
        mode = "overload: max throughput" if plan.overloaded else self.objective.describe(plan)
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

    # -- late work --------------------------------------------------------------------------------
    def _serve_late(self, step: Step, family: str, requests: list[Request], devices: Sequence[DeviceState]) -> None:
        """Run late requests on free devices, in batches short enough not to block on-time work."""
        late = sorted(requests, key=lambda r: (r.deadline_s, r.request_id))
        cands = Candidates.of(late, family)
        alive = np.ones(len(late), dtype=bool)
        for group in self._groups(step, family, devices, cands.most_frames):
            # Twins (same ready time, clock and limit) that found no batch: the next would find none either. A big
            # late request no device can run within `late_batch_max_s` would otherwise be planned on every device
            # of a large fleet at every decision until it expires.
            fruitless: set[tuple[float, int, float]] = set()
            for device in list(group.free):
                pos = np.flatnonzero(alive)
                if not len(pos):
                    return
                ready_s, freq_index = self.ready_s(step.now_s, device), group.tables.freq_index(device.freq_hz)
                longest_s = self._late_batch_s(step.now_s, ready_s, device, group, int(cands.frames[pos[0]]))
                until_s = min(step.now_s + longest_s, step.held.get(device.name, math.inf))
                twin = (ready_s, freq_index, until_s)
                if twin in fruitless:
                    continue
                plan = plan_batch(
                    group.tables,
                    ready_s=ready_s,
                    freq_index=freq_index,
                    change_delay_s=group.change_delay_s,
                    frames=cands.frames[pos],
                    deadlines_s=np.full(len(pos), until_s),
                    positions=pos,
                    behind_s_per_frame=group.tables.per_frame_s[:, 0],
                    score=self.objective.table(group.tables),
                )
                if plan is None:
                    fruitless.add(twin)
                else:
                    self._dispatch(step, device, group.variant, plan, cands, "late")
                    alive[plan.positions] = False

    def _late_batch_s(self, now_s: float, ready_s: float, device: DeviceState, group: DeviceGroup, head: int) -> float:
        """How long a late batch may hold `device`: `late_batch_max_s`, or, on an idle device, as long as the oldest
        late request (`head` frames) takes alone at the fastest clock: a request bigger than a short batch (80 frames
        over GbE take 0.8 s to arrive) would otherwise wait until it expires and be dropped unserved."""
        longest_s = self.config.late_batch_max_s
        if not device.in_flight and head <= group.tables.max_frames:
            alone_s = group.change_delay_s + float(group.tables.fastest_padded_s[head - 1])
            longest_s = max(longest_s, ready_s - now_s + alone_s + 1e-6)
        return longest_s

    # -- idle devices -----------------------------------------------------------------------------
    def _park_idle(self, step: Step, devices: Sequence[DeviceState]) -> ParkScan | None:
        """Propose parking clock changes (`policies.jetfleet.parking`); the scan's findings go in the step's memo."""
        held = frozenset(step.held)
        if not self.parking.must_scan(step.now_s, held):
            step.wake(self.parking.next_s)
            return None
        now_s, taken = step.now_s, step.taken
        # d.idle(now_s), inlined: this scans the whole fleet (its idle part, when the core names the busy devices).
        idle = [
            d
            for d in self._not_busy(devices, step.ctx.busy)
            if d.in_flight == 0 and d.busy_until_s <= now_s and d.name not in taken and d.name not in held
        ]
        changes, next_s = self.parking.scan(now_s, idle, step.ctx.cost, self._park_guard(step, idle))
        step.out.frequency_changes += changes
        step.wake(next_s)
        return ParkScan(next_s, held)

    def _not_busy(self, devices: Sequence[DeviceState], busy: frozenset[str] | None) -> Sequence[DeviceState]:
        """`devices` less those `busy` names (`StepContext.busy`; all of them when None), the same list while neither
        changes: most decisions change neither."""
        if busy is None:
            return devices
        hit = self._not_busy_view
        if hit is None or hit[0] is not devices or hit[1] is not busy:
            hit = self._not_busy_view = (devices, busy, [d for d in devices if d.name not in busy])
        return hit[2]

    def _park_guard(self, step: Step, idle: list[DeviceState]) -> ParkGuard:
        """The guard of the tightest family seen lately: parking must leave a device able to serve it."""
        guards = [
            (g, f)
            for f in self.arrivals.families
            if (g := guard_request(self.arrivals, self.config.guard_slo_s, f, step.now_s)) is not None
        ]
        guard, family = min(guards, key=lambda gf: gf[0][0]) if guards else (None, "")

        def tables_for(device: DeviceState) -> GridTables | None:
            variant = self.variant_for(family, device, step.now_s)
            if variant is None:
                return None
            try:
                return self.tables(step.ctx, device, variant)
            except JetfleetError:
                return None

        return ParkGuard(step.now_s, guard, idle, tables_for, self.ready_s)


@dataclass(frozen=True, slots=True)
class _PowerView:
    """`JetfleetPolicy._with_tables`' memo: the power planner's view of the fleet for one device sequence and family.
    `stamp` (cost view, its generation, tables stored) says when the tables were last looked up."""

    devices: Sequence[DeviceState]
    family: str
    members: list[tuple[DeviceState, int]]  # (device, index of its group in `reps`), in device order
    reps: list[tuple[GroupKey, DeviceState]]  # each group's key and first device
    tables: list[GridTables | None]  # each group's tables (None: the cost model does not know the group)
    usable: list[tuple[DeviceState, GridTables]]
    stamp: tuple[CostView, int, int]


@dataclass(slots=True)
class _GroupOrder:
    """What `_groups` worked out for one group, kept while it stands: the same members, device states (`stamp`: the
    state version, the busy set, the policy's last uses and settling changes, the batch limit), and no member's time
    crossing now (`since_s` <= now < `until_s`). The devices ready at now then stay first in the same order, and only
    their clocks' entries move with now (`idle_clocks`)."""

    members: list[DeviceState]
    stamp: tuple
    since_s: float
    until_s: float
    free: tuple[DeviceState, ...]
    by_clock: dict[int, float]
    idle_clocks: set[int]
    n_clocks: int = 0


def _wake_before(plan: BatchPlan) -> float:
    """When to look again at a held plan: a little before its latest safe dispatch, so that a prediction that grew
    in the meantime (a learned correction, a clock change) still finds it feasible."""
    return plan.latest_dispatch_s - max(0.02, 0.1 * plan.latency_s)


@register("jetfleet")
def _make_jetfleet(arg: str | None) -> Policy:
    """`jetfleet` (late requests served in spare capacity), `jetfleet:drop` (late ones dropped) or `jetfleet:awake`
    (power states off: every device stays awake)."""
    if arg is None:
        return JetfleetPolicy()
    if arg in ("serve", "drop"):
        return JetfleetPolicy(JetfleetConfig(late=arg))
    if arg == "awake":
        return JetfleetPolicy(JetfleetConfig(power=PowerConfig(enabled=False)))
    raise ConfigError(f"unknown jetfleet option {arg!r}; expected 'serve', 'drop' or 'awake'")
