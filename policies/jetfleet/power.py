"""Power states: which devices stay awake (consolidation) and which nap between batches. Pure, side-effect free.

Two rules, both read from the step context and the policy's arrival statistics, both proposing `SetPowerState`s:

- **Consolidation** (per fleet). The *active set* is the fewest devices whose best sustained throughput covers the
  forecast frame rate divided by `max_utilisation`, or the queue's drain rate (the demand bound of its deadlines,
  `_need_fps`), whichever is larger: the first device the most energy-efficient at full load, each one after it
  the kind that spends least per frame at its share of the forecast, idle power included (`_cover_by_share`). It
  grows at once when the forecast rises (wake ahead of load: a device joins the set, and so may be woken, as soon
  as the rate estimate says it is needed) and shrinks only when the set one smaller would still cover the forecast with
  `hysteresis` to spare, no sooner than `shrink_after_s` after the last change: devices do not flap. The device
  that leaves is the one whose absence leaves the set drawing least at the forecast rate, idle power included
  (`_set_watts`). A growth for a queued burst alone may be undone after `burst_hold_s`. A device outside the set
  that is idle goes to the deepest allowed state whose break-even fits `long_sleep_s`; one napping when it left
  is woken to go there.
- **Napping** (per device, active set). An idle device sleeps when the time until it is needed — the latest
  start of a batch of what is queued plus what is forecast to arrive, or, with nothing queued, the next
  expected arrival plus the tightest SLO class seen — exceeds the state's entry + wake latency and its
  break-even time (`PowerStateSpec.break_even_s`: the saving pays for the transitions). It picks the state of
  least energy over that gap. It is woken `wake_margin_s` plus its clock-change delay before it is needed.
  A nap is allowed only if a tight-SLO arrival (the tightest SLO class seen in the guard window, or the
  configured prior) could still be served in time: by another active device kept awake, or by this one after
  its entry and wake latencies.

Every proposal carries its reason (the gap, the break-even, the forecast) for telemetry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from jetfleet.errors import ConfigError
from jetfleet.power_states import DEFAULT_SLEEP_STATES, PowerState, PowerStateSpec
from jetfleet.types import DeviceState, SetPowerState
from policies.jetfleet.reserve import TwinGroup, choose_reserve, twin_groups
from policies.planning import GridTables, efficient_clock

__all__ = ["Demand", "PowerConfig", "PowerMemo", "PowerPlanner"]


@dataclass(frozen=True)
class PowerConfig:
    """Knobs of the power-state rules (validated at construction)."""

    enabled: bool = True  # False: the fleet stays awake (jetfleet as it was)
    states: tuple[PowerState, ...] = DEFAULT_SLEEP_STATES  # the sleep states the fleet may use
    never_sleep: frozenset[str] = frozenset()  # devices switched off by name
    wake_margin_s: float = 0.1  # wake this much (plus the clock-change delay) before a device is needed
    guard_slo_s: float | None = None  # a tight-SLO prior; None: only the SLO classes seen (the batch guard's window)
    hysteresis: float = 0.25  # shrink the active set only when one fewer covers the forecast with this to spare
    shrink_after_s: float = 30.0  # and no sooner than this after its last change
    # ... or than this after a change that only a queued burst asked for (the forecast alone was covered): the device
    # woken to drain it leaves once the burst is gone. Above the catalogue's SC7 break-even (3 s), so that a wake and
    # a suspend for each burst pay for themselves; `shrink_after_s` guards against a forecast that flaps.
    burst_hold_s: float = 5.0
    long_sleep_s: float = 60.0  # the gap an inactive device's state is chosen for
    consolidate: bool = True  # False: every device is active (naps only)
    # The reserve (`policies.jetfleet.reserve`): this many devices kept awake, idle and at their top clock for tight
    # work the active set cannot serve in time, while that costs at most `reserve_share` of the active set's idle
    # power; a reserve device takes a queued request once its slack on it is down to `rescue_slack_s`.
    reserve: int = 2
    reserve_share: float = 0.1
    rescue_slack_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("wake_margin_s", "hysteresis", "shrink_after_s", "burst_hold_s", "long_sleep_s", "reserve_share"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"jetfleet power config: {name} must be >= 0, got {getattr(self, name)}")
        if any(s.awake for s in self.states):
            raise ConfigError(f"jetfleet power config: states must be sleep states, got {self.states}")
        if self.guard_slo_s is not None and not (self.guard_slo_s > 0 and math.isfinite(self.guard_slo_s)):
            raise ConfigError(f"jetfleet power config: guard_slo_s must be > 0 and finite, got {self.guard_slo_s}")


@dataclass(frozen=True)
class PowerMemo:
    """What one decision's power planning found, remembered once the core applied the step."""

    active: frozenset[str]
    changed_s: float  # when the active set last changed
    reserve: frozenset[str] = frozenset()  # devices kept awake for tight work (`policies.jetfleet.reserve`)
    # The set grew for a queued burst alone (`PowerConfig.burst_hold_s`): the forecast when it began (None: it did not),
    # and the set before it (the devices that stay while the ones the burst woke may leave sooner).
    burst_fps: float | None = None
    before_burst: frozenset[str] = frozenset()


