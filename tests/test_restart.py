"""A scheduler restart loses nothing (issue 12, finding 7): the ingress sends unanswered requests again while their
deadline allows, each answered exactly once (a fake handle stands in for Ray Serve's); a restarted scheduler loads
its predecessor's cost model instead of fitting it again, and numbers requests where no earlier one did."""

from __future__ import annotations

import asyncio
import time

import pytest

from actors.messages import InferAnswer, InferItem

pytest.importorskip("ray")


class _FakeScheduler:
    """The scheduler deployment and its host in one: `host.remote()` answers itself; its streaming
    `submit_many` answers `answered` requests and then dies, for the first `dies` calls."""

    def __init__(self, answered: int, dies: int = 1) -> None:
        self.answered, self.dies = answered, dies
        self.calls: list[list[InferItem]] = []
        self.host_asks = 0
        self.submit_many = self
        self.host = _HostCall(self)

    def options(self, num_returns: str) -> _FakeScheduler:
        return self

    def remote(self, items: list[InferItem]):
        self.calls.append(list(items))
        dying = len(self.calls) <= self.dies

        async def group(value):
            return value

        async def stream():
            for i, item in enumerate(items):
                if dying and i >= self.answered:
                    raise RuntimeError("ActorDiedError: the scheduler replica died")
                yield group([(i, InferAnswer(len(self.calls) * 100 + i, "completed", total_s=item.slo_s))])

        return stream()


class _HostCall:
    def __init__(self, scheduler: _FakeScheduler, wait_s: float = 0.0) -> None:
        self.scheduler, self.wait_s = scheduler, wait_s

    async def remote(self) -> _FakeScheduler:
        self.scheduler.host_asks += 1
        await asyncio.sleep(self.wait_s)  # Serve holds the call while it restarts the replica
        return self.scheduler


async def _submit_all(submitter, items):
    return await asyncio.gather(*(submitter.submit(i) for i in items), return_exceptions=True)


def test_requests_unanswered_when_the_scheduler_died_are_resubmitted_and_answered_once():
    from deployments.ingress import _Submitter

    scheduler = _FakeScheduler(answered=2)
    submitter = _Submitter(scheduler)
    items = [InferItem(1, 5.0, stream=f"s{i}") for i in range(5)]
    answers = asyncio.run(_submit_all(submitter, items))
    assert all(isinstance(a, InferAnswer) and a.ok for a in answers)
    assert [a.request_id for a in answers] == [100, 101, 200, 201, 202]  # two before the death, three after
    assert [i.stream for i in scheduler.calls[1]] == ["s2", "s3", "s4"]  # only the unanswered went again
    assert all(i.slo_s < 5.0 for i in scheduler.calls[1])  # with what is left of their budget
    assert submitter.resubmitted == 3
    assert scheduler.host_asks == 2  # a failed burst asks the deployment for its (new) host again


def test_a_request_whose_deadline_passes_while_the_scheduler_is_down_fails_once():
    from deployments.ingress import _Submitter

    scheduler = _FakeScheduler(answered=0, dies=1000)
    submitter = _Submitter(scheduler)
    (answer,) = asyncio.run(_submit_all(submitter, [InferItem(1, 0.3)]))
    assert isinstance(answer, RuntimeError) and "died" in str(answer)
    assert 2 <= len(scheduler.calls) <= 6  # retried with back-off until its 0.3 s budget ran out


def test_requests_go_with_the_budget_left_after_waiting_for_a_restarted_scheduler():
    """Asking for the host waited 0.4 s (a restart): a 5 s request goes with <= 4.6 s, not its full SLO (which
    a new scheduler would spend serving it late), and a 0.2 s one whose deadline passed meanwhile is not sent."""
    from deployments.ingress import _Submitter

    scheduler = _FakeScheduler(answered=0, dies=0)
    scheduler.host = _HostCall(scheduler, wait_s=0.4)
    submitter = _Submitter(scheduler)
    late, on_time = asyncio.run(_submit_all(submitter, [InferItem(1, 0.2, stream="late"), InferItem(1, 5.0)]))
    assert isinstance(late, RuntimeError) and "deadline passed" in str(late)
    assert isinstance(on_time, InferAnswer) and on_time.total_s <= 4.6
    assert [[i.stream for i in call] for call in scheduler.calls] == [["default"]]


def test_a_restarted_scheduler_loads_the_cost_model_its_predecessor_fitted(tmp_path, monkeypatch):
    import tempfile

    from deployments.app import cached_cost_model

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    first = cached_cost_model("lgbm", "app-1")
    assert (tmp_path / "jetfleet-cost" / "app-1").is_dir()
    again = cached_cost_model("lgbm", "app-1")
    assert again is not first
    import numpy as np

    from jetfleet.catalogue import get_kind

    for kind, model in (("agx-xavier", "inceptionv3"), ("jetson-nano", "resnet18")):
        freqs = np.asarray(get_kind(kind).freqs_hz[-2:], dtype=float)
        a = first.predict_grid(kind, model, freqs, np.array([1, 8]))
        b = again.predict_grid(kind, model, freqs, np.array([1, 8]))
        assert np.allclose(a.latency_s, b.latency_s, rtol=1e-9) and np.allclose(a.energy_j, b.energy_j, rtol=1e-9)


def test_request_ids_of_a_restarted_scheduler_start_after_those_before():
    from deployments.app import first_request_id

    before = first_request_id()
    time.sleep(0.002)
    assert first_request_id() > before + 1000 and first_request_id() < 2**53


class _NeverBack:
    """A scheduler deployment whose replica never comes back: asking it for its host waits forever."""

    class _Host:
        async def remote(self):
            await asyncio.Event().wait()

    host = _Host()


def test_a_scheduler_that_never_comes_back_fails_the_request_soon_after_its_deadline():
    """The ingress does not wait on Serve forever: a call open past the deadline plus a grace counts as failed."""
    from deployments.ingress import _Submitter

    submitter = _Submitter(_NeverBack())
    submitter.ANSWER_GRACE_S = 0.2
    t0 = time.monotonic()
    (answer,) = asyncio.run(_submit_all(submitter, [InferItem(1, 0.3)]))
    assert isinstance(answer, RuntimeError) and "did not answer" in str(answer)
    assert time.monotonic() - t0 < 3.0
