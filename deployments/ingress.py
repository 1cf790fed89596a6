"""The HTTP API: a FastAPI ingress on Ray Serve in front of the scheduler actor.

    POST /v1/infer    one request of one or more frames -> per-frame outputs, timing, device, clock, energy
    GET  /v1/fleet    devices: state, frequency, power, work in flight
    GET  /v1/stats    counters, drops by reason, recent latency, the current run's metrics
    GET  /healthz     liveness (no token needed)
    GET  /docs        OpenAPI documentation (no token needed)
    /v2/...           the Open Inference Protocol (KServe v2), from `deployments.openinference`

Every /v1 route needs `Authorization: Bearer <token>` (401 without, 403 with a wrong one) unless the service
was built without a token. Every error is `{"error", "status", "request_id"}` (`deployments.errors`) naming what
is wrong and nothing internal: malformed JSON or an undecodable image 400, unknown model 404, a body too slow
408, an oversized body or too many pixels 413, an invalid field 422. A request the fleet refuses at admission
is a 429 with `Retry-After`; one it drops or fails later is a 503 with its `reason`; a scheduler that does not
answer (restarting) is a 503 with `Retry-After`. Every response carries `X-Request-Id`, the id under which the
service log records what the body leaves out. Bodies are parsed and images decoded in a bounded thread pool,
never on the event loop.

Requests that arrive together go to the scheduler in one streaming call (`_Submitter`), a plain Ray actor
call to the scheduler's host (`deployments.hosts`), so the ingress -> scheduler hop costs one cheap actor call
per burst instead of one Serve handle call per request.
"""

import asyncio
import dataclasses
import hmac
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from ray import serve

from actors.messages import InferAnswer, InferItem, servable_models
from cluster.inventory import fleet_from_dict
from costmodel.model_zoo import MODELS
from deployments.errors import (
    ErrorBody,
    RequestIdMiddleware,
    error_response,
    install_error_handlers,
    log_detail,
    request_id_of,
)
from deployments.openinference import OpenInferenceRoutes
from deployments.openinference import router as v2_router
from deployments.payload import (
    InferRequest,
    InferResponse,
    PayloadError,
    PixelBudget,
    answer_response,
    clean_json,
    decode_frames,
    n_frames,
    parse_request,
    read_body,
)