@dataclass
class Demand:
    """What the devices face in this decision (from the queue and the arrival statistics)."""

    now_s: float
    rate_fps: float  # forecast frames per second, all families
    requests_per_s: float  # forecast requests per second, all families (the gap between arrivals)
    queued_frames: int  # all queued frames, late ones included
    late: bool = False  # some queued request is past its deadline
    deadlines_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # on-time queued work, EDF order
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # the frames of each of those
    guard_slo_s: float | None = None  # tightest SLO class to stay ready for (None: none known)
    guard_frames: int = 1
    max_utilisation: float = 0.7
    hardest: tuple[float, int] | None = None  # (slo_s, n_frames) of the hardest tight arrival lately
    # What the rules work out from this demand and one device group's tables, asked again for the group's twins
    # (keyed by the tables' id: they outlive the decision this demand is for).
    memo: dict = field(default_factory=dict)

    @cached_property
    def cum_frames(self) -> np.ndarray:
        """Frames up to each on-time queued request, EDF order (summed once, and only when a rule asks: most
        decisions answer from `memo` or need no queue start)."""
        return np.cumsum(self.frames)


class PowerPlanner:
    """The consolidation and napping rules (see the module docstring); memory changes only in `absorb`."""

    def __init__(self, config: PowerConfig) -> None:
        self.config = config
        self._active: frozenset[str] = frozenset()
        self._reserve: frozenset[str] = frozenset()
        self._reserving: tuple | None = None  # a memo of `_reserve_for`
        self._twins: tuple[list, list[tuple[int, TwinGroup]]] | None = None  # a memo of `_twin_groups`
        self._changed_s = -math.inf
        self._burst_fps: float | None = None  # `PowerMemo.burst_fps` of the last change
        self._before_burst: frozenset[str] = frozenset()
        self._ranking: tuple[list, list] | None = None  # a memo of `_ranked`
        self._view: tuple[list, frozenset[str], _ActiveView] | None = None  # a memo of `_current`
        self._fewer: tuple[_ActiveView, list[_SetKind]] | None = None  # a memo of `_set_kinds`
        self._considering: tuple | None = None  # a memo of `_considered`
        self._idle_considered: tuple | None = None  # and of its idle part
        self._shortest: dict[int, tuple[object, float]] = {}  # a memo of `_shortest_sleep_s`

    def absorb(self, memo: PowerMemo | None) -> None:
        if memo is not None:
            self._active, self._changed_s, self._reserve = memo.active, memo.changed_s, memo.reserve
            self._burst_fps, self._before_burst = memo.burst_fps, memo.before_burst

    @property
    def reserve(self) -> frozenset[str]:
        """The devices kept awake for tight work, as of the last step applied."""
        return self._reserve

    @property
    def active(self) -> frozenset[str]:
        """The active set as of the last step applied (empty before the first, and with consolidation off)."""
        return self._active

    # -- one decision --------------------------------------------------------------------------------------
    def plan(
        self,
        usable: list[tuple[DeviceState, GridTables]],
        demand: Demand,
        busy: Callable[[DeviceState], bool],
        held: dict[str, float],
        asleep: frozenset[str] | None = None,
        in_flight: frozenset[str] | None = None,
    ) -> tuple[list[SetPowerState], float, PowerMemo | None]:
        """(power changes, when to look again, the memo) for the `usable` devices (healthy, with their planner
        tables for the family in hand) facing `demand`.

        `busy(d)`: the device has work in flight or was given a batch in this decision. `held`: devices the
        planner holds a batch back for, with the batch's latest dispatch (they may nap until then). `asleep`: the
        names of the devices not awake (`StepContext.asleep`), None when not known; `in_flight`: those with batches
        in flight (`StepContext.busy`), None when not known."""
        cfg = self.config
        now_s = demand.now_s
        active, memo = self._active_set(usable, demand)
        reserve = self._reserve_for(usable, active, demand, asleep) if cfg.reserve else frozenset()
        if reserve != self._reserve:
            memo = (
                PowerMemo(active, self._changed_s, reserve, self._burst_fps, self._before_burst)
                if memo is None
                else replace(memo, reserve=reserve)
            )
        elif memo is not None:
            memo = replace(memo, reserve=reserve)
        changes: list[SetPowerState] = []
        wake_s = math.inf
        joined = active - self._active if memo is not None else frozenset()
        awake_active: list[tuple[DeviceState, GridTables]] | None = None  # computed on first use
        # Computed on first use: with every device busy (a backlog) neither is needed.
        covered: float | None = None  # frames the awake active devices take off the queue before its first deadline
        guard_keepers: _Keepers | None = None  # awake active devices able to serve a tight-SLO arrival
        # What a rule answered for one idle device, for its twins: a nap or a sleep depends on the device only
        # through its tables, clock, change delay, round trip and sleep states (a fleet has a few such groups).
        # Keys are flat tuples, each answer looked up once: this loop visits every awake device in every decision.
        said: dict[tuple, tuple[PowerState, str] | None] = {}
        n_active = len(active)
        for device, tables in self._considered(usable, active | reserve if reserve else active, asleep, in_flight):
            if device.in_flight and device.power_state.awake:
                continue  # busy (most awake devices under load): no rule touches it
            name = device.name
            awake = device.power_state.awake
            if name in reserve:
                if not awake:
                    changes.append(SetPowerState(name, PowerState.IDLE, _reserve_reason(demand)))
                continue
            if awake:
                if device.awake_at_s > now_s or busy(device):
                    continue
                twin = (
                    id(tables),
                    device.freq_hz,
                    device.freq_change_delay_s,
                    device.round_trip_s,
                    id(device.power_states),
                )
                if name not in active:
                    key = ("sleep", *twin)
                    answer = said.get(key, _UNASKED)
                    if answer is _UNASKED:
                        answer = said[key] = _said(self._sleep_inactive(device, tables, demand, n_active))
                    change = _for(device, answer)
                else:
                    until_s = held.get(name)
                    # A device that may not nap even with another keeping room may not nap at all: no need to ask
                    # the keepers (their answers do not depend on which devices asked before).
                    key = ("nap", True, until_s, *twin)
                    answer = said.get(key, _UNASKED)
                    if answer is _UNASKED:
                        answer = said[key] = _said(self._nap(device, tables, demand, n_active, True, until_s))
                    change = None
                    if answer is not None:
                        if guard_keepers is None:
                            awake_in = (dt for dt in usable if dt[0].name in active and dt[0].power_state.awake)
                            guard_keepers = _Keepers(awake_in, self._guard_server(demand))
                        if not guard_keepers.other_than(name):
                            key = ("nap", False, until_s, *twin)
                            answer = said.get(key, _UNASKED)
                            if answer is _UNASKED:
                                answer = said[key] = _said(self._nap(device, tables, demand, n_active, False, until_s))
                        change = _for(device, answer)
                        if change is not None:
                            guard_keepers.discard(name)
                if change is not None:
                    changes.append(change)
            elif device.name in active:
                spec = device.power_spec(device.power_state)
                exit_s = spec.exit_s if spec is not None else 0.0
                if covered is None:
                    if awake_active is None:
                        awake_active = _awake_in(usable, active)
                    covered = sum(self._capacity_frames(d, t, demand, d.awake_at_s) for d, t in awake_active)
                if device.name in joined:
                    why = f"consolidate: wake ahead of load, {len(active)} device(s) for {demand.rate_fps:.2f} frames/s"
                elif self._need_frames(demand) <= covered:
                    continue
                else:
                    when_s = self._needed_at_s(tables, demand, _lead_s(device))
                    wake_at = when_s - exit_s - cfg.wake_margin_s
                    if wake_at > now_s:
                        wake_s = min(wake_s, wake_at)
                        continue
                    why = f"queued work needs it by {when_s:.2f} s; wake takes {exit_s:.2f} s"
                changes.append(SetPowerState(device.name, PowerState.IDLE, f"jetfleet power: {why}"))
                covered += self._capacity_frames(device, tables, demand, now_s + exit_s)
                wake_s = now_s  # plan at once for the waking device (its batch starts once it is awake)
            else:  # napping when it left the active set: a state chosen for a short gap, not for the long sleep
                change, awake_at = self._wake_to_resleep(device, tables, now_s)
                changes.append(change)
                wake_s = min(wake_s, awake_at)  # then the rule for inactive devices puts it to its long sleep
        return changes, wake_s, memo

    def _considered(
        self,
        usable: list[tuple[DeviceState, GridTables]],
        active: frozenset[str],
        asleep: frozenset[str] | None,
        in_flight: frozenset[str] | None = None,
    ) -> list[tuple[DeviceState, GridTables]]:
        """The devices of `usable` the rules may change, in usable order: able to sleep, and awake or in the active
        set (neither rule touches a sleeping device outside it; most of a fleet under light load), less those with
        batches in flight when `in_flight` names them (no rule touches a busy device, and a busy device is awake: the
        core neither dispatches to a sleeping device nor puts a busy one to sleep). Kept while the usable list, the
        active set and the asleep set stay the same (a decision then skips a pass over the fleet), and its idle part
        while the in-flight set does too (under load the rules' loop then visits the idle devices only)."""
        hit = self._considering
        if asleep is not None and hit is not None and hit[0] is usable and hit[1] is asleep and hit[2] == active:
            considered = hit[3]
        else:
            never = self.config.never_sleep
            deeper: dict[tuple, bool] = {}  # `_deeper_sleep` per group of twins (most of a fleet sleeps outside it)

            def resleeps(d: DeviceState, t: GridTables) -> bool:
                key = (id(t), d.power_state, d.freq_hz, id(d.power_states))
                hit = deeper.get(key)
                if hit is None:
                    hit = deeper[key] = self._deeper_sleep(d, t) is not None
                return hit

            considered = [
                (d, t)
                for d, t in usable
                if d.power_states
                and d.name not in never
                and (d.power_state.awake or d.name in active or resleeps(d, t))
            ]
            self._considering = (usable, asleep, active, considered) if asleep is not None else None
            self._idle_considered = None
        if not in_flight:
            return considered
        idle = self._idle_considered
        if idle is None or idle[0] is not considered or idle[1] is not in_flight:
            idle = self._idle_considered = (
                considered,
                in_flight,
                [dt for dt in considered if dt[0].name not in in_flight],
            )
        return idle[2]

    def _deeper_sleep(self, device: DeviceState, tables: GridTables) -> PowerStateSpec | None:
        """For a device asleep outside the active set: the long-sleep state it should be in instead of its own, when
        leaving its state for that one pays (the saving over `long_sleep_s` beats a wake and the new state's entry and
        exit); None otherwise. A device put to sleep outside the set is already in its long-sleep state; one that was
        napping when the set shrank is not (a napping AGX Xavier left in deep idle drew 5.3 W for the rest of a run,
        against 1 W suspended). The core changes state only from awake: it is woken first."""
        now = device.power_spec(device.power_state)
        if now is None:
            return None
        target = self._cheapest(device, _idle_w(device, tables), self.config.long_sleep_s)
        if target is None or target.state.depth <= now.state.depth:
            return None
        saving_j = (now.board_power_w - target.board_power_w) * self.config.long_sleep_s
        return target if saving_j > now.exit_energy_j + target.entry_energy_j + target.exit_energy_j else None

    def _wake_to_resleep(self, device: DeviceState, tables: GridTables, now_s: float) -> tuple[SetPowerState, float]:
        """(the wake of a device `_deeper_sleep` names, when it will be awake)."""
        now = device.power_spec(device.power_state)
        target = self._deeper_sleep(device, tables)
        assert now is not None and target is not None  # `_considered` lets in only such devices
        why = (
            f"consolidate: left the active set while in {now.state.value} ({now.board_power_w:g} W); woken to enter "
            f"{target.state.value} ({target.board_power_w:g} W)"
        )
        return SetPowerState(device.name, PowerState.IDLE, f"jetfleet power: {why}"), now_s + now.exit_s

    def _guard_server(self, demand: Demand) -> Callable[[DeviceState, GridTables], bool]:
        """Whether an awake device could serve a tight-SLO arrival (asked once per group of twins)."""
        serves: dict[tuple, bool] = {}

        def serves_guard(d: DeviceState, t: GridTables) -> bool:
            key = (id(t), d.freq_hz, d.freq_change_delay_s)
            ok = serves.get(key)
            if ok is None:
                ok = serves[key] = self._serves_guard(d, t, demand, None)
            return ok

        return serves_guard

    def _need_frames(self, demand: Demand) -> float:
        """Frames to run before the queue's first deadline: what is queued and what arrives meanwhile."""
        return demand.queued_frames + demand.rate_fps * max(0.0, self._first_deadline_s(demand) - demand.now_s)

    def _reserve_for(
        self,
        usable: list[tuple[DeviceState, GridTables]],
        active: frozenset[str],
        demand: Demand,
        asleep: frozenset[str] | None,
    ) -> frozenset[str]:
        """`reserve.choose_reserve` for this decision; kept while the fleet list, the active set, the reserve, the
        hardest arrival and the sleeping devices stay the same (it looks at every device: most decisions change
        none of them)."""
        cfg = self.config
        key = (active, self._reserve, demand.hardest)
        hit = self._reserving
        if asleep is not None and hit is not None and hit[0] is usable and hit[1] is asleep and hit[2] == key:
            return hit[3]
        reserve = choose_reserve(
            self._twin_groups(usable),
            active,
            self._reserve,
            demand.hardest,
            cfg.reserve,
            cfg.reserve_share,
            self._keep_w,
            cfg.rescue_slack_s,
        )
        self._reserving = (usable, asleep, key, reserve)
        return reserve

    def _twin_groups(self, usable: list[tuple[DeviceState, GridTables]]) -> list[TwinGroup]:
        """`reserve.twin_groups(usable)`, regrouped only when the devices change: a learned latency correction hands
        new tables (and a new list) for the same devices in the same groups, so only each group's tables are read."""
        hit = self._twins
        same = hit is not None and (
            hit[0] is usable
            or (len(hit[0]) == len(usable) and all(a[0] is b[0] for a, b in zip(hit[0], usable, strict=True)))
        )
        if not same:
            groups = twin_groups(usable)
            first = {d.name: i for i, (d, _) in enumerate(usable)}
            self._twins = hit = (usable, [(first[g.members[0].name], g) for g in groups])
        return [replace(g, tables=usable[i][1]) if usable[i][1] is not g.tables else g for i, g in hit[1]]

    def _keep_w(self, device: DeviceState, tables: GridTables) -> float:
        """Watts that keeping `device` awake and idle at its top clock costs over its long sleep."""
        idle_w = float(tables.idle_w[-1])
        spec = self._cheapest(device, idle_w, self.config.long_sleep_s)
        return idle_w - (spec.board_power_w if spec is not None else idle_w)

    # -- consolidation ---------------------------------------------------------------------------------------
    def _active_set(
        self, usable: list[tuple[DeviceState, GridTables]], demand: Demand
    ) -> tuple[frozenset[str], PowerMemo | None]:
        cfg = self.config
        if not cfg.consolidate or not usable:
            return frozenset(d.name for d, _ in usable), None
        forecast_fps = demand.rate_fps / demand.max_utilisation
        need_fps = self._need_fps(demand, forecast_fps)
        view = self._current(usable)
        current, have_fps = view.current, view.have_fps
        burst_fps, before = self._burst_fps, self._before_burst
        if not current or have_fps < need_fps:  # grow now: wake ahead of the load
            if current and have_fps >= forecast_fps:  # for what is queued alone: a burst
                if burst_fps is None:  # the first growth of this burst: the set to come back to
                    burst_fps, before = demand.rate_fps, view.kept
            else:
                burst_fps, before = None, frozenset()
            ranked = self._ranked(usable)
            keep = {d.name for d, _ in current}
            extra = [dt for dt in ranked if dt[0].name not in keep]
            # The first device by full-load efficiency: ranked by its share of the forecast (all of it, from one
            # device), idle power weighed so much that a Nano came first and Experiment 1 lost 1-24 % frames per joule.
            grown = (
                current + _cover_by_share(extra, need_fps, have_fps, demand.rate_fps, self._fps)
                if current
                else _cover(ranked, need_fps, self._fps)
            )
            active = frozenset(d.name for d, _ in grown)
        else:
            active = view.kept
            # After a burst, devices it woke may leave sooner, unless the forecast rose meanwhile (a ramp, not a burst).
            burst = burst_fps is not None and demand.rate_fps <= burst_fps * (1.0 + cfg.hysteresis)
            if demand.now_s - self._changed_s >= (cfg.burst_hold_s if burst else cfg.shrink_after_s):
                stay = before if burst else frozenset()
                fewer, fewer_fps = self._one_fewer(view, forecast_fps * (1.0 + cfg.hysteresis), demand.rate_fps, stay)
                if fewer is not None and fewer_fps >= need_fps * (1.0 + cfg.hysteresis):  # and the queue now
                    active = fewer
                    if not burst or active <= before:  # back where the burst began
                        burst_fps, before = None, frozenset()
        if active == self._active:
            return active, None
        return active, PowerMemo(active, demand.now_s, burst_fps=burst_fps, before_burst=before)

    def _current(self, usable: list[tuple[DeviceState, GridTables]]) -> _ActiveView:
        """The active set as it stands among `usable`, with its throughput: kept while the caller hands the same list
        object and the active set has not changed (most decisions change neither; working it out costs passes over
        the fleet)."""
        hit = self._view
        if hit is not None and hit[0] is usable and hit[1] is self._active:
            return hit[2]
        current = [dt for dt in usable if dt[0].name in self._active]
        view = _ActiveView(
            current,
            sum(self._fps(t) for _, t in current),
            self._active & {d.name for d, _ in usable},
        )
        self._view = (usable, self._active, view)
        return view

    def _one_fewer(
        self, view: _ActiveView, forecast_fps: float, rate_fps: float, stay: frozenset[str] = frozenset()
    ) -> tuple[frozenset[str] | None, float]:
        """(the active set one smaller that still covers `forecast_fps` and draws the least power at the forecast
        `rate_fps` (`_set_watts`), its best throughput), or (None, 0) when no smaller set covers it.

        The choice reads the forecast only; the caller shrinks to it once it also covers the queue's drain rate.
        (Chosen by the drain rate too, the shrink that came while a burst was queued kept whichever device alone
        could drain the burst, for good.)

        Which device leaves is chosen by the watts the set would draw, idle baseline included, not by joules per
        frame at full load: at the loads that let a set shrink its devices idle most of the time, and an idle
        AGX Xavier draws more than an idle Xavier NX. Ranking by full-load efficiency alone let a learned latency
        correction (+4.6 % on the NX's batches) tip the shrink of {AGX, NX} to keep the AGX, and the run lost 37 %
        of its frames per joule (the demo scenario with its arrivals bunched by half a second). Twins (the
        same tables and idle power) leave alike: the candidates are one per kind of device, the last of each in
        usable order that is not in `stay`."""
        kinds = self._set_kinds(view)
        if sum(k.count for k in kinds) < 2:
            return None, 0.0
        total_fps = sum(k.count * k.fps for k in kinds)
        best: tuple[float, str, float] | None = None
        for i, leaving in enumerate(kinds):
            name = next((n for n in reversed(leaving.members) if n not in stay), None)
            if name is None or total_fps - leaving.fps < forecast_fps:
                continue
            watts = _set_watts(kinds, rate_fps, leaving=i)
            if best is None or watts < best[0] - 1e-9:
                best = (watts, name, total_fps - leaving.fps)
        if best is None:
            return None, 0.0
        return view.kept - {best[1]}, best[2]

    def _set_kinds(self, view: _ActiveView) -> list[_SetKind]:
        """The active set's devices grouped by what `_set_watts` reads of them (kept per view); kinds in order of
        full-load efficiency, least efficient first, so that ties go to the device the rule left out before."""
        hit = self._fewer
        if hit is not None and hit[0] is view:
            return hit[1]
        kinds: dict[tuple, _SetKind] = {}
        for d, t in view.current:
            key = (id(t), d.kind)
            kind = kinds.get(key)
            if kind is None:
                kind = kinds[key] = _SetKind(self._efficiency(t), self._fps(t), *_idle_and_dynamic(t))
            kind.members.append(d.name)
        ordered = sorted(kinds.values(), key=lambda k: -k.efficiency)
        self._fewer = (view, ordered)
        return ordered

    def _ranked(self, usable: list[tuple[DeviceState, GridTables]]) -> list[tuple[DeviceState, GridTables]]:
        """`usable` most efficient first (then by name); kept while the caller hands the same list object (the
        policy keeps it while no device's facts or tables changed)."""
        hit = self._ranking
        if hit is not None and hit[0] is usable:
            return hit[1]
        ranked = sorted(usable, key=lambda dt: (self._efficiency(dt[1]), dt[0].name))
        self._ranking = (usable, ranked)
        return ranked

    @staticmethod
    def _fps(tables: GridTables) -> float:
        """A device's best sustained frames per second, each batch's transfer and compute one after the other.
        (Counting the overlapped pace, `GridTables.overlapped_s_per_frame`, kept fewer devices awake: 2.17 against
        1.92 frames/J but 93.1 against 97.3 % in SLO on `benchmarks/bench_simulator`'s 100-device workload.)"""
        return 1.0 / tables.s_per_frame

    @staticmethod
    def _need_fps(demand: Demand, forecast_fps: float) -> float:
        """The throughput the active set needs: the forecast (`forecast_fps`, with its headroom), or what draining the
        queue in time needs, whichever is higher.

        Draining in time: the demand bound of earliest-deadline-first order over the on-time window (for each of its
        requests, the frames due by its deadline over the time to it, at least a second; the queue past the window
        counted as due by the window's last deadline), with the forecast's headroom (`max_utilisation`), and never
        above the whole queue over the time to its first deadline, the rule before this one. Late work counts as due
        within a second.

        The old rule alone read a few arrivals bunched by a loaded host (due over the next 1-5 s) as a burst the set
        could not drain, and woke the demo fleet's AGX Xavier out of suspend for it: about 6 % of a 120 s run's frames
        per joule, the failures of `tests/test_live_vs_sim.py` on a loaded host. The bound alone, without the headroom,
        ramped a cold 100-device fleet too slowly (98.3 against 99.3 % in SLO); the cap keeps growth no faster than the
        old rule's (`docs/power-states.md`)."""
        queued = demand.queued_frames
        if not queued:
            return forecast_fps
        now_s, deadlines_s = demand.now_s, demand.deadlines_s
        if demand.late or not len(deadlines_s):
            return max(forecast_fps, float(queued))
        first_fps = queued / max(1.0, float(deadlines_s[0]) - now_s)
        if first_fps <= forecast_fps:
            return forecast_fps  # the cap is below the forecast: no need to work out the bound
        horizons_s = np.maximum(deadlines_s - now_s, 1.0)
        bound_fps = max(float((np.cumsum(demand.frames) / horizons_s).max()), queued / float(horizons_s[-1]))
        return max(forecast_fps, min(first_fps, bound_fps / demand.max_utilisation))

    def _efficiency(self, tables: GridTables) -> float:
        """Joules per frame at the tables' cheapest (clock, batch): lower is better."""
        hit = tables.memo.get("power-efficiency")
        if hit is None:
            batches = np.arange(1, tables.max_frames + 1)[None, : tables.cap]
            hit = tables.memo["power-efficiency"] = float((tables.energy_j[:, : tables.cap] / batches).min())
        return hit

    def _sleep_inactive(
        self, device: DeviceState, tables: GridTables, demand: Demand, n_active: int
    ) -> SetPowerState | None:
        idle_w = _idle_w(device, tables)
        spec = self._cheapest(device, idle_w, self.config.long_sleep_s)
        if spec is None:
            return None
        why = (
            f"consolidate: {n_active} active device(s) cover {demand.rate_fps:.2f} frames/s forecast; "
            f"{spec.state.value} ({spec.board_power_w:g} W, break-even {spec.break_even_s(idle_w):.2f} s)"
        )
        return SetPowerState(device.name, spec.state, f"jetfleet power: {why}")

    # -- napping -----------------------------------------------------------------------------------------------
    def _nap(
        self,
        device: DeviceState,
        tables: GridTables,
        demand: Demand,
        n_active: int,
        guarded: bool,
        held_until_s: float | None,
    ) -> SetPowerState | None:
        """A nap for an idle active device (`guarded`: another awake device serves a tight arrival), or None."""
        now_s = demand.now_s
        if demand.queued_frames > 0:
            if not demand.late:
                # What is queued soon outgrows the room a tight arrival needs (under load, nearly always): `until_s`
                # comes no later, and a gap shorter than any sleep state's entry and wake gets none (`_cheapest`).
                room_gap_s = self._room_until_s(tables, demand, _lead_s(device)) - self.config.wake_margin_s - now_s
                if room_gap_s < self._shortest_sleep_s(device):
                    return None
            until_s = self._needed_at_s(tables, demand, _lead_s(device))
            if held_until_s is not None:
                until_s = min(until_s, held_until_s)
            arrival_gap_s = None
        else:
            if demand.rate_fps <= 0 or demand.guard_slo_s is None:
                return None
            arrival_gap_s = max(1, n_active) / max(demand.requests_per_s, 1e-9)
            until_s = now_s + arrival_gap_s + demand.guard_slo_s - _guard_serve_s(device, tables, demand)
            until_s = min(until_s, self._needed_at_s(tables, demand, _lead_s(device)))
        gap_s = until_s - self.config.wake_margin_s - now_s
        idle_w = _idle_w(device, tables)
        spec = self._cheapest(device, idle_w, gap_s)
        while spec is not None and not (guarded or self._serves_guard(device, tables, demand, asleep=spec)):
            spec = self._cheapest(device, idle_w, gap_s, shallower_than=spec)
        if spec is None:
            return None
        if arrival_gap_s is None:
            basis = f"queued work needs it by {until_s:.2f} s"
        else:
            basis = f"next arrival expected in {arrival_gap_s:.2f} s"
        why = (
            f"nap: {basis}, gap {gap_s:.2f} s >= break-even {spec.break_even_s(idle_w):.2f} s of "
            f"{spec.state.value} (wake {spec.exit_s:.2f} s)"
        )
        return SetPowerState(device.name, spec.state, f"jetfleet power: {why}")

    def _cheapest(
        self, device: DeviceState, idle_w: float, gap_s: float, shallower_than: PowerStateSpec | None = None
    ) -> PowerStateSpec | None:
        """The allowed state of least energy over a gap of `gap_s` (entry, wake and break-even fit in it)."""
        best, best_j = None, idle_w * gap_s
        for spec in device.power_states or ():
            if spec.state not in self.config.states:
                continue
            if shallower_than is not None and spec.state.depth >= shallower_than.state.depth:
                continue
            if gap_s < spec.break_even_s(idle_w) or gap_s < spec.entry_s + spec.exit_s:
                continue
            energy_j = spec.board_power_w * gap_s + spec.entry_energy_j + spec.exit_energy_j
            if energy_j < best_j:
                best, best_j = spec, energy_j
        return best

    def _serves_guard(
        self, device: DeviceState, tables: GridTables | None, demand: Demand, asleep: PowerStateSpec | None
    ) -> bool:
        """Could `device` (awake, or asleep in `asleep` from now) serve a tight-SLO arrival within its SLO?"""
        if demand.guard_slo_s is None or tables is None:
            return asleep is None
        wake_s = asleep.entry_s + asleep.exit_s if asleep is not None else 0.0
        return wake_s + _guard_serve_s(device, tables, demand) <= demand.guard_slo_s

    # -- when work needs a device --------------------------------------------------------------------------------
    def _needed_at_s(self, tables: GridTables, demand: Demand, change_delay_s: float) -> float:
        """The latest time a device of `tables` must be ready for what is queued and forecast, the earlier of:

        - each queued on-time request's deadline minus the time to run it and everything before it in deadline
          order (plus the frames forecast to arrive by the first deadline) in full batches at the clock the
          planner prefers for them (`_efficient_clock`), and the clock change;
        - the moment the backlog (queued frames plus the forecast rate times the sleep) grows beyond what the
          device can run within the tightest SLO class: arrivals during a sleep must still be served in time.
        """
        now_s = demand.now_s
        if demand.late:
            return now_s  # late work: at once
        fi = efficient_clock(tables)
        latest = math.inf
        if len(demand.deadlines_s):
            key = ("queue-start", id(tables))
            start_s = demand.memo.get(key)
            if start_s is None:
                horizon_s = max(0.0, float(demand.deadlines_s[0]) - now_s)
                frames = demand.cum_frames + int(math.ceil(demand.rate_fps * horizon_s))
                start_s = demand.memo[key] = float((demand.deadlines_s - _run_s(tables, fi, frames)).min())
            latest = start_s - change_delay_s
        return min(latest, self._room_until_s(tables, demand, change_delay_s))

    @staticmethod
    def _room_until_s(tables: GridTables, demand: Demand, change_delay_s: float) -> float:
        """When the backlog (queued frames plus the forecast rate times the wait) outgrows what a device of `tables`
        runs within the tightest SLO class (`_needed_at_s`' second bound); inf with no such class or no rate."""
        if demand.guard_slo_s is None or not demand.rate_fps > 0:
            return math.inf
        s_per_frame = _s_per_frame(tables, efficient_clock(tables))
        room_frames = (demand.guard_slo_s - change_delay_s) / s_per_frame - demand.queued_frames
        return demand.now_s + room_frames / demand.rate_fps

    def _shortest_sleep_s(self, device: DeviceState) -> float:
        """The shortest gap an allowed sleep state of `device` fits in (its entry and wake): `_cheapest` finds none in
        less. Kept per list of states (devices of a kind share theirs)."""
        states = device.power_states
        hit = self._shortest.get(id(states))
        if hit is None or hit[0] is not states:
            allowed = [s.entry_s + s.exit_s for s in states or () if s.state in self.config.states]
            hit = self._shortest[id(states)] = (states, min(allowed, default=math.inf))
        return hit[1]

    @staticmethod
    def _first_deadline_s(demand: Demand) -> float:
        return float(demand.deadlines_s[0]) if len(demand.deadlines_s) else demand.now_s

    def _capacity_frames(self, device: DeviceState, tables: GridTables, demand: Demand, ready_s: float) -> float:
        """Frames `device` (ready at `ready_s`, or when its batches end) can run before the first queued deadline
        at the clock the planner prefers: what it takes off the queue's most urgent part."""
        busy_s = device.busy_until_s if device.in_flight else demand.now_s
        start_s = max(demand.now_s, busy_s, ready_s) + _lead_s(device)
        fi = efficient_clock(tables)
        return max(0.0, self._first_deadline_s(demand) - start_s) / _s_per_frame(tables, fi)


