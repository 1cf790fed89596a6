"""Driver of tests/test_long_sleep.py, run in its own process (the test session may hold another Ray cluster).

    python tests/long_sleep_driver.py FLEET_JSON OUT_JSON

Connects to the `jetfleet up --nodes` cluster of $JETFLEET_HOME, deploys the service, sends requests the whole
time while device `fa` goes into a long sleep (drain, its node's Ray processes stopped, restarted on wake), and
writes every answer with the phase it was sent in, the scheduler's stats and what `fa` reports after it is back.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from cluster import local
from cluster.inventory import fleet_from_dict
from deployments.app import ServiceConfig, deploy

TIME_SCALE = 10.0
SLEEP_WALL_S = 8.0  # past half the 10 s health-check window: a long sleep
SEND_EVERY_S = 0.1
AFTER_WAKE_S = 4.0


async def _run(svc, out: dict) -> None:
    headers = {"Authorization": f"Bearer {svc.token}"}
    body = {"model": "inceptionv3", "slo_ms": 120_000, "frames": 2, "stream": "cam"}
    phase = "before"
    sends: list[asyncio.Task] = []
    done = asyncio.Event()

    async with httpx.AsyncClient(base_url=svc.url, headers=headers, timeout=240) as client:

        async def one(sent_in: str) -> dict:
            r = await client.post("/v1/infer", json=body)
            return {"phase": sent_in, "code": r.status_code, **r.json()}

        async def sender() -> None:
            while not done.is_set():
                sends.append(asyncio.create_task(one(phase)))
                await asyncio.sleep(SEND_EVERY_S)

        async def control() -> None:
            nonlocal phase
            fa = svc.device("fa")
            out["node_before"] = await asyncio.to_thread(lambda: fa.node.remote().result(timeout_s=30))
            await asyncio.sleep(2.0)
            phase = "drain"
            change = await asyncio.to_thread(
                lambda: fa.set_power_state.remote("suspended", SLEEP_WALL_S * TIME_SCALE).result(timeout_s=30)
            )
            out["change"] = {"state": change.state, "long_sleep": change.long_sleep, "wake": list(change.wake)}
            await asyncio.sleep(1.0)  # the helper stops the node 0.5 s after the answer
            phase = "asleep"
            t_asleep = time.monotonic()
            deadline = t_asleep + SLEEP_WALL_S + 120
            while time.monotonic() < deadline:  # back when its replica answers again (Serve brought it back)
                try:
                    status = await asyncio.to_thread(lambda: fa.status.remote().result(timeout_s=3))
                    node = await asyncio.to_thread(lambda: fa.node.remote().result(timeout_s=3))
                    if node != out["node_before"]:
                        out["after"] = {"power_state": status.power_state, "node": node}
                        break
                except Exception:  # noqa: BLE001 - asleep, or its replica not placed yet
                    pass
                await asyncio.sleep(0.5)
            out["back_after_s"] = round(time.monotonic() - t_asleep, 2)
            phase = "woken"
            await asyncio.sleep(AFTER_WAKE_S)
            done.set()

        await asyncio.gather(sender(), control())
        out["answers"] = list(await asyncio.gather(*sends))


def main(fleet_json: str, out_path: str) -> int:
    state = local.running_cluster()
    assert state is not None, "no jetfleet up cluster in $JETFLEET_HOME"
    local.connect(state)
    fleet = fleet_from_dict(json.loads(fleet_json))
    config = ServiceConfig(fleet, policy="transparent", cost="oracle", time_scale=TIME_SCALE, app_name="longsleep")
    svc = deploy(config, http_port=local.free_port())
    out: dict = {}
    try:
        asyncio.run(_run(svc, out))
        out["stats"] = svc.scheduler().stats.remote().result(timeout_s=30)
    finally:
        with open(out_path, "w") as fh:
            json.dump(out, fh, default=str)
        svc.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
