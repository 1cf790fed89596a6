"""The jetfleet Ray Serve application, built from a fleet and a policy.

    HTTP ─► Ingress (FastAPI, deployments.ingress) ─► Scheduler (actors.scheduler.LiveScheduler)
                                                          │ one client per device
                                                          ▼
                                    device-<name> (deployments.devices, pinned by `device:<name>`)

The scheduler and each device keep their state in a plain Ray actor (a "host", `deployments.hosts`) that their
Serve replica starts on its node and health-checks; the hot path (ingress -> scheduler host, once per burst of
requests; scheduler host -> device host, once per batch) makes plain actor calls, and everything else (stats,
reset, profiling) goes through the Serve handles, which forward.

`build_app(ServiceConfig)` returns the bound application; `deploy(config)` runs it with `serve.run` and
returns a `Service` (URL, token, handles). Every deployment reserves no CPU: the devices are the resources,
and the scheduler and ingress are asyncio actors that mostly wait.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ray import serve

from actors.messages import InferAnswer, InferItem
from actors.metrics import make_metrics
from actors.scheduler import LiveScheduler
from cluster.inventory import Fleet, fleet_from_dict
from costmodel.factory import make_cost_model
from deployments.devices import ActorDeviceClient, deployment_name, device_app
from deployments.hosts import start_host
from jetfleet.errors import ConfigError
from policies import planning
from policies.registry import make_policy
from policies.slo_admission import protect
from workloads.streams import EXPERIMENT_KEYS, load_stream_set

logger = logging.getLogger(__name__)

# The scheduler and the ingress reserve no CPU but must live on the head node (the controller), never on a
# device's node: a device's node may die, the control plane must not die with it.
ON_HEAD = {"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}
SCHEDULER_DEPLOYMENT = "scheduler"
SCHEDULER_CONCURRENCY = 100_000  # calls in flight at the scheduler host (a burst of requests is one)
INGRESS_DEPLOYMENT = "ingress"
DEFAULT_APP = "jetfleet"
# Serve notices a dead replica at its next health check (default every 10 s): requests arriving meanwhile wait for
# it. The scheduler is checked every second, so a scheduler restart keeps them waiting less.
SCHEDULER_HEALTH_CHECK_S = 1.0
# The scheduler and the devices are called only by jetfleet itself (once per burst of requests, once per batch);
# an access-log line per internal call costs about a quarter of the call. HTTP requests are still logged by the
# proxy and the ingress.
INTERNAL_LOGGING = {"enable_access_log": False}


@dataclass
class ServiceConfig:
    """Everything `build_app` needs. `time_scale` > 1 compresses an emulated fleet's time (demos, tests)."""

    fleet: Fleet
    policy: str = "jetfleet"
    cost: str = "lgbm"  # what policies consult: lgbm, oracle or a saved model's directory (make_cost_model)
    time_scale: float = 1.0
    api_token: str | None = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)  # None: no auth
    app_name: str = DEFAULT_APP
    route_prefix: str = "/"
    max_body_bytes: int = 32 * 2**20
    max_frames: int = 256
    body_idle_timeout_s: float = 10.0  # 408 when a client sends no body bytes for this long
    body_timeout_s: float = 60.0  # 408 when a body is not whole after this long
    pixel_budget: dict[str, int] = field(default_factory=dict)  # PixelBudget's fields; {}: its defaults
    events_path: str | None = None  # write the scheduler's decision telemetry here (JSON lines)
    device_speed_factor: float | None = None  # emulated devices' speed factor; None: time_scale (consistent time)
    streams: str | None = None  # a stream config (JSON/YAML): the policy runs under overload control with it

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ConfigError(f"time_scale must be > 0, got {self.time_scale}")
        real = [d.name for d in self.fleet.devices if d.engine != "emulated"]
        if self.time_scale != 1.0 and real:
            raise ConfigError(
                f"time_scale {self.time_scale:g} compresses emulated devices only; {real} run real engines"
            )


def build_policy(spec: str, streams_path: str | None = None) -> Any:
    """The policy `spec` under overload protection (`policies.slo_admission.protect`): with a stream config,
    overload control (priorities, bounded queues, shedding, 429s); without one, SLO-aware admission (429s) and
    early drops of hopeless requests, every request one stream class."""
    streams = None if streams_path is None else load_stream_set(streams_path, extra_keys=EXPERIMENT_KEYS)
    return protect(make_policy(spec), streams)