@dataclass(frozen=True)
class _ActiveView:
    """The active set among the usable devices (`PowerPlanner._current`)."""

    current: list[tuple[DeviceState, GridTables]]  # the active devices, in usable order
    have_fps: float  # their best throughput together
    kept: frozenset[str]  # their names


def _reserve_reason(demand: Demand) -> str:
    slo_s, n_frames = demand.hardest or (math.nan, 0)
    return (
        f"jetfleet power: reserve for tight work: {n_frames} frames under a {slo_s:g} s SLO arrived lately, and no "
        "active device could serve them after its running batch"
    )


class _Keepers:
    """The awake active devices able to serve a tight-SLO arrival (the guard), found in fleet order only as far as a
    question needs: a nap asks whether one *other* than the napping device is left, which the first two answer. Each
    answer is what a scan of the whole set (less the devices that napped) would give, whoever asked before: a caller
    may leave questions out."""

    def __init__(
        self, awake: Iterator[tuple[DeviceState, GridTables]], serves: Callable[[DeviceState, GridTables], bool]
    ):
        self._awake, self._serves = awake, serves
        self._found: list[str] = []
        self._gone: set[str] = set()  # napping in this decision: no longer keeping room

    def other_than(self, name: str) -> bool:
        if len(self._found) > 1 and not self._gone:  # two keepers, none napping: one of them is another
            return True
        if any(k != name and k not in self._gone for k in self._found):
            return True
        for d, t in self._awake:
            if self._serves(d, t):
                self._found.append(d.name)
                if d.name != name and d.name not in self._gone:  # a device that napped before it was reached
                    return True
        return False

    def discard(self, name: str) -> None:
        self._gone.add(name)


