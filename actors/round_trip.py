"""Per-device round trips measured live: the time a batch spends outside the device's own latency.

A batch's answer comes back later than its device latency: the dispatch call, moving inputs and outputs, the
answer's way back through Ray, and on a loaded controller the event loop's own delay. No cost model predicts
this (the simulator has none), yet a 100 ms SLO cannot ignore 60-80 ms of it: measured on a busy 2-core machine,
requests the cost model called feasible were answered at 1.5-2x their SLO. The live scheduler samples it and
tells the core (`DeviceState.round_trip_s`), which every policy and admission then count as a delay before the
batch starts (`DeviceState.free_s`).

Samples come from batches: each one's time from dispatch to answer, less its device latency, the transfer its
device's link model prices (`jetfleet.links`: the cost view counts that already, and an emulated device waits it
out) and the waiting the core expected. Only samples of the last `HORIZON_S` count, so a device that gets no
batches (for instance because admission refuses what its estimate makes late) falls back to 0 after that and is
measured again by the next batches it gets. Health probes are not sampled: a `status` call measured 300+ ms while
batches measured 80 ms under the same load (the probes of all devices wait together behind the burst on the
scheduler's event loop), and counting them refused everything.

The estimate is a high quantile of the samples of the last `HORIZON_S`, not the mean: an SLO is missed by the
slow trips. A device's first batch is not sampled: it pays one-off costs (an engine's first run measured 0.8 s
on the emulated engine) that say nothing about the link.
"""

from __future__ import annotations

import math
from collections import deque

HORIZON_S = 10.0  # wall seconds of samples the estimate looks at
MAX_SAMPLES = 64  # per device
QUANTILE = 0.9


class RoundTrips:
    """Recent round-trip samples per device, in scheduler seconds, stamped with wall time."""

    def __init__(self, horizon_s: float = HORIZON_S, quantile: float = QUANTILE, max_samples: int = MAX_SAMPLES):
        self.horizon_s, self.quantile, self.max_samples = horizon_s, quantile, max_samples
        self._samples: dict[str, deque[tuple[float, float]]] = {}
        self._batched: set[str] = set()  # devices whose first (cold) batch was seen

    def batch(self, device: str, wall_s: float, elapsed_s: float, device_latency_s: float, waited_s: float) -> None:
        """One batch answered at `wall_s`: `elapsed_s` from dispatch to answer, `device_latency_s` of it on the
        device, `waited_s` the core expected it to wait anyway (the device busy, waking or changing clock)."""
        if device not in self._batched:
            self._batched.add(device)  # cold: not sampled
            return
        round_trip_s = elapsed_s - device_latency_s - max(0.0, waited_s)
        if math.isfinite(round_trip_s):
            samples = self._samples.setdefault(device, deque(maxlen=self.max_samples))
            samples.append((wall_s, max(0.0, round_trip_s)))

    def estimate(self, device: str, wall_s: float) -> float:
        """The `quantile` of the device's samples of the last `horizon_s` (0 without any)."""
        samples = self._samples.get(device)
        if not samples:
            return 0.0
        while samples and samples[0][0] < wall_s - self.horizon_s:
            samples.popleft()
        if not samples:
            return 0.0
        ordered = sorted(s for _, s in samples)
        return ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))]
