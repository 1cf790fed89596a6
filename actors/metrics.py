"""The scheduler's Prometheus metrics, exported through `ray.util.metrics` (Ray's metrics agent serves them).

    jetfleet_queue_length                gauge      requests waiting in the scheduler's queue
    jetfleet_decisions_total{kind}       counter    dispatch / drop / frequency decisions applied
    jetfleet_decision_seconds            histogram  wall time of one policy step
    jetfleet_device_frequency_hz{device} gauge      GPU clock of each device
    jetfleet_device_power_w{device}      gauge      board power each device last reported
    jetfleet_answers_total{status,reason} counter   every answer (completed, dropped with its reason, ...)
    jetfleet_slo_misses_total            counter    answered requests not completed within their SLO
    jetfleet_frames_total                counter    frames completed

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

    def queue_length(self, n: int) -> None:
        self._queue.set(n)

    def decisions(self, kind: str, n: int) -> None:
        if n:
            self._decisions.inc(n, tags={"kind": kind})

    def decision_time(self, seconds: float) -> None:
        self._step.observe(seconds)

    def frequency(self, device: str, freq_hz: float) -> None:
        self._freq.set(freq_hz, tags={"device": device})

    def power(self, device: str, power_w: float) -> None:
        if power_w == power_w:  # not NaN
            self._power.set(power_w, tags={"device": device})

    def answer(self, status: str, reason: str, frames: int, within_slo: bool) -> None:
        self._answers.inc(1, tags={"status": status, "reason": reason or "-"})
        if status == "completed":
            self._frames.inc(frames)
        if not within_slo:
            self._misses.inc(1)


def make_metrics(enabled: bool) -> Any:
    """RayMetrics inside a Ray worker when `enabled`, else NullMetrics."""
    if not enabled:
        return NullMetrics()
    try:
        return RayMetrics()
    except Exception:  # no Ray worker (plain Python): metrics are optional
        return NullMetrics()