def _awake_in(
    usable: list[tuple[DeviceState, GridTables]], active: frozenset[str]
) -> list[tuple[DeviceState, GridTables]]:
    """The awake devices of `active`, in usable order."""
    return [(d, t) for d, t in usable if d.name in active and d.power_state.awake]


_UNASKED = object()  # `PowerPlanner.plan`: no twin of this device was asked yet (None is an answer: no change)


def _said(change: SetPowerState | None) -> tuple[PowerState, str] | None:
    return None if change is None else (change.state, change.reason)


def _for(device: DeviceState, said: tuple[PowerState, str] | None) -> SetPowerState | None:
    """The change a twin was given, for `device`."""
    return None if said is None else SetPowerState(device.name, said[0], said[1])


@dataclass
class _SetKind:
    """Devices of the active set alike for `_set_watts`, in usable order."""

    efficiency: float  # joules per frame at the cheapest (clock, batch), idle baseline included (`_efficiency`)
    fps: float  # best sustained frames per second
    idle_w: float  # idle board power at the lowest clock (where an idle device is parked)
    dynamic_epf_j: float  # joules per frame above that idle power, at the cheapest (clock, batch)
    members: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.members)


def _idle_and_dynamic(tables: GridTables) -> tuple[float, float]:
    """(idle watts at the lowest clock, the least joules per frame above the idle power of its clock)."""
    memo = tables.memo.get("power-idle-dynamic")
    if memo is None:
        cap = tables.cap
        batches = np.arange(1, cap + 1)[None, :]
        above = tables.energy_j[:, :cap] - tables.idle_w[:, None] * tables.latency_s[:, :cap]
        memo = tables.memo["power-idle-dynamic"] = (float(tables.idle_w.min()), float((above / batches).min()))
    return memo


