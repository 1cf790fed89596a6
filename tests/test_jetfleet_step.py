"""`Step`'s deferred work (policies/jetfleet/step.py) and the plans the jetfleet policy defers with it: a batch too
early to queue behind a running one, whatever its size, is planned only when the wake it asks for may come first."""

from __future__ import annotations

import pytest
from policy_harness import context, decide
from sim_fakes import FakeCost, req

from jetfleet.links import GBE
from jetfleet.types import Decisions, DeviceState
from policies.jetfleet import JetfleetConfig, JetfleetPolicy, PowerConfig
from policies.jetfleet.step import Step
from policies.queue import RequestQueue

COST = FakeCost()


def test_deferred_work_runs_earliest_first_and_only_while_it_may_lower_the_wake():
    step = Step(context(0.0, RequestQueue(), [], COST), Decisions())
    ran: list[str] = []

    def work(name: str, wake_s: float):
        return lambda: (ran.append(name), step.wake(wake_s))

    step.wake(5.0)
    step.defer(3.0, work("b", 3.5))
    step.defer(1.0, work("a", 2.0))
    step.defer(2.5, work("c", 2.6))  # no earlier than 2.5: the 2.0 s wake that "a" set stands
    step.defer(6.0, work("d", 6.0))
    step.run_deferred()
    assert ran == ["a"] and step.wake_s == 2.0 and not step.deferred


def test_a_batch_too_early_to_queue_behind_a_running_one_still_asks_to_be_woken_before_its_transfer():
    """A device over GbE busy for 5 s more: no batch goes now; the decision wakes when the batch's input must leave."""
    now_s, busy_until_s = 1.0, 6.0
    device = DeviceState("d0", "agx-xavier", 1.377e9, link=GBE, in_flight=1, busy_until_s=busy_until_s)
    queue = RequestQueue()
    queue.add(req(0, t=now_s, frames=4, slo=20.0))
    policy = JetfleetPolicy(JetfleetConfig(power=PowerConfig(enabled=False)))
    out = decide(policy, now_s, queue, [device], COST, apply=False)
    assert not out.dispatches
    tables = policy.tables(context(now_s, queue, [device], COST), device, "inceptionv3")
    assert out.wake_at_s == pytest.approx(busy_until_s - float(tables.transfer_s[3]))