# A scheduler that does not answer is being restarted by Serve; restarts measured 6-11 s (issue 12).
SCHEDULER_RETRY_AFTER_S = 10
CONNECT_TIMEOUT_S = 30.0  # how long a starting ingress waits for the scheduler's host before it serves anyway
DECODE_WORKERS = max(1, min(4, (os.cpu_count() or 1) // 2))  # bounded: a burst of images cannot starve the loop

logger = logging.getLogger(__name__)

api = FastAPI(
    title="jetfleet",
    version="0.1.0",
    description="Energy-aware, SLO-aware DNN inference on a fleet of edge GPUs. "
    "Send `Authorization: Bearer <token>` (printed by `jetfleet serve` / `jetfleet demo`). "
    "Every error is `{error, status, request_id}`; every response carries `X-Request-Id`.",
)
api.add_middleware(RequestIdMiddleware)
install_error_handlers(api)
api.include_router(v2_router)


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(status, message, request_id_of(request), headers=headers)


def _openapi() -> dict[str, Any]:
    """FastAPI's schema plus the request body's models under components (the body is read by hand, so FastAPI
    does not see them): every `$ref` resolves."""
    if api.openapi_schema is None:
        schema = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
        body = InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["InferRequest"] = body
        api.openapi_schema = schema
    return api.openapi_schema


api.openapi = _openapi  # type: ignore[method-assign]

_AUTH_ERRORS = {
    401: {"model": ErrorBody, "description": "missing token"},
    403: {"model": ErrorBody, "description": "wrong token"},
}


class _Submitter:
    """Collects the requests of one event-loop turn and sends them in one streaming call to the scheduler's
    host (a plain Ray actor call; its handle is asked of the scheduler deployment once, and again after the host
    was lost).

    When the call fails before every answer came back (the scheduler died or restarted), the unanswered requests
    are sent again, with what is left of their budget, until they are answered or their deadline passes (then
    they fail, once). A request may so run twice; its future is resolved once, so it is answered once.
    """

    RETRY_PAUSE_S = 0.05  # between a failed call and its resubmission (the handle waits for a new replica)
    ANSWER_GRACE_S = 5.0  # how long past the latest deadline a call may stay open before it counts as failed
    PROBE_EVERY_S = 1.0  # while a burst waits for answers, check its scheduler host is alive this often
    PROBE_TIMEOUT_S = 5.0  # a host that does not answer a ping within this counts as gone

    def __init__(self, scheduler: Any, clock: Any = time.monotonic) -> None:
        self.scheduler = scheduler
        self._clock = clock
        self._host: Any = None  # the scheduler host's actor handle
        self._batch: list[tuple[InferItem, asyncio.Future[InferAnswer], float]] = []
        self.resubmitted = 0  # requests sent again after a failed call

    async def connect(self, timeout_s: float) -> None:
        """Ask the scheduler deployment for its host now (the first Serve handle call takes a while: measured
        0.3-0.5 s on a busy machine, which a 100 ms request would spend waiting); on failure, the first submit
        asks again."""

        async def ask() -> Any:
            return await self.scheduler.host.remote()

        try:
            self._host = await asyncio.wait_for(ask(), timeout_s)
        except Exception as e:  # noqa: BLE001 - not fatal: the scheduler may still be starting
            logger.warning("scheduler host not known yet (%s: %s); asking on the first request", type(e).__name__, e)

    def submit(self, item: InferItem) -> asyncio.Future[InferAnswer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InferAnswer] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._flush)
        self._batch.append((item, future, self._clock() + item.slo_s))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[InferItem, asyncio.Future[InferAnswer], float]]) -> None:
        waiting = [entry for entry in batch if not entry[1].done()]
        pause_s = self.RETRY_PAUSE_S
        while waiting:
            error = await self._call(waiting) or RuntimeError("the scheduler closed the stream without an answer")
            waiting = [entry for entry in waiting if not entry[1].done()]
            now = self._clock()
            for _, future, deadline in waiting:
                if deadline <= now + pause_s:  # no budget left for another try: fail it, once
                    future.set_exception(error)
            waiting = [entry for entry in waiting if not entry[1].done()]
            if waiting:
                self.resubmitted += len(waiting)
                await asyncio.sleep(pause_s)
                pause_s = min(2 * pause_s, 1.0)
                now = self._clock()
                waiting = [(dataclasses.replace(it, slo_s=deadline - now), f, deadline) for it, f, deadline in waiting]

    async def _call(self, entries: list[tuple[InferItem, asyncio.Future[InferAnswer], float]]) -> Exception | None:
        """One streaming call for `entries`; resolves the futures of the answers that came back. Returns the
        error that ended it early (None when the stream ended normally). Bounded by the latest deadline plus
        `ANSWER_GRACE_S`: the scheduler answers every request by its deadline, so a call still open after that
        is waiting on a scheduler that is gone (or on Serve, for a replica that is not back yet)."""
        budget_s = max(deadline for _, _, deadline in entries) - self._clock() + self.ANSWER_GRACE_S
        try:
            await asyncio.wait_for(self._stream_answers(entries), max(budget_s, self.ANSWER_GRACE_S))
        except Exception as e:  # noqa: BLE001 - the scheduler is gone or restarting: the caller resubmits
            # Ask the deployment for its host again before the retry: after a restart it is a new actor (one
            # extra handle call per failed burst, so no need to tell UNAVAILABLE from other failures here).
            self._host = None
            return e if not isinstance(e, asyncio.TimeoutError) else RuntimeError("the scheduler did not answer")
        return None

    async def _stream_answers(self, entries: list[tuple[InferItem, asyncio.Future[InferAnswer], float]]) -> None:
        items = [item for item, _, _ in entries]
        if self._host is None:
            self._host = await self.scheduler.host.remote()  # waits while Serve restarts the scheduler
            # Each request goes with what is left of its budget *now*: asking for the host may have waited seconds
            # for a restarted replica, and a scheduler told the full SLO would serve late what it thinks is on time.
            now = self._clock()
            for _, future, deadline in entries:
                if deadline <= now and not future.done():
                    future.set_exception(RuntimeError("the deadline passed while the scheduler was unavailable"))
            entries = [entry for entry in entries if not entry[1].done()]
            items = [dataclasses.replace(item, slo_s=deadline - now) for item, _, deadline in entries]
        if not entries:
            return
        host = self._host
        stream = host.submit_many.options(num_returns="streaming").remote(items)
        answers = stream.__aiter__()
        while True:
            ref = await self._next_or_dead(answers, host)
            if ref is None:
                return
            for index, answer in await ref:
                if not entries[index][1].done():
                    entries[index][1].set_result(answer)

    async def _next_or_dead(self, answers: Any, host: Any) -> Any:
        """The stream's next group (None at its end). A streaming call to a host that died does not always fail:
        while waiting, ping the host every `PROBE_EVERY_S`; a ping that fails raises, and the burst is resubmitted."""
        waiting = asyncio.ensure_future(answers.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=self.PROBE_EVERY_S)
                if done:
                    return waiting.result()
                try:  # a host that died fails the ping at once (RayActorError): that ends the call
                    await asyncio.wait_for(host.ping.remote(), self.PROBE_TIMEOUT_S)
                except asyncio.TimeoutError:
                    continue  # busy, not gone (e.g. compiling the planner on its first decision): keep waiting
        except StopAsyncIteration:
            return None
        finally:
            if not waiting.done():
                waiting.cancel()