def _set_watts(kinds: list[_SetKind], rate_fps: float, leaving: int) -> float:
    """Board watts the active set draws at `rate_fps` with one device of `kinds[leaving]` left out: every device's
    idle power, plus the frames on the devices of least dynamic energy first, each up to its throughput."""
    watts, left_fps = 0.0, rate_fps
    for i in sorted(range(len(kinds)), key=lambda i: kinds[i].dynamic_epf_j):
        kind = kinds[i]
        count = kind.count - (i == leaving)
        watts += count * kind.idle_w
        taken = min(left_fps, count * kind.fps)
        watts += taken * kind.dynamic_epf_j
        left_fps -= taken
    return watts


def _cover(
    ranked: list[tuple[DeviceState, GridTables]], need_fps: float, fps: Callable[[GridTables], float]
) -> list[tuple[DeviceState, GridTables]]:
    """The first devices of `ranked` whose best throughputs (`fps`) add up to `need_fps` (at least one)."""
    out, have = [], 0.0
    for d, t in ranked:
        if out and have >= need_fps:
            break
        out.append((d, t))
        have += fps(t)
    return out


def _cover_by_share(
    ranked: list[tuple[DeviceState, GridTables]],
    need_fps: float,
    have_fps: float,
    rate_fps: float,
    fps: Callable[[GridTables], float],
) -> list[tuple[DeviceState, GridTables]]:
    """Devices of `ranked` to add to a set of `have_fps` until it covers `need_fps` (at least one): each time the kind
    of device that would spend the fewest joules per frame at its share of the forecast `rate_fps` (shared in
    proportion to throughput), idle power included; the first of that kind in `ranked` order (`ranked` as it is with
    no forecast).

    Ranked by full-load efficiency alone, a learned latency correction of a few % on the Xavier NX's batches made
    growth add the AGX Xavier before a second NX; at the loads that let a set grow by one device, that device idles
    most of the time, and the idle AGX draws 5.9 W against the NX's 2.4 W (LoudVA's exp1-id0 4x compressed on
    `loudva-cluster`: 2.02 against 2.31 frames/J, once bunched arrivals no longer woke the second NX early)."""
    if rate_fps <= 0.0:
        return _cover(ranked, need_fps - have_fps, fps)
    kinds: dict[tuple, list[tuple[DeviceState, GridTables]]] = {}
    for d, t in ranked:
        kinds.setdefault((id(t), d.kind), []).append((d, t))
    pools = list(kinds.values())
    out: list[tuple[DeviceState, GridTables]] = []
    while pools and (not out or have_fps < need_fps):
        best_i, best_j = 0, math.inf
        for i, pool in enumerate(pools):
            t = pool[0][1]
            f = fps(t)
            idle_w, dynamic_j = _idle_and_dynamic(t)
            share_fps = min(f, rate_fps * f / (have_fps + f))
            j = dynamic_j + idle_w / max(share_fps, 1e-9)
            if j < best_j:
                best_i, best_j = i, j
        pool = pools[best_i]
        out.append(pool.pop(0))
        have_fps += fps(out[-1][1])
        if not pool:
            pools.pop(best_i)
    return out


