"""Drive a policy by hand the way `SchedulerCore` does, for tests that look at one decision at a time.

`decide` and `arrive` build the `StepContext` the core would (device facts filled from the catalogue, one
`CostView` per cost model, kept across calls like the core's) and, like the core, tell the policy what was
applied (`absorb`) unless `apply=False`. Queues are not changed by `decide`: tests set them up themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from costmodel.base import CostModel
from costmodel.view import CostView
from jetfleet.types import Admission, Applied, Decisions, DeviceState, Request
from policies.base import Policy
from policies.context import StepContext, with_device_facts
from policies.queue import RequestQueue

_VIEWS: dict[int, tuple[object, CostView]] = {}


def view_of(cost: CostModel | CostView) -> CostView:
    """The one `CostView` of `cost` for the whole test session (a view is what the core would hold)."""
    if isinstance(cost, CostView):
        return cost
    hit = _VIEWS.get(id(cost))
    if hit is None or hit[0] is not cost:
        hit = _VIEWS[id(cost)] = (cost, CostView(cost))
    return hit[1]


def context(
    now_s: float, queue: RequestQueue, devices: Sequence[DeviceState], cost: CostModel | CostView
) -> StepContext:
    return StepContext(now_s, queue, [with_device_facts(d) for d in devices], view_of(cost))


def decide(
    policy: Policy,
    now_s: float,
    queue: RequestQueue,
    devices: Sequence[DeviceState],
    cost: CostModel | CostView,
    *,
    apply: bool = True,
) -> Decisions:
    """`policy.decide` at `now_s`; with `apply`, the policy then hears that all of it was applied."""
    ctx = context(now_s, queue, devices, cost)
    out = policy.decide(ctx)
    if apply:
        delay = {d.name: d.freq_change_delay_s for d in ctx.devices}
        changes = tuple(replace(c, settled_s=now_s + delay.get(c.device, 0.0)) for c in out.frequency_changes)
        policy.absorb(Applied(now_s, (), tuple(out.dispatches), changes, tuple(out.drops), out.memo))
    return out


def arrive(
    policy: Policy,
    now_s: float,
    request: Request,
    queue: RequestQueue,
    devices: Sequence[DeviceState] = (),
    cost: CostModel | CostView | None = None,
) -> Admission:
    """`policy.admit` for `request` (not yet in `queue`); if accepted it joins `queue`, its drops leave it, and the
    policy hears of both."""
    if request.request_id in queue:
        queue.remove([request.request_id])
    ctx = StepContext(now_s, queue, [with_device_facts(d) for d in devices], view_of(cost) if cost else None)  # type: ignore[arg-type]
    admission = policy.admit(ctx, request)
    if admission.accepted:
        queue.add(request)
        for d in admission.drops:
            queue.remove([i for i in d.request_ids if i in queue])
        policy.absorb(Applied(now_s, admitted=(request,), drops=admission.drops))
    return admission


def arrive_all(
    policy: Policy,
    requests: Iterable[Request],
    queue: RequestQueue,
    devices: Sequence[DeviceState] = (),
    cost: CostModel | CostView | None = None,
) -> list[Admission]:
    """`arrive` for each request at its own arrival time."""
    return [arrive(policy, r.arrival_s, r, queue, devices, cost) for r in requests]
