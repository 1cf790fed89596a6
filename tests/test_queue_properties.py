"""RequestQueue invariants under any sequence of adds and removes, checked against a plain list (hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jetfleet.errors import InvalidRequestError
from jetfleet.types import Request
from policies.queue import RequestQueue

# Halves add up exactly, so different (arrival, slo) pairs share a deadline and ties are common.
_TIMES = st.sampled_from([0.0, 0.5, 1.0, 1.5])
_SLOS = st.sampled_from([0.5, 1.0, 2.0])


class QueueMachine(RuleBasedStateMachine):
    """The model: the queued requests in arrival order, each with its arrival sequence number."""

    @initialize()
    def start(self) -> None:
        self.queue = RequestQueue()
        self.model: list[tuple[int, Request]] = []  # (seq, request), arrival order
        self.next_id = self.next_seq = 0

    @rule(arrival_s=_TIMES, slo_s=_SLOS, n_frames=st.integers(1, 4), stream=st.sampled_from("abc"))
    def add(self, arrival_s: float, slo_s: float, n_frames: int, stream: str) -> None:
        request = Request(self.next_id, arrival_s, n_frames, slo_s, stream=stream)
        self.queue.add(request)
        self.model.append((self.next_seq, request))
        self.next_id += 1
        self.next_seq += 1

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        ids = [r.request_id for _, r in self.model]
        gone = data.draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
        assert [r.request_id for r in self.queue.remove(gone)] == gone
        self.model = [(s, r) for s, r in self.model if r.request_id not in gone]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def re_add_is_refused(self, data: st.DataObject) -> None:
        _, request = data.draw(st.sampled_from(self.model))
        with pytest.raises(InvalidRequestError, match=str(request.request_id)):
            self.queue.add(request)

    @rule()
    def removing_an_unknown_id_is_a_key_error(self) -> None:
        with pytest.raises(KeyError, match=str(self.next_id)):
            self.queue.remove([self.next_id])

    @invariant()
    def orders_match_the_model(self) -> None:
        edf = [r.request_id for _, r in sorted(self.model, key=lambda sr: (sr[1].deadline_s, sr[0]))]
        assert [r.request_id for r in self.queue.by_deadline()] == edf
        assert [r.request_id for r in self.queue] == [r.request_id for _, r in self.model]
        assert self.queue.earliest() == (self.queue.get(edf[0]) if edf else None)

    @invariant()
    def totals_match_the_model(self) -> None:
        requests = [r for _, r in self.model]
        assert len(self.queue) == len(requests) and bool(self.queue) == bool(requests)
        assert self.queue.frames == sum(r.n_frames for r in requests)
        assert self.queue.stream_counts() == Counter(r.stream for r in requests)
        assert all(r.request_id in self.queue for r in requests)

    @invariant()
    def deadline_cuts_agree(self) -> None:
        deadlines = [r.deadline_s for _, r in self.model]
        for t in sorted(set(deadlines)) + [-1.0, 0.75, 99.0]:
            due = self.queue.count_due_before(t)
            assert due == sum(d < t for d in deadlines)
            later = list(self.queue.by_deadline(not_before_s=t))
            assert later == list(self.queue.by_deadline())[due:]
            assert all(r.deadline_s >= t for r in later)


QueueMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
test_request_queue_invariants = QueueMachine.TestCase
