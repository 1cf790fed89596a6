"""`jetfleet cluster config`: the on-prem Ray cluster-launcher file for real Jetsons."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from cluster.inventory import fleet_from_dict
from cluster.launcher import LauncherOptions, launcher_config, node_resources, write_launcher_config
from jetfleet.errors import ConfigError

INVENTORY = {
    "name": "lab",
    "devices": [
        {
            "name": "agx0",
            "kind": "agx-xavier",
            "engine": "tensorrt",
            "dvfs": "jetson",
            "power": "jtop",
            "host": "10.0.0.11",
        },
        {
            "name": "nx0",
            "kind": "xavier-nx",
            "engine": "tensorrt",
            "dvfs": "jetson",
            "power": "jtop",
            "host": "10.0.0.12",
        },
        {"name": "nano0", "kind": "jetson-nano", "dvfs": "jetson", "power": "jtop", "host": "10.0.0.13"},
        {"name": "nano1", "kind": "jetson-nano", "dvfs": "jetson", "power": "jtop", "host": "10.0.0.13"},
        {
            "name": "gpu0",
            "kind": "cuda-gpu",
            "engine": "tensorrt",
            "dvfs": "nvml",
            "power": "nvml",
            "host": "10.0.0.10",
        },
    ],
}


def _write(tmp_path, **kw):
    options = LauncherOptions(head="10.0.0.10", token_file=str(tmp_path / "token"), source_dir=str(tmp_path), **kw)
    out = write_launcher_config(fleet_from_dict(INVENTORY), options, tmp_path / "cluster.yaml")
    return yaml.safe_load(out.read_text()), out, options


def _resources(command: str) -> dict[str, dict]:
    """host -> resources parsed out of the worker start command's case arms."""
    return {h: json.loads(r) for h, r in re.findall(r"(\S+)\) RES='(\{[^']*\})';;", command)}


def test_on_prem_provider_lists_the_head_and_worker_hosts(tmp_path):
    """provider: local, the controller as head, each other host once as a worker."""
    config, _, _ = _write(tmp_path)
    assert config["provider"] == {
        "type": "local",
        "head_ip": "10.0.0.10",
        "worker_ips": ["10.0.0.11", "10.0.0.12", "10.0.0.13"],
    }
    assert config["min_workers"] == config["max_workers"] == 3 and config["auth"]["ssh_user"] == "jetson"


def test_every_node_starts_with_its_own_device_resources(tmp_path):
    """The head carries its devices; each worker host maps to exactly its devices, two Nanos share a host."""
    config, _, _ = _write(tmp_path)
    head = config["head_start_ray_commands"][-1]
    assert "ray start --head" in head and json.loads(re.search(r"--resources='(\{.*\})'", head).group(1)) == {
        "device:gpu0": 1.0
    }
    worker = config["worker_start_ray_commands"][-1]
    assert _resources(worker) == {
        "10.0.0.11": {"device:agx0": 1.0},
        "10.0.0.12": {"device:nx0": 1.0},
        "10.0.0.13": {"device:nano0": 1.0, "device:nano1": 1.0},
    }
    assert "--address=$RAY_HEAD_IP:6379" in worker


def test_token_auth_is_on_everywhere_and_the_token_stays_out_of_the_yaml(tmp_path):
    """Every start command runs with RAY_AUTH_MODE=token; the token is a 0600 file mounted on each node."""
    config, out, options = _write(tmp_path)
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert cmd.startswith("export RAY_AUTH_MODE=token;")
    token_path = tmp_path / "token"
    token = token_path.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token) and (token_path.stat().st_mode & 0o777) == 0o600
    assert config["file_mounts"]["~/.ray/auth_token"] == str(token_path.resolve())
    assert token not in out.read_text()


def test_an_existing_token_is_kept(tmp_path):
    """A token file that exists is reused, not replaced; an empty one is an error."""
    (tmp_path / "token").write_text("my-own-token\n")
    (tmp_path / "token").chmod(0o600)
    _write(tmp_path)
    assert (tmp_path / "token").read_text() == "my-own-token\n"
    (tmp_path / "token").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        _write(tmp_path)


def test_a_token_file_other_users_can_read_is_refused(tmp_path):
    from cluster.launcher import ensure_token

    path = tmp_path / "token"
    path.write_text("my-own-token\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_token(path)
    path.chmod(0o600)
    assert ensure_token(path) == "my-own-token"


def test_setup_checks_python_310_and_installs_with_system_site_packages(tmp_path):
    """Setup refuses Python < 3.10 (Ray 2.60) and keeps JetPack's TensorRT visible in the venv."""
    config, _, _ = _write(tmp_path)
    setup = "\n".join(config["setup_commands"])
    assert "(3, 10)" in setup and "--system-site-packages" in setup and "[jetson]" in setup


def test_rays_own_schema_accepts_the_config(tmp_path):
    """Ray's cluster-launcher preparation and schema validation accept the file."""
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    config, _, _ = _write(tmp_path)
    validate_config(prepare_config(config))


def test_devices_without_a_host_run_on_the_head():
    """An inventory device with no host is placed on the head node."""
    fleet = fleet_from_dict(
        {"devices": [{"name": "emu0", "kind": "jetson-nano"}, {"name": "nx0", "kind": "xavier-nx", "host": "h1"}]}
    )
    assert node_resources(fleet, "head") == {"head": {"device:emu0": 1.0}, "h1": {"device:nx0": 1.0}}
    config = launcher_config(fleet, LauncherOptions(head="head"))
    assert config["provider"]["worker_ips"] == ["h1"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("address", "expected"), [("10.0.0.13", {"device:nano0": 1.0, "device:nano1": 1.0}), ("10.9.9.9", None)]
)
def test_worker_command_picks_the_resources_of_the_node_it_runs_on(tmp_path, address, expected):
    """Run the worker start command with stand-in `hostname` and `ray`: it starts Ray with this node's
    devices, or fails loudly on a node that holds none."""
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    (bin_dir / "hostname").write_text(f"#!/bin/sh\n[ \"$1\" = -I ] && echo '{address} fe80::1' || echo jetson-node\n")
    (bin_dir / "ray").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    for f in ("hostname", "ray"):
        (bin_dir / f).chmod(0o755)
    config, _, _ = _write(tmp_path, venv=str(venv))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RAY_HEAD_IP": "10.0.0.10"}
    done = subprocess.run(
        ["bash", "-c", config["worker_start_ray_commands"][-1]], env=env, capture_output=True, text=True
    )
    if expected is None:
        assert done.returncode == 1 and "no device of the inventory" in done.stderr
    else:
        args = done.stdout.splitlines()
        assert done.returncode == 0 and args[0] == "start" and "--address=10.0.0.10:6379" in args
        assert json.loads(next(a for a in args if a.startswith("--resources=")).split("=", 1)[1]) == expected


def test_cli_writes_the_file_and_defaults_the_head_to_the_first_host(tmp_path):
    """`jetfleet cluster config` writes the file; without --head the first device's host is the head."""
    from typer.testing import CliRunner

    from jetfleet.cli import app

    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump(INVENTORY))
    out = tmp_path / "c" / "cluster.yaml"
    result = CliRunner().invoke(app, ["cluster", "config", "--inventory", str(inv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    assert config["provider"]["head_ip"] == "10.0.0.11" and (tmp_path / "c" / "cluster.token").exists()