def cached_cost_model(spec: str, key: str | None) -> Any:
    """The cost model `spec`, fitted once per deployment: a restarted scheduler replica (same `key`, same head
    node) loads the model its predecessor fitted and saved (~0.04 s) instead of fitting it again (~3.3 s of CPU on
    the default LightGBM model), and so also decides with exactly the same model. No cache without a key."""
    import tempfile
    from pathlib import Path

    if key is None:
        return make_cost_model(spec, where="ServiceConfig.cost")
    path = Path(tempfile.gettempdir()) / "jetfleet-cost" / key
    if path.is_dir():
        with contextlib.suppress(Exception):  # an unreadable cache is refitted, never fatal
            return make_cost_model(str(path), where="the scheduler's cost-model cache")
    model = make_cost_model(spec, where="ServiceConfig.cost")
    if callable(getattr(model, "save", None)):
        with contextlib.suppress(OSError):
            staging = path.with_name(f"{key}.{secrets.token_hex(4)}")
            model.save(staging)
            staging.rename(path)
    return model


def first_request_id() -> int:
    """The first request id of a scheduler starting now: microseconds since the epoch, so the ids of a restarted
    scheduler never repeat those of the one before (while it answered fewer than a million requests a second);
    below 2**53, exact in any JSON reader."""
    return time.time_ns() // 1000


class SchedulerHost:
    """The scheduler actor: a LiveScheduler with a client per device deployment (plain Ray actor calls to
    each device's host). A plain Ray actor started by `SchedulerDeployment` (see `deployments.hosts`)."""

    def __init__(
        self,
        fleet: dict[str, Any],
        policy: str,
        cost: str,
        time_scale: float,
        events_path: str | None,
        device_handles: dict[str, Any],
        streams: str | None = None,
        cost_cache: str | None = None,
    ) -> None:
        self.fleet = fleet_from_dict(fleet, "<service fleet>")
        # Compile the planner before the replica says it is ready (see `warm_up`): measured 4.3 s idle and more
        # under load on 2 cores, during which a first decision would block every request and ping.
        logger.info("planner ready in %.2f s", planning.warm_up())
        self._writer = None
        if events_path:
            from jetfleet.telemetry import JsonlEventWriter

            self._writer = JsonlEventWriter(events_path)
        clients = {name: ActorDeviceClient(name, handle) for name, handle in device_handles.items()}
        self._cost = cached_cost_model(cost, cost_cache)
        self._cost_cache = cost_cache
        self._streams = streams
        self.scheduler = LiveScheduler(
            self.fleet,
            build_policy(policy, streams),
            self._cost,
            clients,
            time_scale=time_scale,
            sink=self._writer,
            metrics=make_metrics(True),
            first_request_id=first_request_id(),
        )

    async def submit(self, item: InferItem) -> InferAnswer:
        return await self.scheduler.submit(item)

    async def submit_many(self, items: list[InferItem]) -> AsyncIterator[list[tuple[int, InferAnswer]]]:
        """Stream (index, answer) groups as they are answered (the ingress batches its calls)."""
        async for group in self.scheduler.submit_many(items):
            yield group

    async def reset(self, policy: str) -> str:
        """Start a new run with policy `policy` (waits for open requests); returns the policy's name."""
        await self.scheduler.reset(build_policy(policy, self._streams))
        return self.scheduler.policy.name

    async def stats(self) -> dict[str, Any]:
        return self.scheduler.stats()

    async def fleet_view(self) -> dict[str, Any]:
        return {
            "fleet": self.fleet.name,
            "policy": self.scheduler.policy.name,
            "time_scale": self.scheduler.time_scale,
            "devices": self.scheduler.fleet_view(),
        }

    async def run_report(self) -> dict[str, Any]:
        return self.scheduler.run_report()

    async def models(self) -> list[str]:
        return list(self.scheduler.models)

    async def ping(self) -> str:
        self.scheduler.start()
        return "ok"

    async def shutdown(self) -> None:
        await self.scheduler.close()
        if self._writer is not None:
            self._writer.close()
        if self._cost_cache is not None:  # the app goes: no restart will need its cost model
            import shutil
            import tempfile
            from pathlib import Path

            shutil.rmtree(Path(tempfile.gettempdir()) / "jetfleet-cost" / self._cost_cache, ignore_errors=True)


