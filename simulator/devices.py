"""Emulated devices in virtual time: a FIFO of batches, frequency changes, and board-energy accounting.

An `EmulatedDevice` is the simulator's stand-in for one Jetson. Because batches run one after another
and the device model is known when a batch is dispatched, the device's whole future timeline is
computed at dispatch time: each `run` appends a batch at the device's *tail* (the time everything
already queued on it is done) and returns when it starts and finishes. Energy is integrated
piecewise as the timeline is built:

- idle segments (nothing queued) cost `idle_power_w(f)` at the frequency `f` the GPU is clocked at;
- a frequency change occupies the device for the kind's `freq_change_delay_s` at the idle power of the
  frequency it leaves (the clock switches when the change settles);
- a batch costs the device model's `energy_j` (board energy, idle baseline included) over its `latency_s`;
- a batch's input first crosses the device's `link` from the controller (`jetfleet.links`; LOCAL by default,
  the simulator sets the inventory's), one transfer after another; a transfer overlaps the batches before it,
  and a device with nothing else to do waits for its input at idle power (LoudVA, too, shipped FP32 tensors
  from its controller to each Jetson).

- asleep (`sleep` / `wake`), the device draws its power state's board power plus the transitions' energy, counted
  by `jetfleet.power_states.SleepMeter` (the live accounting uses the same meter); a batch after a wake starts
  once the wake has completed.

`finish(end_s)` closes the books at the end of a run: idle power up to `end_s`, and frequency changes that
would settle after `end_s` (e.g. idle down-clocking after the last batch) are clipped at `end_s`.
Everything is O(1) per call; there is no per-event scan over devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from costmodel.base import DeviceModel
from costmodel.frames import frame_bytes
from jetfleet.catalogue import DeviceKind
from jetfleet.errors import DataError
from jetfleet.links import LOCAL
from jetfleet.power_states import PowerStateSpec, SleepMeter

# (latency_s, energy_j) of one batch: the device model's truth, possibly with noise applied.
BatchCostFn = Callable[[str, int, float], tuple[float, float]]


class EmulatedDevice:
    """One device of the simulated fleet; see the module docstring for the timeline and energy rules."""

    __slots__ = (
        "name",
        "kind",
        "model",
        "tail_s",
        "tail_freq_hz",
        "busy_energy_j",
        "idle_energy_j",
        "busy_s",
        "batches",
        "frequency_changes",
        "_idle_w",
        "_trailing",
        "_cost_fn",
        "_cost_cache",
        "link",
        "link_free_s",
        "sleep_meter",
    )

    def __init__(
        self,
        name: str,
        kind: DeviceKind,
        model: DeviceModel,
        freq_hz: float,
        start_s: float,
        cost_fn: BatchCostFn | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.model = model
        self.tail_s = start_s  # when everything queued on the device is done (idle from then on)
        self.tail_freq_hz = freq_hz  # GPU clock at tail_s
        self.busy_energy_j = 0.0
        self.idle_energy_j = 0.0  # idle and frequency-change segments
        self.busy_s = 0.0
        self.batches = 0
        self.frequency_changes = 0
        self._idle_w: dict[float, float] = {}
        self._trailing: list[tuple[float, float, float]] = []  # (start, end, power) changes after the last batch
        self._cost_fn = cost_fn
        self._cost_cache: dict[tuple[str, int, float], tuple[float, float]] = {}
        self.link = LOCAL  # the data path a batch's input crosses before it runs
        self.link_free_s = start_s  # when the link has shipped everything dispatched so far
        self.sleep_meter = SleepMeter()

    @property
    def energy_j(self) -> float:
        """Board energy accounted so far (complete after `finish`)."""
        return self.busy_energy_j + self.idle_energy_j + self.sleep_meter.energy_j

    def idle_power_w(self, freq_hz: float) -> float:
        """Idle board power at `freq_hz` (cached: the device model is pure)."""
        p = self._idle_w.get(freq_hz)
        if p is None:
            p = self._idle_w[freq_hz] = float(self.model.idle_power_w(freq_hz))
        return p

    def set_cost_fn(self, cost_fn: BatchCostFn | None) -> None:
        """Use `cost_fn` (e.g. a noisy model's `batch_cost`) instead of the cached noiseless model."""
        self._cost_fn = cost_fn

    def batch_cost(self, model: str, n_frames: int, freq_hz: float) -> tuple[float, float]:
        """(latency_s, energy_j) of a batch: the cost function if one was given, else the device model."""
        if self._cost_fn is not None:
            return self._cost_fn(model, n_frames, freq_hz)
        key = (model, n_frames, freq_hz)
        hit = self._cost_cache.get(key)
        if hit is None:
            latency_s = float(self.model.latency_s(model, n_frames, freq_hz))
            energy_j = float(self.model.energy_j(model, n_frames, freq_hz))
            if not (latency_s > 0 and math.isfinite(latency_s) and energy_j >= 0 and math.isfinite(energy_j)):
                raise DataError(
                    f"device model of {self.kind.key} gave latency {latency_s} s, energy {energy_j} J "
                    f"for {model} batch {n_frames} at {freq_hz:.0f} Hz"
                )
            hit = self._cost_cache[key] = (latency_s, energy_j)
        return hit

    def _idle_until(self, t_s: float) -> None:
        if self.sleep_meter.asleep:
            self.sleep_meter.accrue(t_s)
            self.tail_s = max(self.tail_s, t_s)
        elif t_s > self.tail_s:
            self.idle_energy_j += self.idle_power_w(self.tail_freq_hz) * (t_s - self.tail_s)
            self.tail_s = t_s

    def change_frequency(self, now_s: float, freq_hz: float) -> float:
        """Queue a clock change after everything already queued; return when it has settled."""
        self._idle_until(now_s)
        if freq_hz == self.tail_freq_hz:
            return self.tail_s
        delay_s = self.kind.freq_change_delay_s
        if delay_s > 0:
            power_w = self.idle_power_w(self.tail_freq_hz)
            self.idle_energy_j += power_w * delay_s
            self._trailing.append((self.tail_s, self.tail_s + delay_s, power_w))
            self.tail_s += delay_s
        self.tail_freq_hz = freq_hz
        self.frequency_changes += 1
        return self.tail_s

    def sleep(self, now_s: float, spec: PowerStateSpec) -> None:
        """Enter `spec`'s state once everything queued is done (the core sends no sleep with work in flight)."""
        self._idle_until(now_s)
        self._trailing.clear()
        self.sleep_meter.enter(self.tail_s, spec)

    def wake(self, now_s: float) -> float:
        """Leave the sleep state at `now_s`; return when a batch can start."""
        self._idle_until(now_s)
        self.tail_s = self.sleep_meter.leave(self.tail_s)
        return self.tail_s

    def run(self, now_s: float, model: str, n_frames: int, freq_hz: float) -> tuple[float, float, float, float]:
        """Queue a batch dispatched at `now_s`; return (started_s, finished_s, latency_s, energy_j).

        Over a network `link` the batch's input first crosses it, one transfer after another (the link is free
        again at `link_free_s`); a transfer overlaps earlier batches and the clock change, and the device idles
        while it waits for its input.
        """
        ready_s = now_s
        if not self.link.local:
            transfer_s = self.link.transfer_s(n_frames * frame_bytes(model))
            self.link_free_s = max(now_s, self.link_free_s) + transfer_s
            ready_s = self.link_free_s
        if freq_hz != self.tail_freq_hz:
            self.change_frequency(now_s, freq_hz)
        self._idle_until(ready_s)
        latency_s, energy_j = self.batch_cost(model, n_frames, freq_hz)
        started_s = self.tail_s
        self.tail_s = started_s + latency_s
        self.busy_energy_j += energy_j
        self.busy_s += latency_s
        self.batches += 1
        self._trailing.clear()
        return started_s, self.tail_s, latency_s, energy_j

    def finish(self, end_s: float) -> None:
        """Close the books at `end_s`: idle up to it, and clip frequency changes that settle after it."""
        for start, stop, power_w in self._trailing:
            if stop > end_s:
                self.idle_energy_j -= power_w * (stop - max(start, end_s))
        self._trailing.clear()
        if self.tail_s > end_s and not self.sleep_meter.asleep:
            self.tail_s = end_s
        self._idle_until(end_s)
