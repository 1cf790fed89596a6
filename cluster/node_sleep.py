"""Sleeping with Ray, not against it: draining a node before a long sleep, and the emulated node's suspend.

A long sleep (cluster.health: longer than half Ray's health-check window, or of unknown length) drains the node
first (`drain_own_node`: the GCS DrainNode call `ray drain-node` and autoscaler v2 make), so Ray and Serve expect
it to go; the node then sleeps, and on wake its `ray start` rejoins the cluster (on a Jetson: the systemd unit of
docs/real-jetsons.md) and Serve starts the device's replica there again (it is pinned by `device:<name>`, which
only that node offers). A short sleep stays inside the window and drains nothing.

The emulated multi-node cluster (`jetfleet up --nodes`) exercises that path for real: a device actor on its own
node hands `suspend_emulated_node` the sleep, and a detached helper (`python -m cluster.node_sleep`) ends the
node's Ray processes, waits the sleep out, and runs the node's own `ray start` command again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from cluster.local import _agent_ports, _alive, _killpg, jetfleet_home, state_path
from jetfleet.errors import DeviceError

DRAIN_REASON = "DRAIN_NODE_REASON_PREEMPTION"  # IDLE_TERMINATION is refused while the device replica runs there


def drain_own_node(deadline_s: float, message: str) -> None:
    """Ask the GCS to drain the Ray node this process runs on, to be gone within `deadline_s` (DrainNode)."""
    import ray
    from ray.core.generated import autoscaler_pb2

    worker = ray._private.worker.global_worker
    node_id = ray.get_runtime_context().get_node_id()
    accepted, why = worker.gcs_client.drain_node(
        node_id,
        autoscaler_pb2.DrainNodeReason.Value(DRAIN_REASON),
        message,
        int(time.time() * 1000 + deadline_s * 1000),
    )
    if not accepted:
        raise DeviceError(f"Ray refused to drain node {node_id}: {why}")


@dataclass(frozen=True)
class EmulatedNode:
    """A `jetfleet up --nodes` device node: its process group, and the `ray start` command and environment."""

    device: str
    pgid: int
    command: tuple[str, ...]
    env: dict[str, str]


def own_emulated_node(device: str, pid: int | None = None, proc: Path = Path("/proc")) -> EmulatedNode | None:
    """The emulated node of `device` this process runs in, when it is one: an ancestor (the raylet's parent) is
    the `ray start --block` offering only `device:<device>` that `jetfleet up --nodes` started as the leader of
    its own process group. None otherwise (a shared node, a real device, a test cluster)."""
    pid = os.getpid() if pid is None else pid
    for _ in range(8):
        node = _node_of(device, pid, proc)
        if node is not None:
            return node
        pid = _parent(pid, proc)
        if pid <= 1:
            return None
    return None


def _parent(pid: int, proc: Path) -> int:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state letter, past the command's ")"


def _node_of(device: str, pid: int, proc: Path) -> EmulatedNode | None:
    try:
        cmd = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        env_raw = (proc / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    args = tuple(a.decode(errors="replace") for a in cmd if a)
    resources = [a for a in args if a.startswith("--resources=")]
    if "start" not in args or "--block" not in args or "--head" in args or not resources:
        return None
    try:
        if json.loads(resources[0].split("=", 1)[1]) != {f"device:{device}": 1}:
            return None
    except ValueError:
        return None
    env = dict(e.decode(errors="replace").split("=", 1) for e in env_raw if b"=" in e)
    return EmulatedNode(device, pid, args, env)


def suspend_emulated_node(node: EmulatedNode, sleep_s: float, *, delay_s: float = 0.5) -> None:
    """Detach the helper that stops `node`'s Ray processes after `delay_s` and starts them again `sleep_s` later.

    The helper is orphaned at once (`sh -c '... &'`): Ray kills a worker's child processes when the worker exits,
    and this worker exits when its node stops."""
    spec = json.dumps({"device": node.device, "pgid": node.pgid, "command": node.command, "env": node.env})
    helper = [sys.executable, "-m", "cluster.node_sleep", "--sleep-s", str(sleep_s), "--delay-s", str(delay_s)]
    subprocess.run(
        ["sh", "-c", '"$@" </dev/null >/dev/null 2>&1 &', "sh", *helper, "--spec", spec],
        env=node.env,
        cwd=str(Path(__file__).resolve().parents[1]),
        start_new_session=True,
        check=True,
    )


def _restart_command(command: tuple[str, ...]) -> list[str]:
    """The node's command with fresh agent ports (the old ones may linger a moment after the old processes)."""
    fresh = {a.split("=", 1)[0]: a for a in _agent_ports()}
    return [fresh.get(a.split("=", 1)[0], a) for a in command]


def _sleep_node(node: EmulatedNode, sleep_s: float, delay_s: float) -> int:
    time.sleep(delay_s)
    _killpg(node.pgid, signal.SIGKILL)  # the machine goes to sleep: its processes stop answering at once
    deadline = time.monotonic() + 10
    while _alive(node.pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(sleep_s)
    os.environ.update(node.env)
    path = state_path()
    head = json.loads(path.read_text()).get("nodes", {}).get("head") if path.exists() else None
    if head is None or not _alive(int(head)):
        return 0  # `jetfleet down` ended the cluster meanwhile: nothing to rejoin
    log = jetfleet_home() / f"node-{node.device}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:  # on wake: the resume hook's `ray start` (systemd unit on a Jetson)
        proc = subprocess.Popen(
            _restart_command(node.command), env=node.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    state = json.loads(path.read_text())  # `jetfleet down` must end the new process group, not the old one
    if state.get("nodes", {}).get(node.device) == node.pgid:
        state["nodes"][node.device] = proc.pid
        path.write_text(json.dumps(state, indent=2) + "\n")
    return proc.pid


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    sleep_s: float = typer.Option(..., "--sleep-s", min=0.0, help="how long the node stays down"),
    spec: str = typer.Option(..., "--spec", help="the EmulatedNode as JSON"),
    delay_s: float = typer.Option(0.5, "--delay-s", min=0.0, help="wait this long before stopping the node"),
) -> None:
    """Emulated suspend of a `jetfleet up --nodes` device node (the detached helper `suspend_emulated_node` starts)."""
    raw = json.loads(spec)
    node = EmulatedNode(raw["device"], int(raw["pgid"]), tuple(raw["command"]), dict(raw["env"]))
    _sleep_node(node, sleep_s, delay_s)


if __name__ == "__main__":
    app()
