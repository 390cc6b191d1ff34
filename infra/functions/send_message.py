"""Lambda handler for ``POST /v1/messages`` (API Gateway REST, Lambda proxy integration, payload v1).

Entry point: ``send_message.handler`` (this directory is zipped as the Lambda code; it imports
only the stdlib, boto3, aws-lambda-powertools, pydantic and email-validator).

Flow: check the gateway event (headers, body, ``requestContext``) -> parse and validate the body
(``validation.py``, pure) -> build the SES v2 request (``ses_content.py``, pure) -> the caller's
access level (``access.py``: the key's consumer, cached per key id, and the OAuth scopes) -> the keyed
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
    ACCESS_LEVELS, ACCESS_CONSUMERS, ACCESS_SCOPES, ACCESS_STACK
                        the per-caller access levels (JSON, see ``access.py``); the stack always sets
                        them. Unset ACCESS_LEVELS = no per-caller levels (the local dev gateway only).
    AWS_ENDPOINT_URL    honoured by boto3 (tests point it at a local moto server).

Responses (always JSON, ``Cache-Control: no-store``):
    202  ``{"message_id": "<SES message id>"}``
    400  ``{"error": {"reason", "field", "message"}}`` — see ``validation.REASONS``; nothing sent
         or recorded.
    403  the same shape, a reason of ``access.REASONS`` (``sender_not_allowed``,
         ``too_many_recipients``, ``attachments_not_allowed``, ``message_too_large``,
         ``recipient_domain_not_allowed``, ``caller_not_allowed``); nothing sent or recorded.
    404  ``{"error": {"reason": "not_found", ...}}`` — any other route or method.
    500  ``server_misconfigured`` (missing environment), ``invalid_event`` (the gateway event is
         malformed) or ``internal_error``; nothing sent.
    502  ``ses_rejected`` / ``ses_unavailable`` / ``audit_unavailable`` / ``access_unavailable``
         (nothing sent);
         ``record_failed`` (the message WAS sent, its ``message_id`` is in the body: do not retry).
    503  ``ses_throttled`` / ``audit_throttled`` / ``access_throttled`` — SES, KMS or API Gateway
         refused for rate; retry later.

Logging: powertools ``Logger`` (structured JSON on stdout). Never logged: the event, the body,
the subject, recipients' addresses, any request header (x-api-key, authorization...).
Every invocation ends with ONE ``request record`` line (key ``audit``, see :func:`request_record`):
request id, time, operation, source IP, caller (API key id, consumer, OAuth client id, level),
outcome (status, reason) and sizes; API Gateway's access log carries the same ``requestId``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING or __package__:   # the type checker reads the package form
    from .access import (
        AccessConfig,
        AccessConfigError,
        AccessRefused,
        KeyConsumers,
        check_level,
        load_access_config,
    )
    from .audit_record import build_audit_record, recipients_mac_message, source_ip_mac_message
    from .ses_content import build_ses_request
    from .validation import (
        MessageRequest,
        RequestRejected,
        estimate_message_bytes,
        parse_request_body,
        validate_message,
    )
else:  # zipped as the Lambda code: modules sit at the top level
    from access import (
        AccessConfig,
        AccessConfigError,
        AccessRefused,
        KeyConsumers,
        check_level,
        load_access_config,
    )
    from audit_record import build_audit_record, recipients_mac_message, source_ip_mac_message
    from ses_content import build_ses_request
    from validation import (
        MessageRequest,
        RequestRejected,
        estimate_message_bytes,
        parse_request_body,
        validate_message,
    )

__all__ = ["OPERATION", "ROUTE", "UpstreamFailure", "app", "handler", "logger", "request_record"]

ROUTE = "/v1/messages"
#: The operation name of ``POST /v1/messages`` in request records.
OPERATION = "SendMessage"

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
_APIGW_THROTTLE_CODES = frozenset({"TooManyRequestsException", "LimitExceededException", "ThrottlingException"})
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
    """Who called, from ``requestContext``: API key *id* (never the key), source IP, request id,
    and on the OAuth path the token's client id and scopes (Cognito claims)."""

    api_key_id: str | None
    source_ip: str | None
    request_id: str | None
    client_id: str | None = None
    scopes: tuple[str, ...] | None = None


