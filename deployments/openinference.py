"""The Open Inference Protocol (KServe v2) REST API, beside /v1 on the same ingress.

    GET  /v2/health/live                        200 while the ingress answers (no token needed)
    GET  /v2/health/ready                       200 when the scheduler answers within 2 s (no token needed)
    GET  /v2                                    server metadata
    GET  /v2/models/{model}[/versions/1]        model metadata: named, typed inputs and outputs
    GET  /v2/models/{model}[/versions/1]/ready  200 when the fleet serves the model and the scheduler answers
    POST /v2/models/{model}[/versions/1]/infer  named tensors in, named tensors out (`deployments.v2_tensors`)

Every route but the health probes needs the same bearer token as /v1. Errors are `{"error": "..."}` with a
4xx (or 503 when the fleet drops or fails the request); a request refused at admission is a 429 with
`Retry-After`, as on /v1. Infer requests go through the ingress's own submit path (its `_Submitter`, the
same admission, queue and answers as /v1).

`OpenInferenceRoutes` is a mixin for `deployments.ingress.Ingress`, which includes `router` in its FastAPI
app; it relies on the ingress's `_auth`, `_read_body`, `_make_item`, `_submitter`, `scheduler`, `models`,
`max_frames` and `max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from deployments.model_metadata import MODEL_VERSION, ModelSignature, model_signature
from deployments.payload import http_status
from deployments.v2_tensors import (
    V2Request,
    decompress,
    error_message,
    output_tensors,
    parse_infer,
    response_parameters,
)
from jetfleet.errors import PayloadError


class V2Error(BaseModel):
    """The protocol's error body."""

    error: str


def _documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "malformed request or tensors",
        401: "missing token",
        403: "wrong token",
        404: "unknown model or version",
        408: "the body did not arrive in time",
        413: "body or pixels over the limit",
        429: "refused at admission; see Retry-After",
        503: "not ready, dropped or failed; or the scheduler is down",
    }
    return {code: {"model": V2Error, "description": reasons[code]} for code in codes}


# Every status any /v2 route can answer is in the schema, so schema-driven clients and fuzzers know them.
router = APIRouter(
    prefix="/v2",
    tags=["Open Inference Protocol (KServe v2)"],
    responses=_documented(400, 401, 403, 404, 408, 413, 429, 503),
)
SERVER_NAME = "jetfleet"
SERVER_VERSION = "0.1.0"
READY_TIMEOUT_S = 2.0


def v2_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The protocol's error body: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class OpenInferenceRoutes:
    """The /v2 routes (see the module docstring), mixed into the ingress deployment."""

    # -- helpers ---------------------------------------------------------------------------------------
    def _v2_model(self, model: str, version: str | None = None) -> ModelSignature | JSONResponse:
        known: list[str] = self.models  # type: ignore[attr-defined]
        if model not in known:
            return v2_error(404, f"unknown model {model!r}; this fleet serves: {', '.join(known)}")
        if version not in (None, "", MODEL_VERSION):
            return v2_error(404, f"model {model!r} has no version {version!r}; it has {MODEL_VERSION!r}")
        return model_signature(model)

    async def _scheduler_ready(self) -> str | None:
        """None when the scheduler answers in time, else why not."""
        try:
            await asyncio.wait_for(self.scheduler.ping.remote(), READY_TIMEOUT_S)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            return f"scheduler not answering: {type(e).__name__}"
        return None

    def _v2_parse(self, raw: bytes, request: Request, signature: ModelSignature) -> V2Request:
        body = decompress(raw, request.headers.get("content-encoding"), self.max_body_bytes)  # type: ignore[attr-defined]
        header_length = request.headers.get("inference-header-content-length")
        return parse_infer(body, header_length, signature, self.max_frames)  # type: ignore[attr-defined]

    # -- health and metadata ---------------------------------------------------------------------------
    @router.get("/health/live")
    async def v2_live(self) -> Any:
        """Liveness: the ingress answers."""
        return {"live": True}

    @router.get("/health/ready")
    async def v2_ready(self) -> Any:
        """Readiness: the scheduler answers within 2 s."""
        why = await self._scheduler_ready()
        return v2_error(503, why) if why else {"ready": True}

    @router.get("")
    async def v2_server_metadata(self, request: Request) -> Any:
        """Server name, version and protocol extensions."""
        denied = self._auth(request)  # type: ignore[attr-defined]
        if denied is not None:
            return denied
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []}

    @router.get("/models/{model}")
    @router.get("/models/{model}/versions/{version}")
    async def v2_model_metadata(self, model: str, request: Request, version: str | None = None) -> Any:
        """A model's name, versions, platform and named, typed inputs and outputs."""
        denied = self._auth(request)  # type: ignore[attr-defined]
        if denied is not None:
            return denied
        signature = self._v2_model(model, version)
        if isinstance(signature, JSONResponse):
            return signature
        return {
            "name": signature.name,
            "versions": [signature.version],
            "platform": SERVER_NAME,
            "inputs": [t.to_dict() for t in signature.inputs],
            "outputs": [t.to_dict() for t in signature.outputs],
        }

    @router.get("/models/{model}/ready")
    @router.get("/models/{model}/versions/{version}/ready")
    async def v2_model_ready(self, model: str, request: Request, version: str | None = None) -> Any:
        """200 when the fleet serves the model and the scheduler answers."""
        denied = self._auth(request)  # type: ignore[attr-defined]
        if denied is not None:
            return denied
        signature = self._v2_model(model, version)
        if isinstance(signature, JSONResponse):
            return signature
        why = await self._scheduler_ready()
        return v2_error(503, why) if why else {"name": model, "ready": True}

    # -- inference -------------------------------------------------------------------------------------
    @router.post("/models/{model}/infer")
    @router.post("/models/{model}/versions/{version}/infer")
    async def v2_infer(self, model: str, request: Request, version: str | None = None) -> Any:
        """Run the input tensor's frames within `parameters.slo_ms`; answer the requested output tensors."""
        t0 = time.perf_counter()
        denied = self._auth(request)  # type: ignore[attr-defined]
        if denied is not None:
            return denied
        signature = self._v2_model(model, version)
        if isinstance(signature, JSONResponse):
            return signature
        try:
            raw = await self._read_body(request)  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()  # parse and decode in the ingress's bounded pool, never on the loop
            parsed = await loop.run_in_executor(self._decode_pool, self._v2_parse, raw, request, signature)  # type: ignore[attr-defined]
            item = self._make_item(  # type: ignore[attr-defined]
                parsed.n_frames, parsed.slo_ms / 1e3, model, parsed.priority, parsed.stream, parsed.frames
            )
        except PayloadError as e:
            return v2_error(e.status, str(e))
        try:
            answer = await self._submitter.submit(item)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - the scheduler is gone: say so, as JSON
            return v2_error(503, f"scheduler unavailable: {type(e).__name__}")
        status, headers = http_status(answer)
        if status != 200:
            return v2_error(status, error_message(answer), headers)
        body: dict[str, Any] = {
            "model_name": model,
            "model_version": signature.version,
            "parameters": response_parameters(answer, (time.perf_counter() - t0) * 1e3),
            "outputs": output_tensors(answer.outputs or [], parsed.outputs, signature),
        }
        if parsed.request_id is not None:
            body["id"] = parsed.request_id
        return JSONResponse(body)
