"""The one error format of the HTTP APIs (deployments.errors), on a small FastAPI app without Ray: every error
is {error, status, request_id} with no internals, and every response carries X-Request-Id."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actors.messages import InferAnswer
from deployments.errors import REQUEST_ID_HEADER, RequestIdMiddleware, install_error_handlers, new_request_id
from deployments.payload import answer_response

INTERNALS = ("Traceback", 'File "', "/work/", ".py", "at 0x", "ActorID", "pid=", "127.0.0.1", "object at")


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret at /work/main/actors/scheduler.py pid=4242 <object at 0x7f00>")

    @app.get("/items/{n}")
    async def item(n: int) -> dict:
        return {"n": n}

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _assert_error_format(response, status: int) -> dict:
    body = response.json()
    assert response.status_code == status and body["status"] == status
    assert set(body) >= {"error", "status", "request_id"} and body["request_id"] == response.headers[REQUEST_ID_HEADER]
    assert not any(word in response.text for word in INTERNALS), response.text
    return body


def test_an_unexpected_exception_is_a_json_500_without_internals_and_logged_with_its_id(client, caplog):
    with caplog.at_level(logging.ERROR, logger="ray.serve"):
        r = client.get("/boom")
    body = _assert_error_format(r, 500)
    assert body["request_id"] in body["error"]
    assert any(body["request_id"] in rec.getMessage() and rec.exc_info for rec in caplog.records)


def test_unknown_routes_methods_and_bad_path_parameters_use_the_format(client):
    _assert_error_format(client.get("/nope"), 404)
    _assert_error_format(client.post("/items/3"), 405)
    _assert_error_format(client.get("/items/three"), 422)


def test_every_response_carries_a_request_id_and_a_client_id_is_kept(client):
    assert len(client.get("/items/1").headers[REQUEST_ID_HEADER]) == 32
    mine = client.get("/nope", headers={REQUEST_ID_HEADER: "cam0-42"})  # behind Serve, its proxy echoes the header
    assert mine.json()["request_id"] == "cam0-42"


def test_request_ids_are_unique():
    assert len({new_request_id() for _ in range(1000)}) == 1000


def test_a_scheduler_drop_is_an_error_with_advice_and_the_detail_only_in_the_log(caplog):
    leak = 'failed 3 times; last: Traceback (most recent call last):\n  File "/work/x.py" ActorID(abc) pid=7'
    answer = InferAnswer(7, "dropped", "device_failed", detail=leak)
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        r = answer_response(answer, 1, 2.0, "rid-1")
    body = r.body.decode()
    assert r.status_code == 503
    assert '"reason":"device_failed"' in body and '"request_id":"rid-1"' in body and "retry" in body
    assert not any(word in body for word in INTERNALS), body
    assert any("rid-1" in rec.getMessage() and "Traceback" in rec.getMessage() for rec in caplog.records)


def test_a_refusal_is_a_429_with_retry_after_in_the_header_and_the_body():
    r = answer_response(InferAnswer(3, "rejected", "queue_full", retry_after_s=2.2), 1, 2.0, "rid-2")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert '"retry_after_s":2.2' in r.body.decode() and '"status":429' in r.body.decode()


def test_a_completed_answer_is_the_infer_response():
    r = answer_response(InferAnswer(4, "completed", device="nano0"), 2, 3.0, "rid-3")
    assert r.status_code == 200 and '"device":"nano0"' in r.body.decode()
