"""`jetfleet power-states probe`: measured figures in the catalogue's format, against a fake sysfs tree and meter."""

from __future__ import annotations

import asyncio
import math

import pytest
from device_fakes import ORIN_DEVFREQ, fake_jetson_tree
from typer.testing import CliRunner

from actors.dvfs import JetsonDvfs
from actors.power_probe import is_jetson, probe_power_states, require_jetson
from actors.power_states import JetsonPowerStates
from actors.sleep_control import specs_from_table
from jetfleet.cli import app
from jetfleet.errors import DeviceError
from jetfleet.power_states import PowerState


class FakeBoard:
    """A clock, and a meter whose reading follows the fake GPU's rail gate: 5 W idle, 3.2 W rail-gated."""

    def __init__(self, gpu) -> None:
        self.gpu, self.t = gpu, 0.0

    def clock(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s
        if (self.gpu / "railgate_enable").read_text().strip() == "1":
            (self.gpu / "is_railgated").write_text("1\n")  # the driver gates after its delay
        else:
            (self.gpu / "is_railgated").write_text("0\n")

    def power_w(self) -> float:
        return 3.2 if (self.gpu / "is_railgated").read_text().strip() == "1" else 5.0


def _probe(tmp_path, resume_after_s: float | None = None, **kw):
    gpu = fake_jetson_tree(tmp_path)
    board = FakeBoard(gpu)
    slept: list[float] = []

    def rtcwake(seconds: float) -> None:  # blocks until the board is back, `resume_after_s` past the alarm
        slept.append(seconds)
        board.t += seconds + resume_after_s

    if resume_after_s is not None:
        kw["rtcwake"] = rtcwake
        kw["slept"] = slept
    slept_out = kw.pop("slept", None)
    backend = JetsonPowerStates(root=tmp_path, dvfs=JetsonDvfs(root=tmp_path, devfreq=ORIN_DEVFREQ), rtcwake=False)
    backend._clock, backend._sleep = board.clock, board.sleep  # its wait for is_railgated runs on the fake clock
    result = asyncio.run(
        probe_power_states(
            backend,
            board.power_w,
            host="orin-7",
            date="2026-12-02",
            dwell_s=1.0,
            clock=board.clock,
            sleep=board.sleep,
            **kw,
        )
    )
    if slept_out is not None:
        result["_slept"] = slept_out
    return result


def test_probe_measures_idle_and_deep_idle_with_sources(tmp_path):
    """Idle 5 W, deep idle 3.2 W from the meter; entry waits for is_railgated; every figure names its source."""
    result = _probe(tmp_path)
    assert result["idle_power_w"] == pytest.approx(5.0)
    deep = result["power_states"]["deep_idle"]
    assert deep["board_power_w"] == pytest.approx(3.2)
    assert 0 < deep["entry_s"] <= 0.05 and deep["exit_s"] >= 0
    assert set(deep["sources"]) == {"board_power_w", "entry_s", "exit_s", "entry_energy_j", "exit_energy_j"}
    assert all(v == "measured by jetfleet power-states probe on orin-7, 2026-12-02" for v in deep["sources"].values())
    spec = specs_from_table(result["power_states"], "probe")[PowerState.DEEP_IDLE]  # the inventory's format
    assert spec.board_power_w == pytest.approx(3.2) and spec.break_even_s(5.0) >= spec.entry_s + spec.exit_s


def test_probe_leaves_the_board_as_it_found_it(tmp_path):
    _probe(tmp_path)
    assert (tmp_path / "sys/devices/platform/bus@0/17000000.gpu/railgate_enable").read_text().strip() == "0"


def test_probe_suspend_times_the_round_trip_and_marks_sc7_power_unmeasured(tmp_path):
    result = _probe(tmp_path, resume_after_s=1.5, suspend_s=10.0)
    susp = result["power_states"]["suspended"]
    assert susp["exit_s"] == pytest.approx(1.5) and susp["sources"]["exit_s"].startswith("measured by")
    assert result["_slept"] == [10.0] and "board_power_w" in susp["assumed"] and math.isnan(susp["board_power_w"])
    assert "external meter" in susp["sources"]["board_power_w"]


def test_probe_refuses_anything_but_a_jetson(tmp_path):
    assert not is_jetson(tmp_path)
    with pytest.raises(DeviceError, match="on a Jetson only"):
        require_jetson(tmp_path)
    result = CliRunner().invoke(app, ["power-states", "probe", "--sysfs-root", str(tmp_path)])
    assert result.exit_code != 0 and "Jetson only" in str(result.exception)


def test_a_tegra_device_tree_counts_as_a_jetson(tmp_path):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/compatible").write_bytes(b"nvidia,p3768-0000+p3767-0000\0nvidia,tegra234\0")
    assert is_jetson(tmp_path)


def test_probe_without_rtcwake_cannot_probe_suspend(tmp_path):
    with pytest.raises(DeviceError, match="rtcwake"):
        _probe(tmp_path, suspend_s=10.0)
