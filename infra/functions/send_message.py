"""Lambda handler for ``POST /v1/messages`` (API Gateway REST, Lambda proxy integration, payload v1).

Entry point: ``send_message.handler`` (this directory is zipped as the Lambda code; it imports
only the stdlib, boto3, aws-lambda-powertools, pydantic and email-validator).

Flow: parse and validate the body (``validation.py``, pure) -> build the SES v2 request
(``ses_content.py``, pure) -> ``sesv2:SendEmail`` with the configuration set -> ``dynamodb:PutItem``
of the audit record (``audit_record.py``, no body, no subject text) -> ``202 {"message_id": ...}``.

Environment:
    SENDER_IDENTITY     the SES identity to send from: a domain or one address (required).
    CONFIGURATION_SET   the SES v2 configuration set name (required).
    TABLE_NAME          the DynamoDB audit table, partition key ``message_id`` (S) (required).
    AWS_ENDPOINT_URL    honoured by boto3 (tests point it at a local moto server).

Responses (always JSON, ``Cache-Control: no-store``):
    202  ``{"message_id": "<SES message id>"}``
    400  ``{"error": {"reason", "field", "message"}}`` — see ``validation.REASONS``; nothing sent
         or recorded.
    404  ``{"error": {"reason": "not_found", ...}}`` — any other route or method.
    500  ``server_misconfigured`` (missing environment) or ``internal_error``; nothing sent.
    502  ``ses_rejected`` / ``ses_unavailable`` (nothing sent); ``record_failed`` (the message WAS
         sent, its ``message_id`` is in the body: do not retry).
    503  ``ses_throttled`` — SES refused for rate or quota; retry later.

Logging: powertools ``Logger`` (structured JSON on stdout). Never logged: the event, the body,
the subject, recipients' addresses, any request header (x-api-key, authorization...).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if __package__:
    from .audit_record import build_audit_record
    from .ses_content import build_ses_request
    from .validation import RequestRejected, parse_request_body, validate_message
else:  # zipped as the Lambda code: modules sit at the top level
    from audit_record import build_audit_record
    from ses_content import build_ses_request
    from validation import RequestRejected, parse_request_body, validate_message

__all__ = ["ROUTE", "UpstreamFailure", "app", "handler", "logger"]

ROUTE = "/v1/messages"

_SES_THROTTLE_CODES = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "ThrottlingException", "Throttling"}
)
_SES_REJECT_CODES = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "AccountSuspendedException",
        "SendingPausedException",
        "NotFoundException",
        "BadRequestException",
    }
)
_RESPONSE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class _CurrentStdoutHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stdout`` is at emit time (Lambda and pytest)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "mail-api"), logger_handler=_CurrentStdoutHandler()
)
app = APIGatewayRestResolver()


class UpstreamFailure(Exception):
    """SES, DynamoDB or configuration failed: a 5xx with a reason, never a traceback."""

    def __init__(self, status: int, reason: str, message: str, *, message_id: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.message_id = message_id
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class _Settings:
    sender_identity: str
    configuration_set: str
    table_name: str
    region: str | None
    endpoint_url: str | None


def _settings() -> _Settings:
    values = {
        name: os.environ.get(name, "").strip()
        for name in ("SENDER_IDENTITY", "CONFIGURATION_SET", "TABLE_NAME")
    }
    missing = sorted(name for name, value in values.items() if not value)
    if missing:
        logger.error("missing configuration", extra={"missing": missing})
        raise UpstreamFailure(500, "server_misconfigured", "The service is not configured.")
    return _Settings(
        sender_identity=values["SENDER_IDENTITY"],
        configuration_set=values["CONFIGURATION_SET"],
        table_name=values["TABLE_NAME"],
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
    )


@lru_cache(maxsize=8)
def _client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 client, reused across invocations (keyed by region and endpoint).

    SES is not retried automatically: a timed-out SendEmail may have been sent, and a blind
    retry would send it twice. DynamoDB retries in botocore's standard mode.
    """
    attempts = 1 if service == "sesv2" else 3
    config = Config(
        connect_timeout=3, read_timeout=10, retries={"max_attempts": attempts, "mode": "standard"}
    )
    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url, config=config
    )


def _json_response(status: int, payload: dict[str, Any]) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(payload, ensure_ascii=True),
        headers=dict(_RESPONSE_HEADERS),
    )


def _caller() -> dict[str, str | None]:
    """Who called: API key *id* (never the key), source IP and API Gateway request id."""
    context = app.current_event.raw_event.get("requestContext") or {}
    identity = context.get("identity") or {}
    return {
        "api_key_id": identity.get("apiKeyId") or None,
        "source_ip": identity.get("sourceIp") or None,
        "request_id": context.get("requestId") or None,
    }


