"""`jetfleet up --gcs-ft`: the GCS keeps its state in Redis; ending and restarting the GCS under load loses no
request, and serving goes on (the restarted GCS reloads the cluster, Serve's application included)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cluster import gcs_ft, local
from cluster.inventory import load_fleet
from jetfleet.errors import ConfigError

N_REQUESTS = 60
SEND_OVER_S = 12.0
GCS_RESTART_AT_S = 3.0
GCS_DOWN_S = 3.0  # the GCS stays away this long: requests sent meanwhile must still be answered
SLO_MS = 3000


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:6379", gcs_ft.RedisTarget("127.0.0.1", 6379)),
        ("redis://:s3cret@redis.lan:7000", gcs_ft.RedisTarget("redis.lan", 7000, "s3cret")),
        ("redis://ray:pw@10.0.0.2:6380/", gcs_ft.RedisTarget("10.0.0.2", 6380, "pw", "ray")),
    ],
)
def test_redis_urls_name_host_port_and_credentials(url, expected):
    assert gcs_ft.parse_redis_url(url) == expected


@pytest.mark.parametrize("url", ["redis.lan", "http://redis.lan:6379", "redis://h:notaport", "redis://h:1/2"])
def test_a_malformed_redis_url_is_a_config_error(url):
    with pytest.raises(ConfigError, match="--redis"):
        gcs_ft.parse_redis_url(url)


def test_the_head_gets_redis_address_namespace_and_credentials():
    target = gcs_ft.RedisTarget("127.0.0.1", 7000, "pw", "ray")
    assert gcs_ft.head_env(target, "ns1") == {
        "RAY_REDIS_ADDRESS": "127.0.0.1:7000",
        "RAY_external_storage_namespace": "ns1",
    }
    assert gcs_ft.head_args(target) == ["--redis-password=pw", "--redis-username=ray"]
    assert gcs_ft.head_args(gcs_ft.RedisTarget("h", 1)) == []


def test_the_redis_config_keeps_its_password_private(tmp_path):
    conf = gcs_ft.write_redis_config(tmp_path / "redis", 7000, "pw")
    (tmp_path / "redis" / "appendonlydir").mkdir()  # an earlier cluster's
    conf = gcs_ft.write_redis_config(tmp_path / "redis", 7000, "pw")
    assert sorted(p.name for p in (tmp_path / "redis").iterdir()) == ["redis.conf"]
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "bind 127.0.0.1\n" in conf.read_text() and "requirepass pw\n" in conf.read_text()


def test_redis_without_gcs_ft_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="--gcs-ft"):
        local.up(load_fleet("agx"), redis_url="127.0.0.1:6379")


DEPLOY = """
import json, sys
from cluster import local
from cluster.inventory import load_fleet
from deployments.app import ServiceConfig, deploy
local.connect(local.running_cluster())
config = ServiceConfig(load_fleet("agx"), cost="oracle", time_scale=10.0)
svc = deploy(config, http_port=int(sys.argv[1]))
print(json.dumps({"url": svc.url, "token": svc.token}))
"""

SERVE_STATUS = """
import json
from ray import serve
from cluster import local
local.connect(local.running_cluster())
print(json.dumps({name: str(app.status) for name, app in serve.status().applications.items()}))
"""


def _driver(code: str, *args: str) -> str:
    """Run `code` as a Ray driver of the `jetfleet up` cluster (a child: this process may be in another cluster)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", *local.AUTH_ENV_VARS)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


async def _send_while_restarting_gcs(url: str, token: str, head_pgid: int) -> tuple[list[httpx.Response], int]:
    body = {"model": "inceptionv3", "slo_ms": SLO_MS, "frames": 1}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:

        async def send(i: int) -> httpx.Response:
            await asyncio.sleep(i * SEND_OVER_S / N_REQUESTS)
            return await client.post("/v1/infer", json=body)

        async def restart() -> int:
            await asyncio.sleep(GCS_RESTART_AT_S)
            return await asyncio.to_thread(gcs_ft.restart_gcs_server, head_pgid, down_s=GCS_DOWN_S)

        *answers, gcs_pgid = await asyncio.gather(*(send(i) for i in range(N_REQUESTS)), restart())
    return answers, gcs_pgid


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs a redis-server binary")
def test_restarting_the_gcs_under_load_loses_no_request(tmp_path, monkeypatch):
    monkeypatch.setenv("JETFLEET_HOME", str(tmp_path))
    state = local.up(load_fleet("agx"), num_cpus=2, object_store_mb=80, metrics_port=0, gcs_ft=True)
    try:
        assert state.gcs_redis and "redis" in state.nodes
        svc = json.loads(_driver(DEPLOY, str(local.free_port())))
        answers, state.nodes["gcs"] = asyncio.run(
            _send_while_restarting_gcs(svc["url"], svc["token"], state.nodes["head"])
        )
        state.save(local.state_path())  # `down` ends the restarted GCS too
        statuses = [r.status_code for r in answers]
        reasons = [r.json().get("reason") for r in answers if r.status_code != 200]
        print(f"statuses {dict((s, statuses.count(s)) for s in set(statuses))}; not 200: {reasons}")
        assert len(answers) == N_REQUESTS and set(statuses) <= {200, 429, 503}, sorted(set(statuses))
        ids = [r.json().get("request_id") for r in answers]
        assert len([i for i in ids if i is not None]) == len({i for i in ids if i is not None})
        assert statuses.count(200) >= N_REQUESTS / 2
        assert gcs_ft.gcs_server_pid(state.nodes["gcs"]) is not None and local._alive(state.nodes["head"])
        # the new GCS reloaded the cluster from Redis: Serve's application is known and running, and serves
        assert json.loads(_driver(SERVE_STATUS)) == {"jetfleet": "ApplicationStatus.RUNNING"}
        # (a lone request is served towards its deadline, the device asleep meanwhile: 60 s took 60 s here)
        after = httpx.post(
            f"{svc['url']}/v1/infer",
            json={"model": "inceptionv3", "slo_ms": 10_000, "frames": 1},
            headers={"Authorization": f"Bearer {svc['token']}"},
            timeout=60,
        )
        assert after.status_code == 200
    finally:
        stopped = local.down(state)
        shutil.rmtree(state.temp_dir, ignore_errors=True)
    assert sorted(stopped) == ["gcs", "head", "redis"]
    assert not any(local._alive(pgid) for pgid in state.nodes.values())
