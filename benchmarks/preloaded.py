"""A `SchedulerCore` in a given state, for timing `Policy.decide` on it (no simulation needed).

`decide` has no side effects, so a benchmark may call it on the same context again and again and time each
call: the core is never stepped, nothing is applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from costmodel.base import CostModel
from jetfleet.types import Applied, DeviceState, Request
from policies.base import Policy
from policies.core import SchedulerCore


def preloaded_core(
    policy: Policy,
    cost: CostModel,
    devices: Sequence[DeviceState],
    requests: Sequence[Request],
    *,
    announce: int | None = None,
) -> SchedulerCore:
    """A core over `devices` with `requests` queued as they are (no admission: a bounded policy drops nothing).

    The policy is told of the last `announce` requests (all when None) as admitted at their arrival time, so it
    has an arrival-rate history, as a policy that has been running would."""
    core = SchedulerCore(policy, cost, devices)
    for r in requests:
        core.queue.add(r)
    told = requests if announce is None else requests[len(requests) - announce :]
    for r in told:
        policy.absorb(Applied(r.arrival_s, admitted=(r,)))
    return core
