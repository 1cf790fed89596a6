"""Profiling sweeps over a fleet: which points to measure on each device, run in process or on Ray.

`plan_sweeps` picks, per device, the models, batches and frequencies to sweep; `sweep_local` runs the plans
with `DeviceRuntime`s built in this process, `sweep_ray` with actors pinned by each device's `device:<name>`
resource (or through a running service's deployment of the device, when `device_handle` finds one). Each
device is swept by `actors.profiling.profile_device`; the result's `table()` is a profile table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from actors.device import DeviceRuntime
from actors.profiling import ProfileRow, profile_device, rows_to_table, select_frequencies
from cluster.inventory import DeviceSpec, Fleet
from costmodel.device_models import batch_ladder
from jetfleet.catalogue import MHZ
from jetfleet.errors import ConfigError, JetfleetError
from jetfleet.types import DEFAULT_MODEL


@dataclass(frozen=True)
class SweepPlan:
    """What to sweep on one device. Empty `freqs_hz` means every frequency the device lists."""

    device: DeviceSpec
    models: tuple[str, ...]
    batches: tuple[int, ...]
    freqs_hz: tuple[float, ...] = ()
    warmup: int = 1
    repetitions: int = 3

    def points(self, n_freqs: int) -> int:
        return len(self.models) * len(self.batches) * n_freqs


@dataclass
class SweepResult:
    """Rows of a fleet sweep and what went wrong where (device name -> reason)."""

    rows: list[ProfileRow] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """The rows as a validated profile table (PROFILE_COLUMNS first, then EXTRA_COLUMNS)."""
        return rows_to_table(self.rows)


def default_models(spec: DeviceSpec) -> tuple[str, ...]:
    """The device's own models, else LoudVA's InceptionV3 for emulated engines and ResNet-18 for real ones."""
    if spec.models:
        return tuple(spec.models)
    return (DEFAULT_MODEL,) if spec.engine == "emulated" else ("resnet18",)


def default_batches(spec: DeviceSpec) -> tuple[int, ...]:
    """1, 2, 3, 4, 6, 8, 12, ... up to the kind's largest useful batch."""
    return tuple(batch_ladder(spec.device_kind.max_batch))


def plan_sweeps(
    fleet: Fleet,
    *,
    devices: Sequence[str] = (),
    models: Sequence[str] = (),
    freqs_mhz: Sequence[float] = (),
    batches: Sequence[int] = (),
    warmup: int = 1,
    repetitions: int = 3,
) -> list[SweepPlan]:
    """One SweepPlan per selected device (all when `devices` is empty); defaults per device otherwise."""
    specs = [fleet.device(name) for name in devices] if devices else list(fleet.devices)
    bad = [b for b in batches if b < 1]
    if bad:
        raise ConfigError(f"--batches: batch sizes must be >= 1, got {bad}")
    return [
        SweepPlan(
            device=spec,
            models=tuple(models) or default_models(spec),
            batches=tuple(sorted(set(batches))) or default_batches(spec),
            freqs_hz=tuple(f * MHZ for f in freqs_mhz),
            warmup=warmup,
            repetitions=repetitions,
        )
        for spec in specs
    ]


# -- running sweeps over a fleet ---------------------------------------------------------------------------
OnStart = Callable[[str, int], None]  # (device, points it will run)
OnPoint = Callable[[str], None]  # (device) one more point done


def _noop_start(device: str, total: int) -> None:
    return None


def _noop_point(device: str) -> None:
    return None


