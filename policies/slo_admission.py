"""Overload protection by default: SLO-aware admission and early drops around any policy, one stream class.

    slo[:INNER]    `SloAdmission` around INNER (default `jetfleet`)

`SloAdmission.admit` predicts when an arriving request would finish behind the queued work due no later than
it (`policies.shedding.backlog_completion_s`: the fleet's free times, the cost model's best batched time per
frame, its own batch padded by the planner's margins against predictor error). When that is past its deadline
it refuses it with `deadline_unreachable` and a retry-after of the predicted drain time of the excess (HTTP 429
+ Retry-After live; a `rejected` outcome in the simulator). `decide` first drops the queued requests that
cannot finish in time even alone on the device that frees first, with the same margins (`deadline_unreachable`:
early, instead of served late), then lets INNER choose freely on the rest. While nothing is hopeless INNER sees
exactly the context it would see alone, so under a load the fleet carries its decisions are unchanged.

`protect(policy, streams)` is what the live service runs (and what the simulator runs to compare with it):
with a stream config, `policies.overload.OverloadControl` (priorities, bounded queues, shedding, floors, and the
same backlog admission); without one, `SloAdmission` (every request is one stream class).
Nothing here reads a clock.
"""

from __future__ import annotations

from jetfleet.types import Admission, Applied, BatchResult, Decisions, DeviceState, Request
from policies.admission import backlog_admission
from policies.base import Policy
from policies.context import StepContext
from policies.planning import Margins
from policies.queue import RequestQueue
from policies.registry import register
from policies.shedding import CostOracle, unreachable_drops
from policies.streams import StreamSet

__all__ = ["SloAdmission", "protect"]


class SloAdmission(Policy):
    """Refuse what the backlog makes late, drop what became hopeless, let `inner` decide the rest."""

    def __init__(self, inner: Policy, margins: Margins | None = None) -> None:
        self.inner = inner
        self.margins = margins or Margins()  # the planner's default slack against predictor error
        self.name = f"slo:{inner.name}"
        self._oracle: tuple[object, int, CostOracle] | None = None  # (device sequence, cost generation, oracle)

    def admit(self, ctx: StepContext, request: Request) -> Admission:
        """The inner policy's admission, then the backlog check (`policies.admission.backlog_admission`)."""
        own = self.inner.admit(ctx, request)
        if not own.accepted:
            return own
        healthy = [d for d in ctx.devices if d.healthy]
        if not healthy:
            return own  # the driver answers `no_device`
        oracle = self._oracle_for(ctx, healthy)
        queued = ctx.queue.by_deadline()
        late = backlog_admission(ctx.now_s, request, queued, healthy, oracle, self.margins, by_priority=False)
        return own if late.accepted else late

    def decide(self, ctx: StepContext) -> Decisions:
        if not ctx.queue:
            return self.inner.decide(ctx)
        healthy = [d for d in ctx.devices if d.healthy]
        drops = []
        if healthy:
            rel, abs_s = self.margins.rel, self.margins.abs_s
            oracle = self._oracle_for(ctx, healthy)
            drops = unreachable_drops(ctx.now_s, ctx.queue, healthy, oracle, margin_rel=rel, margin_abs_s=abs_s)
        if not drops:
            return self.inner.decide(ctx)
        gone = {i for d in drops for i in d.request_ids}
        out = self.inner.decide(ctx.replace(queue=RequestQueue(r for r in ctx.queue if r.request_id not in gone)))
        out.drops[:0] = drops
        return out

    def _oracle_for(self, ctx: StepContext, healthy: list[DeviceState]) -> CostOracle:
        """One `CostOracle` while the device sequence (its identity marks fact and health changes) and the cost
        view's generation stand still: a cache of look-ups, not memory of the run."""
        hit = self._oracle
        if hit is not None and hit[0] is ctx.devices and hit[1] == ctx.cost.generation:
            return hit[2]
        oracle = CostOracle(ctx.cost, healthy)
        self._oracle = (ctx.devices, ctx.cost.generation, oracle)
        return oracle

    def absorb(self, applied: Applied) -> None:
        self.inner.absorb(applied)

    def observe(self, result: BatchResult) -> None:
        self.inner.observe(result)


def protect(policy: Policy, streams: StreamSet | None = None) -> Policy:
    """The service's policy: `policy` under overload control with `streams`, else under `SloAdmission`.
    A policy already under either keeps its own wrapper (re-wrapped around its inner with `streams`)."""
    from policies.overload import OverloadControl

    inner = policy.inner if isinstance(policy, (OverloadControl, SloAdmission)) else policy
    if streams is not None:
        return OverloadControl(inner, streams)
    return policy if isinstance(policy, (OverloadControl, SloAdmission)) else SloAdmission(inner)


@register("slo")
def _slo(arg: str | None) -> Policy:
    from policies.overload import make_inner

    return SloAdmission(make_inner(arg or "jetfleet"))
