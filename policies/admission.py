"""Admission: take an arriving request into the queue, or refuse it at once with a reason and a retry-after.

`SchedulerCore.submit` asks the policy's `admit` for every arrival, in the simulator and in the live service
alike; a refusal becomes an outcome with status `rejected` (HTTP 429 with `Retry-After` live). The reasoning
is the overload layer's (`policies.overload`): the request's bounded queue, the deadline no device can meet,
the higher-priority work it would make late, the backlog ahead of it that leaves no time (`backlog_admission`,
also what `policies.slo_admission` asks without a stream config). Nothing here reads a clock.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence

from jetfleet.types import Admission, DeviceState, DropReason, Request
from policies.context import QueueView
from policies.planning import Margins
from policies.shedding import (
    ActiveStream,
    CostOracle,
    backlog_completion_s,
    bound_victims,
    earliest_completion_s,
    plan,
)
from policies.streams import DropPolicy, StreamSet

__all__ = ["admission_decision", "backlog_admission", "queue_head"]

_EPS_S = 1e-9


def admission_decision(
    now_s: float,
    request: Request,
    queue: QueueView,
    streams: StreamSet,
    devices: Sequence[DeviceState] = (),
    oracle: CostOracle | None = None,
    *,
    active: Iterable[ActiveStream] = (),
    protected: frozenset[str] = frozenset(),
    min_retry_after_s: float = 1.0,
    window: int = 512,
) -> Admission:
    """Accept `request` (not yet queued), maybe dropping others of its bounded queue, or reject it.

    Rejected: its bounded queue is full and would drop the newcomer (drop_newest, or drop_low_priority
    with nothing of lower priority queued) -> `queue_full`; with devices and a cost oracle, no device can
    finish it in time -> `deadline_unreachable`; it would only make its deadline by making higher-priority
    work (queued, or of the `active` streams) late -> `shed`, unless its stream is in `protected` (owed its
    floor, as `decide` spares it); the queued work of its priority and above that is due no later leaves no
    time to finish it (`backlog_admission`) -> `deadline_unreachable`, unless protected. drop_oldest never
    rejects: the oldest goes.
    The shedding check looks at the `window` earliest-deadline requests of each priority, as `decide` does.
    """
    bound = streams.bound_of(request.stream)
    if bound is not None:
        members = [r for r in queue if r.stream in bound.streams]
        full = len(members) >= bound.limit
        lowest = min((m.priority for m in members), default=math.inf)
        loses = bound.drop_policy is DropPolicy.DROP_NEWEST or (
            bound.drop_policy is DropPolicy.DROP_LOW_PRIORITY and request.priority < lowest
        )
        if full and loses:
            wait_s = _drain_s(members[:1], devices, oracle)
            return Admission.reject(
                DropReason.QUEUE_FULL,
                max(min_retry_after_s, wait_s),
                f"{bound.scope} full ({len(members)}/{bound.limit}), {bound.drop_policy.value}",
            )
    healthy = [d for d in devices if d.healthy]
    if not healthy or oracle is None:
        return Admission.accept(tuple(bound_victims(request, queue, streams)))
    done_s = earliest_completion_s(now_s, request, healthy, oracle)
    if done_s > request.deadline_s + _EPS_S:
        free_s = min(d.free_s(now_s) for d in healthy)
        return Admission.reject(
            DropReason.DEADLINE_UNREACHABLE,
            max(min_retry_after_s, free_s - now_s),
            f"earliest completion {done_s - now_s:.3f} s after now exceeds its {request.slo_s:.3f} s budget",
        )
    free = {d.name: d.free_s(now_s) for d in healthy}
    head = queue_head(queue, window)
    verdict = plan(now_s, [*head, request], healthy, free, oracle, active, protected)
    for r, protected in verdict.shed:
        if r.request_id == request.request_id:
            higher = {r.request_id for r in head if r.priority > request.priority}
            ahead = [c for rid, c in verdict.completion_s.items() if rid in higher]
            wait_s = max(ahead, default=now_s) - now_s
            return Admission.reject(
                DropReason.SHED,
                max(min_retry_after_s, wait_s),
                f"higher-priority work would be late; protects {protected}",
                protected,
            )
    if request.stream not in protected:  # a stream owed its floor is served ahead of higher priorities
        late = backlog_admission(now_s, request, head, healthy, oracle)
        if not late.accepted:
            return late
    return Admission.accept(tuple(bound_victims(request, queue, streams)))


def backlog_admission(
    now_s: float,
    request: Request,
    queued: Iterable[Request],
    devices: Sequence[DeviceState],
    oracle: CostOracle,
    margins: Margins | None = None,
    *,
    by_priority: bool = True,
) -> Admission:
    """Reject `request` when the queued work served before it (due no later and, `by_priority`, of the same or
    a higher priority; every stream one class otherwise) leaves
    the fleet no time to finish it by its deadline (`policies.shedding.backlog_completion_s`), else accept.
    `queued` is in deadline order (it is read up to the first request due after `request`). With `margins`,
    the request's own batch is padded as the planner pads it (`policies.planning.Margins`): a request the
    planner would count late from the start is refused rather than served late.

    The retry-after is the predicted drain time of the excess: how long the fleet needs to work off the part
    of the backlog that makes the request late (a retry after that, with no new work, would be admitted).
    """
    ahead = []
    for r in queued:
        if r.deadline_s > request.deadline_s:
            break
        if not by_priority or r.priority >= request.priority:
            ahead.append(r)
    rel, abs_s = (margins.rel, margins.abs_s) if margins is not None else (0.0, 0.0)
    done_s = backlog_completion_s(now_s, request, ahead, devices, oracle, margin_rel=rel, margin_abs_s=abs_s)
    if not math.isfinite(done_s) or done_s <= request.deadline_s + _EPS_S:
        return Admission.accept()
    return Admission.reject(
        DropReason.DEADLINE_UNREACHABLE,
        done_s - request.deadline_s,
        f"predicted completion {done_s - now_s:.3f} s after arrival, behind {len(ahead)} queued requests, "
        f"exceeds its {request.slo_s:.3f} s budget",
    )


def queue_head(queue: QueueView, window: int) -> list[Request]:
    """The first `window` requests of each priority in deadline order: what one decision looks at."""
    ordered = queue.by_deadline()
    levels: dict[int, list[Request]] = {}
    for r in ordered:
        level = levels.setdefault(r.priority, [])
        if len(level) < window:
            level.append(r)
    if len(levels) == 1:
        return next(iter(levels.values()))
    return list(heapq.merge(*levels.values(), key=lambda r: r.deadline_s))


def _drain_s(requests: Sequence[Request], devices: Sequence[DeviceState], oracle: CostOracle | None) -> float:
    """Optimistic time to serve `requests` on the healthy devices (0 without a cost model)."""
    healthy = [d for d in devices if d.healthy]
    if oracle is None or not healthy:
        return 0.0
    work_s = 0.0
    for r in requests:
        work_s += min(oracle.frame_time_s(d.kind, r.model) for d in healthy) * r.n_frames
    return work_s / len(healthy) if math.isfinite(work_s) else 0.0
