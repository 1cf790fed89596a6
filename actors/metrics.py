"""The scheduler's Prometheus metrics, exported through `ray.util.metrics` (Ray's metrics agent serves them).

    jetfleet_queue_length                gauge      requests waiting in the scheduler's queue
    jetfleet_decisions_total{kind}       counter    dispatch / drop / frequency decisions applied
    jetfleet_decision_seconds            histogram  wall time of one policy step
    jetfleet_device_frequency_hz{device} gauge      GPU clock of each device
    jetfleet_device_power_w{device}      gauge      board power each device last reported
    jetfleet_answers_total{status,reason} counter   every answer (completed, dropped with its reason, ...)
    jetfleet_slo_misses_total            counter    answered requests not completed within their SLO
    jetfleet_frames_total                counter    frames completed

`RayMetrics` counts in plain Python on the hot path and hands the totals to Ray on `flush()` (the scheduler
flushes once a second), so a request costs a few dictionary updates, not several metric calls.
`NullMetrics` has the same methods and does nothing (tests, the simulator-side tools).
"""

from __future__ import annotations

from typing import Any

_LATENCY_BOUNDARIES_S = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]


class NullMetrics:
    """Metrics that go nowhere."""

    def queue_length(self, n: int) -> None: ...

    def decisions(self, kind: str, n: int) -> None: ...

    def decision_time(self, seconds: float) -> None: ...

    def frequency(self, device: str, freq_hz: float) -> None: ...

    def power(self, device: str, power_w: float) -> None: ...

    def answer(self, status: str, reason: str, frames: int, within_slo: bool) -> None: ...

    def flush(self) -> None: ...


class RayMetrics(NullMetrics):
    """The metrics of the module docstring, created in the calling Ray actor."""

    def __init__(self) -> None:
        from ray.util import metrics as m

        self._queue = m.Gauge("jetfleet_queue_length", "Requests waiting in the scheduler's queue.")
        self._decisions = m.Counter("jetfleet_decisions_total", "Scheduler decisions applied.", tag_keys=("kind",))
        self._step = m.Histogram(
            "jetfleet_decision_seconds", "Wall time of one policy step.", boundaries=_LATENCY_BOUNDARIES_S
        )
        self._freq = m.Gauge("jetfleet_device_frequency_hz", "GPU clock of a device.", tag_keys=("device",))
        self._power = m.Gauge("jetfleet_device_power_w", "Board power a device last reported.", tag_keys=("device",))
        self._answers = m.Counter(
            "jetfleet_answers_total", "Answers by status and reason.", tag_keys=("status", "reason")
        )
        self._misses = m.Counter("jetfleet_slo_misses_total", "Requests not completed within their SLO.")
        self._frames = m.Counter("jetfleet_frames_total", "Frames completed.")
        self._queue_now = 0
        self._pending_decisions: dict[str, int] = {}
        self._pending_steps: list[float] = []
        self._pending_answers: dict[tuple[str, str], int] = {}
        self._pending_frames = self._pending_misses = 0
        self._clocks: dict[str, float] = {}
        self._powers: dict[str, float] = {}

    def queue_length(self, n: int) -> None:
        self._queue_now = n

    def decisions(self, kind: str, n: int) -> None:
        if n:
            self._pending_decisions[kind] = self._pending_decisions.get(kind, 0) + n

    def decision_time(self, seconds: float) -> None:
        if len(self._pending_steps) < 10_000:
            self._pending_steps.append(seconds)

    def frequency(self, device: str, freq_hz: float) -> None:
        self._clocks[device] = freq_hz

    def power(self, device: str, power_w: float) -> None:
        if power_w == power_w:  # not NaN
            self._powers[device] = power_w

    def answer(self, status: str, reason: str, frames: int, within_slo: bool) -> None:
        key = (status, reason or "-")
        self._pending_answers[key] = self._pending_answers.get(key, 0) + 1
        if status == "completed":
            self._pending_frames += frames
        if not within_slo:
            self._pending_misses += 1

    def flush(self) -> None:
        """Hand what was counted since the last flush to Ray's metrics agent."""
        self._queue.set(self._queue_now)
        for kind, n in self._pending_decisions.items():
            self._decisions.inc(n, tags={"kind": kind})
        for seconds in self._pending_steps:
            self._step.observe(seconds)
        for (status, reason), n in self._pending_answers.items():
            self._answers.inc(n, tags={"status": status, "reason": reason})
        if self._pending_frames:
            self._frames.inc(self._pending_frames)
        if self._pending_misses:
            self._misses.inc(self._pending_misses)
        for device, hz in self._clocks.items():
            self._freq.set(hz, tags={"device": device})
        for device, w in self._powers.items():
            self._power.set(w, tags={"device": device})
        self._pending_decisions, self._pending_steps, self._pending_answers = {}, [], {}
        self._pending_frames = self._pending_misses = 0


def make_metrics(enabled: bool) -> Any:
    """RayMetrics inside a Ray worker when `enabled`, else NullMetrics."""
    if not enabled:
        return NullMetrics()
    try:
        return RayMetrics()
    except Exception:  # no Ray worker (plain Python): metrics are optional
        return NullMetrics()
