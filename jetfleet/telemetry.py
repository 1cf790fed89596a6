"""Decision telemetry: every dispatch, drop, shed, frequency change, power-state change and completion is an event.

The simulator and the live scheduler actor both emit these through `SchedulerCore`, so one
`jetfleet report --events FILE` reads either. Events are written as JSON lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

EVENT_KINDS = ("arrival", "dispatch", "drop", "shed", "frequency", "power", "complete", "fail", "requeue")


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One thing the scheduler decided or observed, with why and the queue as it stood."""

    time_s: float
    event: str  # one of EVENT_KINDS
    reason: str = ""
    request_ids: tuple[int, ...] = ()
    streams: tuple[str, ...] = ()  # stream of each request in request_ids
    device: str = ""
    freq_hz: float = math.nan
    n_frames: int = 0
    queue_depth: int = 0  # requests queued after this event
    queue_depths: dict[str, int] = field(default_factory=dict)  # per stream
    protected_stream: str = ""  # the stream the policy was protecting, when shedding
    latency_s: float = math.nan  # for "complete": per-request end-to-end latency is in detail
    energy_j: float = math.nan
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        for k, v in list(d.items()):
            if isinstance(v, float) and math.isnan(v):
                d[k] = None
        return json.dumps(d, separators=(",", ":"))


EventSink = Callable[[DecisionEvent], None]


class JsonlEventWriter:
    """An EventSink that appends events to a JSON-lines file (or an open text stream)."""

    def __init__(self, target: str | Path | TextIO) -> None:
        if isinstance(target, (str, Path)):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._fh: TextIO = open(target, "w")  # noqa: SIM115 - closed in close()
            self._owns = True
        else:
            self._fh, self._owns = target, False

    def __call__(self, event: DecisionEvent) -> None:
        self._fh.write(event.to_json() + "\n")

    def close(self) -> None:
        if self._owns:
            self._fh.close()
        else:
            self._fh.flush()

    def __enter__(self) -> JsonlEventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventList(list):
    """An EventSink that keeps events in memory (tests, notebooks)."""

    def __call__(self, event: DecisionEvent) -> None:
        self.append(event)
