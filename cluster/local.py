"""Local Ray clusters for an emulated fleet, with Ray's token authentication on, on purpose.

Two shapes:

- *one node* (`start_in_process`, and `jetfleet up` without `--nodes`): a single Ray node that advertises
  every device's custom resource `device:<name>`, so each device deployment can only land on it;
- *one node per device* (`jetfleet up --nodes`, and the tests' `ray.cluster_utils.Cluster`): a head node
  for the controller (Serve, the scheduler, the ingress) with no device resource, and one Ray node per
  device advertising only `device:<name>`: a real multi-node cluster on one machine, so a device's node
  can be killed.

Token authentication. Ray 2.60 turns token authentication on by itself when `ray.init()` starts a local
cluster and `RAY_AUTH_MODE` is unset, generating `~/.ray/auth_token` if there is none (docs.ray.io
"Ray token authentication"; `ray/_private/authentication/authentication_token_setup.py`). jetfleet never
leaves that to chance: it sets `RAY_AUTH_MODE=token` itself, with its own token (`RAY_AUTH_TOKEN` in a
process, or `RAY_AUTH_TOKEN_PATH` pointing at `~/.jetfleet/ray_token` for `jetfleet up`), before any Ray
process starts; every node, worker, `ray job submit` and `ray.init(address=...)` then uses that token.

`jetfleet up` starts `ray start --block` processes (the head without `--block` under `--gcs-ft`: see
`cluster.gcs_ft`) in their own sessions and records them in
`~/.jetfleet/cluster.json` (or `$JETFLEET_HOME`); `jetfleet down` ends exactly those process groups. It
never runs `ray stop`, which would end every Ray process of the user, other clusters included. Its head
exports Prometheus metrics on a fixed port (`--metrics-port`, default 8080) that a scrape config can name;
`metrics_url()` finds the head's port on any connected cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.health import RAY_HEALTH_CHECK_ENV
from cluster.inventory import Fleet
from jetfleet.errors import ConfigError, JetfleetError

DEVICE_RESOURCE_PREFIX = "device:"
AUTH_ENV_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
DEFAULT_METRICS_PORT = 8080  # `jetfleet up`'s Prometheus scrape port (Ray's --metrics-export-port)


def jetfleet_home() -> Path:
    """Where `jetfleet up` keeps its state and token: $JETFLEET_HOME or ~/.jetfleet."""
    return Path(os.environ.get("JETFLEET_HOME", Path.home() / ".jetfleet"))


def device_resources(fleet: Fleet) -> dict[str, float]:
    """`{"device:<name>": 1}` for every device of the fleet."""
    return {f"{DEVICE_RESOURCE_PREFIX}{d.name}": 1.0 for d in fleet.devices}


def new_token() -> str:
    """A fresh random token (Ray's cluster token or the HTTP API's bearer token)."""
    return secrets.token_hex(32)


def enable_ray_auth(token: str | None = None, token_path: str | Path | None = None) -> dict[str, str]:
    """Turn Ray's token authentication on in this process (and the processes it starts) with this token.

    Call it before `ray.init` / `ray start`. Returns the environment it set. Ray caches its config and the
    token in C++; both are refreshed so that a process that already imported Ray sees the change."""
    if (token is None) == (token_path is None):
        raise ConfigError("enable_ray_auth: give exactly one of token or token_path")
    env = {"RAY_AUTH_MODE": "token"}
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    else:
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
        os.environ.pop("RAY_AUTH_TOKEN", None)
    os.environ.update(env)
    _refresh_ray_auth()
    return env


def _refresh_ray_auth() -> None:
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # pragma: no cover - a Ray without token auth
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_on_loopback() -> None:
    """Make the one-node cluster this process is about to start use 127.0.0.1 as its node address, so the
    ports Ray binds to the node address (the metrics export, dashboard agent and runtime-env agent ports) listen
    on the loopback only. On Linux Ray replaces 127.0.0.1 by the machine's reachable address unless clusters are
    disabled (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the setting Ray uses on macOS and Windows); jetfleet sets it
    only for clusters no other node joins. GCS and raylet still listen on every interface (Ray offers no
    setting for them): docs/live-system.md lists what a real cluster must firewall."""
    os.environ.update(LOOPBACK_ENV)
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - a Ray without this module reads the environment only
        return
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import; this process may have imported Ray already


def start_in_process(
    fleet: Fleet,
    *,
    token: str | None = None,
    num_cpus: int = 2,
    object_store_mb: int = 200,
    include_dashboard: bool = False,
) -> str:
    """`ray.init()` a one-node local cluster holding every device's resource, token auth on, node ports on the
    loopback (`keep_on_loopback`); returns the token. Used by `jetfleet demo` / `jetfleet serve` when no
    `jetfleet up` cluster is running."""
    import ray

    token = token or new_token()
    enable_ray_auth(token)
    for key, value in RAY_HEALTH_CHECK_ENV.items():  # the GCS this starts reads them (cluster.health: why)
        os.environ.setdefault(key, value)
    keep_on_loopback()
    ray.init(
        num_cpus=num_cpus,
        resources=device_resources(fleet),
        object_store_memory=object_store_mb * 2**20,
        include_dashboard=include_dashboard,
        log_to_driver=False,
        logging_level="warning",
        configure_logging=True,
    )
    return token


# -- jetfleet up / down ---------------------------------------------------------------------------------
@dataclass
class ClusterState:
    """What `jetfleet up` started; `jetfleet down` reads it back."""

    fleet: str
    address: str  # GCS address, for ray.init(address=...)
    dashboard_url: str  # for `ray job submit --address`
    token_path: str
    metrics_url: str = ""  # the head's Prometheus scrape URL (Ray's metrics export port)
    nodes: dict[str, int] = field(default_factory=dict)  # node label ("head", device name) -> process group id
    per_device_nodes: bool = False
    temp_dir: str = ""
    gcs_redis: str = ""  # with --gcs-ft: the Redis (host:port) the GCS keeps its state in

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a jetfleet cluster state file: {e}") from None


def state_path() -> Path:
    return jetfleet_home() / "cluster.json"


def running_cluster() -> ClusterState | None:
    """The cluster `jetfleet up` started, when its head process still runs."""
    path = state_path()
    if not path.exists():
        return None
    state = ClusterState.load(path)
    head = state.nodes.get("head")
    return state if head is not None and _alive(head) else None


def connect(state: ClusterState) -> None:
    """`ray.init` this process into a `jetfleet up` cluster, with its token."""
    import ray

    enable_ray_auth(token_path=state.token_path)
    ray.init(address=state.address, log_to_driver=False, logging_level="warning", _temp_dir=state.temp_dir or None)


def up(
    fleet: Fleet,
    *,
    per_device_nodes: bool = False,
    num_cpus: int = 2,
    object_store_mb: int = 200,
    metrics_port: int = DEFAULT_METRICS_PORT,
    gcs_ft: bool = False,
    redis_url: str | None = None,
) -> ClusterState:
    """Start a detached local Ray cluster for `fleet` (see the module docstring); wait until every device's
    resource is registered. The head exports Prometheus metrics on `metrics_port` (0: a free port). With
    `gcs_ft` the GCS keeps its state in Redis (`cluster.gcs_ft`): the user's at `redis_url`, else one started
    here and recorded as node "redis" (after the head, `down` ends it too)."""
    from cluster import gcs_ft as ft

    if redis_url and not gcs_ft:
        raise ConfigError("--redis is for --gcs-ft")
    target = ft.parse_redis_url(redis_url) if redis_url else None
    if running_cluster() is not None:
        raise JetfleetError(f"a jetfleet cluster is already running ({state_path()}); run `jetfleet down` first")
    home = jetfleet_home()
    home.mkdir(parents=True, exist_ok=True)
    token_path = home / "ray_token"
    token_path.write_text(new_token())
    token_path.chmod(0o600)
    temp_dir = _ray_temp_dir(home)
    port, dash_port = free_port(), free_port()
    metrics_port = metrics_port or free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    env.pop("RAY_AUTH_TOKEN", None)
    # jobs' `python` is this environment's (Ray, jetfleet installed), whatever PATH the caller had
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # `down` sends SIGTERM; Ray 2.60 then drains a node for up to 30 s first. An emulated fleet has no traffic
    # worth draining for: a short drain keeps `jetfleet down` quick.
    env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "2")
    # the health-check window separates a short sleep from a long one (cluster.health says why it is set here)
    env.update({k: env.get(k, v) for k, v in RAY_HEALTH_CHECK_ENV.items()})
    state = ClusterState(
        fleet=fleet.name,
        address=f"127.0.0.1:{port}",
        dashboard_url=f"http://127.0.0.1:{dash_port}",
        token_path=str(token_path),
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        per_device_nodes=per_device_nodes,
        temp_dir=str(temp_dir),
    )
    head_resources = {} if per_device_nodes else device_resources(fleet)
    head = _head_command(temp_dir, port, dash_port, num_cpus, object_store_mb, head_resources)
    head.append(f"--metrics-export-port={metrics_port}")
    try:
        if gcs_ft:
            if target is None:
                target = _start_redis(state, env, home)
            env.update(ft.head_env(target, namespace=f"jetfleet-{new_token()[:12]}"))
            head += ft.head_args(target)
            state.gcs_redis = target.address
            # `ray start --block` ends the whole head when any of its processes dies, the GCS included, which
            # would defeat GCS FT; without it the head's processes outlive `ray start` in its process group
            head.remove("--block")
        state.nodes["head"] = _spawn(head, env, home / "head.log")
        if per_device_nodes:
            _wait_for_head(state, time.monotonic() + 60)
            for d in fleet.devices:
                node = _node_command(temp_dir, state.address, d.name, max(80, object_store_mb // 2))
                log = home / f"node-{d.name}.log"
                state.nodes[d.name] = _spawn(node, env, log)
                # one at a time: nodes of one machine pick their socket names by probing the same folder
                _wait_for_log(log, "Ray runtime started", state.nodes[d.name], time.monotonic() + 90)
        state.save(state_path())
        _wait_for_resources(state, device_resources(fleet), time.monotonic() + 120)
    except BaseException:
        down(state)
        raise
    return state


def _start_redis(state: ClusterState, env: dict[str, str], home: Path) -> Any:
    """Start a loopback-only Redis with a random password for the GCS; record it as node "redis"."""
    from cluster import gcs_ft as ft

    target = ft.RedisTarget("127.0.0.1", free_port(), password=new_token())
    conf = ft.write_redis_config(home / "redis", target.port, target.password)
    state.nodes["redis"] = _spawn([ft.redis_server_binary(), str(conf)], env, home / "redis.log")
    pgid = state.nodes["redis"]
    ft.wait_for_port(target.host, target.port, lambda: _alive(pgid), time.monotonic() + 30, "redis-server")
    return target


def _head_command(
    temp_dir: Path, port: int, dash_port: int, num_cpus: int, object_store_mb: int, resources: dict[str, float]
) -> list[str]:
    return [
        *_ray_start(temp_dir),
        "--head",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={object_store_mb * 2**20}",
        f"--resources={json.dumps(resources)}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
    ]


def _node_command(temp_dir: Path, address: str, device: str, object_store_mb: int) -> list[str]:
    """A worker node offering only `device:<device>`, no CPU."""
    return [
        *_ray_start(temp_dir),
        f"--address={address}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=0",
        f"--object-store-memory={object_store_mb * 2**20}",
        f"--resources={json.dumps({f'{DEVICE_RESOURCE_PREFIX}{device}': 1})}",
        *_agent_ports(),
    ]


def _ray_temp_dir(home: Path) -> Path:
    """A short Ray temp dir of its own per jetfleet home (Unix socket paths are limited to 107 bytes)."""
    import hashlib
    import tempfile

    digest = hashlib.sha1(str(home.resolve()).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"jetfleet-{os.getuid()}-{digest}"


def _ray_start(temp_dir: Path) -> list[str]:
    ray_bin = Path(sys.executable).with_name("ray")
    return [str(ray_bin), "start", "--block", "--disable-usage-stats", f"--temp-dir={temp_dir}"]


def _agent_ports() -> list[str]:
    """Ports of a worker node's agents, free ones, so several nodes can share one machine."""
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return proc.pid  # its own session: the pid is the process group id


