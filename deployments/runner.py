"""Getting a jetfleet service to talk to, whatever is already running.

`open_service(...)` joins a Ray cluster — the one this process is already in, a Ray job's (`RAY_ADDRESS`), the
one `jetfleet up` started, or else a one-node local cluster it starts itself with Ray token authentication
on — and then uses the jetfleet application already running there (read back through its ingress) or deploys
one. On exit it removes only what it created: its application, its Serve instance and its Ray cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from cluster.inventory import Fleet, fleet_from_dict, load_fleet
from deployments.app import DEFAULT_APP, INGRESS_DEPLOYMENT, Service, ServiceConfig, _serve_port, deploy
from deployments.devices import deployment_name


@contextlib.contextmanager
def ray_session(fleet: Fleet, *, num_cpus: int = 2, object_store_mb: int = 200) -> Iterator[bool]:
    """Be connected to a Ray cluster for the duration; yields True when this call started it."""
    import ray

    from cluster.local import connect, running_cluster, start_in_process

    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # Serve's INFO lines would drown the CLI's output
    started = False
    if not ray.is_initialized():
        up_state = running_cluster()
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False, logging_level="warning")
        elif up_state is not None:
            connect(up_state)
        else:
            start_in_process(fleet, num_cpus=num_cpus, object_store_mb=object_store_mb)
            started = True
    try:
        yield started
    finally:
        if started:  # the whole cluster goes: no need to stop Serve's actors one by one first
            ray.shutdown()


def serve_running() -> bool:
    """True when the connected cluster already runs Serve."""
    from ray import serve

    try:
        serve.status()
    except Exception:  # noqa: BLE001 - RayServeException: no Serve instance on this cluster
        return False
    return True


@contextlib.contextmanager
def serve_session() -> Iterator[None]:
    """Leave Serve as found: shut it down afterwards when it was not running before."""
    from ray import serve

    was_running = serve_running()
    try:
        yield
    finally:
        if not was_running:
            with contextlib.suppress(Exception):
                serve.shutdown()


def running_service(app_name: str = DEFAULT_APP) -> Service | None:
    """The jetfleet application running on the connected cluster, or None."""
    from ray import serve

    try:
        status = serve.status().applications.get(app_name)
    except Exception:  # noqa: BLE001 - no Serve on this cluster
        return None
    if status is None or str(status.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        return None
    info = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name).service_info.remote().result(timeout_s=30)
    config = ServiceConfig(
        fleet_from_dict(info["fleet"], "<running service>"),
        time_scale=info["time_scale"],
        api_token=info["token"],
        cost=info.get("cost") or "lgbm",
        app_name=app_name,
    )
    return Service(config, f"http://127.0.0.1:{_serve_port(8000)}")


def running_device_handle(device: str, app_name: str = DEFAULT_APP) -> Any:
    """The running jetfleet service's deployment of `device` (a Serve handle), or None when there is none.
    `actors.sweeps.sweep_ray` profiles through it, so a served device is not taken from its service."""
    try:
        from ray import serve

        if app_name not in serve.status().applications:
            return None
        return serve.get_deployment_handle(deployment_name(device), app_name)
    except Exception:  # noqa: BLE001 - no Serve controller, no such app or deployment: the caller uses an actor
        return None


@contextlib.contextmanager
def open_service(
    fleet: str | Fleet,
    *,
    policy: str = "jetfleet",
    time_scale: float = 1.0,
    port: int = 0,
    api_token: str | None = None,
    events_path: str | None = None,
    cost: str = "lgbm",
) -> Iterator[Service]:
    """A jetfleet service for the duration (see the module docstring). `port` 0 picks a free one."""
    from cluster.local import free_port, new_token

    fleet_obj = fleet if isinstance(fleet, Fleet) else load_fleet(fleet)
    with ray_session(fleet_obj) as started:
        existing = running_service()
        if existing is not None:
            yield existing
            return
        config = ServiceConfig(
            fleet_obj,
            policy=policy,
            time_scale=time_scale,
            api_token=api_token or new_token(),
            events_path=events_path,
            cost=cost,
        )
        with contextlib.ExitStack() as stack:
            if not started:  # on a cluster we joined, stop the Serve we started (a new one may want another port)
                stack.enter_context(serve_session())
            service = deploy(config, http_port=port or free_port())
            try:
                yield service
            finally:
                service.delete()
