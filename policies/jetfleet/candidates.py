"""The requests one jetfleet decision plans for: per model family, in earliest-deadline-first order, as arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jetfleet.types import Request

__all__ = ["Candidates", "by_family"]


@dataclass
class Candidates:
    """Candidate requests of one model family in EDF order, as arrays (positions index all of them)."""

    requests: list[Request]
    ids: np.ndarray  # (n,) request ids
    frames: np.ndarray  # (n,) frames per request
    deadlines_s: np.ndarray  # (n,) absolute deadlines
    family: str
    _alive_key: tuple | None = None

    @classmethod
    def of(cls, requests: list[Request], family: str) -> Candidates:
        n = len(requests)
        return cls(
            requests,
            np.fromiter((r.request_id for r in requests), np.int64, n),
            np.fromiter((r.n_frames for r in requests), np.int64, n),
            np.fromiter((r.deadline_s for r in requests), np.float64, n),
            family,
        )

    def alive_positions(self, alive: np.ndarray) -> np.ndarray:
        """Indices of the alive candidates, computed once per state of `alive` within a decision."""
        hit = self._alive_key
        if hit is not None and hit[0] is alive and hit[1].shape == alive.shape and (hit[1] == alive).all():
            return hit[2]
        pos = alive.nonzero()[0]
        self._alive_key = (alive, alive.copy(), pos)
        return pos


def by_family(requests: list[Request]) -> dict[str, list[Request]]:
    """Requests grouped by model family, each group in the given order."""
    out: dict[str, list[Request]] = {}
    for r in requests:
        out.setdefault(r.model, []).append(r)
    return out
