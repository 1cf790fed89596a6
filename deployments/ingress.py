"""The HTTP API: a FastAPI ingress on Ray Serve in front of the scheduler actor.

    POST /v1/infer    one request of one or more frames -> per-frame outputs, timing, device, clock, energy
    GET  /v1/fleet    devices: state, frequency, power, work in flight
    GET  /v1/stats    counters, drops by reason, recent latency, the current run's metrics
    GET  /healthz     liveness (no token needed)
    GET  /docs        OpenAPI documentation (no token needed)

Every /v1 route needs `Authorization: Bearer <token>` (401 without, 403 with a wrong one) unless the service
was built without a token. Bad input is a 4xx with a JSON `{"error": ...}` naming what is wrong: malformed
JSON or an undecodable image 400, unknown model 404, oversized body 413, invalid field 422. A request the
fleet refuses at admission is a 429 with `Retry-After`; one it drops or fails later is a 503 with its reason.

Requests that arrive together go to the scheduler in one streaming call (`_Submitter`), a plain Ray actor
call to the scheduler's host (`deployments.hosts`), so the ingress -> scheduler hop costs one cheap actor call
per burst instead of one Serve handle call per request.
"""

import asyncio
import hmac
import math
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from actors.messages import InferAnswer, InferItem, servable_models
from cluster.inventory import fleet_from_dict
from costmodel.model_zoo import MODELS
from deployments.hosts import UNAVAILABLE
from deployments.payload import (
    InferRequest,
    InferResponse,
    PayloadError,
    answer_body,
    decode_frames,
    http_status,
    n_frames,
    parse_request,
)

DECODE_IN_THREAD_BYTES = 256 * 1024  # decode bigger bodies off the event loop

api = FastAPI(
    title="jetfleet",
    version="0.1.0",
    description="Energy-aware, SLO-aware DNN inference on a fleet of edge GPUs. "
    "Send `Authorization: Bearer <token>` (printed by `jetfleet serve` / `jetfleet demo`).",
)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become null (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


class _Submitter:
    """Collects the requests of one event-loop turn and sends them in one streaming call to the scheduler's
    host (a plain Ray actor call; its handle is asked of the scheduler deployment once, and again after the
    host was lost)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._host: Any = None  # the scheduler host's actor handle
        self._batch: list[tuple[InferItem, asyncio.Future[InferAnswer]]] = []

    def submit(self, item: InferItem) -> asyncio.Future[InferAnswer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InferAnswer] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._flush)
        self._batch.append((item, future))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[InferItem, asyncio.Future[InferAnswer]]]) -> None:
        try:
            if self._host is None:
                self._host = await self.scheduler.host.remote()
            stream = self._host.submit_many.options(num_returns="streaming").remote([item for item, _ in batch])
            async for ref in stream:
                for index, answer in await ref:
                    if not batch[index][1].done():
                        batch[index][1].set_result(answer)
        except Exception as e:  # the scheduler is unreachable: every request of the burst fails, once
            if isinstance(e, UNAVAILABLE):
                self._host = None  # Serve restarts the scheduler with a new host: ask for it next time
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
        for _, future in batch:
            if not future.done():
                future.set_exception(RuntimeError("the scheduler closed the stream without an answer"))


@serve.deployment
@serve.ingress(api)
class Ingress:
    """The FastAPI ingress deployment (see the module docstring)."""

    def __init__(self, scheduler: Any, fleet: dict[str, Any], options: dict[str, Any]) -> None:
        self.scheduler = scheduler
        self.fleet = fleet_from_dict(fleet, "<service fleet>")
        self.models = servable_models(self.fleet)
        self.token: str | None = options.get("api_token")
        self.max_body_bytes = int(options.get("max_body_bytes", 32 * 2**20))
        self.max_frames = int(options.get("max_frames", 256))
        self.time_scale = float(options.get("time_scale", 1.0))
        self.cost = str(options.get("cost", ""))
        self._submitter = _Submitter(scheduler)
        self._fleet_dict = fleet

    async def service_info(self) -> dict[str, Any]:
        """For Ray-side tools (a handle call, not an HTTP route): fleet, time scale and the API token."""
        return {"fleet": self._fleet_dict, "time_scale": self.time_scale, "token": self.token, "cost": self.cost}

    # -- helpers ---------------------------------------------------------------------------------------
    def _auth(self, request: Request) -> JSONResponse | None:
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            message = "missing bearer token: send 'Authorization: Bearer <token>'"
            return _error(401, message, {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return _error(403, "invalid bearer token")
        return None

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadError(413, f"body of {int(declared)} bytes exceeds the {self.max_body_bytes}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise PayloadError(413, f"body exceeds the {self.max_body_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def _item(self, body: InferRequest, raw_len: int) -> InferItem:
        info = MODELS.get(body.model)
        frames = decode_frames(body, info.input_hw if info else 224)
        inputs = None
        if frames is not None:
            import ray

            inputs = ray.put(frames) if frames.nbytes > 100_000 else frames
        return InferItem(n_frames(body), body.slo_ms / 1e3, body.model, body.priority, body.stream, inputs)

    # -- routes ----------------------------------------------------------------------------------------
    @api.post(
        "/v1/infer",
        response_model=InferResponse,
        responses={
            400: {"description": "malformed JSON or undecodable image"},
            401: {"description": "missing token"},
            403: {"description": "wrong token"},
            404: {"description": "unknown model"},
            413: {"description": "payload too large"},
            422: {"description": "invalid field"},
            429: {"description": "refused at admission; see Retry-After"},
            503: {"description": "dropped or failed, with its reason"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": InferRequest.model_json_schema()}},
            }
        },
    )
    async def infer(self, request: Request) -> Any:
        """Run one request of one or more frames within `slo_ms`."""
        t0 = time.perf_counter()
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            raw = await self._read_body(request)
            body = parse_request(raw, self.models, self.max_frames)
            if len(raw) > DECODE_IN_THREAD_BYTES:
                item = await asyncio.to_thread(self._item, body, len(raw))
            else:
                item = self._item(body, len(raw))
        except PayloadError as e:
            return _error(e.status, str(e))
        try:
            answer = await self._submitter.submit(item)
        except Exception as e:  # noqa: BLE001 - the scheduler is gone: say so, as JSON
            return _error(503, f"scheduler unavailable: {type(e).__name__}: {e}")
        content = answer_body(answer, item.n_frames, (time.perf_counter() - t0) * 1e3)
        status, headers = http_status(answer)
        return JSONResponse(_clean(content), status_code=status, headers=headers)

    @api.get("/v1/fleet")
    async def fleet_view(self, request: Request) -> Any:
        """Devices: kind, state, GPU clock, power, work in flight."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        return JSONResponse(_clean(await self.scheduler.fleet_view.remote()))

    @api.get("/v1/stats")
    async def stats(self, request: Request) -> Any:
        """Counters, drops by reason, recent latency and the current run's frames/J and % within SLO."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        return JSONResponse(_clean(await self.scheduler.stats.remote()))

    @api.get("/healthz")
    async def healthz(self) -> Any:
        """200 when the scheduler answers within 2 s."""
        try:
            await asyncio.wait_for(self.scheduler.ping.remote(), 2.0)
        except Exception as e:  # noqa: BLE001
            return _error(503, f"scheduler not answering: {type(e).__name__}")
        return {"status": "ok", "fleet": self.fleet.name, "devices": len(self.fleet.devices)}
