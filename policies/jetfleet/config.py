"""The `jetfleet` policy's knobs: one frozen, validated dataclass (keyword-only use, as scikit-learn's)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from jetfleet.errors import ConfigError
from policies.jetfleet.objective import EnergyPerFrame, Objective
from policies.jetfleet.power import PowerConfig
from policies.planning import Margins

__all__ = ["JetfleetConfig", "LateMode"]

LateMode = Literal["serve", "drop"]


@dataclass(frozen=True)
class JetfleetConfig:
    """Knobs of the jetfleet policy (validated at construction)."""

    objective: Objective = field(default_factory=EnergyPerFrame)  # what a plan minimises
    max_in_flight: int = 1  # batches committed to one device (running + queued on it)
    # A device behind a network link may take one batch more, dispatched while it computes so that the input
    # crosses meanwhile (`policies.planning.overlapped`): the link and the GPU work at once, as on a real server.
    overlap_transfers: bool = True
    margins: Margins = field(default_factory=Margins)  # slack kept against predictor error
    window: int = 192  # EDF candidates looked at per decision (more are looked at in the next one)
    lookahead: int = 64  # candidates behind a device's largest batch that its plan keeps safe
    late: LateMode = "serve"  # what to do with requests no device can finish in time
    late_batch_max_s: float = 1.0  # a batch of late requests may hold a device at most this long
    min_wait_s: float = 0.01  # never hold a batch back for less than this
    wait_gain: float = 0.02  # hold a batch back only for at least this relative saving per frame
    park_after_s: float = 0.5  # down-clock an idle device after this long
    rate_halflife_s: float = 10.0  # memory of the arrival-rate estimate
    quiet_after_s: float = 3.0  # no arrival for this long: stop holding batches back for more
    max_utilisation: float = 0.7  # prefer clocks at which the arrival rate is at most this share of throughput
    clocks_per_kind: int = 3  # plans per device kind and decision step: one per distinct clock of its free devices
    guard_window_s: float = 300.0  # a batch leaves room for the tightest SLO that arrived this recently ...
    guard_slo_s: float | None = 1.5  # ... or for a 1-frame request with this SLO, if tighter (None: no prior)
    late_expire_s: float = 60.0  # a late request this far past its deadline is dropped (DEADLINE_EXPIRED)
    max_late_per_decision: int = 4096  # bounds one decision's work when a huge backlog turns late
    learn_latency: bool = True  # plan with the cost view's learned latency correction
    power: PowerConfig = field(default_factory=PowerConfig)  # sleep states (policies.jetfleet.power); off: awake

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "window", "clocks_per_kind", "max_late_per_decision"):
            if getattr(self, name) < 1:
                raise ConfigError(f"jetfleet config: {name} must be >= 1, got {getattr(self, name)}")
        if self.late not in ("serve", "drop"):
            raise ConfigError(f"jetfleet config: late must be 'serve' or 'drop', got {self.late!r}")
        for name in ("min_wait_s", "wait_gain", "park_after_s", "late_expire_s", "lookahead"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"jetfleet config: {name} must be >= 0, got {getattr(self, name)}")
        if not (self.rate_halflife_s > 0 and self.guard_window_s > 0 and self.quiet_after_s > 0):
            raise ConfigError("jetfleet config: rate_halflife_s, guard_window_s and quiet_after_s must be > 0")
        if not 0 < self.max_utilisation <= 1:
            raise ConfigError(f"jetfleet config: max_utilisation must be in (0, 1], got {self.max_utilisation}")
        if self.guard_slo_s is not None and not (self.guard_slo_s > 0 and math.isfinite(self.guard_slo_s)):
            raise ConfigError(f"jetfleet config: guard_slo_s must be > 0 and finite or None, got {self.guard_slo_s}")