def _run_s(tables: GridTables, fi: int, frames: np.ndarray) -> np.ndarray:
    """Padded seconds to run `frames` (per entry) in batches of at most `cap` at clock index `fi`."""
    cap = min(tables.cap, tables.max_frames)
    full, rest = np.divmod(np.maximum(frames, 1), cap)
    row = tables.padded_s[fi]
    return full * row[cap - 1] + np.where(rest > 0, row[np.maximum(rest, 1) - 1], 0.0)


def _s_per_frame(tables: GridTables, fi: int) -> float:
    """Padded seconds per frame in full batches at clock index `fi`."""
    return float(tables.padded_s[fi, tables.cap - 1]) / tables.cap


def _idle_w(device: DeviceState, tables: GridTables) -> float:
    i = tables.freq_index(device.freq_hz)
    return float(tables.idle_w[i]) if i >= 0 else float(tables.idle_w.min())


def _guard_serve_s(device: DeviceState, tables: GridTables, demand: Demand) -> float:
    """Seconds `device`, awake, takes to serve the tight-SLO arrival: at the clock it keeps while asleep (a sleep
    state changes no clock the core knows of; the Jetson backend restores its own clock as part of the wake), or at
    its fastest after a clock change, whichever is sooner. (Before 2026-12-02 the clock change was always counted:
    on an AGX Xavier its 0.56 s ruled suspend out for LoudVA's 3.4 s SLO class, 1 + 2 s of entry and wake.)"""
    b = min(demand.guard_frames, tables.max_frames) - 1
    serve_s = device.freq_change_delay_s + float(tables.fastest_padded_s[b])
    fi = tables.freq_index(device.freq_hz)
    return min(serve_s, float(tables.padded_s[fi, b])) if fi >= 0 else serve_s


def _lead_s(device: DeviceState) -> float:
    """What comes between a device being ready and its batch starting: a clock change, and the round trip the live
    scheduler measured (`DeviceState.round_trip_s`; 0 in the simulator). A wake ordered without the round trip came
    too late live: the request it was for could no longer finish in time."""
    return device.freq_change_delay_s + device.round_trip_s
