"""Streams: the priority, latency budget, target rate, queue bound and drop policy of each flow of requests.

A request belongs to a stream (`Request.stream`). A `StreamSet` says, per stream:

- `priority` (higher is more important; requests of the stream get it unless they carry their own),
- `budget_ms` (the latency budget, i.e. the SLO, queueing included) and `rate_fps` (the target rate),
- how its queue is bounded: `queue_limit` with a `drop_policy` (`drop_oldest`, `drop_newest`,
  `drop_low_priority`), or membership of a *group* — several streams sharing one bounded queue,
- `min_share`: the floor, the least share of device time the stream gets while it has work queued,
  so a low-priority stream is degraded under overload, never starved. A stream owed its floor waits for
  a moment that makes no top-priority request late, but at most `floor.max_wait_s` (aging),
- for experiments, `model`, `service_ms` (a fixed per-frame service time) and `frames` per request.

A stream group is the set of streams that share one bounded queue; a stream that names no group is its
own group. `drop_low_priority` evicts the lowest-priority queued request anywhere in the group (ties: the
oldest first). The config is JSON or YAML (YAML is a superset of JSON):

    streams:
      - {name: detector, priority: 100, budget_ms: 80, rate_fps: 15, queue_limit: 24, drop_policy: drop_oldest}
      - {name: classifier, priority: 20, budget_ms: 250, group: cameras, min_share: 0.1}
    groups:
      - {name: cameras, queue_limit: 32, drop_policy: drop_low_priority}
    floor: {window_s: 2.0, max_wait_s: 0.25}
    protection: {active_window_s: 1.0}

A bad config raises ConfigError naming the source, the stream (or group) and the field. This module is
pure: `stream_set_from_dict` and `stream_set_from_text` take what a caller read (`workloads.streams`
reads files).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from jetfleet.errors import ConfigError
from jetfleet.types import DEFAULT_MODEL


class DropPolicy(str, enum.Enum):
    """What a full bounded queue drops when one more request arrives."""

    DROP_OLDEST = "drop_oldest"  # the request that arrived first
    DROP_NEWEST = "drop_newest"  # the one that just arrived
    DROP_LOW_PRIORITY = "drop_low_priority"  # the lowest-priority one anywhere in the group; ties: oldest


@dataclass(frozen=True)
class StreamConfig:
    """One stream's settings; see the module docstring."""

    name: str
    priority: int = 0
    budget_ms: float | None = None  # latency budget (SLO) from arrival; None: each request's own slo_s
    rate_fps: float | None = None  # target rate, frames per second
    queue_limit: int | None = None  # own bound; None: unbounded (or bounded by its group)
    drop_policy: DropPolicy = DropPolicy.DROP_OLDEST
    group: str | None = None  # the shared bounded queue it belongs to, if any
    min_share: float = 0.0  # floor: least share of device time while it has work queued (0..1)
    model: str = DEFAULT_MODEL
    service_ms: float | None = None  # fixed per-frame service time (experiments with a fixed-service device)
    frames: int = 1  # frames per request (experiments)

    @property
    def budget_s(self) -> float | None:
        return None if self.budget_ms is None else self.budget_ms / 1000.0


@dataclass(frozen=True)
class GroupConfig:
    """Several streams sharing one bounded queue."""

    name: str
    queue_limit: int
    drop_policy: DropPolicy = DropPolicy.DROP_LOW_PRIORITY


@dataclass(frozen=True)
class Bound:
    """One bounded queue: its limit, drop policy and the streams it holds."""

    scope: str  # "stream:NAME" or "group:NAME", for messages and telemetry
    limit: int
    drop_policy: DropPolicy
    streams: frozenset[str]


