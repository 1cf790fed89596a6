"""One Ray Serve deployment per device, around `actors.device.DeviceRuntime`, and the scheduler's client to it.

Each device deployment has exactly one replica, pinned by the Ray custom resource `device:<name>` so it can
only run where the device is (on a real fleet: the Jetson that advertises it; on an emulated multi-node
fleet: that device's own Ray node). It needs no CPU reservation: the device is the resource.

The replica keeps the device's `DeviceRuntime` in a plain Ray actor of its own (`DeviceHost`), on its node,
which dies with it. The scheduler asks the deployment for that actor once (`host()`) and then sends batches
straight to it: a plain actor call costs a fraction of a Serve handle call's CPU, and the scheduler makes one
per batch. Serve still owns the device's life: its health check pings the host, so a host that died fails
the replica and Serve restarts both; the scheduler's next probe asks the new replica for its new host.

    DeviceHost.run_batch(batch, inputs) -> BatchRun     inputs: per request an (n, 3, H, W) float32 array,
                                                       an ObjectRef to one, or None (synthetic frames)
    DeviceHost.set_frequency(freq_hz) -> float         only the device's own listed frequencies
    DeviceHost.set_power_state(state, sleep_s) -> PowerStateChange   sleep or wake; the only way to either
                                                       (no HTTP route reaches it; the scheduler calls it)
    DeviceHost.status() -> DeviceStatus

`DeviceDeployment` offers the same methods through Serve (for tools such as `actors.sweeps`) and forwards them.
`ActorDeviceClient` is the scheduler's `actors.messages.DeviceClient`: a host, replica or node that is gone
becomes `DeviceUnavailableError`, which the scheduler fails over.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ray
from ray import serve

from actors.device import BatchRun, DeviceRuntime, DeviceStatus
from actors.messages import DeviceUnavailableError, flatten_inputs
from actors.sleep_control import PowerStateChange
from cluster.inventory import DeviceSpec
from cluster.node_sleep import drain_own_node, own_emulated_node
from deployments.hosts import UNAVAILABLE, start_host
from jetfleet.types import Batch

DEVICE_RESOURCE_PREFIX = "device:"
HOST_CLOSE_TIMEOUT_S = 1.5  # within the deployment's 2 s graceful shutdown


def device_resource(name: str) -> str:
    """The Ray custom resource that pins device `name`'s deployment: `device:<name>`."""
    return f"{DEVICE_RESOURCE_PREFIX}{name}"


def deployment_name(device: str) -> str:
    return f"device-{device}"


class DeviceHost:
    """The device itself: a plain Ray actor around one `DeviceRuntime` (see the module docstring)."""

    def __init__(self, spec: dict[str, Any], speed_factor: float | None = None) -> None:
        self.spec = DeviceSpec.model_validate(spec)
        self.node_id = ray.get_runtime_context().get_node_id()
        own_node = _own_node(self.node_id, self.spec.name)
        emulated = self.spec.power_states == "emulated"
        node = own_emulated_node(self.spec.name) if own_node and emulated else None
        # Drain only a node that is the device's alone and really goes away: a real device's, or an emulated one
        # that `jetfleet up --nodes` can stop and restart (a drained node that stays would keep Serve out of it).
        leaves = own_node and (not emulated or node is not None)
        self.runtime = DeviceRuntime(
            self.spec, speed_factor=speed_factor, drain=drain_own_node if leaves else None, node=node
        )

    async def run_batch(self, batch: Batch, inputs: list[Any] | None = None) -> BatchRun:
        """Run one dispatched batch (see the module docstring for `inputs`)."""
        if inputs is not None:
            inputs = list(await asyncio.gather(*(_resolve(x) for x in inputs)))
        return await self.runtime.run_batch(batch, flatten_inputs(inputs, batch))

    async def set_frequency(self, freq_hz: float) -> float:
        return self.runtime.set_frequency(freq_hz)

    async def set_power_state(self, state: str, sleep_s: float | None = None) -> PowerStateChange:
        """Sleep or wake the device (actors.device.DeviceRuntime.set_power_state)."""
        return await self.runtime.set_power_state(state, sleep_s=sleep_s)

    async def available_frequencies_hz(self) -> list[float]:
        return self.runtime.available_frequencies_hz()

    async def status(self) -> DeviceStatus:
        return self.runtime.status()

    async def node(self) -> str:
        """The Ray node this device runs on."""
        return self.node_id

    async def profile(self, model: str, freqs_hz: list[float], batches: list[int], **kw: Any) -> list[Any]:
        return await self.runtime.profile(model, freqs_hz, batches, **kw)

    async def close(self) -> None:
        """Give the clock back to the system and release the engine (`DeviceRuntime.close`)."""
        self.runtime.close()

    def __del__(self) -> None:
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.close()


