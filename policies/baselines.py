"""LoudVA's baseline schedulers, as faithful policies: `transparent`, `fixed-batch:B`, `interval:T`,
`round-robin`, `random`.

Source: LoudVA (github.com/iloudaros/LoudVA, `LoudController/altSchedulers/{SingleDevice,Cluster}/*.py`,
`LoudController/DeviceData.py`, `LoudController/Settings.py`). What LoudVA does, and what we keep:

- Every LoudVA scheduler is a polling loop: it drains the incoming queue, maybe dispatches ONE batch, then
  sleeps (10 ms; 0.1 s for Fixed Batch; T for Interval). Dispatch is fire-and-forget: a batch is sent to
  the device's Triton server whether or not the device is busy, and Triton runs what it receives in
  order. Here a policy acts on its tick grid (`Ticker`: multiples of the period, so a request arriving
  between ticks waits for the next one) and the simulated device runs its batches one after another.
- LoudVA's queue holds frames; a jetfleet batch is made of whole requests (a request's N frames stay
  together), so "a batch of B frames" is the longest prefix of requests with at most B frames (at least
  one request, even when that request alone is larger).
- Per-device batch caps are LoudVA's `max_batch_size`: AGX 64, NX 8, Nano 4 (`DeviceData.py`); kinds
  LoudVA does not have use the catalogue's `max_batch`.
- The baselines never change the clock; Experiment 1 ran them under the default DVFS governor, which
  this reproduction replaces by the maximum frequency (the governor's target under sustained load).
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from jetfleet.errors import ConfigError
from jetfleet.types import Applied, Decisions, DeviceState, Dispatch, Request
from policies.base import Policy
from policies.context import QueueView, StepContext
from policies.registry import register

# LoudVA `DeviceData.initialize_devices`: max_batch_size per device.
LOUDVA_BATCH_CAPS = {"agx-xavier": 64, "xavier-nx": 8, "jetson-nano": 4}
LOUDVA_TICK_S = 0.01  # Settings.scheduler_wait_time: the polling period of LoudVA's loops
FIXED_BATCH_TICK_S = 0.1  # FixedBatchScheduler sleeps 0.1 s per loop
FIXED_BATCH_MAX_WAIT_S = 15.0  # Experiment 1's max_waiting_time for Fixed Batch


def batch_cap(device: DeviceState) -> int:
    """LoudVA's per-device batch cap (frames) for the device's kind; the device's own `max_batch` for others."""
    return LOUDVA_BATCH_CAPS.get(device.kind, device.max_batch)


def take_frames(requests: Iterable[Request], max_frames: int) -> list[Request]:
    """The longest prefix of `requests` with at most `max_frames` frames; at least the first request."""
    batch: list[Request] = []
    frames = 0
    for r in requests:
        if batch and frames + r.n_frames > max_frames:
            break
        batch.append(r)
        frames += r.n_frames
        if frames >= max_frames:
            break
    return batch


def same_model(requests: Iterable[Request]) -> Iterable[Request]:
    """The requests sharing the first one's model (a batch runs one model)."""
    model = None
    for r in requests:
        if model is None:
            model = r.model
        if r.model == model:
            yield r


def dispatch(device: DeviceState, batch: Sequence[Request], freq_hz: float, reason: str) -> Dispatch:
    return Dispatch(device.name, tuple(r.request_id for r in batch), freq_hz, batch[0].model, reason=reason)


class Ticker:
    """A polling loop's tick grid: times k * period_s. `due(now)` is True exactly on a tick."""

    def __init__(self, period_s: float) -> None:
        if not period_s > 0:
            raise ConfigError(f"polling period must be > 0 s, got {period_s}")
        self.period_s = period_s

    def due(self, now_s: float) -> bool:
        k = round(now_s / self.period_s)
        return k * self.period_s == now_s or abs(k * self.period_s - now_s) <= 1e-9 * max(1.0, abs(now_s))

    def next(self, now_s: float) -> float:
        return (math.floor(now_s / self.period_s + 1e-9) + 1) * self.period_s


