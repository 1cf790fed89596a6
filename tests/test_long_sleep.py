"""The long-sleep path for real on `jetfleet up --nodes`: drain, the node's Ray processes stopped, restarted on
wake, Serve's replica back; every request sent before, during the drain, asleep and after wake answered once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster import local
from cluster.inventory import fleet_from_dict

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# test figures, not the catalogue's: any suspend state with an RTC wake exercises the path
SUSPENDED = {"board_power_w": 0.5, "entry_s": 0.5, "exit_s": 2.0, "entry_energy_j": 0.5, "exit_energy_j": 2.0}
FLEET = {
    "name": "longsleep",
    "devices": [
        {"name": "fa", "kind": "jetson-nano", "options": {"power_states": {"suspended": SUSPENDED}}},
        {"name": "fb", "kind": "jetson-nano"},
    ],
}


def test_a_long_sleep_leaves_ray_and_rejoins_with_every_request_answered_once(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    state = local.up(fleet_from_dict(FLEET), per_device_nodes=True, num_cpus=2, object_store_mb=80)
    out_path = tmp_path / "out.json"
    try:
        driver = Path(__file__).with_name("long_sleep_driver.py")
        run = subprocess.run(
            [sys.executable, str(driver), json.dumps(FLEET), str(out_path)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(driver.parent)])},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        out = json.loads(out_path.read_text())
    finally:
        local.down()
        shutil.rmtree(state.temp_dir, ignore_errors=True)
    assert out["change"] == {"state": "suspended", "long_sleep": True, "wake": ["rtc"]}
    assert out["after"]["power_state"] == "idle" and out["after"]["node"] != out["node_before"]  # a new Ray node
    answers = out["answers"]
    assert {a["phase"] for a in answers} == {"before", "drain", "asleep", "woken"}
    assert all(a["code"] in (200, 503) for a in answers), [a for a in answers if a["code"] not in (200, 503)]
    ids = [a["request_id"] for a in answers]
    assert len(ids) == len(set(ids))  # one answer each, none shared
    stats = out["stats"]
    assert stats["submitted"] == len(answers) and stats["open"] == 0
    assert stats["completed"] + sum(stats["dropped_by_reason"].values()) == len(answers)
    completed = [a for a in answers if a["status"] == "completed"]
    assert len(completed) >= 0.9 * len(answers)
    assert any(a["device"] == "fa" for a in completed if a["phase"] == "woken")  # Serve brought its replica back
    asleep = stats["run"]["asleep_s"]  # what /v1/stats shows: scheduler seconds, 10x wall here
    assert asleep["fa"] >= 8.0 * 10.0 and asleep["fb"] == 0.0
