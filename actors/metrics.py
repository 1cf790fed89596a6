"""The scheduler's Prometheus metrics, exported through `ray.util.metrics` (Ray's metrics agent serves them on
each node's metrics export port, every name prefixed `ray_`).

    jetfleet_requests_total{model,stream,outcome}   counter    answered requests; outcome = completed, dropped,
                                                               failed or rejected (refused at admission)
    jetfleet_frames_total{model,stream,outcome}     counter    their frames
    jetfleet_frames_within_slo_total{model,stream}  counter    frames completed within their SLO
    jetfleet_drops_total{reason}                    counter    answers without a result, by reason
    jetfleet_queue_length                           gauge      requests waiting in the scheduler's (policy's) queue
    jetfleet_decisions_total{kind}                  counter    dispatch / drop / frequency decisions applied
    jetfleet_decision_seconds                       histogram  wall time of one policy step
    jetfleet_device_frequency_hz{device}            gauge      GPU clock of each device
    jetfleet_device_power_w{device}                 gauge      board power each device last reported
    jetfleet_device_power_state{device}             gauge      power-state depth: 0 active, 1 idle, 2 deep idle,
                                                               3 suspended, 4 off (`jetfleet.power_states`)
    jetfleet_device_healthy{device}                 gauge      1 while the scheduler dispatches to it, else 0
    jetfleet_device_energy_joules_total{device}     counter    board energy as the scheduler accounts it (batches
                                                               plus idle power, in scheduler time), all runs
    jetfleet_slo_attainment_ratio                   gauge      frames completed within SLO / frames answered,
                                                               over the last `window_s` (60 s) of wall time
    jetfleet_frames_per_joule                       gauge      frames completed / fleet energy over that window

Serve already exports the ingress's HTTP side (`ray_serve_num_http_requests_total`,
`ray_serve_http_request_latency_ms`, `ray_serve_deployment_queued_queries`,
`ray_serve_deployment_processing_latency_ms`); these are not copied.

`RayMetrics` counts in plain Python on the hot path and hands the totals to Ray on `flush()` (the scheduler
flushes once a second, after its device probes), so a request costs a few dictionary updates, not several
metric calls. `NullMetrics` has the same methods and does nothing (tests, the simulator-side tools).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_LATENCY_BOUNDARIES_S = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]
MAX_STREAM_LABELS = 64  # streams are client-named: beyond this many, the rest share the label "other"
WINDOW_S = 60.0


class NullMetrics:
    """Metrics that go nowhere."""

    def queue_length(self, n: int) -> None: ...

    def decisions(self, kind: str, n: int) -> None: ...

    def decision_time(self, seconds: float) -> None: ...

    def frequency(self, device: str, freq_hz: float) -> None: ...

    def power(self, device: str, power_w: float) -> None: ...

    def answer(
        self, status: str, reason: str, frames: int, within_slo: bool, *, model: str = "", stream: str = ""
    ) -> None: ...

    def devices(self, states: Mapping[str, Any], run_energy_j: Mapping[str, float]) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class WindowSample:
    """Lifetime totals at one instant (wall seconds)."""

    t_s: float
    frames_answered: int
    frames_within_slo: int
    frames_completed: int
    energy_j: float


class SlidingWindow:
    """SLO attainment and frames/J over the last `window_s`, from lifetime totals sampled now and then."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._samples: deque[WindowSample] = deque()

    def add(self, sample: WindowSample) -> None:
        self._samples.append(sample)
        while len(self._samples) > 2 and self._samples[1].t_s <= sample.t_s - self.window_s:
            self._samples.popleft()

    def _span(self) -> tuple[WindowSample, WindowSample] | None:
        return (self._samples[0], self._samples[-1]) if len(self._samples) >= 2 else None

    def slo_attainment(self) -> float | None:
        """Frames completed within SLO / frames answered in the window; None when none were answered."""
        span = self._span()
        if span is None or span[1].frames_answered == span[0].frames_answered:
            return None
        first, last = span
        return (last.frames_within_slo - first.frames_within_slo) / (last.frames_answered - first.frames_answered)

    def frames_per_joule(self) -> float | None:
        """Frames completed / energy in the window; None when no energy was accounted."""
        span = self._span()
        if span is None or not span[1].energy_j > span[0].energy_j:
            return None
        first, last = span
        return (last.frames_completed - first.frames_completed) / (last.energy_j - first.energy_j)


