"""One Ray Serve deployment per device, around `actors.device.DeviceRuntime`, and the scheduler's client to it.

Each device deployment has exactly one replica, pinned by the Ray custom resource `device:<name>` so it can
only run where the device is (on a real fleet: the Jetson that advertises it; on an emulated multi-node
fleet: that device's own Ray node). It needs no CPU reservation: the device is the resource.

    DeviceDeployment.run_batch(batch, inputs) -> BatchRun     inputs: per request an (n, 3, H, W) float32 array,
                                                             an ObjectRef to one, or None (synthetic frames)
    DeviceDeployment.set_frequency(freq_hz) -> float         only the device's own listed frequencies
    DeviceDeployment.set_power_state(state, sleep_s) -> PowerStateChange   sleep or wake; the only way to either
                                                             (no HTTP route reaches it; the scheduler calls it)
    DeviceDeployment.status() -> DeviceStatus

`ServeDeviceClient` is the scheduler's `actors.messages.DeviceClient` over a Serve handle: a replica that
died or a node that is gone becomes `DeviceUnavailableError`, which the scheduler fails over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import serve

from actors.device import BatchRun, DeviceRuntime, DeviceStatus
from actors.messages import DeviceUnavailableError, flatten_inputs
from actors.sleep_control import PowerStateChange
from cluster.inventory import DeviceSpec
from cluster.node_sleep import drain_own_node, own_emulated_node
from jetfleet.types import Batch

DEVICE_RESOURCE_PREFIX = "device:"


def device_resource(name: str) -> str:
    """The Ray custom resource that pins device `name`'s deployment: `device:<name>`."""
    return f"{DEVICE_RESOURCE_PREFIX}{name}"


def deployment_name(device: str) -> str:
    return f"device-{device}"


class DeviceDeployment:
    """The Serve deployment of one device (options are set per device by `device_app`)."""

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
        """The Ray node this replica runs on."""
        return self.node_id

    async def profile(self, model: str, freqs_hz: list[float], batches: list[int], **kw: Any) -> list[Any]:
        return await self.runtime.profile(model, freqs_hz, batches, **kw)

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


_UNAVAILABLE: tuple[type[BaseException], ...] = (ray.exceptions.RayActorError,)
try:
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    _UNAVAILABLE += (DeploymentUnavailableError, ReplicaUnavailableError)
except ImportError:  # pragma: no cover - older Serve
    pass


class ServeDeviceClient:
    """The scheduler's `DeviceClient` for one device deployment."""

    def __init__(self, name: str, handle: Any) -> None:
        self.name, self.handle = name, handle

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.handle, method).remote(*args)
        except _UNAVAILABLE as e:
            raise DeviceUnavailableError(f"device {self.name!r}: {type(e).__name__}: {e}") from None

    async def run_batch(self, batch: Batch, inputs: list[Any] | None) -> BatchRun:
        return await self._call("run_batch", batch, inputs)

    async def set_frequency(self, freq_hz: float) -> float:
        return await self._call("set_frequency", freq_hz)

    async def status(self) -> DeviceStatus:
        return await self._call("status")

    async def set_power_state(self, state: str, sleep_s: float | None = None) -> PowerStateChange:
        return await self._call("set_power_state", state, sleep_s)