class Transparent(Policy):
    """LoudVA's "No Scheduler": Triton's dynamic batcher at the maximum GPU frequency.

    LoudVA's TransparentScheduler forwards everything queued (up to the device's max_batch_size) every
    10 ms, and Triton's dynamic batcher merges what waits while the GPU is busy into the next batch. So, in
    effect: whenever a device is idle it takes everything waiting, in arrival order, up to its batch cap,
    at its maximum frequency. Event-driven here: a request arriving at an idle device is served at once.
    """

    name = "transparent"

    def decide(self, ctx: StepContext) -> Decisions:
        out = Decisions()
        if not ctx.queue:
            return out
        waiting = list(ctx.queue)
        for device in ctx.devices:
            if not waiting:
                break
            if not device.healthy or not device.idle(ctx.now_s):
                continue
            batch = take_frames(same_model(waiting), batch_cap(device))
            out.dispatches.append(dispatch(device, batch, device.max_freq_hz, "idle device"))
            taken = {r.request_id for r in batch}
            waiting = [r for r in waiting if r.request_id not in taken]
        return out


class _Cycling(Policy):
    """Shared by the LoudVA cluster baselines that rotate over devices (`itertools.cycle(devices)`).

    `decide` only proposes the next position of the rotation (in `Decisions.memo`); it moves in `absorb`, once
    the core applied the step."""

    def __init__(self, period_s: float) -> None:
        self.ticker = Ticker(period_s)
        self._next_device = 0

    def _rotate(self, devices: Sequence[DeviceState]) -> tuple[DeviceState | None, int]:
        """(the next healthy device in turn, the rotation's position after it)."""
        at = self._next_device
        for _ in range(len(devices)):
            device = devices[at % len(devices)]
            at = (at + 1) % len(devices)
            if device.healthy:
                return device, at
        return None, at

    def _send(self, queue: QueueView, device: DeviceState, max_frames: int, reason: str) -> Dispatch:
        batch = take_frames(same_model(queue), max_frames)
        return dispatch(device, batch, device.max_freq_hz, reason)

    def absorb(self, applied: Applied) -> None:
        if isinstance(applied.memo, _Rotation):
            self._next_device = applied.memo.next_device


@dataclass(frozen=True)
class _Rotation:
    """A rotating baseline's state after a step, applied in `absorb`."""

    next_device: int


class RoundRobin(_Cycling):
    """LoudVA's RoundRobinScheduler: every 10 ms, min(queue, cap) frames to the next device in turn.

    The device is not asked whether it is busy (the batch waits in its queue); the frequency is not set.
    """

    name = "round-robin"

    def __init__(self) -> None:
        super().__init__(LOUDVA_TICK_S)

    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue = ctx.now_s, ctx.queue
        if not queue:
            return Decisions()
        if not self.ticker.due(now_s):
            return Decisions(wake_at_s=self.ticker.next(now_s))
        device, at = self._rotate(ctx.devices)
        out = Decisions(wake_at_s=self.ticker.next(now_s), memo=_Rotation(at))
        if device is not None:
            out.dispatches.append(self._send(queue, device, batch_cap(device), "round robin"))
        return out


class Interval(_Cycling):
    """LoudVA's IntervalScheduler: every `interval_s`, min(queue, cap) frames to the next device in turn.

    LoudVA sends at most the device's max_batch_size per interval (not the whole queue), so with a long
    interval the queue grows without bound: its Interval 0.5 s and 1.0 s runs time out (report: 21 % and
    59 % of requests).
    """

    name = "interval"

    def __init__(self, interval_s: float) -> None:
        super().__init__(interval_s)
        self.name = f"interval:{interval_s:g}"

    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue = ctx.now_s, ctx.queue
        if not queue:
            return Decisions()
        out = Decisions(wake_at_s=self.ticker.next(now_s))
        if self.ticker.due(now_s):
            device, at = self._rotate(ctx.devices)
            out.memo = _Rotation(at)
            if device is not None:
                out.dispatches.append(self._send(queue, device, batch_cap(device), "interval"))
        return out


