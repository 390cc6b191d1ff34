"""Lambda handler for ``POST /v1/messages`` (API Gateway REST, Lambda proxy integration, payload v1).

Entry point: ``send_message.handler`` (this directory is zipped as the Lambda code; it imports
only the stdlib, boto3, aws-lambda-powertools, pydantic and email-validator).

Flow: check the gateway event (headers, body, ``requestContext``) -> parse and validate the body
(``validation.py``, pure) -> build the SES v2 request (``ses_content.py``, pure) -> the keyed
MACs of the recipients and source IP (``kms:GenerateMac``) -> the audit item, serialized
(``audit_record.py``, no body, no subject text) -> ``sesv2:SendEmail`` with the configuration set
-> ``dynamodb:PutItem`` of the item -> ``202 {"message_id": ...}``.

Everything that can refuse or fail runs BEFORE ``SendEmail``, the first side effect: after it,
only the put can fail (``record_failed``, which says the mail was sent). A caller's retry after any
other error can therefore never send a message twice.

Environment:
    SENDER_IDENTITY     the SES identity to send from: a domain or one address (required).
    CONFIGURATION_SET   the SES v2 configuration set name (required).
    TABLE_NAME          the DynamoDB audit table, partition key ``message_id`` (S) (required).
    AUDIT_MAC_KEY_ID    a KMS HMAC_256 key (id, ARN or alias) for the audit MACs (optional; when
                        unset, recipients' MAC and the source IP's MAC are not recorded at all).
    AWS_ENDPOINT_URL    honoured by boto3 (tests point it at a local moto server).

Responses (always JSON, ``Cache-Control: no-store``):
    202  ``{"message_id": "<SES message id>"}``
    400  ``{"error": {"reason", "field", "message"}}`` — see ``validation.REASONS``; nothing sent
         or recorded.
    404  ``{"error": {"reason": "not_found", ...}}`` — any other route or method.
    500  ``server_misconfigured`` (missing environment), ``invalid_event`` (the gateway event is
         malformed) or ``internal_error``; nothing sent.
    502  ``ses_rejected`` / ``ses_unavailable`` / ``audit_unavailable`` (nothing sent);
         ``record_failed`` (the message WAS sent, its ``message_id`` is in the body: do not retry).
    503  ``ses_throttled`` / ``audit_throttled`` — SES or KMS refused for rate; retry later.

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
    from .audit_record import build_audit_record, recipients_mac_message, source_ip_mac_message
    from .ses_content import build_ses_request
    from .validation import MessageRequest, RequestRejected, parse_request_body, validate_message
else:  # zipped as the Lambda code: modules sit at the top level
    from audit_record import build_audit_record, recipients_mac_message, source_ip_mac_message
    from ses_content import build_ses_request
    from validation import MessageRequest, RequestRejected, parse_request_body, validate_message

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
_KMS_THROTTLE_CODES = frozenset({"ThrottlingException", "LimitExceededException", "Throttling"})
_EVENT_TEXT_MAX_CHARS = 256
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
    audit_mac_key_id: str | None
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
        audit_mac_key_id=os.environ.get("AUDIT_MAC_KEY_ID", "").strip() or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
    )


@lru_cache(maxsize=8)
def _client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 client, reused across invocations (keyed by region and endpoint).

    SES is not retried automatically: a timed-out SendEmail may have been sent, and a blind
    retry would send it twice. DynamoDB and KMS (``GenerateMac`` is idempotent) retry in
    botocore's standard mode.
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


@dataclass(frozen=True)
class _Caller:
    """Who called, from ``requestContext``: API key *id* (never the key), source IP, request id."""

    api_key_id: str | None
    source_ip: str | None
    request_id: str | None


def _invalid_event(part: str) -> UpstreamFailure:
    logger.error("invalid gateway event", extra={"event_part": part})
    return UpstreamFailure(500, "invalid_event", "The gateway event is malformed; nothing was sent.")


def _event_text(container: dict[str, Any], key: str, part: str) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _EVENT_TEXT_MAX_CHARS or not value.isprintable():
        raise _invalid_event(part)
    return value


def _caller() -> _Caller:
    """The caller facts of ``requestContext`` (each a printable string of at most 256 characters, or
    absent).

    Raises:
        UpstreamFailure: 500 ``invalid_event`` when ``requestContext`` or its ``identity`` is not an
        object or a field is not such a string (API Gateway never sends that: a broken front end).
    """
    context = app.current_event.raw_event.get("requestContext")
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise _invalid_event("requestContext")
    identity = context.get("identity")
    if identity is None:
        identity = {}
    if not isinstance(identity, dict):
        raise _invalid_event("requestContext.identity")
    return _Caller(
        api_key_id=_event_text(identity, "apiKeyId", "requestContext.identity.apiKeyId"),
        source_ip=_event_text(identity, "sourceIp", "requestContext.identity.sourceIp"),
        request_id=_event_text(context, "requestId", "requestContext.requestId"),
    )


def _logged_api_key_id() -> str | None:
    """The API key id for a log line, or ``None`` when the event does not carry a valid one."""
    try:
        return _caller().api_key_id
    except UpstreamFailure:
        return None


def _request_parts(raw_event: dict[str, Any]) -> tuple[dict[str, str], str | None, bool]:
    """``(lower-cased headers, body, isBase64Encoded)`` of the event, type-checked.

    Raises:
        UpstreamFailure: 500 ``invalid_event`` when they do not have API Gateway's types.
    """
    raw_headers = raw_event.get("headers")
    if raw_headers is None:
        raw_headers = {}
    if not isinstance(raw_headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_headers.items()
    ):
        raise _invalid_event("headers")
    body = raw_event.get("body")
    if body is not None and not isinstance(body, str):
        raise _invalid_event("body")
    is_base64 = raw_event.get("isBase64Encoded")
    if is_base64 is not None and not isinstance(is_base64, bool):
        raise _invalid_event("isBase64Encoded")
    return {k.lower(): v for k, v in raw_headers.items()}, body, bool(is_base64)


def _mac(settings: _Settings, data: bytes) -> str:
    """``kms:GenerateMac`` (HMAC_SHA_256) of ``data`` under ``AUDIT_MAC_KEY_ID``; hex.

    Raises:
        UpstreamFailure: 503 ``audit_throttled`` or 502 ``audit_unavailable`` (nothing sent).
    """
    client = _client("kms", settings.region, settings.endpoint_url)
    try:
        return client.generate_mac(
            KeyId=settings.audit_mac_key_id, Message=data, MacAlgorithm="HMAC_SHA_256"
        )["Mac"].hex()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        logger.error("audit mac failed", extra={"aws_error_code": code})
        if code in _KMS_THROTTLE_CODES:
            raise UpstreamFailure(503, "audit_throttled", "The audit service is busy; retry later.") from None
        raise UpstreamFailure(502, "audit_unavailable", "The audit service failed; nothing was sent.") from None
    except BotoCoreError as exc:
        logger.error("audit mac failed", extra={"aws_error_type": type(exc).__name__})
        raise UpstreamFailure(502, "audit_unavailable", "The audit service failed; nothing was sent.") from None


def _audit_macs(settings: _Settings, message: MessageRequest, caller: _Caller) -> tuple[str | None, str | None]:
    """``(recipients MAC, source IP MAC)``, both ``None`` without ``AUDIT_MAC_KEY_ID``."""
    if not settings.audit_mac_key_id:
        return None, None
    recipients = _mac(settings, recipients_mac_message(message))
    source_ip = _mac(settings, source_ip_mac_message(caller.source_ip)) if caller.source_ip else None
    return recipients, source_ip


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


def _serialized(item: dict[str, Any]) -> dict[str, Any]:
    """The item in DynamoDB's attribute-value form (done before the send, so it cannot fail after)."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in item.items()}


