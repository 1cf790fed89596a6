"""The request queue every policy sees: arrival order and deadline (EDF / least-slack) order at once."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from jetfleet.errors import InvalidRequestError
from jetfleet.types import Request


class RequestQueue:
    """Requests waiting for dispatch.

    Iteration is in arrival order. `by_deadline()` gives earliest-deadline-first order, which is also
    LoudVA's least-remaining-slack order (slack = deadline - now). Ties break by arrival sequence so
    the order is deterministic. Insert and remove are O(log n + n memmove), fine for 10^4-10^5 queued.
    """

    def __init__(self, requests: Iterable[Request] = ()) -> None:
        self._by_id: dict[int, Request] = {}
        self._keys: list[tuple[float, int, int]] = []  # (deadline_s, seq, request_id), sorted
        self._key_of: dict[int, tuple[float, int, int]] = {}
        self._seq = 0
        self._frames = 0
        self._per_stream: dict[str, int] = {}
        for r in requests:
            self.add(r)

    def add(self, request: Request) -> None:
        if request.request_id in self._by_id:
            raise InvalidRequestError(f"request {request.request_id} is already queued")
        key = (request.deadline_s, self._seq, request.request_id)
        self._seq += 1
        self._by_id[request.request_id] = request
        self._key_of[request.request_id] = key
        bisect.insort(self._keys, key)
        self._frames += request.n_frames
        self._per_stream[request.stream] = self._per_stream.get(request.stream, 0) + 1

    def remove(self, request_ids: Iterable[int]) -> list[Request]:
        """Remove and return these requests; raise KeyError naming the first one not queued."""
        out = []
        for rid in request_ids:
            request = self._by_id.pop(rid, None)
            if request is None:
                raise KeyError(f"request {rid} is not in the queue")
            key = self._key_of.pop(rid)
            del self._keys[bisect.bisect_left(self._keys, key)]
            self._frames -= request.n_frames
            left = self._per_stream[request.stream] - 1
            if left:
                self._per_stream[request.stream] = left
            else:
                del self._per_stream[request.stream]
            out.append(request)
        return out

    def get(self, request_id: int) -> Request:
        return self._by_id[request_id]

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._by_id.values())

    @property
    def frames(self) -> int:
        """Total frames queued."""
        return self._frames

    def stream_counts(self) -> dict[str, int]:
        """Requests queued per stream (a copy)."""
        return dict(self._per_stream)

    def by_deadline(self, not_before_s: float | None = None) -> Iterator[Request]:
        """Requests in earliest-deadline-first order; with `not_before_s`, only those due at or after it.

        Skipping the ones already due is O(log n), so a policy can look past a backlog of late requests.
        """
        by_id, keys = self._by_id, self._keys
        if not_before_s is None:
            return (by_id[k[2]] for k in keys)
        start = bisect.bisect_left(keys, (not_before_s,))
        return (by_id[keys[i][2]] for i in range(start, len(keys)))

    def count_due_before(self, t_s: float) -> int:
        """How many queued requests have a deadline before `t_s` (O(log n))."""
        return bisect.bisect_left(self._keys, (t_s,))

    def earliest(self) -> Request | None:
        """The request with the earliest deadline, or None when empty."""
        return self._by_id[self._keys[0][2]] if self._keys else None
