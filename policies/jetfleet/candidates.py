"""The requests one jetfleet decision plans for: per model family, in earliest-deadline-first order, as arrays."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from jetfleet.types import Request

__all__ = ["Candidates", "by_family", "split_by_family"]

# attrgetter through map is about twice as fast as a generator expression over a few hundred requests
_ID, _FRAMES, _DEADLINE, _MODEL = (attrgetter(a) for a in ("request_id", "n_frames", "deadline_s", "model"))
# Up to this many candidates, a frame count's max or sum is cheaper in Python over the requests than a numpy reduction
# (about 1 us of fixed cost each; most windows hold a handful of requests).
_PYTHON_REDUCE_UPTO = 48


@dataclass(slots=True)
class Candidates:
    """Candidate requests of one model family in EDF order, as arrays (positions index all of them)."""

    requests: list[Request]
    ids: np.ndarray  # (n,) request ids
    frames: np.ndarray  # (n,) frames per request
    deadlines_s: np.ndarray  # (n,) absolute deadlines
    family: str
    _alive_key: tuple | None = None
    _alive_head: tuple | None = None
    _head_frames: tuple[int, int] | None = None  # `alive_head_frames` of the cached head
    _most_frames: int | None = None
    _total_frames: int | None = None

    @classmethod
    def of(cls, requests: list[Request], family: str) -> Candidates:
        n = len(requests)
        return cls(
            requests,
            np.fromiter(map(_ID, requests), np.int64, n),
            np.fromiter(map(_FRAMES, requests), np.int64, n),
            np.fromiter(map(_DEADLINE, requests), np.float64, n),
            family,
        )

    def subset(self, keep: list[int], family: str) -> Candidates:
        """The candidates at positions `keep` (in order), as candidates of `family`."""
        requests = self.requests
        return Candidates(
            [requests[i] for i in keep], self.ids[keep], self.frames[keep], self.deadlines_s[keep], family
        )

    # Kept by hand, not with `functools.cached_property`, whose first read takes a lock on Python 3.11: a decision
    # reads each once, of candidates made for it.
    @property
    def most_frames(self) -> int:
        """The largest request's frames."""
        if self._most_frames is None:
            if len(self.requests) <= _PYTHON_REDUCE_UPTO:
                self._most_frames = max(map(_FRAMES, self.requests), default=0)
            else:
                self._most_frames = int(self.frames.max())
        return self._most_frames

    @property
    def total_frames(self) -> int:
        """All candidates' frames."""
        if self._total_frames is None:
            if len(self.requests) <= _PYTHON_REDUCE_UPTO:
                self._total_frames = sum(map(_FRAMES, self.requests))
            else:
                self._total_frames = int(self.frames.sum())
        return self._total_frames

    def alive_positions(self, alive: np.ndarray) -> np.ndarray:
        """Indices of the alive candidates, computed once per `alive` mask. The planner never changes a mask in
        place (it makes a new one), and the one cached here stays referenced, so identity tells masks apart."""
        hit = self._alive_key
        if hit is not None and hit[0] is alive:
            return hit[1]
        pos = alive.nonzero()[0]
        self._alive_key = (alive, pos)
        return pos

    def alive_head(self, alive: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, frames, deadlines) of the first `limit` alive candidates: what a plan looks at, cut once per
        mask and limit (a decision plans the same mask on each group's representatives)."""
        hit = self._alive_head
        if hit is not None and hit[0] is alive and hit[1] == limit:
            return hit[2]
        pos = self.alive_positions(alive)[:limit]
        head = (pos, self.frames[pos], self.deadlines_s[pos])
        self._alive_head = (alive, limit, head)
        self._head_frames = None
        return head

    def alive_head_frames(self, alive: np.ndarray, limit: int) -> tuple[int, int]:
        """(sum, max) of the frames of `alive_head(alive, limit)`, computed once per head."""
        frames = self.alive_head(alive, limit)[1]
        if self._head_frames is None:
            counts = frames.tolist()  # Python's sum and max beat two numpy reductions on a plan's few dozen
            self._head_frames = (sum(counts), max(counts)) if counts else (0, 0)
        return self._head_frames


def split_by_family(window: list[Request]) -> tuple[Candidates, dict[str, Candidates]]:
    """The whole window as arrays (family "") and its candidates per model family, each in window order. The
    arrays are built once: one family (the common case) shares the window's own."""
    models = list(map(_MODEL, window))
    if not models or models.count(models[0]) == len(models):
        whole = Candidates.of(window, models[0] if models else "")
        return whole, ({whole.family: whole} if models else {})
    whole = Candidates.of(window, "")
    positions: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        positions.setdefault(model, []).append(i)
    return whole, {family: whole.subset(keep, family) for family, keep in positions.items()}


def by_family(requests: list[Request]) -> dict[str, list[Request]]:
    """Requests grouped by model family, each group in the given order."""
    out: dict[str, list[Request]] = {}
    for r in requests:
        out.setdefault(r.model, []).append(r)
    return out
