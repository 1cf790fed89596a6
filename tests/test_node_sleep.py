"""The long-sleep pieces without a cluster: finding a device's own `jetfleet up --nodes` node, the restart command,
the helper that rejoins only a cluster still up, and Wake-on-LAN's magic packet."""

from __future__ import annotations

import json

import pytest

from cluster import node_sleep
from cluster.node_sleep import EmulatedNode, own_emulated_node
from cluster.wake_on_lan import magic_packet
from jetfleet.errors import ConfigError

NODE_CMD = [
    "/venv/bin/python",
    "/venv/bin/ray",
    "start",
    "--block",
    "--address=127.0.0.1:6379",
    '--resources={"device:fa": 1}',
    "--dashboard-agent-listen-port=5001",
    "--num-cpus=0",
]


def _proc(tmp_path, pid: int, ppid: int, cmd: list[str], env: dict[str, str] | None = None) -> None:
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} (some (odd) name) S {ppid} {pid} {pid} 0\n")
    (d / "cmdline").write_bytes(b"\0".join(c.encode() for c in cmd) + b"\0")
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in (env or {}).items()) + b"\0")


def test_the_node_is_the_ray_start_ancestor_offering_only_this_device(tmp_path):
    _proc(tmp_path, 100, 1, NODE_CMD, {"RAY_AUTH_MODE": "token"})
    _proc(tmp_path, 200, 100, ["/venv/.../raylet", "--raylet_socket_name=x"])
    _proc(tmp_path, 300, 200, ["ray::ServeReplica:jetfleet:device-fa"])
    node = own_emulated_node("fa", pid=300, proc=tmp_path)
    assert node is not None and node.pgid == 100 and node.command == tuple(NODE_CMD)
    assert node.env == {"RAY_AUTH_MODE": "token"}
    assert own_emulated_node("fb", pid=300, proc=tmp_path) is None  # another device's node: not ours


def test_a_shared_or_head_node_is_never_taken_for_the_devices_own(tmp_path):
    shared = [*NODE_CMD[:5], '--resources={"device:fa": 1, "device:fb": 1}']
    _proc(tmp_path, 100, 1, shared)
    _proc(tmp_path, 300, 100, ["ray::worker"])
    assert own_emulated_node("fa", pid=300, proc=tmp_path) is None
    _proc(tmp_path, 101, 1, [*NODE_CMD, "--head"])
    _proc(tmp_path, 301, 101, ["ray::worker"])
    assert own_emulated_node("fa", pid=301, proc=tmp_path) is None


def test_the_restart_takes_fresh_agent_ports_and_keeps_everything_else():
    cmd = node_sleep._restart_command(tuple(NODE_CMD))
    assert [a for a in cmd if not a.startswith("--dashboard-agent-listen-port=")] == [
        a for a in NODE_CMD if not a.startswith("--dashboard-agent-listen-port=")
    ]
    assert len(cmd) == len(NODE_CMD)


def test_the_helper_does_not_rejoin_a_cluster_taken_down_meanwhile(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    started: list = []
    monkeypatch.setattr(node_sleep.subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.setattr(node_sleep, "_killpg", lambda pgid, sig: None)
    monkeypatch.setattr(node_sleep, "_alive", lambda pgid: False)
    node = EmulatedNode("fa", 12345, tuple(NODE_CMD), {"JETFLEET_HOME": str(tmp_path)})
    assert node_sleep._sleep_node(node, 0.0, 0.0) == 0 and started == []  # no cluster.json: `down` ran
    (tmp_path / "cluster.json").write_text(json.dumps({"nodes": {"head": 1, "fa": 12345}}))
    assert node_sleep._sleep_node(node, 0.0, 0.0) == 0 and started == []  # head gone


def test_the_helper_restarts_the_node_and_records_its_new_group(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))

    class Proc:
        pid = 777

    monkeypatch.setattr(node_sleep.subprocess, "Popen", lambda *a, **k: Proc())
    monkeypatch.setattr(node_sleep, "_killpg", lambda pgid, sig: None)
    monkeypatch.setattr(node_sleep, "_alive", lambda pgid: pgid == 1)  # the head lives, the old node is gone
    (tmp_path / "cluster.json").write_text(json.dumps({"nodes": {"head": 1, "fa": 12345}}))
    node = EmulatedNode("fa", 12345, tuple(NODE_CMD), {"JETFLEET_HOME": str(tmp_path)})
    assert node_sleep._sleep_node(node, 0.0, 0.0) == 777
    assert json.loads((tmp_path / "cluster.json").read_text())["nodes"] == {"head": 1, "fa": 777}


def test_magic_packet_is_six_ff_then_the_mac_sixteen_times():
    packet = magic_packet("00:04:4b:aa:bb:cc")
    assert packet[:6] == b"\xff" * 6 and packet[6:] == bytes.fromhex("00044baabbcc") * 16 and len(packet) == 102
    with pytest.raises(ConfigError, match="not a MAC"):
        magic_packet("00:04:4b:aa:bb")