class RayMetrics(NullMetrics):
    """The metrics of the module docstring, created in the calling Ray actor."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        from ray.util import metrics as m

        by_request = ("model", "stream", "outcome")
        by_device = ("device",)
        self._requests = m.Counter("jetfleet_requests_total", "Answered requests.", tag_keys=by_request)
        self._frames = m.Counter("jetfleet_frames_total", "Frames of answered requests.", tag_keys=by_request)
        self._within = m.Counter(
            "jetfleet_frames_within_slo_total", "Frames completed within their SLO.", tag_keys=("model", "stream")
        )
        self._drops = m.Counter("jetfleet_drops_total", "Answers without a result, by reason.", tag_keys=("reason",))
        self._queue = m.Gauge("jetfleet_queue_length", "Requests waiting in the scheduler's queue.")
        self._decisions = m.Counter("jetfleet_decisions_total", "Scheduler decisions applied.", tag_keys=("kind",))
        self._step = m.Histogram(
            "jetfleet_decision_seconds", "Wall time of one policy step.", boundaries=_LATENCY_BOUNDARIES_S
        )
        self._freq = m.Gauge("jetfleet_device_frequency_hz", "GPU clock of a device.", tag_keys=by_device)
        self._power = m.Gauge("jetfleet_device_power_w", "Board power a device last reported.", tag_keys=by_device)
        self._power_state = m.Gauge(
            "jetfleet_device_power_state",
            "Power-state depth: 0 active, 1 idle, 2 deep idle, 3 suspended, 4 off.",
            tag_keys=by_device,
        )
        self._healthy = m.Gauge(
            "jetfleet_device_healthy", "1 while the scheduler dispatches to it.", tag_keys=by_device
        )
        self._energy = m.Counter(
            "jetfleet_device_energy_joules_total",
            "Board energy the scheduler accounts to a device.",
            tag_keys=by_device,
        )
        self._attainment = m.Gauge(
            "jetfleet_slo_attainment_ratio", f"Frames within SLO / answered, last {window_s:g} s."
        )
        self._fpj = m.Gauge("jetfleet_frames_per_joule", f"Frames completed per joule, last {window_s:g} s.")
        self._clock = clock
        self._window = SlidingWindow(window_s)
        self._queue_now = 0
        self._pending_decisions: dict[str, int] = {}
        self._pending_steps: list[float] = []
        self._pending_requests: dict[tuple[str, str, str], list[int]] = {}  # (model, stream, outcome) -> [n, frames]
        self._pending_within: dict[tuple[str, str], int] = {}
        self._pending_drops: dict[str, int] = {}
        self._pending_energy: dict[str, float] = {}
        self._clocks: dict[str, float] = {}
        self._powers: dict[str, float] = {}
        self._states: dict[str, tuple[int, bool]] = {}
        self._run_energy_seen: dict[str, float] = {}
        self._streams: set[str] = set()
        self._totals = [0, 0, 0]  # frames answered, within SLO, completed (lifetime)
        self._energy_total_j = 0.0

    # -- the hot path: plain counting ------------------------------------------------------------------
    def queue_length(self, n: int) -> None:
        self._queue_now = n

    def decisions(self, kind: str, n: int) -> None:
        if n:
            self._pending_decisions[kind] = self._pending_decisions.get(kind, 0) + n

    def decision_time(self, seconds: float) -> None:
        if len(self._pending_steps) < 10_000:
            self._pending_steps.append(seconds)

    def frequency(self, device: str, freq_hz: float) -> None:
        if math.isfinite(freq_hz):
            self._clocks[device] = freq_hz

    def power(self, device: str, power_w: float) -> None:
        if math.isfinite(power_w):
            self._powers[device] = power_w

    def answer(
        self, status: str, reason: str, frames: int, within_slo: bool, *, model: str = "", stream: str = ""
    ) -> None:
        stream = self._stream_label(stream)
        counts = self._pending_requests.setdefault((model or "-", stream, status), [0, 0])
        counts[0] += 1
        counts[1] += frames
        self._totals[0] += frames
        if within_slo:
            key = (model or "-", stream)
            self._pending_within[key] = self._pending_within.get(key, 0) + frames
            self._totals[1] += frames
        if status == "completed":
            self._totals[2] += frames
        else:
            why = reason or status
            self._pending_drops[why] = self._pending_drops.get(why, 0) + 1

    def devices(self, states: Mapping[str, Any], run_energy_j: Mapping[str, float]) -> None:
        """Each device's power state and health (the scheduler's view) and the current run's energy so far."""
        for name, state in states.items():
            power_state = getattr(state, "power_state", None)
            depth = power_state.depth if power_state is not None else 1
            self._states[name] = (depth, bool(getattr(state, "healthy", True)))
        for name, joules in run_energy_j.items():
            seen = self._run_energy_seen.get(name, 0.0)
            delta = joules - seen if joules >= seen else joules  # less than before: a new run started
            self._run_energy_seen[name] = joules
            if delta > 0:
                self._pending_energy[name] = self._pending_energy.get(name, 0.0) + delta
                self._energy_total_j += delta

    def _stream_label(self, stream: str) -> str:
        stream = stream or "default"
        if stream in self._streams:
            return stream
        if len(self._streams) >= MAX_STREAM_LABELS:
            return "other"
        self._streams.add(stream)
        return stream

    # -- once a second: hand the totals to Ray ---------------------------------------------------------
    def flush(self) -> None:
        """Hand what was counted since the last flush to Ray's metrics agent."""
        self._queue.set(self._queue_now)
        for kind, n in self._pending_decisions.items():
            self._decisions.inc(n, tags={"kind": kind})
        for seconds in self._pending_steps:
            self._step.observe(seconds)
        for (model, stream, outcome), (n, frames) in self._pending_requests.items():
            tags = {"model": model, "stream": stream, "outcome": outcome}
            self._requests.inc(n, tags=tags)
            if frames:
                self._frames.inc(frames, tags=tags)
        for (model, stream), frames in self._pending_within.items():
            self._within.inc(frames, tags={"model": model, "stream": stream})
        for reason, n in self._pending_drops.items():
            self._drops.inc(n, tags={"reason": reason})
        for device, joules in self._pending_energy.items():
            self._energy.inc(joules, tags={"device": device})
        for device, hz in self._clocks.items():
            self._freq.set(hz, tags={"device": device})
        for device, w in self._powers.items():
            self._power.set(w, tags={"device": device})
        for device, (depth, healthy) in self._states.items():
            self._power_state.set(depth, tags={"device": device})
            self._healthy.set(int(healthy), tags={"device": device})
        self._flush_window()
        self._pending_decisions, self._pending_steps, self._pending_requests = {}, [], {}
        self._pending_within, self._pending_drops, self._pending_energy = {}, {}, {}

    def _flush_window(self) -> None:
        self._window.add(WindowSample(self._clock(), *self._totals, self._energy_total_j))
        attainment, fpj = self._window.slo_attainment(), self._window.frames_per_joule()
        if attainment is not None:
            self._attainment.set(attainment)
        if fpj is not None:
            self._fpj.set(fpj)


def make_metrics(enabled: bool) -> Any:
    """RayMetrics inside a Ray worker when `enabled`, else NullMetrics."""
    if not enabled:
        return NullMetrics()
    try:
        return RayMetrics()
    except Exception:  # no Ray worker (plain Python): metrics are optional
        return NullMetrics()
