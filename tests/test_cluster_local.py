"""Local emulated clusters: device resources, Ray token auth set on purpose, `jetfleet up` / `jetfleet down`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cluster import local
from cluster.inventory import load_fleet
from jetfleet.errors import ConfigError


def test_every_device_is_its_own_ray_resource():
    assert local.device_resources(load_fleet("demo")) == {
        "device:agx0": 1.0,
        "device:nx0": 1.0,
        "device:nano0": 1.0,
        "device:nano1": 1.0,
    }


def test_enable_ray_auth_sets_token_mode_explicitly(monkeypatch):
    for var in local.AUTH_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(local, "_refresh_ray_auth", lambda: None)
    env = local.enable_ray_auth(token="abc")
    assert env == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "abc"}
    assert os.environ["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN_PATH" not in os.environ
    local.enable_ray_auth(token_path="/tmp/t")
    assert os.environ["RAY_AUTH_TOKEN_PATH"] == "/tmp/t" and "RAY_AUTH_TOKEN" not in os.environ
    with pytest.raises(ConfigError):
        local.enable_ray_auth()


def test_down_without_a_cluster_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    assert local.down() == [] and local.running_cluster() is None


@pytest.mark.ray
@pytest.mark.slow
def test_up_with_nodes_then_down_leaves_nothing_running(tmp_path, monkeypatch):
    """`up --nodes` for a one-device fleet: a head and a device node, token auth on, the device's resource
    registered; `down` ends exactly those process groups."""
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    state = local.up(load_fleet("agx"), per_device_nodes=True, num_cpus=1, object_store_mb=80)
    try:
        assert sorted(state.nodes) == ["agx0", "head"] and local.running_cluster() is not None
        probe = (
            "import json, ray; "
            f"ray.init(address={state.address!r}, logging_level='error', _temp_dir={state.temp_dir!r}); "
            "print(json.dumps({k: v for k, v in ray.cluster_resources().items() if k.startswith('device:')}))"
        )
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": state.token_path}
        env.pop("RAY_AUTH_TOKEN", None)
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"device:agx0": 1.0}
        token = Path(state.token_path).read_text().strip()
        jobs = f"{state.dashboard_url}/api/jobs/"
        assert httpx.get(jobs, timeout=30).status_code == 401  # the jobs API (ray job submit) needs the token
        assert httpx.get(jobs, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 200
    finally:
        stopped = local.down(state)
        shutil.rmtree(state.temp_dir, ignore_errors=True)  # Ray's logs of this throw-away cluster
    assert sorted(stopped) == ["agx0", "head"]
    assert not any(local._alive(pgid) for pgid in state.nodes.values())
    assert not (tmp_path / "cluster.json").exists()


def test_a_process_group_of_zombies_only_is_not_alive(monkeypatch):
    """`down` waited its whole 40 s timeout for a group whose one process left was a zombie no one reaps (a container's
    PID 1); a group with one live process is alive, and without /proc the signal test alone decides."""
    group = os.getpgid(0)
    assert "R" in local._group_states(group)  # this process, running, is in its own group
    monkeypatch.setattr(local.os, "killpg", lambda pgid, sig: None)  # the kernel still lists the group
    monkeypatch.setattr(local, "_group_states", lambda pgid: ["Z", "Z"])
    assert not local._alive(group)
    monkeypatch.setattr(local, "_group_states", lambda pgid: ["Z", "S"])
    assert local._alive(group)
    monkeypatch.setattr(local, "_group_states", lambda pgid: None)
    assert local._alive(group)


def test_a_new_process_group_is_alive_until_its_process_ends():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        # Its own group: just the child, alive in whatever state (R, S, or D while it loads its files on a busy
        # machine: a fresh-clone CI run saw D), never a zombie.
        states = local._group_states(child.pid)
        assert len(states) == 1 and states[0] not in ("Z", "X")
        assert local._alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert local._group_states(child.pid) == [] and not local._alive(child.pid)