async def sweep_local(
    plans: Sequence[SweepPlan],
    *,
    speed_factor: float = 1.0,
    on_start: OnStart = _noop_start,
    on_point: OnPoint = _noop_point,
    runtime_factory: Callable[..., Any] | None = None,
) -> SweepResult:
    """Sweep every plan with DeviceRuntimes built in this process (no Ray). Emulated devices run side by
    side; devices with real engines run one after another so they do not compete for the CPU/GPU."""
    if runtime_factory is None:
        runtime_factory = DeviceRuntime
    result = SweepResult()

    async def one(plan: SweepPlan) -> None:
        name = plan.device.name
        try:
            runtime = runtime_factory(plan.device, speed_factor=speed_factor)
        except JetfleetError as e:
            result.failures[name] = str(e)
            return
        try:
            freqs = select_frequencies(runtime.available_frequencies_hz(), plan.freqs_hz, name)
            on_start(name, plan.points(len(freqs)))
            for model in plan.models:
                result.rows += await profile_device(
                    runtime,
                    model,
                    freqs,
                    plan.batches,
                    warmup=plan.warmup,
                    repetitions=plan.repetitions,
                    on_point=lambda: on_point(name),
                )
        except JetfleetError as e:
            result.failures[name] = str(e)
        finally:
            runtime.close()

    emulated = [p for p in plans if p.device.engine == "emulated"]
    await asyncio.gather(*(one(p) for p in emulated))
    for plan in plans:
        if plan.device.engine != "emulated":
            await one(plan)
    return result


async def sweep_ray(
    plans: Sequence[SweepPlan],
    *,
    speed_factor: float = 1.0,
    on_start: OnStart = _noop_start,
    on_point: OnPoint = _noop_point,
    acquire_timeout_s: float = 60.0,
    device_handle: Callable[[str], Any] | None = None,
) -> SweepResult:
    """Sweep every plan on a running Ray cluster (ray.init must have been called).

    A device for which `device_handle(name)` returns a handle (`deployments.devices.running_device_handle`:
    the running jetfleet service's deployment of it) is profiled through that handle, which holds the device
    (live traffic then shares it). Otherwise (no `device_handle`, or it returns None) a
    DeviceRuntime actor is started for the sweep, pinned by the device's `device:<name>` resource so it
    runs where the device is, and ended afterwards."""
    import ray

    have = ray.cluster_resources()
    remote_runtime = ray.remote(DeviceRuntime)
    result = SweepResult()

    async def one(plan: SweepPlan) -> None:
        name, resource = plan.device.name, f"device:{plan.device.name}"
        if resource not in have:
            result.failures[name] = f"the Ray cluster has no resource {resource!r} (start it with `jetfleet up`)"
            return
        target, owned = (device_handle(name) if device_handle is not None else None), False
        if target is None:
            target, owned = (
                remote_runtime.options(resources={resource: 1}, num_cpus=0).remote(
                    plan.device, speed_factor=speed_factor
                ),
                True,
            )
        try:
            result.rows += await _sweep_target(target, plan, acquire_timeout_s, on_start, on_point)
        except asyncio.TimeoutError:
            result.failures[name] = (
                f"no actor could start on {resource!r} within {acquire_timeout_s:g} s: another actor holds the "
                "device or its node is down"
            )
        except (JetfleetError, ray.exceptions.RayError) as e:
            result.failures[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
        finally:
            if owned:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_get(target.close.remote()), 10.0)
                ray.kill(target)

    await asyncio.gather(*(one(p) for p in plans))
    return result


async def _sweep_target(target: Any, plan: SweepPlan, timeout_s: float, on_start: OnStart, on_point: OnPoint):
    """Sweep through `target` (a DeviceRuntime actor or Serve deployment handle); restore its clock after."""
    name = plan.device.name
    available = await asyncio.wait_for(_get(target.available_frequencies_hz.remote()), timeout_s)
    freqs = select_frequencies(available, plan.freqs_hz, name)
    on_start(name, plan.points(len(freqs)))
    initial_hz = (await target.status.remote()).freq_hz
    rows: list[ProfileRow] = []
    try:
        for model in plan.models:
            for f in freqs:  # one call per frequency, for progress; the target restores nothing in between
                kw = {"warmup": plan.warmup, "repetitions": plan.repetitions, "restore": False}
                rows += await target.profile.remote(model, [f], list(plan.batches), **kw)
                for _ in plan.batches:
                    on_point(name)
    finally:
        await target.set_frequency.remote(initial_hz)
    return rows


async def _get(ref: Any) -> Any:
    return await ref