def _own_node(node_id: str, device: str) -> bool:
    """True when this Ray node is the device's alone: it offers `device:<device>` and no other device, and it is
    not the head (the controller's node)."""
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            resources = node.get("Resources", {})
            devices = [k for k in resources if k.startswith(DEVICE_RESOURCE_PREFIX)]
            return devices == [device_resource(device)] and "node:__internal_head__" not in resources
    return False


class DeviceDeployment:
    """The Serve deployment of one device (options are set per device by `device_app`): it starts the
    device's `DeviceHost` on its own node and forwards to it."""

    async def __init__(self, spec: dict[str, Any], speed_factor: float | None = None) -> None:
        self._host = start_host(DeviceHost, spec, speed_factor)
        await self._host.node.remote()  # the replica is ready once its device is

    async def host(self) -> Any:
        """The device's `DeviceHost` actor handle, for callers that want plain actor calls."""
        return self._host

    async def check_health(self) -> None:
        """Serve's health check: the device's host must answer (else Serve restarts this replica and it)."""
        await self._host.node.remote()

    async def run_batch(self, batch: Batch, inputs: list[Any] | None = None) -> BatchRun:
        return await self._host.run_batch.remote(batch, inputs)

    async def set_frequency(self, freq_hz: float) -> float:
        return await self._host.set_frequency.remote(freq_hz)

    async def set_power_state(self, state: str, sleep_s: float | None = None) -> PowerStateChange:
        return await self._host.set_power_state.remote(state, sleep_s)

    async def available_frequencies_hz(self) -> list[float]:
        return await self._host.available_frequencies_hz.remote()

    async def status(self) -> DeviceStatus:
        return await self._host.status.remote()

    async def node(self) -> str:
        """The Ray node this replica and its device run on."""
        return await self._host.node.remote()

    async def profile(self, model: str, freqs_hz: list[float], batches: list[int], **kw: Any) -> list[Any]:
        return await self._host.profile.remote(model, freqs_hz, batches, **kw)

    async def __del__(self) -> None:
        """Serve's graceful shutdown: the device gives its clock back before the host dies with this replica."""
        host = getattr(self, "_host", None)
        if host is not None:
            with contextlib.suppress(Exception):  # a host that is gone already has nothing to give back
                await asyncio.wait_for(host.close.remote(), HOST_CLOSE_TIMEOUT_S)


async def _resolve(x: Any) -> Any:
    if isinstance(x, ray.ObjectRef):
        return await x
    return x


def device_app(spec: DeviceSpec, speed_factor: float | None = None) -> Any:
    """The bound Serve deployment of one device: one replica, pinned by `device:<name>`, no CPU reserved."""
    deployment = serve.deployment(DeviceDeployment).options(
        name=deployment_name(spec.name),
        num_replicas=1,
        max_ongoing_requests=64,
        health_check_period_s=2.0,
        health_check_timeout_s=10.0,
        graceful_shutdown_timeout_s=2.0,
        logging_config={"enable_access_log": False},  # called once per batch, by the scheduler only
        ray_actor_options={"num_cpus": 0, "resources": {device_resource(spec.name): 1}},
    )
    return deployment.bind(spec.model_dump(mode="json"), speed_factor)


class ActorDeviceClient:
    """The scheduler's `DeviceClient` for one device: plain actor calls to the device's `DeviceHost`, whose
    handle it asks the device deployment for once, and again after the host was lost."""

    def __init__(self, name: str, handle: Any) -> None:
        self.name, self.handle = name, handle
        self._host: Any = None

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            if self._host is None:
                self._host = await self.handle.host.remote()
            return await getattr(self._host, method).remote(*args)
        except UNAVAILABLE as e:
            self._host = None  # the replica may come back with a new host: ask again next time
            raise DeviceUnavailableError(f"device {self.name!r}: {type(e).__name__}: {e}") from None

    async def run_batch(self, batch: Batch, inputs: list[Any] | None) -> BatchRun:
        return await self._call("run_batch", batch, inputs)

    async def set_frequency(self, freq_hz: float) -> float:
        return await self._call("set_frequency", freq_hz)

    async def status(self) -> DeviceStatus:
        return await self._call("status")

    async def set_power_state(self, state: str, sleep_s: float | None = None) -> PowerStateChange:
        return await self._call("set_power_state", state, sleep_s)
