"""The Ray cluster-launcher config of a real fleet: an on-prem (`provider: local`) cluster of Jetsons.

`launcher_config(fleet, LauncherOptions(head="10.0.0.10"))` returns the dict that `ray up` reads:

- `provider.head_ip` is the controller (scheduler, HTTP ingress); `provider.worker_ips` are the other
  devices' `host` fields. Devices without a `host` run on the head.
- Every node starts Ray with its own devices as custom resources, `{"device:<name>": 1}`, so a device
  actor can only land where its device is. The on-prem launcher has one worker start command for all
  workers, so that command picks the resources of the node it runs on by matching the node's addresses
  (`hostname -I`, `hostname`, `hostname -f`) against the inventory's hosts.
- Ray token authentication is on (`RAY_AUTH_MODE=token`) on every node; the token is a file mounted at
  `~/.ray/auth_token` on each node (it is never written into the YAML).
- Setup checks Python >= 3.10 (Ray 2.60 needs it: JetPack 6 has 3.10, older JetPacks need a newer Python)
  and installs the project into a venv with system site-packages (so JetPack's TensorRT is visible).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster.health import RAY_HEALTH_CHECK_ENV
from cluster.inventory import Fleet
from jetfleet.errors import ConfigError

REMOTE_TOKEN_PATH = "~/.ray/auth_token"
AUTH_ENV = "export RAY_AUTH_MODE=token"
# the GCS's node health-check window, set on purpose: it separates a short sleep from a long one (cluster.health)
HEALTH_ENV = "export " + " ".join(f"{k}={v}" for k, v in RAY_HEALTH_CHECK_ENV.items())


@dataclass(frozen=True)
class LauncherOptions:
    """How the cluster is reached and set up."""

    head: str  # the controller's address (Ray head)
    ssh_user: str = "jetson"
    ssh_private_key: str | None = None  # None: ssh-agent / default keys
    token_file: str = "ray_auth_token"  # local file holding the Ray auth token (mounted on every node)
    source_dir: str = "."  # local project checkout, mounted on every node at `remote_dir`
    remote_dir: str = "~/jetfleet"
    venv: str = "~/jetfleet-venv"
    extras: str = "jetson"  # pip extras installed on the nodes
    port: int = 6379
    dashboard_port: int = 8265


def node_resources(fleet: Fleet, head: str) -> dict[str, dict[str, float]]:
    """Host -> the Ray custom resources of the devices on it (devices without a host go on the head)."""
    by_host: dict[str, dict[str, float]] = defaultdict(dict)
    by_host[head] = {}
    for device in fleet.devices:
        by_host[device.host or head][f"device:{device.name}"] = 1.0
    return dict(by_host)


def _resources_arg(resources: dict[str, float]) -> str:
    return shlex.quote(json.dumps(resources, sort_keys=True, separators=(",", ":")))


def _venv(options: LauncherOptions) -> str:
    return f". {options.venv}/bin/activate"


def worker_start_command(resources_by_host: dict[str, dict[str, float]], options: LauncherOptions) -> str:
    """One shell command for every worker: find this node's devices by its addresses, then `ray start`."""
    cases = " ".join(
        f"{shlex.quote(host)}) RES={_resources_arg(res)};;"
        for host, res in sorted(resources_by_host.items())
        if host != options.head
    )
    return (
        f"{AUTH_ENV}; {_venv(options)}; RES=''; "
        f"for me in $(hostname -I) $(hostname) $(hostname -f); do case $me in {cases} esac; done; "
        'if [ -z "$RES" ]; then echo "jetfleet: no device of the inventory lives on this node" >&2; exit 1; fi; '
        f'ray start --address=$RAY_HEAD_IP:{options.port} --resources="$RES"'
    )


def head_start_command(resources: dict[str, float], options: LauncherOptions) -> str:
    """`ray start --head` with the head's own devices (if any) and the dashboard on all interfaces."""
    return (
        f"{AUTH_ENV}; {HEALTH_ENV}; {_venv(options)}; "
        f"ray start --head --port={options.port} --autoscaling-config=~/ray_bootstrap_config.yaml "
        f"--dashboard-host=0.0.0.0 --dashboard-port={options.dashboard_port} "
        f"--resources={_resources_arg(resources)}"
    )


def setup_commands(options: LauncherOptions) -> list[str]:
    """Check Python >= 3.10, make the venv (with JetPack's system packages), install jetfleet."""
    check = (
        "python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "
        '"jetfleet: Ray 2.60 needs Python >= 3.10 on every node (JetPack 6 has 3.10; on JetPack 5 '
        "install python3.10 and make it python3)\")'"
    )
    extras = f"[{options.extras}]" if options.extras else ""
    return [
        check,
        f"test -d {options.venv} || python3 -m venv --system-site-packages {options.venv}",
        f"{_venv(options)}; pip install -q --upgrade pip; pip install -q -e {options.remote_dir}{extras}",
    ]


def launcher_config(fleet: Fleet, options: LauncherOptions) -> dict[str, Any]:
    """The `ray up` cluster config (a plain dict) for `fleet` on real hosts."""
    resources = node_resources(fleet, options.head)
    workers = sorted(h for h in resources if h != options.head)
    auth: dict[str, Any] = {"ssh_user": options.ssh_user}
    if options.ssh_private_key:
        auth["ssh_private_key"] = options.ssh_private_key
    restart = f"{AUTH_ENV}; {_venv(options)}; ray stop"
    return {
        "cluster_name": f"jetfleet-{fleet.name}",
        "provider": {"type": "local", "head_ip": options.head, "worker_ips": workers},
        "auth": auth,
        "min_workers": len(workers),
        "max_workers": len(workers),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "file_mounts": {
            options.remote_dir: str(Path(options.source_dir).resolve()),
            REMOTE_TOKEN_PATH: str(Path(options.token_file).resolve()),
        },
        "rsync_exclude": [".venv", "**/.git", "**/__pycache__", "out", "benchmarks/out"],
        "initialization_commands": [],
        "setup_commands": setup_commands(options),
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [restart, head_start_command(resources[options.head], options)],
        "worker_start_ray_commands": [restart, worker_start_command(resources, options)],
    }


def ensure_token(path: str | Path) -> str:
    """The token in `path`, creating a fresh 256-bit one (mode 0600) when the file does not exist. An existing
    file that other users may read is refused (as ssh refuses such a key): a secret must stay private."""
    path = Path(path)
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path}: the token file is readable by other users; run `chmod 600 {path}`")
        token = path.read_text().strip()
        if not token:
            raise ConfigError(f"{path}: the token file is empty")
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def write_launcher_config(fleet: Fleet, options: LauncherOptions, out: str | Path) -> Path:
    """Write the cluster config YAML (with a header saying how to use it); make the token file if needed."""
    ensure_token(options.token_file)
    config = launcher_config(fleet, options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_workers = len(config["provider"]["worker_ips"])
    header = (
        f"# Ray cluster launcher config for jetfleet fleet {fleet.name!r} (generated by `jetfleet cluster config`).\n"
        f"#   ray up {out.name}            start the cluster (head {options.head}, {n_workers} workers)\n"
        f"#   ray down {out.name}          stop it\n"
        "# Ray token auth is on: clients need RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH="
        f"{Path(options.token_file).resolve()}\n"
        "# See docs/real-jetsons.md.\n"
    )
    out.write_text(header + yaml.safe_dump(config, sort_keys=False, width=1000))
    return out
