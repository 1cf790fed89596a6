"""`jellyfish`: the Jellyfish baseline (Nguyen et al., "Jellyfish: Timely Inference Serving for Dynamic Edge
Networks", Middleware 2022), as published: one model per GPU, chosen by simulated annealing; clients packed
onto GPUs by dynamic programming; re-planned every 0.5 s from the clients' measured bandwidth.

Planning (`JellyfishPlanner.replan`), for a candidate selection of one model variant per GPU:

- a client's *budget* on a GPU is its SLO minus the upload time of a frame at that GPU's model resolution,
  at the bandwidth last measured (a point estimate, no safety factor);
- a GPU runs batches no longer than half of the smallest budget of its clients (a frame may wait for the
  batch in progress), which sets its throughput;
- GPUs are filled most-accurate model first, each by a 0/1 knapsack DP over the clients not yet placed
  (value: fps x accuracy, weight: fps, capacity: the GPU's throughput); clients that fit nowhere overflow to
  the least loaded GPU of their family and cost a penalty.

Simulated annealing over the per-GPU model selection (warm-started from the previous plan, seeded) keeps
the selection with the best packed value. At run time each GPU serves the requests of the clients assigned
to it, earliest deadline first, in batches up to its planned size at its top clock, and drops a request
once even a batch of one could no longer finish it in time (Jellyfish drops late requests).

No clock, no I/O; the driver calls `replan` every `REPLAN_S` with the bandwidth it measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from costmodel.variants import family_variants, get_variant, reference_variant
from costmodel.view import CostView
from jetfleet.errors import ConfigError
from jetfleet.types import Decisions, DeviceState, Dispatch, Drop, DropReason, Request
from policies.base import Policy
from policies.context import StepContext
from policies.registry import register
from policies.variants import ClientInfo, PlanTimeline, StreamPlan, VariantProfiles, upload_estimate_s

__all__ = ["JellyfishPlanner", "JellyfishPolicy"]


@dataclass
class _Packing:
    score: float
    device: dict[str, str]  # stream -> device
    batch: dict[str, int]  # device -> batch cap


class JellyfishPlanner:
    """SA over one model per GPU + DP packing of clients (see module docstring)."""

    def __init__(
        self, *, iterations: int = 60, temperature: float = 50.0, cooling: float = 0.93, seed: int = 0
    ) -> None:
        if iterations < 0 or temperature <= 0 or not 0 < cooling < 1:
            raise ConfigError(
                "jellyfish planner: need iterations >= 0, temperature > 0, 0 < cooling < 1; "
                f"got {iterations}, {temperature}, {cooling}"
            )
        self.iterations, self.temperature, self.cooling, self.seed = iterations, temperature, cooling, seed
        self._previous: dict[str, str] = {}
        self._plans = 0

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostView
    ) -> StreamPlan:
        profiles = VariantProfiles(cost, devices)
        gpus = [d for d in devices if d.healthy]
        families = sorted({c.family for c in clients})
        if not gpus or not clients:
            return StreamPlan(now_s, {c.stream: reference_variant(c.family).name for c in clients})
        candidates = [v.name for f in families for v in family_variants(f)]
        ctx = _Context(clients, gpus, candidates, profiles)
        rng = np.random.default_rng(self.seed * 7919 + self._plans)
        self._plans += 1
        state = [self._previous.get(g.name) or self._initial(i, families) for i, g in enumerate(gpus)]
        state = [m if m in ctx.budget_s else self._initial(i, families) for i, m in enumerate(state)]
        current = best = ctx.pack(state)
        best_state, temp = list(state), self.temperature
        for _ in range(self.iterations):
            trial = list(state)
            i = int(rng.integers(len(gpus)))
            trial[i] = candidates[int(rng.integers(len(candidates)))]
            if trial[i] == state[i]:
                continue
            packed = ctx.pack(trial)
            delta = packed.score - current.score
            if delta >= 0 or rng.random() < math.exp(delta / temp):
                state, current = trial, packed
                if packed.score > best.score:
                    best, best_state = packed, list(trial)
            temp *= self.cooling
        self._previous = {g.name: m for g, m in zip(gpus, best_state, strict=True)}
        model = dict(self._previous)
        variant = {c.stream: model[best.device[c.stream]] for c in clients if c.stream in best.device}
        for c in clients:  # no GPU serves its family: the reference variant, served by nobody
            variant.setdefault(c.stream, reference_variant(c.family).name)
        return StreamPlan(now_s, variant, best.device, best.batch, model, objective=best.score)

    @staticmethod
    def _initial(index: int, families: list[str]) -> str:
        variants = family_variants(families[index % len(families)])
        return variants[len(variants) // 2].name


class _Context:
    """One re-plan's fixed inputs as arrays, and the packing of a model selection (memoised)."""

    def __init__(
        self, clients: Sequence[ClientInfo], gpus: list[DeviceState], models: list[str], profiles: VariantProfiles
    ) -> None:
        self.clients, self.gpus, self.profiles = clients, gpus, profiles
        self.fps = np.array([c.fps for c in clients])
        family = np.array([c.family for c in clients])
        slo = np.array([c.slo_s for c in clients])
        bandwidth = np.array([c.bandwidth_mbps for c in clients])
        self.budget_s: dict[str, np.ndarray] = {}
        self.eligible: dict[tuple[str, str], np.ndarray] = {}
        for m in dict.fromkeys(models):
            v = get_variant(m)
            budget = slo - np.array([upload_estimate_s(v, b) for b in bandwidth])
            self.budget_s[m] = budget
            for kind in {g.kind for g in gpus}:
                one_s = profiles.latency_s(kind, m, 1)
                self.eligible[(m, kind)] = (family == v.family) & (budget / 2.0 >= one_s)
        self._memo: dict[tuple[str, ...], _Packing] = {}

    def pack(self, models: list[str]) -> _Packing:
        """Fill GPUs most-accurate model first by knapsack DP; overflow the rest with a penalty."""
        key = tuple(models)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._pack(models)
        return hit

    def _pack(self, models: list[str]) -> _Packing:
        profiles, gpus, clients = self.profiles, self.gpus, self.clients
        left = np.ones(len(clients), dtype=bool)
        device: dict[str, str] = {}
        batch: dict[str, int] = {}
        load: dict[str, float] = {}
        score = 0.0
        for gi in sorted(range(len(gpus)), key=lambda i: (-get_variant(models[i]).accuracy_pct, i)):
            g, m = gpus[gi], models[gi]
            eligible = np.flatnonzero(self.eligible[(m, g.kind)] & left)
            if not len(eligible):
                continue
            budget = self.budget_s[m]
            capacity = profiles.throughput_fps(g.kind, m, float(budget[eligible].min()) / 2.0)
            chosen = _knapsack(self.fps[eligible].tolist(), capacity)
            if not chosen:
                continue
            taken = eligible[chosen]
            left[taken] = False
            for ci in taken.tolist():
                device[clients[ci].stream] = g.name
            score += float(self.fps[taken].sum()) * get_variant(m).accuracy_pct
            batch[g.name] = max(1, profiles.best_batch(g.kind, m, float(budget[taken].min()) / 2.0))
            load[g.name] = float(self.fps[taken].sum()) / max(capacity, 1e-9)
        for ci in np.flatnonzero(left).tolist():  # overflow: best effort on the least loaded GPU of the family
            c = clients[ci]
            score -= 100.0 * c.fps
            same = [i for i in range(len(gpus)) if get_variant(models[i]).family == c.family]
            if not same:
                continue
            gi = min(same, key=lambda i: (load.get(gpus[i].name, 0.0), i))
            g = gpus[gi]
            device[c.stream] = g.name
            batch.setdefault(g.name, max(1, profiles.best_batch(g.kind, models[gi], c.slo_s / 2.0)))
            full = profiles.throughput_fps(g.kind, models[gi], c.slo_s)
            load[g.name] = load.get(g.name, 0.0) + c.fps / max(full, 1e-9)
        return _Packing(score, device, batch)


