"""`juggler`: a Juggler-style baseline that spreads inference over heterogeneous devices by a weighted score
of power efficiency, load and deadline headroom (after "Juggler", which distributes DNN inference over
heterogeneous edge devices by power efficiency and accuracy and survives node failures).

For each queued request (earliest deadline first) and each healthy device and model variant of its family,
the option that would finish it in time at the device's top clock scores

    score = w_efficiency * efficiency / best_efficiency        (accuracy-weighted frames per joule)
          + w_load       * (1 - wait / slo)                      (how soon the device could start it)
          + w_headroom   * (deadline - finish) / slo             (slack left after it finishes)

and the best-scoring (device, variant) takes it; `wait` counts the requests this decision already gave the
device, so load spreads over the fleet. Free devices then run their requests, same variant
together, in batches of up to `max_batch` that still meet the earliest deadline among them. A request no
option can finish in time is dropped (`deadline_unreachable`). Failed devices are simply never scored, so
their re-queued requests move to the others. No DVFS: devices run at their top clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from costmodel.variants import FAMILIES, Variant, family_variants, resolve
from costmodel.view import CostView
from jetfleet.errors import ConfigError
from jetfleet.types import Decisions, DeviceState, Dispatch, Drop, DropReason, Request
from policies.base import Policy
from policies.context import StepContext, device_grid
from policies.registry import register

__all__ = ["JugglerPolicy", "JugglerWeights"]


@dataclass(frozen=True)
class JugglerWeights:
    """Weights of the device score; they need not sum to one."""

    efficiency: float = 0.5
    load: float = 0.3
    headroom: float = 0.2

    def __post_init__(self) -> None:
        if min(self.efficiency, self.load, self.headroom) < 0:
            raise ConfigError(f"juggler weights must be >= 0, got {self}")


class JugglerPolicy(Policy):
    """See the module docstring."""

    name = "juggler"

    def __init__(self, weights: JugglerWeights | None = None, *, max_batch: int = 4, window: int = 128) -> None:
        if max_batch < 1 or window < 1:
            raise ConfigError(f"juggler: max_batch and window must be >= 1, got {max_batch}, {window}")
        self.weights = weights or JugglerWeights()
        self.max_batch, self.window = max_batch, window

    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue, cost = ctx.now_s, ctx.queue, ctx.cost
        out = Decisions()
        healthy = [d for d in ctx.devices if d.healthy]
        if not queue or not healthy or all(d.in_flight for d in healthy):
            return out
        assigned: dict[tuple[str, str], list[Request]] = {}
        unreachable: list[int] = []
        # When each device could start one more request, counting what this decision already gave it.
        ready = {d.name: (max(now_s, d.busy_until_s) if d.in_flight else now_s) for d in healthy}
        for r in islice(queue.by_deadline(), self.window):
            choice = self._choose(now_s, r, healthy, cost, ready)
            if choice is None:
                unreachable.append(r.request_id)
                continue
            assigned.setdefault(choice[:2], []).append(r)
            ready[choice[0]] = choice[2]
        if unreachable:
            out.drops.append(Drop(tuple(unreachable), DropReason.DEADLINE_UNREACHABLE, "juggler: no device in time"))
        by_name = {d.name: d for d in healthy}
        for (name, variant), requests in sorted(assigned.items(), key=lambda kv: kv[1][0].deadline_s):
            d = by_name[name]
            if d.in_flight or name in {x.device for x in out.dispatches}:
                continue
            lat, _ = _arrays(d, variant, cost)
            batch, frames = [], 0
            for r in requests:  # up to max_batch requests, within the kind's largest batch of frames
                if len(batch) == self.max_batch or (batch and frames + r.n_frames > len(lat)):
                    break
                batch.append(r)
                frames += r.n_frames
            while len(batch) > 1 and now_s + lat[min(frames, len(lat)) - 1] > batch[0].deadline_s:
                frames -= batch.pop().n_frames
            out.dispatches.append(
                Dispatch(
                    name,
                    tuple(r.request_id for r in batch),
                    d.max_freq_hz,
                    variant,
                    predicted_latency_s=float(lat[min(frames, len(lat)) - 1]),
                    reason=f"juggler: {len(batch)} frames of {variant}",
                )
            )
        return out

    def _choose(
        self, now_s: float, r: Request, devices: Sequence[DeviceState], cost: CostView, ready: dict[str, float]
    ) -> tuple[str, str, float] | None:
        """The best (device, variant) for `r` and when that device would finish it; None if none in time."""
        options: list[tuple[str, str, float, float, float]] = []  # device, variant, efficiency, wait, finish
        for d in devices:
            ready_s = ready[d.name]
            for v in _variants(r.model):
                lat, energy = _arrays(d, v.name, cost)
                n = min(r.n_frames, len(lat))
                finish_s = ready_s + float(lat[n - 1]) * r.n_frames / n
                if finish_s <= r.deadline_s:
                    efficiency = v.accuracy_pct * n / float(energy[n - 1])
                    options.append((d.name, v.name, efficiency, ready_s - now_s, finish_s))
        if not options:
            return None
        best_eff = max(o[2] for o in options)
        w = self.weights

        def score(o: tuple[str, str, float, float, float]) -> float:
            load = 1.0 - min(1.0, o[3] / r.slo_s)
            return w.efficiency * o[2] / best_eff + w.load * load + w.headroom * (r.deadline_s - o[4]) / r.slo_s

        best = max(options, key=lambda o: (score(o), o[0], o[1]))
        return best[0], best[1], best[4]


def _arrays(device: DeviceState, model: str, cost: CostView) -> tuple[np.ndarray, np.ndarray]:
    """(latency_s, energy_j) of batches 1..max_batch of `model` at the device's top clock (raw predictions)."""
    grid = device_grid(cost, device, model)
    return grid.latency_s[-1, : device.max_batch], grid.energy_j[-1, : device.max_batch]


def _variants(model: str) -> tuple[Variant, ...]:
    """The variants a request of `model` may be served with: its family's, or itself."""
    if model in FAMILIES:
        return family_variants(model)
    v = resolve(model)
    if v is not None:
        return (v,)
    return (Variant(model, model, model, 0, math.nan, 100.0, "none", "zoo model without variants"),)


@register("juggler")
def _make_juggler(arg: str | None) -> Policy:
    """`juggler` or `juggler:E,L,H` (the efficiency, load and headroom weights)."""
    if arg is None:
        return JugglerPolicy()
    parts = [float(x) for x in arg.split(",")]
    if len(parts) != 3:
        raise ValueError(f"juggler weights must be three numbers E,L,H, got {arg!r}")
    return JugglerPolicy(JugglerWeights(*parts))
