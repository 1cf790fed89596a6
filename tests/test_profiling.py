"""Profiling sweeps: rows in the profile schema, frequency restored, failures reported, the CLI round trip."""

from __future__ import annotations

import asyncio
import time

import pytest
from device_fakes import LinearDeviceModel

from actors.device import DeviceRuntime
from actors.engines.emulated import EmulatedEngine
from actors.profiling import profile_device, rows_to_table, select_frequencies
from actors.sweeps import plan_sweeps, sweep_local
from cluster.inventory import DeviceSpec, fleet_from_dict
from costmodel.profiles import PROFILE_COLUMNS, read_profiles, validate_profiles
from jetfleet.catalogue import MHZ, get_kind
from jetfleet.errors import FrequencyError

NANO = get_kind("jetson-nano")


class CountingEngine(EmulatedEngine):
    """Counts runs; fails from run number `fail_at` on."""

    def __init__(self, dm, fail_at: int | None = None) -> None:
        super().__init__(dm, speed_factor=1e4)
        self.runs, self.fail_at = 0, fail_at

    async def run(self, model, frames, n_frames, freq_hz):
        self.runs += 1
        if self.fail_at is not None and self.runs >= self.fail_at:
            raise RuntimeError("engine fell over")
        return await super().run(model, frames, n_frames, freq_hz)


def _runtime(engine=None, name: str = "nano0", kind: str = "jetson-nano", **kw) -> DeviceRuntime:
    dm = LinearDeviceModel(kind)
    return DeviceRuntime(
        DeviceSpec(name=name, kind=kind), speed_factor=1e4, device_model=dm, engine=engine or CountingEngine(dm), **kw
    )


def _sweep(rt, freqs, batches, **kw):
    return asyncio.run(profile_device(rt, "resnet18", freqs, batches, **kw))


def test_sweep_gives_one_valid_row_per_point_with_modelled_energy():
    """freqs × batches rows, schema-valid, energy equal to the device model's."""
    rt = _runtime()
    freqs, batches = [NANO.freqs_hz[2], NANO.freqs_hz[-1]], [1, 4]
    rows = _sweep(rt, freqs, batches, warmup=1, repetitions=2)
    table = validate_profiles(rows_to_table(rows))
    assert len(table) == 4 and list(table.columns) == PROFILE_COLUMNS
    assert set(zip(table["freq_hz"], table["batch"], strict=True)) == {(f, b) for f in freqs for b in batches}
    dm = LinearDeviceModel("jetson-nano")
    row = next(r for r in rows if r.batch == 4 and r.freq_hz == freqs[0])
    assert row.energy_j == pytest.approx(dm.energy_j("resnet18", 4, freqs[0]))
    assert row.source == "profile:nano0" and row.repetitions == 2
    assert row.latency_s >= row.energy_j / row.power_w * 0.999


def test_warmup_runs_are_run_but_not_counted():
    """Each point runs warmup + repetitions batches."""
    rt = _runtime()
    _sweep(rt, [NANO.max_freq_hz], [1, 2], warmup=2, repetitions=3)
    assert rt.engine.runs == 2 * (2 + 3) and rt.status().batches_run == 10


def test_frequency_is_restored_after_the_sweep():
    """The clock the device had before the sweep is set again afterwards."""
    rt = _runtime()
    rt.set_frequency(NANO.freqs_hz[5])
    _sweep(rt, [NANO.freqs_hz[1], NANO.freqs_hz[3]], [1])
    assert rt.frequency_hz() == NANO.freqs_hz[5]


def test_frequency_is_restored_when_the_sweep_fails():
    """A failing batch aborts the sweep with a DeviceError naming the point, and the clock is restored."""
    from jetfleet.errors import DeviceError

    rt = _runtime()
    rt.engine.fail_at = 2
    before = rt.frequency_hz()
    with pytest.raises(DeviceError, match="engine fell over"):
        _sweep(rt, [NANO.freqs_hz[1]], [1, 2], warmup=0, repetitions=1)
    assert rt.frequency_hz() == before


def test_unlisted_frequency_is_refused_before_anything_runs():
    """An unlisted frequency raises FrequencyError and no batch runs."""
    rt = _runtime()
    with pytest.raises(FrequencyError, match="500"):
        _sweep(rt, [NANO.max_freq_hz, 500e6], [1])
    assert rt.engine.runs == 0


