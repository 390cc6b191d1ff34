"""The API Gateway side of ``POST /v1/messages``: request model and gateway responses, in one place.

Read by the Pulumi program (``infra/components/api.py``: the ``SendMessageRequest`` model and the
gateway responses) and by any local stand-in for API Gateway (``rotation/dev/gateway.py``), so
both apply the same JSON schema and answer refusals in the same format as the Lambda handler::

    {"error": {"reason": "<code>", "field": "<JSON path or header>", "message": "<text>"}}

- :data:`REQUEST_MODEL_PATH` (``request_model.json``): the JSON schema (draft-04, the draft API
  Gateway models use: https://docs.aws.amazon.com/apigateway/latest/developerguide/models-mappings-models.html).
  Structural only; the handler (``validation.py``) does the deep checks.
- :data:`GATEWAY_RESPONSES`: response type -> :class:`GatewayError`, rendered as API Gateway
  gateway responses (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html).
  Their reason codes (:data:`GATEWAY_REASONS`) never collide with the handler's except
  ``unsupported_media_type`` and ``request_too_large``, which mean the same thing in both.
  The messages are static: API Gateway's ``$context.error.validationErrorString`` can quote the
  rejected value, so it is never put in a body.
- :func:`gateway_body_check`: what a local gateway calls before invoking the handler.

Importing this module needs only the stdlib; :func:`check_request_model` imports ``jsonschema``
(not part of the Lambda package: the Lambda never calls it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:   # the type checker reads the package form
    from .validation import RequestRejected, parse_request_body
else:  # zipped as the Lambda code: modules sit at the top level
    from validation import RequestRejected, parse_request_body

__all__ = [
    "GATEWAY_REASONS",
    "GATEWAY_RESPONSES",
    "GATEWAY_RESPONSE_HEADERS",
    "REQUEST_MODEL_NAME",
    "REQUEST_MODEL_PATH",
    "GatewayError",
    "check_request_model",
    "gateway_body_check",
    "gateway_error_body",
    "load_request_model",
]

REQUEST_MODEL_PATH = Path(__file__).resolve().with_name("request_model.json")
REQUEST_MODEL_NAME = "SendMessageRequest"

GATEWAY_RESPONSE_HEADERS: dict[str, str] = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
"""Headers on every gateway response, as on every handler response."""


@dataclass(frozen=True)
class GatewayError:
    """One gateway response: HTTP ``status``, ``reason`` code, ``field``, static ``message``."""

    status: int
    reason: str
    field: str
    message: str

    def body(self) -> dict[str, dict[str, str]]:
        """``{"error": {"reason", "field", "message"}}``, the handler's format."""
        return {"error": {"reason": self.reason, "field": self.field, "message": self.message}}


GATEWAY_RESPONSES: dict[str, GatewayError] = {
    "BAD_REQUEST_BODY": GatewayError(
        400, "invalid_request_body", "$",
        "The request body does not match the request model (see the API README)."),
    "BAD_REQUEST_PARAMETERS": GatewayError(
        400, "missing_parameter", "headers.x-api-key", "The x-api-key header is required."),
    "UNSUPPORTED_MEDIA_TYPE": GatewayError(
        415, "unsupported_media_type", "headers.Content-Type", "Content-Type must be application/json."),
    "REQUEST_TOO_LARGE": GatewayError(
        413, "request_too_large", "$", "The request body exceeds the maximum size."),
    "MISSING_AUTHENTICATION_TOKEN": GatewayError(
        403, "route_not_found", "$", "No such route: the API serves POST /v1/messages only."),
    "INVALID_API_KEY": GatewayError(403, "forbidden", "headers.x-api-key", "The API key is not accepted."),
    "ACCESS_DENIED": GatewayError(403, "forbidden", "$", "Access denied."),
    "WAF_FILTERED": GatewayError(403, "forbidden", "$", "Access denied."),
    "UNAUTHORIZED": GatewayError(401, "unauthorized", "headers.Authorization", "A valid access token is required."),
    "EXPIRED_TOKEN": GatewayError(403, "unauthorized", "headers.Authorization", "The access token has expired."),
    "THROTTLED": GatewayError(429, "throttled", "$", "Too many requests; retry later."),
    "QUOTA_EXCEEDED": GatewayError(429, "quota_exceeded", "$", "The usage plan quota is used up."),
    "INTEGRATION_TIMEOUT": GatewayError(504, "gateway_timeout", "$", "The mail service did not answer in time."),
    "DEFAULT_4XX": GatewayError(400, "request_refused", "$", "The request was refused by the gateway."),
    "DEFAULT_5XX": GatewayError(500, "gateway_error", "$", "The gateway failed; nothing was sent."),
}
"""Gateway response type -> what API Gateway answers. ``DEFAULT_4XX``/``DEFAULT_5XX`` keep the
status API Gateway chose (their ``status`` here is only what a local gateway uses)."""

GATEWAY_REASONS: frozenset[str] = frozenset(
    e.reason for e in GATEWAY_RESPONSES.values()) - {"unsupported_media_type", "request_too_large"}
"""Reason codes only API Gateway answers: a client (the rotation canary) can tell from the reason
whether the handler or the gateway refused a request."""


def gateway_error_body(response_type: str) -> dict[str, dict[str, str]]:
    """The body of gateway response ``response_type`` (a key of :data:`GATEWAY_RESPONSES`).

    Raises:
        KeyError: for a response type not in :data:`GATEWAY_RESPONSES`.
    """
    return GATEWAY_RESPONSES[response_type].body()


@lru_cache(maxsize=1)
def _model_text() -> str:
    return REQUEST_MODEL_PATH.read_text(encoding="utf-8")


def load_request_model() -> dict[str, Any]:
    """The request model (a fresh dict each call), read from :data:`REQUEST_MODEL_PATH`."""
    return json.loads(_model_text())


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = load_request_model()
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def check_request_model(body: Any) -> None:
    """Validate a parsed JSON body against the request model, as API Gateway's validator does.

    Raises:
        RequestRejected: ``invalid_request_body`` at ``$`` (the gateway's static answer).
    """
    if not _validator().is_valid(body):
        error = GATEWAY_RESPONSES["BAD_REQUEST_BODY"]
        raise RequestRejected(error.reason, error.field, error.message)


def gateway_body_check(content_type: str | None, raw_body: bytes | str | None) -> tuple[int, dict[str, str], bytes] | None:
    """What a local stand-in for API Gateway calls after the key and throttle checks and before
    invoking the handler: ``None`` to go on, else the gateway response ``(status, headers, body)``.

    Only ``application/json`` bodies are checked (API Gateway validates a body against the model
    mapped to its content type; other types go to the handler, which refuses them). A body that
    is not JSON, or does not match the model, gets the ``BAD_REQUEST_BODY`` response.
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return None
    try:
        check_request_model(parse_request_body(raw_body, content_type=content_type))
    except RequestRejected:
        error = GATEWAY_RESPONSES["BAD_REQUEST_BODY"]
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "BadRequestException",
                   **GATEWAY_RESPONSE_HEADERS}
        return error.status, headers, json.dumps(error.body(), separators=(",", ":")).encode()
    return None
