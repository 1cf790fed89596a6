"""Ray GCS fault tolerance for `jetfleet up --gcs-ft`: the head's GCS keeps its tables in Redis.

With it, the GCS (Ray's head-node control process) is no single point of failure for serving: while it is down,
running actors (Serve's controller, the proxies, the scheduler, the device replicas) keep answering requests;
when a GCS comes back on the same port it reloads the cluster's state from Redis and the raylets and workers
reconnect (they wait up to `RAY_gcs_rpc_server_reconnect_timeout_s`, 60 s by default).

Ray 2.60's way (docs.ray.io, "GCS fault tolerance"): `RAY_REDIS_ADDRESS=host:port ray start --head
--redis-password=... --redis-username=...`, with `RAY_external_storage_namespace` keeping clusters that share a
Redis apart. Redis is either one jetfleet starts itself (a `redis-server` binary: the PyPI `redis-server`
package's, the optional extra `gcs-ft`, or one on PATH), listening on 127.0.0.1 with a random password kept in a
0600 config file, or the user's own given by URL.

Ray restarts no GCS on a plain head node (KubeRay restarts the head pod); `restart_gcs_server` is that
supervisor's step for a `jetfleet up --gcs-ft` cluster (whose head runs without `ray start --block`, which would
end the whole head when its GCS dies): it kills the GCS and starts it again with the same command line and
environment, as Ray's own GCS FT tests do (`Node.kill_gcs_server` then `start_gcs_server`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jetfleet.errors import ConfigError, JetfleetError

REDIS_URL_FORMS = "redis://[user:password@]host:port or host:port"


@dataclass(frozen=True)
class RedisTarget:
    """Where the GCS keeps its state."""

    host: str
    port: int
    password: str = ""
    username: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_redis_url(url: str) -> RedisTarget:
    """`redis://[user:password@]host:port` or `host:port` → RedisTarget; ConfigError for anything else."""
    text = url if "://" in url else f"redis://{url}"
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "redis" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"--redis {url!r}: expected {REDIS_URL_FORMS}")
    return RedisTarget(parts.hostname, port, parts.password or "", parts.username or "")


def head_env(target: RedisTarget, namespace: str) -> dict[str, str]:
    """Environment of the head's `ray start` for a Redis-backed GCS."""
    return {"RAY_REDIS_ADDRESS": target.address, "RAY_external_storage_namespace": namespace}


def head_args(target: RedisTarget) -> list[str]:
    """`ray start --head` options for the Redis credentials (none when Redis has no password)."""
    args = [f"--redis-password={target.password}"] if target.password else []
    return args + ([f"--redis-username={target.username}"] if target.username else [])


def redis_server_binary() -> str:
    """The `redis-server` executable: the PyPI package's (extra `gcs-ft`), else one on PATH."""
    try:
        from redis_server import REDIS_SERVER_PATH  # optional extra `gcs-ft`

        return str(REDIS_SERVER_PATH)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise ConfigError(
            "--gcs-ft needs a redis-server binary: `pip install jetfleet[gcs-ft]`, a redis-server on PATH, "
            f"or your own Redis with --redis {REDIS_URL_FORMS}"
        )
    return found


def write_redis_config(folder: Path, port: int, password: str) -> Path:
    """A redis.conf (mode 0600: it holds the password) for a loopback-only Redis that persists to `folder`, emptied
    first (a new cluster starts from no state; an earlier cluster's append-only file would only pile up)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    conf = folder / "redis.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(
        f"bind 127.0.0.1\nport {port}\nrequirepass {password}\ndir {folder}\n"
        "appendonly yes\nprotected-mode yes\ndaemonize no\n"
    )
    return conf


def wait_for_port(host: str, port: int, running: Callable[[], bool], deadline: float, what: str) -> None:
    """Until `host:port` accepts connections; JetfleetError when `running()` turns False or time runs out."""
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        if not running():
            raise JetfleetError(f"{what} exited while starting")
        time.sleep(0.1)
    raise JetfleetError(f"{what} did not open {host}:{port} in time")


def gcs_server_pid(head_pgid: int) -> int | None:
    """The pid of the `gcs_server` process of a `jetfleet up` head (by process group), or None."""
    import psutil

    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == "gcs_server" and os.getpgid(proc.pid) == head_pgid:
                return proc.pid
    return None


def restart_gcs_server(head_pgid: int, *, down_s: float = 0.0) -> int:
    """Kill the head's GCS (SIGKILL: a crash), stay down `down_s`, start it again with the same command line,
    environment and folder in a session of its own. Returns the new GCS's process group id (the caller records
    it, so that `jetfleet down` ends it too)."""
    import psutil

    pid = gcs_server_pid(head_pgid)
    if pid is None:
        raise JetfleetError("no gcs_server runs in the head's process group")
    proc = psutil.Process(pid)
    cmdline, environ, cwd = proc.cmdline(), proc.environ(), proc.cwd()
    proc.kill()
    proc.wait(30)
    time.sleep(down_s)
    new = subprocess.Popen(
        cmdline, env=environ, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    return new.pid
