"""Profiling one device: GPU frequency × batch, measured with the device's own engine and meter.

`profile_device` sweeps one `DeviceRuntime` (in process, or inside a Ray actor) and returns one
`ProfileRow` per (frequency, batch): the mean of `repetitions` measured runs after `warmup` runs. The
device's frequency is restored afterwards, also when the sweep fails or is interrupted. `rows_to_table`
turns rows into a profile table (`costmodel.profiles.PROFILE_COLUMNS` plus a few extra columns);
`actors.sweeps` runs such sweeps over a fleet.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from costmodel.profiles import PROFILE_COLUMNS, validate_profiles
from jetfleet.catalogue import MHZ
from jetfleet.errors import ConfigError, DeviceError, FrequencyError

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