def _record(settings: _Settings, message_id: str, item: dict[str, Any]) -> None:
    """``dynamodb:PutItem`` of the serialized audit ``item`` under ``message_id``, refusing to
    overwrite an existing ``message_id``.

    Raises:
        UpstreamFailure: 502 ``record_failed`` (carries the message id: the mail was sent).
    """
    client = _client("dynamodb", settings.region, settings.endpoint_url)
    try:
        client.put_item(
            TableName=settings.table_name,
            Item={"message_id": {"S": message_id}, **item},
            ConditionExpression="attribute_not_exists(message_id)",
        )
    except (ClientError, BotoCoreError) as exc:
        code = (
            exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        )
        logger.error("audit record failed", extra={"aws_error_code": code, "message_id": message_id})
        raise UpstreamFailure(
            502,
            "record_failed",
            "The message was sent but could not be recorded; do not retry.",
            message_id=message_id,
        ) from None


@app.post(ROUTE)
def post_message() -> Response:
    """Check and prepare everything, then send through SES v2, record in DynamoDB, answer 202."""
    settings = _settings()
    raw_event = app.current_event.raw_event
    caller = _caller()
    headers, raw_body, is_base64 = _request_parts(raw_event)
    body = parse_request_body(raw_body, content_type=headers.get("content-type"), is_base64_encoded=is_base64)
    message = validate_message(body, sender_identity=settings.sender_identity)
    try:
        ses_request = build_ses_request(message, configuration_set=settings.configuration_set)
    except ValueError:  # the email package refused a header value: validation's second line
        raise RequestRejected(
            "header_injection", "$", "A header value cannot be written into the message safely."
        ) from None
    recipients_mac, source_ip_mac = _audit_macs(settings, message, caller)
    item = build_audit_record(
        message,
        request_id=caller.request_id,
        api_key_id=caller.api_key_id,
        recipients_mac=recipients_mac,
        source_ip_mac=source_ip_mac,
        configuration_set=settings.configuration_set,
        content_kind=ses_request.content_kind,
        message_bytes=ses_request.raw_bytes,
    )
    serialized = _serialized(item)
    # ---- first side effect: nothing above this line may run after it -------------------------
    message_id = _send(settings, ses_request.kwargs)
    _record(settings, message_id, serialized)
    logger.info(
        "message sent",
        extra={
            "message_id": message_id,
            "api_key_id": caller.api_key_id,
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
        extra={"reason": exc.reason, "field": exc.field, "api_key_id": _logged_api_key_id()},
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