#: Facts about the current request for its request record (reset by :func:`handler`).
_FACTS: dict[str, Any] = {}


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
    client_id, scopes = None, None
    authorizer = context.get("authorizer")
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    if authorizer is not None and not isinstance(authorizer, dict):
        raise _invalid_event("requestContext.authorizer")
    if claims is not None:
        if not isinstance(claims, dict):
            raise _invalid_event("requestContext.authorizer.claims")
        client_id = _event_text(claims, "client_id", "requestContext.authorizer.claims.client_id")
        scope_text = claims.get("scope")
        if scope_text is not None and (not isinstance(scope_text, str) or len(scope_text) > 1024
                                       or not scope_text.isprintable()):
            raise _invalid_event("requestContext.authorizer.claims.scope")
        scopes = tuple((scope_text or "").split())
    return _Caller(
        api_key_id=_event_text(identity, "apiKeyId", "requestContext.identity.apiKeyId"),
        source_ip=_event_text(identity, "sourceIp", "requestContext.identity.sourceIp"),
        request_id=_event_text(context, "requestId", "requestContext.requestId"),
        client_id=client_id,
        scopes=scopes,
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


@lru_cache(maxsize=4)
def _parsed_access_config(levels: str, consumers: str, scopes: str, stack: str) -> AccessConfig | None:
    return load_access_config({"ACCESS_LEVELS": levels, "ACCESS_CONSUMERS": consumers,
                               "ACCESS_SCOPES": scopes, "ACCESS_STACK": stack})


def _access_config() -> AccessConfig | None:
    """The access config of the environment, parsed once per distinct environment (cold start).

    Raises:
        UpstreamFailure: 500 ``server_misconfigured`` when the environment is malformed.
    """
    try:
        return _parsed_access_config(*(os.environ.get(name, "") for name in (
            "ACCESS_LEVELS", "ACCESS_CONSUMERS", "ACCESS_SCOPES", "ACCESS_STACK")))
    except AccessConfigError as exc:
        logger.error("malformed access configuration", extra={"problem": str(exc)})
        raise UpstreamFailure(500, "server_misconfigured", "The service is not configured.") from None


def _key_tags(settings: _Settings, key_id: str) -> dict[str, str] | None:
    """``apigateway:GetApiKey`` (``includeValue=false``): the key's tags, or None if it does not exist.

    Raises:
        UpstreamFailure: 503 ``access_throttled`` or 502 ``access_unavailable`` (nothing sent).
    """
    client = _client("apigateway", settings.region, settings.endpoint_url)
    try:
        return dict(client.get_api_key(apiKey=key_id, includeValue=False).get("tags") or {})
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Unknown")
        if code == "NotFoundException":
            return None
        logger.error("api key lookup failed", extra={"aws_error_code": code})
        if code in _APIGW_THROTTLE_CODES:
            raise UpstreamFailure(503, "access_throttled", "The access service is busy; retry later.") from None
        raise UpstreamFailure(502, "access_unavailable", "The access service failed; nothing was sent.") from None
    except BotoCoreError as exc:
        logger.error("api key lookup failed", extra={"aws_error_type": type(exc).__name__})
        raise UpstreamFailure(502, "access_unavailable", "The access service failed; nothing was sent.") from None


_KEY_CONSUMERS: dict[tuple[str | None, str | None], KeyConsumers] = {}


def _key_consumers(settings: _Settings) -> KeyConsumers:
    """The per-container key id -> consumer cache (one per region/endpoint)."""
    slot = (settings.region, settings.endpoint_url)
    if slot not in _KEY_CONSUMERS:
        _KEY_CONSUMERS[slot] = KeyConsumers(lambda key_id: _key_tags(settings, key_id))
    return _KEY_CONSUMERS[slot]


def _enforce_access(settings: _Settings, caller: _Caller, message: MessageRequest, message_bytes: int) -> None:
    """Apply the caller's access level(s) (``access.py``); records consumer and level in ``_FACTS``.

    Raises:
        AccessRefused: 403 with the reason; UpstreamFailure when the key lookup fails.
    """
    config = _access_config()
    if config is None:
        return
    consumer = _key_consumers(settings).consumer(caller.api_key_id, config.stack)
    _FACTS["consumer"] = consumer
    level = config.level_of_consumer(consumer)
    if level is None:
        raise AccessRefused("caller_not_allowed")
    _FACTS["access_level"] = level.name
    check_level(level, message, message_bytes=message_bytes)
    if caller.scopes is None:
        return
    scope_levels = config.levels_of_scopes(caller.scopes)
    if not scope_levels:
        raise AccessRefused("caller_not_allowed")
    refusals = []
    for scope_level in scope_levels:
        try:
            check_level(scope_level, message, message_bytes=message_bytes)
        except AccessRefused as exc:
            refusals.append(exc)
            continue
        _FACTS["scope_level"] = scope_level.name
        return
    raise refusals[0]


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
    _FACTS["request_bytes"] = len(raw_body.encode("utf-8", "surrogatepass")) if raw_body else 0
    body = parse_request_body(raw_body, content_type=headers.get("content-type"), is_base64_encoded=is_base64)
    message = validate_message(body, sender_identity=settings.sender_identity)
    try:
        ses_request = build_ses_request(message, configuration_set=settings.configuration_set)
    except ValueError:  # the email package refused a header value: validation's second line
        raise RequestRejected(
            "header_injection", "$", "A header value cannot be written into the message safely."
        ) from None
    message_bytes = ses_request.raw_bytes or estimate_message_bytes(message)
    _FACTS.update(recipient_count=len(message.recipients), attachment_count=len(message.attachments),
                  message_bytes=message_bytes)
    _enforce_access(settings, caller, message, message_bytes)
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
    _FACTS["message_id"] = message_id
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


@app.exception_handler(AccessRefused)
def _refused(exc: AccessRefused) -> Response:
    logger.warning(
        "request refused by access level",
        extra={"reason": exc.reason, "field": exc.field, "api_key_id": _logged_api_key_id(),
               "consumer": _FACTS.get("consumer"), "access_level": _FACTS.get("access_level")},
    )
    return _json_response(403, exc.to_dict())


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


def _text_or_none(container: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(container, dict):
            return None
        container = container.get(key)
    if isinstance(container, (str, int)) and not isinstance(container, bool):
        text = str(container)
        return text if len(text) <= 256 and text.isprintable() else None
    return None


def request_record(event: Any, response: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The request record of one invocation: metadata only, never content or a secret.

    Fields: ``request_id`` (API Gateway's, the join key with its access log), ``request_time_epoch_ms``,
    ``operation`` (``SendMessage`` or ``<METHOD> <path>``), ``stage``, ``source_ip``, ``api_key_id`` (the
    key's id, never the key), ``consumer``, ``client_id`` (OAuth), ``access_level``, ``status``,
    ``reason`` (error reason or None), ``request_bytes``, ``message_bytes``, ``recipient_count``,
    ``attachment_count``, ``response_bytes``, ``message_id``. Absent facts are None.
    """
    method = _text_or_none(event, "httpMethod")
    path = _text_or_none(event, "requestContext", "resourcePath") or _text_or_none(event, "path")
    reason = None
    body = response.get("body")
    status = response.get("statusCode")
    if isinstance(status, int) and status >= 400 and isinstance(body, str):
        try:
            error = json.loads(body).get("error") or {}
            reason = error.get("reason") if isinstance(error.get("reason"), str) else None
        except (ValueError, AttributeError):
            reason = None
    epoch = _text_or_none(event, "requestContext", "requestTimeEpoch")
    return {
        "request_id": _text_or_none(event, "requestContext", "requestId"),
        "request_time_epoch_ms": int(epoch) if epoch and epoch.isdigit() else None,
        "operation": OPERATION if (method, path) == ("POST", ROUTE) else f"{method} {path}",
        "stage": _text_or_none(event, "requestContext", "stage"),
        "source_ip": _text_or_none(event, "requestContext", "identity", "sourceIp"),
        "api_key_id": _text_or_none(event, "requestContext", "identity", "apiKeyId"),
        "consumer": facts.get("consumer"),
        "client_id": _text_or_none(event, "requestContext", "authorizer", "claims", "client_id"),
        "access_level": facts.get("access_level"),
        "status": status,
        "reason": reason,
        "request_bytes": facts.get("request_bytes"),
        "message_bytes": facts.get("message_bytes"),
        "recipient_count": facts.get("recipient_count"),
        "attachment_count": facts.get("attachment_count"),
        "response_bytes": len(body.encode("utf-8")) if isinstance(body, str) else None,
        "message_id": facts.get("message_id"),
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: an API Gateway REST proxy event (v1) in, a proxy response out; then one
    ``request record`` log line (:func:`request_record`)."""
    _FACTS.clear()
    response = app.resolve(event, context)
    try:
        record = request_record(event, response, dict(_FACTS))
    except Exception as exc:  # noqa: BLE001 - the record must never change the answer
        record = {"record_error": type(exc).__name__}
    logger.info("request record", extra={"audit": record})
    _FACTS.clear()
    return response