class SchedulerDeployment:
    """The scheduler's Serve deployment: starts the `SchedulerHost` on its own node and forwards to it. The
    ingress asks it for the host once (`host()`) and submits requests to the host with plain actor calls."""

    async def __init__(self, *args: Any) -> None:
        self._host = start_host(SchedulerHost, *args, max_concurrency=SCHEDULER_CONCURRENCY)
        await self._host.ping.remote()

    async def host(self) -> Any:
        """The `SchedulerHost` actor handle."""
        return self._host

    async def check_health(self) -> None:
        """Serve's health check: the host must answer (else Serve restarts this replica and it)."""
        await self._host.ping.remote()

    async def submit(self, item: InferItem) -> InferAnswer:
        return await self._host.submit.remote(item)

    async def submit_many(self, items: list[InferItem]) -> AsyncIterator[list[tuple[int, InferAnswer]]]:
        async for group in self._host.submit_many.options(num_returns="streaming").remote(items):
            yield await group

    async def reset(self, policy: str) -> str:
        return await self._host.reset.remote(policy)

    async def stats(self) -> dict[str, Any]:
        return await self._host.stats.remote()

    async def fleet_view(self) -> dict[str, Any]:
        return await self._host.fleet_view.remote()

    async def run_report(self) -> dict[str, Any]:
        return await self._host.run_report.remote()

    async def models(self) -> list[str]:
        return await self._host.models.remote()

    async def ping(self) -> str:
        return await self._host.ping.remote()

    async def shutdown(self) -> None:
        await self._host.shutdown.remote()


def build_app(config: ServiceConfig) -> Any:
    """The bound Serve application: ingress -> scheduler -> one deployment per device."""
    from deployments.ingress import Ingress

    speed = config.device_speed_factor or config.time_scale
    devices = {d.name: device_app(d, speed if d.engine == "emulated" else None) for d in config.fleet.devices}
    scheduler = (
        serve.deployment(SchedulerDeployment)
        .options(
            name=SCHEDULER_DEPLOYMENT,
            num_replicas=1,
            max_ongoing_requests=100_000,
            ray_actor_options=ON_HEAD,
            logging_config=INTERNAL_LOGGING,
            health_check_period_s=SCHEDULER_HEALTH_CHECK_S,
        )
        .bind(
            config.fleet.model_dump(mode="json"),
            config.policy,
            config.cost,
            config.time_scale,
            config.events_path,
            devices,
            config.streams,
            f"{config.app_name}-{secrets.token_hex(8)}",  # this deployment's cost-model cache (see cached_cost_model)
        )
    )
    ingress_options = {
        "api_token": config.api_token,
        "max_body_bytes": config.max_body_bytes,
        "max_frames": config.max_frames,
        "body_idle_timeout_s": config.body_idle_timeout_s,
        "body_timeout_s": config.body_timeout_s,
        "pixel_budget": config.pixel_budget,
        "time_scale": config.time_scale,
        "cost": config.cost,
    }
    return Ingress.options(name=INGRESS_DEPLOYMENT, max_ongoing_requests=4096, ray_actor_options=ON_HEAD).bind(
        scheduler, config.fleet.model_dump(mode="json"), ingress_options
    )


@dataclass
class Service:
    """A running jetfleet application."""

    config: ServiceConfig
    url: str  # base URL of the HTTP API (ends without a slash)

    @property
    def token(self) -> str | None:
        return self.config.api_token

    @property
    def fleet(self) -> Fleet:
        return self.config.fleet

    @property
    def time_scale(self) -> float:
        return self.config.time_scale

    def scheduler(self) -> Any:
        """A Serve handle to the scheduler deployment."""
        return serve.get_deployment_handle(SCHEDULER_DEPLOYMENT, self.config.app_name)

    def device(self, name: str) -> Any:
        return serve.get_deployment_handle(deployment_name(name), self.config.app_name)

    def reset(self, policy: str) -> str:
        return self.scheduler().reset.remote(policy).result()

    def run_report(self) -> dict[str, Any]:
        return self.scheduler().run_report.remote().result()

    def delete(self) -> None:
        """Answer what is still queued and remove the application."""
        with contextlib.suppress(Exception):  # removing the app matters more than a clean drain
            self.scheduler().shutdown.remote().result(timeout_s=30)
        serve.delete(self.config.app_name)


def deploy(config: ServiceConfig, *, http_host: str = "127.0.0.1", http_port: int = 8000) -> Service:
    """Run the application on the connected Ray cluster (starting Serve's HTTP proxy on host:port if
    Serve is not running yet) and wait until it answers."""
    serve.start(proxy_location="HeadOnly", http_options={"host": http_host, "port": http_port})
    serve.run(build_app(config), name=config.app_name, route_prefix=config.route_prefix, blocking=False)
    deadline = time.monotonic() + 120
    handle = serve.get_deployment_handle(SCHEDULER_DEPLOYMENT, config.app_name)
    while True:
        try:
            handle.ping.remote().result(timeout_s=10)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    prefix = config.route_prefix.rstrip("/")
    return Service(config, f"http://{_serve_host(http_host)}:{_serve_port(http_port)}{prefix}")


def _serve_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _serve_port(default: int) -> int:
    """The port Serve's proxy really listens on (an already running Serve keeps its own)."""
    try:
        from ray.serve.context import _get_global_client

        return int(_get_global_client().http_config.port)
    except Exception:  # noqa: BLE001 - private API; fall back to what we asked for
        return default