def _wait_for_head(state: ClusterState, deadline: float) -> None:
    host, port = state.address.split(":")
    while time.monotonic() < deadline:
        if not _alive(state.nodes["head"]):
            raise JetfleetError(f"the Ray head exited; see {jetfleet_home() / 'head.log'}")
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.2)
    raise JetfleetError(f"the Ray head did not open {state.address} in time; see {jetfleet_home() / 'head.log'}")


def _wait_for_log(log: Path, marker: str, pgid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if marker in log.read_text(errors="replace"):
            return
        if not _alive(pgid):
            raise JetfleetError(f"a Ray node exited while starting; see {log}")
        time.sleep(0.2)
    raise JetfleetError(f"a Ray node did not start in time; see {log}")


def _wait_for_resources(state: ClusterState, wanted: dict[str, float], deadline: float) -> None:
    """Poll the cluster (in a child process, so this one stays free of Ray) until `wanted` is there."""
    code = (
        "import json, os, sys, time, ray\n"
        f"ray.init(address={state.address!r}, logging_level='error', _temp_dir={state.temp_dir!r})\n"
        f"wanted = json.loads({json.dumps(json.dumps(wanted))})\n"
        f"while time.time() < {time.time() + max(1.0, deadline - time.monotonic())}:\n"
        "    have = ray.cluster_resources()\n"
        "    if all(have.get(k, 0) >= v for k, v in wanted.items()):\n"
        "        sys.exit(0)\n"
        "    time.sleep(0.5)\n"
        "sys.exit(3)\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": state.token_path}
    env.pop("RAY_AUTH_TOKEN", None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise JetfleetError(f"the cluster did not register every device resource in time: {' '.join(tail)}")


def down(state: ClusterState | None = None, *, timeout_s: float = 40.0) -> list[str]:
    """End the process groups `jetfleet up` started (devices first, head last); remove the state file.
    Returns the labels of the nodes that were running."""
    path = state_path()
    if state is None:
        if not path.exists():
            return []
        state = ClusterState.load(path)
    # Ray first (devices, then the head), then a GCS started again on its own (the head's raylet and monitor, told
    # to stop while it was gone too, ignored SIGTERM until killed), then the Redis the GCS may still write to
    ray_nodes = sorted(
        (kv for kv in state.nodes.items() if kv[0] not in ("redis", "gcs")), key=lambda kv: kv[0] == "head"
    )
    gcs = [kv for kv in state.nodes.items() if kv[0] == "gcs"]
    redis = [kv for kv in state.nodes.items() if kv[0] == "redis"]
    stopped = _stop_groups(ray_nodes, timeout_s) + _stop_groups(gcs, timeout_s) + _stop_groups(redis, timeout_s)
    if path.exists() and ClusterState.load(path).address == state.address:
        path.unlink()
    return stopped


# A GCS started again by `gcs_ft.restart_gcs_server` was seen ignoring SIGTERM for 30 s and more (when it was told
# to stop together with the head). At `down` it has nothing left to save (its tables are in Redis, which the next
# `up` empties), so it gets this long, not `timeout_s`.
GCS_STOP_S = 5.0


def _stop_groups(nodes: list[tuple[str, int]], timeout_s: float) -> list[str]:
    """SIGTERM these process groups, SIGKILL what still runs after `timeout_s` (a restarted GCS: `GCS_STOP_S`); the
    labels that were running."""
    stopped = []
    for label, pgid in nodes:
        if _alive(pgid):
            stopped.append(label)
            _killpg(pgid, signal.SIGTERM)
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for _, p in nodes):
        if time.monotonic() - started >= GCS_STOP_S:
            for label, pgid in nodes:
                if label == "gcs" and _alive(pgid):
                    _killpg(pgid, signal.SIGKILL)
        time.sleep(0.2)
    for _, pgid in nodes:
        if _alive(pgid):
            _killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and any(_alive(p) for _, p in nodes):
        time.sleep(0.1)
    return stopped


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _alive(pgid: int) -> bool:
    """True while any process of the group still runs. Zombies do not count: where PID 1 reaps no orphans (many
    containers, CI's included), a dead child of `ray start` stays in its group as a zombie for good, and `down`
    used to wait its whole timeout for it."""
    with contextlib.suppress(ChildProcessError):  # reap the leader first when it is our own exited child
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    states = _group_states(pgid)
    return states is None or any(state != "Z" for state in states)


def _group_states(pgid: int) -> list[str] | None:
    """The states (R, S, Z, ...) of the processes in group `pgid`, read from /proc; None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    states = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid):
            states.append(fields[0])
    return states


def metrics_url() -> str | None:
    """The Prometheus scrape URL of the connected cluster's head node (where the scheduler and the ingress
    run), from Ray's own node table; None when the head exports no metrics."""
    import ray

    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}) and port:
            return f"http://{node['NodeManagerAddress']}:{port}/metrics"
    return None


def describe(state: ClusterState) -> dict[str, Any]:
    """What to print after `jetfleet up`."""
    env = f"RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={state.token_path}"
    return {
        "address": state.address,
        "dashboard": state.dashboard_url,
        "metrics": state.metrics_url,
        "nodes": sorted(state.nodes),
        "gcs_ft": f"on, state in Redis at {state.gcs_redis}" if state.gcs_redis else "off",
        "job_submit": f"{env} ray job submit --address {state.dashboard_url} --working-dir . -- "
        f"python -m workloads.experiment --fleet {state.fleet}",
    }