def _send(settings: _Settings, kwargs: dict[str, Any]) -> str:
    """``sesv2:SendEmail`` (``POST /v2/email/outbound-emails``); returns the SES ``MessageId``.

    Raises:
        UpstreamFailure: 503 ``ses_throttled``, 502 ``ses_rejected`` or 502 ``ses_unavailable``.
    """
    client = _client("sesv2", settings.region, settings.endpoint_url)
    try:
        return client.send_email(**kwargs)["MessageId"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        # Never log SES's error message: it can quote addresses.
        logger.error("ses send failed", extra={"aws_error_code": code})
        if code in _SES_THROTTLE_CODES:
            raise UpstreamFailure(503, "ses_throttled", "The mail service is busy; retry later.") from None
        if code in _SES_REJECT_CODES:
            raise UpstreamFailure(502, "ses_rejected", "The mail service refused the message.") from None
        raise UpstreamFailure(502, "ses_unavailable", "The mail service failed.") from None
    except BotoCoreError as exc:
        logger.error("ses send failed", extra={"aws_error_type": type(exc).__name__})
        raise UpstreamFailure(502, "ses_unavailable", "The mail service could not be reached.") from None


def _record(settings: _Settings, item: dict[str, Any]) -> None:
    """``dynamodb:PutItem`` of the audit item, refusing to overwrite an existing ``message_id``.

    Raises:
        UpstreamFailure: 502 ``record_failed`` (carries the message id: the mail was sent).
    """
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    client = _client("dynamodb", settings.region, settings.endpoint_url)
    try:
        client.put_item(
            TableName=settings.table_name,
            Item={key: serializer.serialize(value) for key, value in item.items()},
            ConditionExpression="attribute_not_exists(message_id)",
        )
    except (ClientError, BotoCoreError) as exc:
        code = (
            exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        )
        logger.error("audit record failed", extra={"aws_error_code": code, "message_id": item["message_id"]})
        raise UpstreamFailure(
            502,
            "record_failed",
            "The message was sent but could not be recorded; do not retry.",
            message_id=item["message_id"],
        ) from None


@app.post(ROUTE)
def post_message() -> Response:
    """Validate, send through SES v2, record in DynamoDB, answer 202 with the message id."""
    settings = _settings()
    raw_event = app.current_event.raw_event
    headers = {str(k).lower(): v for k, v in (raw_event.get("headers") or {}).items()}
    body = parse_request_body(
        raw_event.get("body"),
        content_type=headers.get("content-type"),
        is_base64_encoded=bool(raw_event.get("isBase64Encoded")),
    )
    message = validate_message(body, sender_identity=settings.sender_identity)
    ses_request = build_ses_request(message, configuration_set=settings.configuration_set)
    message_id = _send(settings, ses_request.kwargs)
    caller = _caller()
    item = build_audit_record(
        message,
        message_id=message_id,
        configuration_set=settings.configuration_set,
        content_kind=ses_request.content_kind,
        message_bytes=ses_request.raw_bytes,
        **caller,
    )
    _record(settings, item)
    logger.info(
        "message sent",
        extra={
            "message_id": message_id,
            "api_key_id": caller["api_key_id"],
            "recipient_count": item["recipient_count"],
            "attachment_count": item["attachment_count"],
            "content_kind": ses_request.content_kind,
        },
    )
    return _json_response(202, {"message_id": message_id})


@app.exception_handler(RequestRejected)
def _rejected(exc: RequestRejected) -> Response:
    logger.warning(
        "request rejected",
        extra={"reason": exc.reason, "field": exc.field, "api_key_id": _caller()["api_key_id"]},
    )
    return _json_response(400, exc.to_dict())


@app.exception_handler(UpstreamFailure)
def _upstream(exc: UpstreamFailure) -> Response:
    error: dict[str, Any] = {"reason": exc.reason, "field": "$", "message": exc.message}
    if exc.message_id:
        error["message_id"] = exc.message_id
    response = _json_response(exc.status, {"error": error})
    if exc.status == 503:
        response.headers["Retry-After"] = "5"
    return response


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    # Type only: an exception's text or traceback can carry request data.
    logger.error("unexpected error", extra={"error_type": type(exc).__name__})
    return _json_response(
        500, {"error": {"reason": "internal_error", "field": "$", "message": "Internal error."}}
    )


@app.not_found
def _not_found(_exc: Exception) -> Response:
    return _json_response(404, {"error": {"reason": "not_found", "field": "$", "message": "No such route."}})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: an API Gateway REST proxy event (v1) in, a proxy response out."""
    return app.resolve(event, context)