@dataclass(frozen=True)
class StreamSet:
    """The configured streams, groups and overload-control settings."""

    streams: tuple[StreamConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    share_window_s: float = 2.0  # the floor's service shares are measured over this sliding window
    active_window_s: float = 1.0  # a stream with an arrival this recent is protected against new arrivals
    floor_max_wait_s: float = 0.25  # a stream owed its floor waits at most this long for a harmless moment
    _by_name: dict[str, StreamConfig] = field(default_factory=dict, init=False, repr=False, compare=False)
    _bounds: dict[str, Bound] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {s.name: s for s in self.streams}
        groups = {g.name: g for g in self.groups}
        bounds: dict[str, Bound] = {}
        for g in self.groups:
            members = frozenset(s.name for s in self.streams if s.group == g.name)
            for name in members:
                bounds[name] = Bound(f"group:{g.name}", g.queue_limit, g.drop_policy, members)
        for s in self.streams:
            if s.group is None and s.queue_limit is not None:
                bounds[s.name] = Bound(f"stream:{s.name}", s.queue_limit, s.drop_policy, frozenset([s.name]))
            elif s.group is not None and s.group not in groups:
                raise ConfigError(f"stream {s.name!r}: field 'group': unknown group {s.group!r}")
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_bounds", bounds)

    def get(self, name: str) -> StreamConfig | None:
        """The stream's config, or None when the stream is not configured."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return [s.name for s in self.streams]

    def bound_of(self, stream: str) -> Bound | None:
        """The bounded queue a stream's requests live in, or None when unbounded."""
        return self._bounds.get(stream)

    def min_share(self, stream: str) -> float:
        s = self._by_name.get(stream)
        return s.min_share if s is not None else 0.0

    def request_defaults(self, stream: str, priority: int | None, slo_s: float | None) -> tuple[int, float | None]:
        """(priority, slo_s) for a request of `stream` that may leave either out (the HTTP path)."""
        s = self._by_name.get(stream)
        if priority is None:
            priority = s.priority if s is not None else 0
        if slo_s is None and s is not None:
            slo_s = s.budget_s
        return priority, slo_s


# -- parsing ------------------------------------------------------------------------------------------
_STREAM_FIELDS = {f.name for f in fields(StreamConfig)}
_GROUP_FIELDS = {f.name for f in fields(GroupConfig)}
_TOP_SECTIONS = ("streams", "groups", "floor", "protection")


def stream_set_from_text(text: str, source: str = "<streams>", *, extra_keys: Iterable[str] = ()) -> StreamSet:
    """Parse a JSON or YAML stream config; `extra_keys` are other top-level sections the caller handles."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid JSON/YAML: {e}") from None
    return stream_set_from_dict(raw, source, extra_keys=extra_keys)


def stream_set_from_dict(raw: Any, source: str = "<streams>", *, extra_keys: Iterable[str] = ()) -> StreamSet:
    """Validate a parsed config; errors name `source`, the stream (or group) and the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a stream config must be a mapping with a 'streams' list")
    unknown = sorted(set(raw) - set(_TOP_SECTIONS) - set(extra_keys))
    if unknown:
        raise ConfigError(f"{source}: unknown top-level field {unknown[0]!r}; known: {', '.join(_TOP_SECTIONS)}")
    items = raw.get("streams")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: field 'streams': must be a non-empty list of streams")
    groups = tuple(_group(g, i, source) for i, g in enumerate(_list(raw.get("groups", []), "groups", source)))
    _unique([g.name for g in groups], "group", source)
    streams = tuple(_stream(s, i, source) for i, s in enumerate(items))
    _unique([s.name for s in streams], "stream", source)
    known_groups = {g.name for g in groups}
    for s in streams:
        where = f"{source}: stream {s.name!r}"
        if s.group is not None and s.group not in known_groups:
            raise ConfigError(f"{where}: field 'group': unknown group {s.group!r}; known: {sorted(known_groups)}")
        if s.group is not None and s.queue_limit is not None:
            raise ConfigError(f"{where}: field 'queue_limit': a stream in group {s.group!r} is bounded by the group")
    floor = _section(raw, "floor", {"window_s", "max_wait_s"}, source)
    protection = _section(raw, "protection", {"active_window_s"}, source)
    window_s = _positive(floor.get("window_s", 2.0), f"{source}: floor: field 'window_s'")
    active_s = _positive(protection.get("active_window_s", 1.0), f"{source}: protection: field 'active_window_s'")
    wait_s = _number(floor.get("max_wait_s", 0.25), f"{source}: floor: field 'max_wait_s'")
    if wait_s < 0:
        raise ConfigError(f"{source}: floor: field 'max_wait_s': must be >= 0, got {wait_s}")
    return StreamSet(streams, groups, share_window_s=window_s, active_window_s=active_s, floor_max_wait_s=wait_s)


def _stream(raw: Any, index: int, source: str) -> StreamConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: stream #{index + 1}: must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: stream #{index + 1}: field 'name': must be a non-empty string, got {name!r}")
    where = f"{source}: stream {name!r}"
    _known(raw, _STREAM_FIELDS, where)
    kw: dict[str, Any] = {"name": name}
    if "priority" in raw:
        kw["priority"] = _int(raw["priority"], f"{where}: field 'priority'")
    for key in ("budget_ms", "rate_fps", "service_ms"):
        if raw.get(key) is not None:
            kw[key] = _positive(raw[key], f"{where}: field {key!r}")
    if raw.get("queue_limit") is not None:
        kw["queue_limit"] = _int(raw["queue_limit"], f"{where}: field 'queue_limit'", minimum=1)
    if "drop_policy" in raw:
        kw["drop_policy"] = _drop_policy(raw["drop_policy"], f"{where}: field 'drop_policy'")
    if raw.get("group") is not None:
        if not isinstance(raw["group"], str):
            raise ConfigError(f"{where}: field 'group': must be a group name, got {raw['group']!r}")
        kw["group"] = raw["group"]
    if "min_share" in raw:
        share = _number(raw["min_share"], f"{where}: field 'min_share'")
        if not 0 <= share < 1:
            raise ConfigError(f"{where}: field 'min_share': must be in [0, 1), got {share}")
        kw["min_share"] = share
    if "model" in raw:
        if not isinstance(raw["model"], str) or not raw["model"]:
            raise ConfigError(f"{where}: field 'model': must be a model name, got {raw['model']!r}")
        kw["model"] = raw["model"]
    if "frames" in raw:
        kw["frames"] = _int(raw["frames"], f"{where}: field 'frames'", minimum=1)
    return StreamConfig(**kw)


def _group(raw: Any, index: int, source: str) -> GroupConfig:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw.get("name"):
        raise ConfigError(f"{source}: group #{index + 1}: must be a mapping with a non-empty 'name'")
    where = f"{source}: group {raw['name']!r}"
    _known(raw, _GROUP_FIELDS, where)
    if "queue_limit" not in raw:
        raise ConfigError(f"{where}: field 'queue_limit': required")
    limit = _int(raw["queue_limit"], f"{where}: field 'queue_limit'", minimum=1)
    policy = _drop_policy(raw.get("drop_policy", DropPolicy.DROP_LOW_PRIORITY.value), f"{where}: field 'drop_policy'")
    return GroupConfig(raw["name"], limit, policy)


def _section(raw: Mapping[str, Any], key: str, allowed: set[str], source: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: field {key!r}: must be a mapping, got {value!r}")
    _known(value, allowed, f"{source}: {key}")
    return value


def _list(value: Any, key: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: field {key!r}: must be a list, got {value!r}")
    return value


def _known(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; known: {', '.join(sorted(allowed))}")


def _unique(names: list[str], what: str, source: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"{source}: {what} {n!r}: field 'name': appears twice")
        seen.add(n)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    return float(value)


def _positive(value: Any, where: str) -> float:
    x = _number(value, where)
    if x <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}")
    return x


def _int(value: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum}, got {value}")
    return value


def _drop_policy(value: Any, where: str) -> DropPolicy:
    try:
        return DropPolicy(value)
    except ValueError:
        known = ", ".join(p.value for p in DropPolicy)
        raise ConfigError(f"{where}: unknown drop policy {value!r}; known: {known}") from None
