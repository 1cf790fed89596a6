"""Plain Ray actors that live beside a Serve replica: the replica starts its host on its own node, and the
host dies with it (an actor dies with its owner). Callers on the hot path ask the replica for the host's
handle once and then make plain actor calls, which cost a fraction of a Serve handle call's CPU; Serve still
owns the life cycle: it health-checks the replica, which pings its host, and restarts both when either died.
"""

from __future__ import annotations

from typing import Any

import ray

# A replica, its host or its node that is gone. The caller asks the replica for a new host after one of these.
UNAVAILABLE: tuple[type[BaseException], ...] = (ray.exceptions.RayActorError,)
try:
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    UNAVAILABLE += (DeploymentUnavailableError, ReplicaUnavailableError)
except ImportError:  # pragma: no cover - older Serve
    pass


def start_host(cls: type, *args: Any, max_concurrency: int = 1000) -> Any:
    """Start `cls(*args)` as a plain (async) Ray actor on the calling replica's node, no CPU reserved, up to
    `max_concurrency` calls at once; its handle."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    strategy = NodeAffinitySchedulingStrategy(node, soft=False)
    options = {"num_cpus": 0, "max_concurrency": max_concurrency, "scheduling_strategy": strategy}
    return ray.remote(cls).options(**options).remote(*args)