@serve.deployment
@serve.ingress(api)
class Ingress(OpenInferenceRoutes):
    """The FastAPI ingress deployment (see the module docstring)."""

    async def __init__(self, scheduler: Any, fleet: dict[str, Any], options: dict[str, Any]) -> None:
        self.scheduler = scheduler
        self.fleet = fleet_from_dict(fleet, "<service fleet>")
        self.models = servable_models(self.fleet)
        self.token: str | None = options.get("api_token")
        self.max_body_bytes = int(options.get("max_body_bytes", 32 * 2**20))
        self.max_frames = int(options.get("max_frames", 256))
        self.body_idle_timeout_s = float(options.get("body_idle_timeout_s", 10.0))
        self.body_timeout_s = float(options.get("body_timeout_s", 60.0))
        self.pixels = PixelBudget(**options.get("pixel_budget", {}))
        self.time_scale = float(options.get("time_scale", 1.0))
        self.cost = str(options.get("cost", ""))
        self._submitter = _Submitter(scheduler)
        self._fleet_dict = fleet
        self._decode_pool = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode")
        await self._submitter.connect(CONNECT_TIMEOUT_S)

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
            return _error(request, 401, message, {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return _error(request, 403, "invalid bearer token")
        return None

    async def _read_body(self, request: Request) -> bytes:
        """The body, within the size limit and the read timeouts (413, 408): every route that reads one."""
        return await read_body(
            request.stream(),
            request.headers.get("content-length"),
            self.max_body_bytes,
            idle_timeout_s=self.body_idle_timeout_s,
            total_timeout_s=self.body_timeout_s,
        )

    def _item(self, raw: bytes) -> InferItem:
        """Parse and decode a body (in the decode pool: never on the event loop)."""
        body = parse_request(raw, self.models, self.max_frames)
        info = MODELS.get(body.model)
        frames = decode_frames(body, info.input_hw if info else 224, self.pixels)
        return self._make_item(n_frames(body), body.slo_ms / 1e3, body.model, body.priority, body.stream, frames)

    def _make_item(self, n: int, slo_s: float, model: str, priority: int, stream: str, frames: Any | None) -> InferItem:
        """The scheduler's item for decoded frames (big ones travel through the object store)."""
        inputs = None
        if frames is not None:
            import ray

            inputs = ray.put(frames) if frames.nbytes > 100_000 else frames
        return InferItem(n, slo_s, model, priority, stream, inputs)

    # -- routes ----------------------------------------------------------------------------------------
    @api.post(
        "/v1/infer",
        response_model=InferResponse,
        responses={
            400: {"model": ErrorBody, "description": "malformed JSON or undecodable image"},
            **_AUTH_ERRORS,
            404: {"model": ErrorBody, "description": "unknown model"},
            408: {"model": ErrorBody, "description": "the body did not arrive in time"},
            413: {"model": ErrorBody, "description": "body too large, or images over the pixel budget"},
            422: {"model": ErrorBody, "description": "invalid field"},
            429: {"model": ErrorBody, "description": "refused at admission; see Retry-After"},
            503: {"model": ErrorBody, "description": "dropped or failed, with its reason; or the scheduler is down"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}},
            }
        },
    )
    async def infer(self, request: Request) -> Any:
        """Run one request of one or more frames within `slo_ms`. Give exactly one of `images`, `tensors`
        or `frames`."""
        t0 = time.perf_counter()
        rid = request_id_of(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            raw = await self._read_body(request)
            item = await asyncio.get_running_loop().run_in_executor(self._decode_pool, self._item, raw)
        except PayloadError as e:
            if e.__cause__ is not None:
                log_detail(rid, f"refused with {e.status}", repr(e.__cause__))
            return error_response(e.status, str(e), rid)
        try:
            answer = await self._submitter.submit(item)
        except Exception as e:  # noqa: BLE001 - the scheduler is gone: say so, as JSON, and log why
            log_detail(rid, "scheduler call failed", f"{type(e).__name__}: {e}")
            message = f"the scheduler is unavailable (restarting); retry after {SCHEDULER_RETRY_AFTER_S} s"
            headers = {"Retry-After": str(SCHEDULER_RETRY_AFTER_S)}
            return error_response(503, message, rid, headers=headers, retry_after_s=SCHEDULER_RETRY_AFTER_S)
        return answer_response(answer, item.n_frames, (time.perf_counter() - t0) * 1e3, rid)

    @api.get("/v1/fleet", responses=_AUTH_ERRORS)
    async def fleet_view(self, request: Request) -> Any:
        """Devices: kind, state, GPU clock, power, work in flight."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        return JSONResponse(clean_json(await self.scheduler.fleet_view.remote()))

    @api.get("/v1/stats", responses=_AUTH_ERRORS)
    async def stats(self, request: Request) -> Any:
        """Counters, drops by reason, recent latency and the current run's frames/J and % within SLO."""
        denied = self._auth(request)
        if denied is not None:
            return denied
        return JSONResponse(clean_json(await self.scheduler.stats.remote()))

    @api.get("/healthz", responses={503: {"model": ErrorBody, "description": "the scheduler is not answering"}})
    async def healthz(self, request: Request) -> Any:
        """200 when the scheduler answers within 2 s."""
        try:
            await asyncio.wait_for(self.scheduler.ping.remote(), 2.0)
        except Exception as e:  # noqa: BLE001
            log_detail(request_id_of(request), "health check failed", f"{type(e).__name__}: {e}")
            headers = {"Retry-After": str(SCHEDULER_RETRY_AFTER_S)}
            return _error(request, 503, "the scheduler is not answering", headers)
        return {"status": "ok", "fleet": self.fleet.name, "devices": len(self.fleet.devices)}
