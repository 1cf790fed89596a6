"""Shared fixtures. Tests that need ../shared/data skip cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from costmodel.profiles import loudva_data_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the shared Ray cluster (directly or through another fixture) is marked `ray`."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def loudva_dir() -> Path:
    """The LoudVA measurement folder (../shared/data/loudva); skips the test when absent."""
    path = loudva_data_dir()
    if path is None:
        pytest.skip("../shared/data/loudva is not present")
    return path


@pytest.fixture(scope="session")
def ibis_dir(loudva_dir: Path) -> Path:
    """The Ibis co-location measurements (../shared/data/ibis); skips when absent."""
    path = loudva_dir.parent / "ibis"
    if not path.exists():
        pytest.skip("../shared/data/ibis is not present")
    return path


# -- the shared local Ray cluster (live-system tests) ------------------------------------------------------
# ONE cluster per test session, started on first use: a head node offering the devices of the `demo` fleet
# (device:agx0, device:nx0, device:nano0, device:nano1) and 2 CPUs, a 200 MB object store, no dashboard,
# Serve's HTTP proxy on a free port. Ray's token authentication is set explicitly (RAY_AUTH_MODE=token with
# a token of the session's own), never left to Ray 2.60's default. Tests that need a node per device add
# nodes with `ray_cluster.add_device_node(name)` and remove them when done.
RAY_HEAD_DEVICES = ("agx0", "nx0", "nano0", "nano1")


class RayTestCluster:
    """The session's Ray cluster: `cluster` (ray.cluster_utils.Cluster), `http_port`, device-node helpers."""

    def __init__(self, cluster, http_port: int) -> None:
        self.cluster, self.http_port = cluster, http_port

    def add_device_node(self, name: str):
        """A new Ray node offering only `device:<name>` (no CPU); returns its node object."""
        return self.cluster.add_node(num_cpus=0, resources={f"device:{name}": 1}, object_store_memory=80 * 2**20)

    def remove_node(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)


@pytest.fixture(scope="session")
def ray_cluster():
    """The shared local Ray cluster with Serve running (see the comment above)."""
    import os

    ray = pytest.importorskip("ray")
    from ray import serve
    from ray.cluster_utils import Cluster

    from cluster.local import AUTH_ENV_VARS, _refresh_ray_auth, enable_ray_auth, free_port, new_token

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process by another fixture")
    saved = {k: os.environ.get(k) for k in AUTH_ENV_VARS}
    enable_ray_auth(token=new_token())
    resources = {f"device:{name}": 1.0 for name in RAY_HEAD_DEVICES}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": resources,
            "object_store_memory": 200 * 2**20,
            "include_dashboard": False,
        },
    )
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    try:
        yield RayTestCluster(cluster, port)
    finally:  # the cluster goes as a whole; stopping Serve's actors first would only add noise
        ray.shutdown()
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _refresh_ray_auth()


@pytest.fixture
def clean_zoo():
    """Forget every model repository a test registered (costmodel.model_zoo's registry is process-wide)."""
    from costmodel import model_zoo

    saved = dict(model_zoo.MODELS), dict(model_zoo._ENTRIES), set(model_zoo._USED)
    yield
    for live, old in zip((model_zoo.MODELS, model_zoo._ENTRIES, model_zoo._USED), saved, strict=True):
        live.clear()
        live.update(old)