class FixedBatch(_Cycling):
    """LoudVA's FixedBatchScheduler: every 0.1 s, send B frames once B are queued, or all after a wait.

    The wait clock starts when the first request joins an empty queue, and restarts at each full batch
    that leaves requests behind (LoudVA: `first_item_time = None if not queue_list else time.time()`).
    After `max_wait_s` (15 s in Experiment 1) everything queued goes. Devices rotate per batch; the batch
    is min(B, device cap) frames.
    """

    name = "fixed-batch"

    def __init__(self, batch_frames: int, max_wait_s: float = FIXED_BATCH_MAX_WAIT_S) -> None:
        if batch_frames < 1:
            raise ConfigError(f"fixed-batch: batch size must be >= 1, got {batch_frames}")
        super().__init__(FIXED_BATCH_TICK_S)
        self.batch_frames, self.max_wait_s = batch_frames, max_wait_s
        self.name = f"fixed-batch:{batch_frames}"
        self._first_item_s: float | None = None

    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue = ctx.now_s, ctx.queue
        if not queue:
            return Decisions(memo=_Waiting(None, self._next_device))
        first_s = now_s if self._first_item_s is None else self._first_item_s
        if not self.ticker.due(now_s):
            return Decisions(wake_at_s=self.ticker.next(now_s), memo=_Waiting(first_s, self._next_device))
        out = Decisions(wake_at_s=self.ticker.next(now_s), memo=_Waiting(first_s, self._next_device))
        live = [d for d in ctx.devices if d.healthy]
        if not live:
            return out
        device = live[self._next_device % len(live)]
        target = min(self.batch_frames, batch_cap(device))
        if queue.frames >= target:
            out.dispatches.append(self._send(queue, device, target, f"batch of {target}"))
        elif now_s - first_s >= self.max_wait_s - 1e-9:
            out.dispatches.append(self._send(queue, device, queue.frames, "max wait"))
        else:
            return out
        left = queue.frames - sum(queue.get(i).n_frames for i in out.dispatches[0].request_ids)
        out.memo = _Waiting(now_s if left else None, (self._next_device + 1) % len(live))
        return out

    def absorb(self, applied: Applied) -> None:
        if isinstance(applied.memo, _Waiting):
            self._first_item_s, self._next_device = applied.memo.first_item_s, applied.memo.next_device


@dataclass(frozen=True)
class _Waiting:
    """Fixed Batch's state after a step: since when the queue waits, and the next device in turn."""

    first_item_s: float | None
    next_device: int


class Random(Policy):
    """LoudVA's RandomScheduler: every 10 ms, a random available device, frequency and batch size.

    Available = nothing in flight (LoudVA's `model_instances` is 1 by default). The batch size is uniform
    in 1..min(queued frames, cap). Seeded (`random:SEED`, default 0) so runs repeat.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.ticker = Ticker(LOUDVA_TICK_S)
        self._rng_state = _random.Random(seed).getstate()  # advanced in `absorb`, when a draw was applied

    def decide(self, ctx: StepContext) -> Decisions:
        now_s, queue = ctx.now_s, ctx.queue
        if not queue:
            return Decisions()
        if not self.ticker.due(now_s):
            return Decisions(wake_at_s=self.ticker.next(now_s))
        available = [d for d in ctx.devices if d.healthy and d.in_flight == 0]
        if not available:
            return Decisions()  # a completion wakes us
        rng = _random.Random()
        rng.setstate(self._rng_state)
        device = rng.choice(available)
        freq_hz = rng.choice(device.freqs_hz)
        frames = rng.randint(1, min(queue.frames, batch_cap(device)))
        batch = take_frames(same_model(queue), frames)
        out = Decisions(wake_at_s=self.ticker.next(now_s), memo=_Draws(rng.getstate()))
        out.dispatches.append(dispatch(device, batch, freq_hz, "random"))
        return out

    def absorb(self, applied: Applied) -> None:
        if isinstance(applied.memo, _Draws):
            self._rng_state = applied.memo.state


@dataclass(frozen=True)
class _Draws:
    """The random baseline's generator state after a step's draws."""

    state: tuple


def _number(arg: str | None, what: str, cast: type, default: object = None) -> object:
    if arg is None:
        if default is None:
            raise ValueError(f"needs a {what}, e.g. fixed-batch:32 or interval:0.2")
        return default
    try:
        value = cast(arg)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {arg!r}") from None
    if not value > 0:
        raise ValueError(f"{what} must be > 0, got {arg!r}")
    return value


@register("transparent")
def _transparent(arg: str | None) -> Policy:
    return Transparent()


@register("round-robin")
def _round_robin(arg: str | None) -> Policy:
    return RoundRobin()


@register("interval")
def _interval(arg: str | None) -> Policy:
    return Interval(float(_number(arg, "interval in seconds", float)))  # type: ignore[arg-type]


@register("fixed-batch")
def _fixed_batch(arg: str | None) -> Policy:
    return FixedBatch(int(_number(arg, "batch size in frames", int)))  # type: ignore[arg-type]


@register("random")
def _random_policy(arg: str | None) -> Policy:
    return Random(int(arg) if arg else 0)