def _knapsack(weights_fps: Sequence[float], capacity_fps: float) -> list[int]:
    """0/1 knapsack with value = weight (frames per second placed), in whole frames per second.

    Clients of equal frame rate are interchangeable, so equal weights are bundled (binary splitting of
    their count) before the DP: exact, and fast when a few frame rates repeat. Returns chosen indices.
    """
    w = [max(1, int(math.ceil(x))) for x in weights_fps]
    cap = int(math.floor(capacity_fps))
    if cap <= 0 or not w:
        return []
    unit = math.gcd(*w)
    cap //= unit
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(w):
        groups.setdefault(x // unit, []).append(i)
    bundles: list[tuple[int, int]] = []  # (weight, how many clients of that weight)
    for weight, members in groups.items():
        left, k = len(members), 1
        while left > 0:
            take = min(k, left)
            bundles.append((weight, take))
            left -= take
            k *= 2
    best = np.zeros(cap + 1)
    chosen_at = np.zeros((len(bundles), cap + 1), dtype=bool)
    for j, (weight, count) in enumerate(bundles):
        size = weight * count
        if size > cap:
            continue
        candidate = best[: cap + 1 - size] + size
        better = candidate > best[size:]
        chosen_at[j, size:] = better
        best[size:] = np.where(better, candidate, best[size:])
    counts: dict[int, int] = {}
    c = cap
    for j in range(len(bundles) - 1, -1, -1):
        if chosen_at[j, c]:
            weight, count = bundles[j]
            counts[weight] = counts.get(weight, 0) + count
            c -= weight * count
    return sorted(i for weight, n in counts.items() for i in groups[weight][:n])


class JellyfishPolicy(Policy):
    """Serve each GPU's assigned clients with its one model (see module docstring)."""

    name = "jellyfish"

    def __init__(self, planner: JellyfishPlanner | None = None) -> None:
        self.planner = planner or JellyfishPlanner()
        self.timeline = PlanTimeline()

    def replan(
        self, now_s: float, clients: Sequence[ClientInfo], devices: Sequence[DeviceState], cost: CostView
    ) -> StreamPlan:
        plan = self.planner.replan(now_s, clients, devices, cost)
        self.timeline.add(plan)
        return plan

    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue = ctx.now_s, ctx.queue
        out = Decisions()
        if not queue:
            return out
        profiles = VariantProfiles(ctx.cost, ctx.devices)
        healthy = {d.name: d for d in ctx.devices if d.healthy}
        if not healthy:
            return out
        plan = self.timeline.at(now_s)
        per_device: dict[str, list[Request]] = {}
        for r in queue.by_deadline():
            per_device.setdefault(self._device_for(r, plan, healthy), []).append(r)
        late: list[int] = []
        for name, requests in per_device.items():
            d = healthy[name]
            if d.in_flight:
                continue
            model = plan.device_model.get(name) if plan is not None else None
            if model is None:
                family = requests[0].model
                model = reference_variant(family).name if _is_family(family) else family
            cap = plan.batch.get(name, d.max_batch) if plan is not None else d.max_batch
            batch = _batch(now_s, d, model, requests, cap, late, profiles)
            if batch:
                latency = profiles.latency_s(d.kind, model, len(batch))
                out.dispatches.append(
                    Dispatch(
                        name,
                        tuple(r.request_id for r in batch),
                        d.max_freq_hz,
                        model,
                        latency,
                        reason=f"jellyfish: {len(batch)} frames of {model}",
                    )
                )
        if late:
            out.drops.append(Drop(tuple(late), DropReason.DEADLINE_UNREACHABLE, "jellyfish drops late requests"))
        return out

    def _device_for(self, r: Request, plan: StreamPlan | None, healthy: dict[str, DeviceState]) -> str:
        at_arrival = self.timeline.at(r.arrival_s)
        for p in (at_arrival, plan):
            if p is not None and p.device.get(r.stream) in healthy:
                return p.device[r.stream]
        return min(healthy, key=lambda n: (healthy[n].in_flight, n))


def _batch(
    now_s: float,
    d: DeviceState,
    model: str,
    requests: list[Request],
    cap: int,
    late: list[int],
    profiles: VariantProfiles,
) -> list[Request]:
    """The longest EDF prefix (at most `cap`) that `d` finishes by its first deadline; the late go to `late`."""
    one_s = profiles.latency_s(d.kind, model, 1)
    alive = []
    for r in requests:
        if now_s + one_s > r.deadline_s:
            late.append(r.request_id)
        else:
            alive.append(r)
    batch = alive[:cap]
    while len(batch) > 1 and now_s + profiles.latency_s(d.kind, model, len(batch)) > batch[0].deadline_s:
        batch.pop()
    return batch


def _is_family(name: str) -> bool:
    from costmodel.variants import FAMILIES

    return name in FAMILIES


@register("jellyfish")
def _make_jellyfish(arg: str | None) -> Policy:
    """`jellyfish` or `jellyfish:SEED` (the annealing seed)."""
    return JellyfishPolicy(JellyfishPlanner(seed=int(arg) if arg else 0))