def test_select_frequencies_keeps_the_listed_ones():
    """Wanted frequencies are matched against the device's list; all of it when none are wanted."""
    listed = list(NANO.freqs_hz)
    assert select_frequencies(listed, [], "nano0") == listed
    assert select_frequencies(listed, [921.6 * MHZ, 1377 * MHZ], "nano0") == [921.6 * MHZ]
    with pytest.raises(FrequencyError, match="nano0"):
        select_frequencies(listed, [1377 * MHZ], "nano0")


def test_plans_default_per_engine_and_kind():
    """Emulated devices default to InceptionV3, real engines to ResNet-18; batches climb to the kind's max."""
    fleet = fleet_from_dict(
        {"devices": [{"name": "nano0", "kind": "jetson-nano"}, {"name": "cpu0", "kind": "cpu", "engine": "torch"}]}
    )
    nano, cpu = plan_sweeps(fleet)
    assert nano.models == ("inceptionv3",) and cpu.models == ("resnet18",)
    assert nano.batches[0] == 1 and nano.batches[-1] == NANO.max_batch
    (only,) = plan_sweeps(fleet, devices=["cpu0"], models=["tiny"], batches=[4, 1, 4])
    assert only.models == ("tiny",) and only.batches == (1, 4)


def test_fleet_sweep_reports_a_failing_device_and_keeps_the_others():
    """One device failing leaves the other devices' rows intact and names the failure."""
    fleet = fleet_from_dict(
        {"devices": [{"name": "nano0", "kind": "jetson-nano"}, {"name": "nx0", "kind": "xavier-nx"}]}
    )
    plans = plan_sweeps(fleet, models=["resnet18"], batches=[1], freqs_mhz=[921.6, 1109.25], warmup=0, repetitions=1)

    def factory(spec, speed_factor):
        engine = CountingEngine(LinearDeviceModel(spec.kind), fail_at=1 if spec.name == "nx0" else None)
        return _runtime(engine, name=spec.name, kind=spec.kind)

    started = {}
    result = asyncio.run(sweep_local(plans, runtime_factory=factory, on_start=started.__setitem__))
    assert started == {"nano0": 1, "nx0": 1}
    assert [r.device for r in result.rows] == ["nano0"] and "engine fell over" in result.failures["nx0"]


def test_profile_command_writes_a_table_the_cost_model_reads(tmp_path):
    """`jetfleet profile` on emulated devices writes a CSV that costmodel.profiles reads back."""
    from typer.testing import CliRunner

    from jetfleet.cli import app

    out = tmp_path / "profile.csv"
    args = ["profile", "--fleet", "demo", "--devices", "nano0,nx0", "--batches", "1,2", "--freqs", "921.6,1109.25"]
    args += ["--warmup", "0", "--repetitions", "1", "--speed-factor", "1000", "--local", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = read_profiles(out)
    assert sorted(set(table["source"])) == ["profile:nano0", "profile:nx0"] and len(table) == 4
    assert set(table["kind"]) == {"jetson-nano", "xavier-nx"} and (table["latency_s"] > 0).all()


@pytest.fixture(scope="module")
def ray_with_devices(ray_cluster):
    """The session's one shared Ray cluster (tests/conftest.py); its head offers device:nano0 and device:nx0."""
    import ray

    return ray


@pytest.mark.ray
@pytest.mark.slow
def test_ray_sweep_runs_on_actors_pinned_to_the_devices(ray_with_devices):
    """Under Ray each device is swept by an actor holding its device resource; a missing one is reported."""
    from actors.sweeps import sweep_ray

    fleet = fleet_from_dict(
        {
            "devices": [
                {"name": n, "kind": k}
                for n, k in (("nano0", "jetson-nano"), ("nx0", "xavier-nx"), ("agx9", "agx-xavier"))
            ]
        }
    )
    plans = plan_sweeps(fleet, batches=[1, 2], freqs_mhz=[921.6, 1109.25, 1377], warmup=0, repetitions=1)
    result = asyncio.run(sweep_ray(plans, speed_factor=1000, acquire_timeout_s=60))
    table = validate_profiles(result.table())
    assert sorted(set(table["source"])) == ["profile:nano0", "profile:nx0"] and len(table) == 4
    assert list(result.failures) == ["agx9"] and "device:agx9" in result.failures["agx9"]
    for _ in range(100):  # ray.kill returns at once; the resource comes back when the actor is gone
        if ray_with_devices.available_resources().get("device:nano0") == 1:
            break
        time.sleep(0.1)
    assert ray_with_devices.available_resources().get("device:nano0") == 1
