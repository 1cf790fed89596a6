"""What the stream of arrivals tells a policy: frame rate, the tightest SLO lately, when it went quiet. Pure."""

from __future__ import annotations

import math
from collections import deque

from jetfleet.types import Request

__all__ = ["ArrivalStats"]


class ArrivalStats:
    """What arrivals tell the policy, per model family: the frame rate (an exponentially decaying sum) and the
    tightest SLO seen lately (a sliding-window minimum), which a batch must leave room for."""

    def __init__(self, halflife_s: float, window_s: float) -> None:
        self._decay = math.log(2.0) / halflife_s
        self._window_s = window_s
        self._rate: dict[str, tuple[float, float]] = {}  # family -> (rate at t, t)
        self._tight: dict[str, deque[tuple[float, float, int]]] = {}  # family -> (arrival, slo, frames), slo rising
        self._requests = (0.0, 0.0)  # (request rate at t, t), all families
        # family -> (arrival, slo, frames), each harder than every later one (a sliding-window maximum of hardness:
        # the tighter SLO, then the more frames): what `hardest` reads.
        self._hard: dict[str, deque[tuple[float, float, int]]] = {}
        self._last_fps: tuple[float, str, float] = (math.nan, "", 0.0)  # (now_s, family, frames_per_s) last asked

    def observe(self, request: Request, now_s: float) -> None:
        family = request.model
        self._rate[family] = (self.frames_per_s(family, now_s) + request.n_frames * self._decay, now_s)
        self._last_fps = (math.nan, "", 0.0)  # the rate changed
        self._requests = (self.requests_per_s(now_s) + self._decay, now_s)
        tight = self._tight.setdefault(family, deque())
        while tight and tight[-1][1] >= request.slo_s:
            tight.pop()
        tight.append((now_s, request.slo_s, request.n_frames))
        while tight[0][0] < now_s - self._window_s:  # out of the window for good: time only moves on
            tight.popleft()
        hard = self._hard.setdefault(family, deque())
        while hard and (-hard[-1][1], hard[-1][2]) <= (-request.slo_s, request.n_frames):
            hard.pop()
        hard.append((now_s, request.slo_s, request.n_frames))
        while hard[0][0] < now_s - self._window_s:
            hard.popleft()

    def last_arrival_s(self, family: str) -> float:
        """When the last request of `family` arrived (-inf before any)."""
        return self._rate.get(family, (0.0, -math.inf))[1]

    def frames_per_s(self, family: str, now_s: float) -> float:
        last = self._last_fps  # a decision asks the same (family, time) several times: once per plan
        if last[0] == now_s and last[1] == family:
            return last[2]
        rate, t = self._rate.get(family, (0.0, now_s))
        fps = rate * math.exp(-self._decay * max(0.0, now_s - t))
        self._last_fps = (now_s, family, fps)
        return fps

    def requests_per_s(self, now_s: float) -> float:
        """Requests per second, all families (the same decaying estimate as `frames_per_s`)."""
        rate, t = self._requests
        return rate * math.exp(-self._decay * max(0.0, now_s - t))

    def hardest(self, family: str, now_s: float) -> tuple[float, int] | None:
        """(slo_s, n_frames) of the hardest arrival of the last `window_s`: the tightest SLO, and of those the most
        frames; None before any. A device kept ready for tight work must be able to serve this one."""
        for arrival_s, slo_s, n_frames in self._hard.get(family, ()):
            if arrival_s >= now_s - self._window_s:  # a read only: the window is trimmed in `observe`
                return (slo_s, n_frames)
        return None

    @property
    def families(self) -> list[str]:
        """The model families seen so far."""
        return list(self._rate)

    def tightest(self, family: str, now_s: float) -> tuple[float, int] | None:
        """(slo_s, n_frames) of the arrival with the smallest SLO in the last `window_s`, or None."""
        for arrival_s, slo_s, n_frames in self._tight.get(family, ()):
            if arrival_s >= now_s - self._window_s:  # a read only: the window is trimmed in `observe`
                return (slo_s, n_frames)
        return None
