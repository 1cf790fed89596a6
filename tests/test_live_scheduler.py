"""LiveScheduler without Ray: exactly-once answers, failover, safety drops, timer stepping, accounting."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from device_fakes import LinearDeviceModel

from actors.accounting import EnergyLedger
from actors.device import DeviceRuntime
from actors.messages import DeviceUnavailableError, InferItem, LocalDeviceClient, flatten_inputs
from actors.scheduler import LiveScheduler
from cluster.inventory import fleet_from_dict
from costmodel.device_models import OracleCostModel
from jetfleet.catalogue import get_kind
from jetfleet.errors import UnknownNameError
from jetfleet.telemetry import EventList
from jetfleet.types import Admission, Applied, Batch, Decisions, Dispatch, DropReason, Request
from policies.base import Policy
from policies.overload import OverloadControl
from policies.registry import make_policy
from policies.streams import DropPolicy, StreamConfig, StreamSet

FLEET = fleet_from_dict({"name": "two", "devices": [{"name": n, "kind": "xavier-nx"} for n in ("a", "b")]})
SPEED = 200.0  # emulated time runs 200x faster than wall time


def _clients(fleet=FLEET, **overrides):
    clients = {
        d.name: LocalDeviceClient(DeviceRuntime(d, speed_factor=SPEED, device_model=LinearDeviceModel(d.kind)))
        for d in fleet.devices
    }
    clients.update(overrides)
    return clients


def _scheduler(policy="transparent", clients=None, **kw) -> LiveScheduler:
    policy = make_policy(policy) if isinstance(policy, str) else policy
    kw.setdefault("probe_interval_s", 0)
    return LiveScheduler(FLEET, policy, OracleCostModel(), clients or _clients(), time_scale=SPEED, **kw)


def _items(n: int, frames: int = 2, slo_s: float = 5.0) -> list[InferItem]:
    return [InferItem(frames, slo_s / SPEED, stream=f"s{i % 3}") for i in range(n)]


async def _run_all(s: LiveScheduler, items: list[InferItem]) -> list:
    answers = await asyncio.gather(*(s.submit(i) for i in items))
    await s.close()
    return answers


def test_every_request_is_answered_once_with_its_frames():
    """Thirty requests: thirty completed answers, one per request id, each with one output per frame."""
    s = _scheduler()
    answers = asyncio.run(_run_all(s, _items(30)))
    assert sorted(a.request_id for a in answers) == list(range(30))
    assert all(a.status == "completed" and len(a.outputs) == 2 and a.device in ("a", "b") for a in answers)
    assert s.run_report()["completed_frames"] == 60


class _DiesOnce:
    """A device client whose device is gone on its first batch."""

    def __init__(self, inner: LocalDeviceClient) -> None:
        self.inner, self.calls = inner, 0

    async def run_batch(self, batch, inputs):
        self.calls += 1
        if self.calls == 1:
            raise DeviceUnavailableError("node gone")
        return await self.inner.run_batch(batch, inputs)

    async def set_frequency(self, freq_hz):
        return await self.inner.set_frequency(freq_hz)

    async def status(self):
        return await self.inner.status()


def test_a_dead_device_requeues_its_batch_to_the_others():
    """Device a dies mid-batch: its requests are served by b; nothing lost or answered twice."""
    clients = _clients()
    clients["a"] = _DiesOnce(clients["a"])
    s = _scheduler(clients=clients)
    answers = asyncio.run(_run_all(s, _items(20)))
    assert sorted(a.request_id for a in answers) == list(range(20))
    assert all(a.status == "completed" for a in answers)
    assert s.run.device_failures == 1 and s.run.requeued >= 1
    assert not s.core.devices["a"].healthy


def test_no_healthy_device_drops_with_a_reason():
    """With every device gone, queued requests are dropped as no_device, not left hanging."""
    clients = {name: _DiesOnce(c) for name, c in _clients().items()}
    s = _scheduler(clients=clients)
    answers = asyncio.run(_run_all(s, _items(6)))
    assert {a.status for a in answers} == {"dropped"}
    assert {a.reason for a in answers} == {"no_device"}


class _Broken(Policy):
    name = "broken"

    def decide(self, ctx):
        raise RuntimeError("policy bug")


def test_a_policy_error_answers_the_queue_instead_of_hanging():
    s = _scheduler(_Broken())
    answers = asyncio.run(_run_all(s, _items(3)))
    assert {a.status for a in answers} == {"dropped"}
    assert "policy bug" in s.last_error


class _Ticking(Policy):
    """Asks to be woken at exact tick times and records the times it was stepped at (in `absorb`)."""

    name = "ticking"

    def __init__(self) -> None:
        self.seen: list[float] = []

    def absorb(self, applied: Applied) -> None:
        if not applied.admitted:  # a step, not an arrival
            self.seen.append(applied.now_s)

    def decide(self, ctx):
        if not ctx.queue:
            return Decisions()
        tick = (math.floor(ctx.now_s / 0.5) + 1) * 0.5
        if len(self.seen) < 3:
            return Decisions(wake_at_s=tick)
        ids = tuple(r.request_id for r in ctx.queue)
        return Decisions(dispatches=[Dispatch("a", ids, get_kind("xavier-nx").max_freq_hz, "inceptionv3")])


def test_a_timer_wake_up_steps_the_core_at_the_time_asked_for():
    """Woken only by its timer, the policy sees exactly the tick time it asked for (as in the simulator)."""
    policy = _Ticking()
    s = _scheduler(policy)
    asyncio.run(_run_all(s, _items(1)))
    asked = [(math.floor(t / 0.5) + 1) * 0.5 for t in policy.seen[:3]]  # the ticks its first three steps asked for
    assert policy.seen[1:4] == asked  # each following step ran at exactly that time, none in between


class _RefusesAll(Policy):
    name = "refuses"

    def admit(self, ctx, request):
        return Admission.reject(DropReason.QUEUE_FULL, retry_after_s=2.0 * SPEED, detail="full")

    def decide(self, ctx):
        return Decisions()


def test_admission_refusal_is_a_rejected_answer_with_retry_after():
    s = _scheduler(_RefusesAll())
    (answer,) = asyncio.run(_run_all(s, _items(1)))
    assert answer.status == "rejected" and answer.reason == "queue_full"
    assert answer.retry_after_s == pytest.approx(2.0)  # wall seconds


def test_a_full_drop_newest_stream_is_rejected_with_retry_after_and_the_rest_served():
    """Overload control's bounded queue, live: a burst past the bound gets `rejected` answers (HTTP 429), the
    others complete."""
    streams = StreamSet(streams=(StreamConfig("cam", queue_limit=2, drop_policy=DropPolicy.DROP_NEWEST),))
    s = _scheduler(OverloadControl(make_policy("transparent"), streams))
    # An SLO far above the batches' time (0.3 s wall): only the queue bound may refuse, not a stalled host.
    answers = asyncio.run(_run_all(s, [InferItem(1, 60.0 / SPEED, stream="cam") for _ in range(6)]))
    rejected = [a for a in answers if a.status == "rejected"]
    assert rejected and all(a.reason == "queue_full" and a.retry_after_s > 0 for a in rejected)
    assert {a.status for a in answers} == {"completed", "rejected"}


class _AdmitRaises(Policy):
    name = "admit-raises"

    def admit(self, ctx, request):
        raise ValueError("min() arg is an empty sequence")

    def decide(self, ctx):
        return Decisions()


def test_a_policy_whose_admission_raises_fails_that_request_and_leaves_nothing_open():
    """Regression (issue 12, finding 1): the failed requests stayed open in the run's books (`run.open_requests`
    3,406 while `open` said 0) and one failure failed the whole burst."""

    async def scenario():
        s = _scheduler(_AdmitRaises())
        answers = [group async for group in s.submit_many(_items(3))]
        return s, [a for group in answers for _, a in group]

    s, answers = asyncio.run(scenario())
    assert [(a.status, a.reason) for a in answers] == [("failed", "admission_failed")] * 3
    stats = s.stats()
    assert stats["open"] == 0 and stats["run"]["open_requests"] == 0 and stats["run"]["requests"] == 3
    assert "empty sequence" in s.last_error


def test_the_shipped_three_stream_config_serves_its_streams_live():
    """Regression (issue 12, finding 1): under `--streams configs/overload-3stream.json` every request of a
    configured stream was answered 503; now each gets an answer of overload control (completed, or refused or
    dropped with a reason), none failed, and nothing stays open."""
    from pathlib import Path

    from deployments.app import build_policy

    config = Path(__file__).resolve().parent.parent / "configs" / "overload-3stream.json"
    streams = [("detector", 100, "yolov4-tiny", 8.0), ("tracker", 60, "resnet18", 15.0)]
    streams.append(("classifier", 20, "resnet50", 25.0))
    items = [
        InferItem(1, slo_s / SPEED, model, priority, stream)
        for _ in range(10)
        for stream, priority, model, slo_s in streams
    ]
    s = _scheduler(build_policy("jetfleet", str(config)))
    answers = asyncio.run(_run_all(s, items))
    assert "failed" not in {a.status for a in answers}
    assert any(a.status == "completed" for a in answers)
    stats = s.stats()
    assert stats["open"] == 0 and stats["run"]["open_requests"] == 0


def test_the_run_records_are_bounded_by_rolling_over_to_a_new_window():
    """Regression (issue 12, finding 6): per-request run records were kept up to 500k and cleared only when
    the queue emptied. With `record_limit` 10, 35 requests leave at most 10 records; the lifetime counters and
    the energy of the windows still add up."""
    s = _scheduler(record_limit=10)

    async def scenario():
        for _ in range(7):  # bursts of 5 with requests still open at each roll-over
            await asyncio.gather(*(s.submit(i) for i in _items(5)))
        total_j = sum(ledger.energy_j for ledger in s.ledgers.values())
        report = s.run_report()
        await s.close()
        return total_j, report

    total_j, report = asyncio.run(scenario())
    assert len(s.run.requests) <= 10 and report["window"] == 4
    assert s.stats()["submitted"] == 35 and s.stats()["completed"] == 35
    assert 0 < sum(report["device_energy_j"].values()) < total_j


def test_unknown_model_is_refused_at_submit():
    s = _scheduler()
    with pytest.raises(UnknownNameError, match="unknown model"):
        s.submit_nowait(InferItem(1, 1.0, model="no-such-net"))


def test_inputs_are_flattened_per_frame_and_synthetic_requests_padded():
    reqs = (Request(0, 0.0, 2, 1.0), Request(1, 0.0, 1, 1.0))
    batch = Batch(0, Dispatch("a", (0, 1), 1e9, "inceptionv3"), reqs, 0.0)
    frames = flatten_inputs([np.ones((2, 3, 8, 8), np.float32), None], batch)
    assert len(frames) == 3 and frames[0].shape == (3, 8, 8) and not frames[2].any()
    assert flatten_inputs([None, None], batch) is None


def test_ledger_counts_idle_power_between_batches_and_busy_energy():
    ledger = EnergyLedger(lambda f: 2.0, 1e9)
    ledger.open(0.0)
    ledger.batch(finished_s=3.0, latency_s=1.0, energy_j=5.0, freq_hz=1e9)  # idle 0-2, busy 2-3
    ledger.close(4.0)  # idle 3-4
    assert ledger.busy_energy_j == 5.0 and ledger.idle_energy_j == pytest.approx(6.0)


def test_telemetry_events_are_written_through_the_core_sink():
    events = EventList()
    s = _scheduler(sink=events)
    asyncio.run(_run_all(s, _items(4)))
    kinds = {e.event for e in events}
    assert {"arrival", "dispatch", "complete"} <= kinds


def test_submit_many_streams_every_answer_once_in_groups():
    async def run() -> list:
        s = _scheduler()
        items = _items(24, frames=1) + [InferItem(1, 1.0, model="no-such-net")]
        groups = [g async for g in s.submit_many(items)]
        await s.close()
        return groups

    groups = asyncio.run(run())
    answers = dict(a for g in groups for a in g)
    assert sorted(answers) == list(range(25)) and len(groups) < 25
    assert answers[24].status == "failed" and "no-such-net" in answers[24].detail
    assert all(answers[i].status == "completed" for i in range(24))
