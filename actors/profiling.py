"""Profiling sweeps: GPU frequency × batch on a device, measured with the device's own engine and meter.

`profile_device` sweeps one `DeviceRuntime` (in process, or inside a Ray actor) and returns one
`ProfileRow` per (frequency, batch): the mean of `repetitions` measured runs after `warmup` runs. The
device's frequency is restored afterwards, also when the sweep fails or is interrupted. `profile_fleet`
sweeps several devices, in this process or as Ray actors pinned by their `device:<name>` resources, and
returns the rows as a profile table (`costmodel.profiles.PROFILE_COLUMNS` plus a few extra columns).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from cluster.catalogue import MHZ
from cluster.inventory import DeviceSpec, Fleet
from costmodel.profiles import PROFILE_COLUMNS, validate_profiles
from jetfleet.errors import ConfigError, DeviceError, FrequencyError, JetfleetError
from jetfleet.types import DEFAULT_MODEL

EXTRA_COLUMNS = ["device", "repetitions", "latency_std_s", "energy_std_j"]


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One profiled point, in the profile-table schema plus the device and the spread of the repetitions."""

    kind: str
    model: str
    batch: int
    freq_hz: float
    latency_s: float  # mean latency per batch, device time (see BatchRun.device_latency_s)
    energy_j: float  # mean board energy per batch from the device's meter
    power_w: float  # energy_j / latency_s
    source: str  # "profile:<device>"
    device: str = ""
    repetitions: int = 1
    latency_std_s: float = 0.0
    energy_std_j: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def rows_to_table(rows: Sequence[ProfileRow]) -> pd.DataFrame:
    """A validated profile table of `rows`, extra columns kept after the schema's own."""
    if not rows:
        return pd.DataFrame(columns=PROFILE_COLUMNS + EXTRA_COLUMNS)
    df = pd.DataFrame([r.as_dict() for r in rows])
    checked = validate_profiles(df, "<profile sweep>")
    return pd.concat([checked, df[EXTRA_COLUMNS].reset_index(drop=True)], axis=1)


def select_frequencies(available_hz: Sequence[float], wanted_hz: Sequence[float], device: str) -> list[float]:
    """The wanted frequencies the device lists (all of its list when none are wanted); FrequencyError if none."""
    if not wanted_hz:
        return list(available_hz)
    chosen = [f for f in available_hz if any(abs(f - w) < 1e3 for w in wanted_hz)]
    if not chosen:
        listed = ", ".join(f"{f / MHZ:g}" for f in available_hz)
        asked = ", ".join(f"{f / MHZ:g}" for f in wanted_hz)
        raise FrequencyError(f"device {device!r} lists none of the frequencies {asked} MHz; it has {listed} MHz")
    return chosen


async def profile_device(
    runtime: Any,
    model: str,
    freqs_hz: Sequence[float],
    batches: Sequence[int],
    *,
    warmup: int = 1,
    repetitions: int = 3,
    on_point: Callable[[], None] | None = None,
    restore: bool = True,
) -> list[ProfileRow]:
    """Sweep `freqs_hz` × `batches` of `model` on `runtime` (a DeviceRuntime). Every frequency must be one
    the device lists (FrequencyError otherwise, before anything runs). A failed batch raises DeviceError.
    With `restore`, the frequency in force before is set again afterwards, also on error."""
    if repetitions < 1 or warmup < 0:
        raise ConfigError(f"profiling needs repetitions >= 1 and warmup >= 0, got {repetitions} and {warmup}")
    available = runtime.available_frequencies_hz()
    freqs = [select_frequencies(available, [f], runtime.name)[0] for f in freqs_hz]
    initial_hz = runtime.frequency_hz()
    rows: list[ProfileRow] = []
    try:
        for f in freqs:
            for b in batches:
                rows.append(await _profile_point(runtime, model, f, int(b), warmup, repetitions))
                if on_point is not None:
                    on_point()
    finally:
        if restore and abs(runtime.frequency_hz() - initial_hz) >= 1e3:
            runtime.set_frequency(initial_hz)
    return rows


async def _profile_point(runtime: Any, model: str, freq_hz: float, batch: int, warmup: int, reps: int) -> ProfileRow:
    latencies, energies = [], []
    for i in range(warmup + reps):
        run = await runtime.run_frames(model, batch, freq_hz)
        if not run.result.ok:
            raise DeviceError(
                f"device {runtime.name!r}: {model} batch {batch} at {freq_hz / MHZ:g} MHz failed: {run.result.error}"
            )
        if i >= warmup:
            latencies.append(run.device_latency_s)
            energies.append(run.result.energy_j)
    lat, energy = statistics.fmean(latencies), statistics.fmean(energies)
    return ProfileRow(
        kind=runtime.spec.kind,
        model=model,
        batch=batch,
        freq_hz=freq_hz,
        latency_s=lat,
        energy_j=energy,
        power_w=energy / lat if lat > 0 else math.nan,
        source=f"profile:{runtime.name}",
        device=runtime.name,
        repetitions=reps,
        latency_std_s=statistics.pstdev(latencies),
        energy_std_j=statistics.pstdev(energies),
    )


def default_models(spec: DeviceSpec) -> tuple[str, ...]:
    """The device's own models, else LoudVA's InceptionV3 for emulated engines and ResNet-18 for real ones."""
    if spec.models:
        return tuple(spec.models)
    return (DEFAULT_MODEL,) if spec.engine == "emulated" else ("resnet18",)


def default_batches(spec: DeviceSpec) -> tuple[int, ...]:
    """1, 2, 3, 4, 6, 8, 12, ... up to the kind's largest useful batch."""
    from costmodel.device_models import batch_ladder

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
        from actors.device import DeviceRuntime

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
    via_serve: bool = True,
) -> SweepResult:
    """Sweep every plan on a running Ray cluster (ray.init must have been called).

    A device that a running jetfleet service already serves (its Serve deployment `device-<name>`) is
    profiled through that deployment, which holds the device (live traffic then shares it). Otherwise a
    DeviceRuntime actor is started for the sweep, pinned by the device's `device:<name>` resource so it
    runs where the device is, and ended afterwards."""
    import ray

    from actors.device import DeviceRuntime

    have = ray.cluster_resources()
    remote_runtime = ray.remote(DeviceRuntime)
    result = SweepResult()

    async def one(plan: SweepPlan) -> None:
        name, resource = plan.device.name, f"device:{plan.device.name}"
        if resource not in have:
            result.failures[name] = f"the Ray cluster has no resource {resource!r} (start it with `jetfleet up`)"
            return
        target, owned = (_serve_device_handle(name) if via_serve else None), False
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


def _serve_device_handle(device: str) -> Any:
    """The handle of the running jetfleet service's deployment of `device`, or None when there is none."""
    try:
        from ray import serve

        from deployments.app import DEFAULT_APP
        from deployments.devices import deployment_name

        if DEFAULT_APP not in serve.status().applications:
            return None
        return serve.get_deployment_handle(deployment_name(device), DEFAULT_APP)
    except Exception:  # no Serve controller, no such app or deployment: profile with an actor of our own
        return None


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
