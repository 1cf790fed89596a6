"""An HTTP load generator: replays a workload (e.g. a LoudVA scenario) against `POST /v1/infer`.

Open loop, as the cameras of a scenario are: request i is sent at `(arrival_i - arrival_0) / time_scale`
wall seconds after the start whether or not earlier requests were answered, with its SLO compressed by the
same factor (`slo_ms = slo_s / time_scale * 1000`). A service started with the same `time_scale` stretches
it back, so its policy sees the scenario's own seconds. Each request carries its frames as synthetic frames
(`"frames": n`, the emulated engines need no pixels) or, with `payload="images"`, as n small JPEG images.

    result = asyncio.run(replay(url, token, requests, time_scale=20))
    result.summary()   # answered, completed, drops by reason, % frames within SLO, client latency

Progress (sent / answered / dropped) is shown with rich while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from jetfleet.types import Request


@dataclass(slots=True)
class Sent:
    """What happened to one request of the workload."""

    index: int
    frames: int
    slo_s: float  # the workload's SLO (scenario seconds)
    http_status: int = 0  # 0: no HTTP answer (connection error, client timeout)
    status: str = ""  # the body's status: completed, dropped, failed, rejected; or "error"
    reason: str = ""
    device: str = ""
    within_slo: bool = False  # as the scheduler judged it (its arrival to its answer)
    sent_s: float = math.nan  # wall seconds since the start
    latency_s: float = math.nan  # client-side round trip, wall seconds
    energy_j: float = 0.0


@dataclass
class LoadResult:
    """Every request's record, in workload order."""

    records: list[Sent]
    time_scale: float
    wall_s: float
    lag_p99_ms: float = math.nan  # how late the generator sent requests (p99), wall ms
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts, drops by reason, % frames within SLO and client latency (in the workload's seconds)."""
        frames = sum(r.frames for r in self.records)
        done = [r for r in self.records if r.status == "completed"]
        within = sum(r.frames for r in done if r.within_slo)
        reasons: dict[str, int] = {}
        for r in self.records:
            if r.status != "completed":
                key = r.reason or r.status or "no answer"
                reasons[key] = reasons.get(key, 0) + 1
        lat = np.array([r.latency_s for r in done]) * self.time_scale
        p50, p95 = (np.percentile(lat, [50, 95]).tolist()) if len(lat) else (math.nan, math.nan)
        return {
            "requests": len(self.records),
            "frames": frames,
            "answered": sum(1 for r in self.records if r.http_status),
            "completed": len(done),
            "completed_frames": sum(r.frames for r in done),
            "frames_within_slo": within,
            "pct_frames_within_slo": 100.0 * within / frames if frames else math.nan,
            "not_completed_by_reason": reasons,
            "client_p50_latency_s": p50,
            "client_p95_latency_s": p95,
            "wall_s": self.wall_s,
            "send_lag_p99_ms": self.lag_p99_ms,
        }

    def to_rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.records]


def synthetic_jpeg(side: int = 64, seed: int = 0) -> str:
    """A small base64 JPEG (a seeded colour gradient with noise) for image payloads."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side]
    img = np.stack([x * 255 // side, y * 255 // side, (x + y) * 127 // side], axis=-1).astype(np.int16)
    img = np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode()


def request_body(r: Request, time_scale: float, payload: str = "frames", image: str | None = None) -> dict[str, Any]:
    """The JSON body of one workload request, its SLO compressed by `time_scale`."""
    body: dict[str, Any] = {
        "model": r.model,
        "slo_ms": r.slo_s / time_scale * 1e3,
        "priority": r.priority,
        "stream": r.stream,
    }
    if payload == "images":
        body["images"] = [image or synthetic_jpeg()] * r.n_frames
    else:
        body["frames"] = r.n_frames
    return body


async def replay(
    url: str,
    token: str | None,
    requests: Sequence[Request],
    *,
    time_scale: float = 1.0,
    payload: str = "frames",
    progress: bool = True,
    description: str = "replay",
    timeout_s: float | None = None,
) -> LoadResult:
    """Send `requests` to `url` (the service's base URL) open-loop, compressed by `time_scale`."""
    ordered = sorted(range(len(requests)), key=lambda i: requests[i].arrival_s)
    t_first = requests[ordered[0]].arrival_s if requests else 0.0
    records = [Sent(i, r.n_frames, r.slo_s) for i, r in enumerate(requests)]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    image = synthetic_jpeg() if payload == "images" else None
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    lags: list[float] = []
    with _Progress(len(requests), description, enabled=progress) as bar:
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=None) as client:
            t0 = time.monotonic()

            async def one(i: int) -> None:
                r, rec = requests[i], records[i]
                budget = timeout_s or max(60.0, 20 * r.slo_s / time_scale)
                rec.sent_s = time.monotonic() - t0
                try:
                    resp = await asyncio.wait_for(
                        client.post("/v1/infer", json=request_body(r, time_scale, payload, image)), budget
                    )
                except (httpx.HTTPError, asyncio.TimeoutError) as e:
                    rec.status, rec.reason = "error", f"{type(e).__name__}"
                else:
                    _record(rec, resp)
                rec.latency_s = time.monotonic() - t0 - rec.sent_s
                bar.answered(rec.status == "completed")

            tasks = []
            for i in ordered:
                due = t0 + (requests[i].arrival_s - t_first) / time_scale
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                lags.append(max(0.0, time.monotonic() - due))
                tasks.append(asyncio.create_task(one(i)))
                bar.sent()
            await asyncio.gather(*tasks)
            wall_s = time.monotonic() - t0
    lag = float(np.percentile(lags, 99) * 1e3) if lags else math.nan
    return LoadResult(records, time_scale, wall_s, lag)


def _record(rec: Sent, resp: httpx.Response) -> None:
    rec.http_status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        rec.status, rec.reason = "error", f"HTTP {resp.status_code}: not JSON"
        return
    if resp.status_code == 200:
        rec.status, rec.reason = body.get("status") or "error", body.get("reason", "")
        rec.device = body.get("device", "")
        rec.within_slo = bool(body.get("within_slo", False))
        rec.energy_j = float(body.get("energy_j") or 0.0)
    elif body.get("reason"):  # the scheduler's answer: refused at admission (429), or dropped/failed (503)
        rec.status, rec.reason = ("rejected" if resp.status_code == 429 else "dropped"), body["reason"]
    else:
        rec.status, rec.reason = "error", f"HTTP {resp.status_code}: {body.get('error', '')}"


class _Progress:
    """A rich progress bar of answered requests, with sent and not-completed counts."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.total, self.description, self.enabled = total, description, enabled
        self.n_sent = self.n_answered = self.n_failed = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent {task.fields[sent]}  not completed {task.fields[failed]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, sent=0, failed=0)
        return self

    def sent(self) -> None:
        self.n_sent += 1
        if self.enabled and self.n_sent % 10 == 0:
            self._progress.update(self._task, sent=self.n_sent)

    def answered(self, ok: bool) -> None:
        self.n_answered += 1
        self.n_failed += int(not ok)
        if self.enabled:
            self._progress.update(self._task, advance=1, sent=self.n_sent, failed=self.n_failed)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.update(self._task, sent=self.n_sent, failed=self.n_failed)
            self._progress.__exit__(*exc)
