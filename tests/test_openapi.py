"""The HTTP API's OpenAPI schema without Ray (issue 12, finding 8): valid by a validator, every `$ref` resolves
(the request body referred to a missing `#/$defs/TensorIn`), the one-of rule and the error format stated."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def spec() -> dict:
    from deployments.ingress import api

    return api.openapi()


def test_the_schema_is_valid_openapi(spec):
    from openapi_spec_validator import validate

    validate(spec)


def test_every_ref_points_at_a_component(spec):
    text = json.dumps(spec)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert refs and all(ref.startswith("#/components/schemas/") for ref in refs), refs
    assert {ref.rsplit("/", 1)[1] for ref in refs} <= set(spec["components"]["schemas"])


def test_the_request_body_states_exactly_one_of_images_tensors_frames(spec):
    body = spec["paths"]["/v1/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert request["oneOf"] == [{"required": ["images"]}, {"required": ["tensors"]}, {"required": ["frames"]}]
    assert request["properties"]["slo_ms"]["type"] == "number" and request["additionalProperties"] is False


def test_every_error_status_is_documented_with_the_error_format(spec):
    responses = spec["paths"]["/v1/infer"]["post"]["responses"]
    assert {"400", "401", "403", "404", "408", "413", "422", "429", "503"} <= set(responses)
    for code in ("400", "408", "413", "429", "503"):
        assert responses[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert {"error", "status", "request_id"} <= set(spec["components"]["schemas"]["ErrorBody"]["required"])
