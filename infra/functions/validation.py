"""Validate a ``POST /v1/messages`` request: pure functions, no AWS calls, no logging.

This module is the single source of truth for what the mail API accepts. The Lambda handler
(``send_message.py``) and any other front end (a local dev gateway, a CLI) call the same two
functions, in this order::

    body = parse_request_body(raw_body, content_type=..., is_base64_encoded=...)
    message = validate_message(body, sender_identity="example.com")

Both raise :class:`RequestRejected` (and nothing else) for a bad request. Its ``reason`` is a
stable, machine-readable code (the table is in ``README.md`` and in :data:`REASONS`), its
``field`` a JSON path into the request body (``$``, ``$.to[0]``, ``$.attachments[1].filename``),
and its ``message`` a human sentence that never echoes the rejected value (at most a short,
escaped hint of a field *name*), so a rejection cannot be used to inject into logs or responses.

Limits and their sources (each is a module constant, units in its name):

- Recipients: at most 50 across To, Cc and Bcc — SES quota "50 recipients per message"
  (https://docs.aws.amazon.com/ses/latest/dg/quotas.html).
- Subject and every other header value: at most 998 characters and no CR/LF — RFC 5322 s. 2.1.1
  (line length) and s. 2.2 (a header field is one line; CR and LF are only for folding).
  Checked after RFC 2047 decoding, with control, invisible and bidi characters refused too: the
  rules are in ``header_text.py``, one validator per kind of value (header text, file name,
  address).
- Strings: no lone UTF-16 surrogate anywhere in the body (a JSON ``"\\ud800"`` escape decodes to
  one; it is not Unicode text, RFC 8259 s. 8.2).
- Recipients: duplicates across to, cc and bcc are sent once (the first occurrence is kept);
  addresses compare case-insensitively in both parts. RFC 5321 s. 2.4 lets a receiving host treat
  the local part as case-sensitive, but the mailbox providers we send to do not (and SES's account
  suppression list compares addresses case-insensitively), so ``Dup@Example.org`` and
  ``dup@example.org`` are one mailbox: sending twice is the failure we avoid.
- Addresses: a local part holding ``%`` or ``!`` is refused (``invalid_address``): both are
  routing syntax (the "percent hack" ``user%host@relay`` and UUCP bang paths ``host!user``,
  RFC 1123 s. 5.2.16) that a relay may honour, so ``u%evil.com@partner.example`` would pass a
  recipient-domain allow-list for ``partner.example`` and be delivered to ``evil.com``. Source
  routes (``@relay:user@host``, RFC 5321 Appendix C) and quoted local parts are refused by the
  address parser (email-validator, ``allow_quoted_local=False``).
- Whole message: at most 40 MB after MIME encoding — SES v2 ``SendEmail`` message size quota
  (https://docs.aws.amazon.com/ses/latest/dg/quotas.html, "40 MB ... including attachments,
  after base64 encoding").
- Request body: at most 6,000,000 bytes — the Lambda synchronous invocation payload quota is
  6 MB for the whole event (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html);
  the margin is left for the event's headers and request context.
- JSON shape: at most 1,000 values and 8 levels of nesting (our policy: the largest valid request,
  50 recipient objects, 10 attachments and 10 headers, holds about 370 values in 3 levels),
  checked by a linear scan of the text (regular expressions and ``str.count``, no objects built)
  *before* ``json.loads`` builds anything, so the work and memory per request stay proportional to
  its size with a small constant: a 4.2 MB body of 1.4 million tiny values is refused in
  milliseconds instead of building 1.4 million Python objects (hundreds of MB, more than the
  function's 256 MB).
- Per attachment: at most 4 MiB decoded, chosen so that one attachment's base64 form
  (4/3 larger) still fits under the request-body limit; at most 10 attachments (our policy).
- Text and HTML bodies: at most 256 KiB each, UTF-8 encoded (our policy).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from email.utils import formataddr
from typing import TYPE_CHECKING, Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

if TYPE_CHECKING or __package__:   # the type checker reads the package form
    from .header_text import HeaderTextError, check_address_text, check_filename, check_header_text
else:  # zipped as the Lambda code: modules sit at the top level
    from header_text import HeaderTextError, check_address_text, check_filename, check_header_text

__all__ = [
    "ALLOWED_ATTACHMENT_TYPES",
    "ALLOWED_CUSTOM_HEADERS",
    "MAX_ATTACHMENTS_COUNT",
    "MAX_ATTACHMENT_BYTES",
    "MAX_BODY_PART_BYTES",
    "MAX_CUSTOM_HEADERS_COUNT",
    "MAX_DISPLAY_NAME_CHARS",
    "MAX_FILENAME_CHARS",
    "MAX_HEADER_VALUE_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "MAX_MESSAGE_BYTES",
    "MAX_RECIPIENTS_COUNT",
    "MAX_REQUEST_BODY_BYTES",
    "MAX_SUBJECT_CHARS",
    "REASONS",
    "Attachment",
    "EmailAddress",
    "MessageRequest",
    "RequestRejected",
    "estimate_message_bytes",
    "parse_request_body",
    "validate_message",
]

# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------

MAX_REQUEST_BODY_BYTES = 6_000_000
"""Largest accepted HTTP request body, in bytes (Lambda sync payload quota is 6 MB per event)."""

MAX_JSON_VALUES = 1_000
"""Most JSON values (object members' values and array elements, plus the top level) in a request
body (our policy: a valid request holds about 370 at most)."""

MAX_JSON_DEPTH = 8
"""Deepest nesting of JSON objects and arrays in a request body (our policy: a valid request nests 3)."""

MAX_RECIPIENTS_COUNT = 50
"""Most recipients per message, counted across to + cc + bcc (SES quota: 50 per message)."""

MAX_SUBJECT_CHARS = 998
"""Longest subject, in characters (RFC 5322 s. 2.1.1: a line is at most 998 characters)."""

MAX_HEADER_VALUE_CHARS = 998
"""Longest custom header value, in characters (RFC 5322 s. 2.1.1)."""

MAX_DISPLAY_NAME_CHARS = 256
"""Longest display name of an address, in characters (our policy, well under RFC 5322's 998)."""

MAX_BODY_PART_BYTES = 256 * 1024
"""Largest ``text`` or ``html`` body, each, in bytes once UTF-8 encoded (our policy)."""

MAX_ATTACHMENTS_COUNT = 10
"""Most attachments per message (our policy)."""

MAX_ATTACHMENT_BYTES = 4 * 1024 * 1024
"""Largest attachment, in bytes after base64 decoding (fits one attachment under the request limit)."""

MAX_MESSAGE_BYTES = 40 * 1000 * 1000
"""Largest whole MIME message, in bytes after encoding (SES v2 quota: 40 MB per message)."""

MAX_FILENAME_CHARS = 255
#: An attachment's content type, characters (RFC 6838 4.2: type and subtype at most 127 each).
MAX_CONTENT_TYPE_CHARS = 255
"""Longest attachment filename, in characters (common filesystem limit)."""

MAX_CUSTOM_HEADERS_COUNT = 10
"""Most custom headers per message (our policy)."""

ALLOWED_ATTACHMENT_TYPES: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "text/plain": (".txt",),
    "text/csv": (".csv",),
}
"""Allowed attachment content types, each with the filename extensions it may carry."""

ALLOWED_CUSTOM_HEADERS: frozenset[str] = frozenset(
    {"x-campaign-id", "x-entity-ref-id", "x-correlation-id", "list-unsubscribe", "list-unsubscribe-post"}
)
"""Custom header names a caller may set (compared case-insensitively). Everything else is refused,
so a caller cannot forge routing or authentication headers (Received, DKIM-Signature, Bcc...)."""

_MAGIC_BYTES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}

# --------------------------------------------------------------------------------------------
# Reasons and the error type
# --------------------------------------------------------------------------------------------

REASONS: dict[str, str] = {
    # request level (parse_request_body)
    "unsupported_media_type": "Content-Type must be application/json.",
    "request_too_large": "The request body exceeds the maximum size.",
    "empty_body": "The request body is empty.",
    "invalid_encoding": "The request body is not valid UTF-8 (or not valid base64 from the gateway).",
    "malformed_json": "The request body is not valid JSON.",
    "json_too_complex": "The JSON holds more values or deeper nesting than any valid request.",
    "duplicate_key": "A JSON object repeats a key.",
    # schema
    "wrong_type": "The value has the wrong JSON type.",
    "missing_field": "A required field is missing.",
    "unknown_field": "The request contains a field the API does not accept.",
    "empty_value": "The value must not be empty.",
    # addresses
    "invalid_address": "The email address is not valid.",
    "sender_not_allowed": "The sender is not the configured sending identity.",
    "no_recipients": "At least one recipient (to, cc or bcc) is required.",
    "too_many_recipients": "Too many recipients across to, cc and bcc.",
    "display_name_too_long": "The display name is too long.",
    # headers
    "header_injection": "A header value contains a line break (CR, LF or a Unicode line separator).",
    "control_character": "The value contains a control character.",
    "invisible_character": "The value contains an invisible or bidirectional formatting character.",
    "invalid_encoded_word": "A header value holds an RFC 2047 encoded word that does not decode.",
    "invalid_unicode": "A string contains a lone UTF-16 surrogate.",
    "subject_too_long": "The subject is too long.",
    "header_not_allowed": "This custom header name is not allowed.",
    "duplicate_header": "A custom header name appears twice (names compare case-insensitively).",
    "header_value_too_long": "A custom header value is too long.",
    "too_many_headers": "Too many custom headers.",
    # bodies
    "missing_body": "Either text or html is required.",
    "body_part_too_large": "The text or html body is too large.",
    # attachments
    "too_many_attachments": "Too many attachments.",
    "attachment_type_not_allowed": "The attachment content type is not allowed.",
    "invalid_filename": "The attachment filename is not allowed.",
    "attachment_extension_mismatch": "The filename extension does not match the content type.",
    "invalid_base64": "The attachment content is not strict base64.",
    "empty_attachment": "The attachment is empty.",
    "attachment_too_large": "The attachment is too large.",
    "attachment_content_mismatch": "The attachment bytes do not match its content type.",
    "message_too_large": "The whole message would exceed the SES message size limit.",
}
"""Every rejection reason code, with a generic human description."""


class RequestRejected(Exception):
    """A request the API refuses with HTTP 400; nothing is sent or recorded.

    Attributes:
        reason: a code from :data:`REASONS`.
        field: JSON path of the offending value (``$`` for the body as a whole).
        message: human text; never contains the rejected value.
    """

    def __init__(self, reason: str, field: str, message: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.message = message or REASONS.get(reason, "The request is invalid.")
        super().__init__(f"{reason} at {field}: {self.message}")

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The HTTP response body: ``{"error": {"reason", "field", "message"}}``."""
        return {"error": {"reason": self.reason, "field": self.field, "message": self.message}}


def _reject(reason: str, message: str | None = None, **ctx: Any) -> PydanticCustomError:
    """A pydantic error whose type is our reason code (``ctx['sub']`` extends the JSON path)."""
    return PydanticCustomError(reason, message or REASONS[reason], ctx or None)


# --------------------------------------------------------------------------------------------
# Request parsing (HTTP level)
# --------------------------------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RequestRejected("duplicate_key", "$", f"A JSON object repeats the key {_hint(key)}.")
        seen[key] = value
    return seen


def _refuse_constant(name: str) -> Any:
    raise RequestRejected("malformed_json", "$", f"{name} is not valid JSON.")


def parse_request_body(
    raw_body: str | bytes | None, *, content_type: str | None, is_base64_encoded: bool = False
) -> Any:
    """Parse the HTTP body of ``POST /v1/messages`` into a JSON value.

    Args:
        raw_body: the body as API Gateway delivers it (``event["body"]``), or bytes.
        content_type: the request's Content-Type header value (``None`` when absent).
        is_base64_encoded: ``event["isBase64Encoded"]``.

    Returns:
        The decoded JSON value (any JSON type; :func:`validate_message` checks its shape).

    Raises:
        RequestRejected: ``unsupported_media_type`` (not ``application/json``, charset other than
        UTF-8), ``empty_body``, ``request_too_large`` (over :data:`MAX_REQUEST_BODY_BYTES` bytes),
        ``invalid_encoding``, ``json_too_complex`` (over :data:`MAX_JSON_VALUES` values or
        :data:`MAX_JSON_DEPTH` levels, found before parsing), ``malformed_json`` (also for
        NaN/Infinity), ``duplicate_key``.
    """
    media_type, _, params = (content_type or "").partition(";")
    if media_type.strip().lower() != "application/json":
        raise RequestRejected("unsupported_media_type", "headers.Content-Type")
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", params, re.IGNORECASE)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        raise RequestRejected(
            "unsupported_media_type", "headers.Content-Type", "Only the UTF-8 charset is accepted."
        )
    if raw_body is None or len(raw_body) == 0:
        raise RequestRejected("empty_body", "$")
    # Cheap bound before any decoding: base64 is 4/3 the size of what it carries.
    limit = MAX_REQUEST_BODY_BYTES * 4 // 3 + 4 if is_base64_encoded else MAX_REQUEST_BODY_BYTES
    if len(raw_body) > limit:
        raise RequestRejected("request_too_large", "$", _too_large_message(MAX_REQUEST_BODY_BYTES))
    if is_base64_encoded:
        try:
            data = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRejected("invalid_encoding", "$") from None
    else:
        data = raw_body.encode("utf-8", "surrogatepass") if isinstance(raw_body, str) else raw_body
    if len(data) > MAX_REQUEST_BODY_BYTES:
        raise RequestRejected("request_too_large", "$", _too_large_message(MAX_REQUEST_BODY_BYTES))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected("invalid_encoding", "$") from None
    if not text.strip():
        raise RequestRejected("empty_body", "$")
    _check_json_shape(text)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except RequestRejected:
        raise
    except RecursionError:
        raise RequestRejected("malformed_json", "$", "The JSON is nested too deeply.") from None
    except ValueError as exc:
        pos = getattr(exc, "pos", None)
        where = f" (at character {pos})" if isinstance(pos, int) else ""
        raise RequestRejected("malformed_json", "$", f"The request body is not valid JSON{where}.") from None
    _refuse_lone_surrogates(value)
    return value


# A JSON string token, or an unterminated one running to the end of the text: possessive
# quantifiers and the end alternative mean a match never fails and never backtracks, so stripping
# every string is one linear pass (an unbalanced quote cannot make it quadratic).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
#: The four whitespace characters of JSON (RFC 8259 s. 2), deleted by ``str.translate`` (no pieces list).
_JSON_WHITESPACE = str.maketrans("", "", " \t\r\n")


def _check_json_shape(text: str) -> None:
    """Refuse a body with more than :data:`MAX_JSON_VALUES` values or deeper than
    :data:`MAX_JSON_DEPTH` levels before ``json.loads`` builds any object (``json_too_complex``).

    Outside strings, every value but the top level follows a ``,`` or the ``[`` / ``{`` of a
    non-empty array or object (an object member's value follows its key, which follows one of
    those), so ``1 + count("[", "{") - count("[]", "{}") + count(",")`` is the number of values of
    valid JSON (object keys not counted); for invalid JSON it only decides whether ``json.loads``
    gets to say so. Cost: one linear regular-expression pass that turns each string into one
    character (commas and brackets inside text do not count), one ``str.translate`` that drops
    whitespace, a few ``str.count`` calls, and a depth walk over at most ``2 * MAX_JSON_VALUES``
    brackets (every array or object is a value, so valid JSON within the limit has no more).
    """
    # strings become one character, so "[]" below is an empty array and not ["a"]; whitespace goes
    structure = (_JSON_STRING.sub("0", text) if '"' in text else text).translate(_JSON_WHITESPACE)
    empty = structure.count("[]") + structure.count("{}")
    values = 1 + structure.count("[") + structure.count("{") - empty + structure.count(",")
    if values > MAX_JSON_VALUES:
        raise RequestRejected("json_too_complex", "$",
                              f"The JSON holds more than {MAX_JSON_VALUES} values; a valid request holds a few hundred.")
    brackets = _NOT_BRACKET.sub("", structure)
    if len(brackets) > 2 * MAX_JSON_VALUES:          # more than 1,000 values can hold: not valid JSON
        raise RequestRejected("malformed_json", "$", "The request body is not valid JSON (unbalanced brackets).")
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise RequestRejected("json_too_complex", "$",
                                  f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_lone_surrogates(value: Any) -> None:
    """Refuse a lone surrogate in any string or key (``invalid_unicode``, the path of the string).

    ``json.loads`` turns a ``\\ud800`` escape without its pair into a one-character string that no
    UTF-8 encoder accepts (RFC 8259 s. 8.2); refusing it here keeps every later step (size checks,
    MIME, SES, DynamoDB) on real Unicode. Iterative: the depth is whatever ``json.loads`` allowed.
    """
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        node, loc = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise RequestRejected(
                    "invalid_unicode", _json_path(loc), "A string contains a lone UTF-16 surrogate."
                )
        elif isinstance(node, dict):
            for key, item in node.items():
                if _SURROGATE.search(key):
                    raise RequestRejected(
                        "invalid_unicode", _json_path(loc), "A key contains a lone UTF-16 surrogate."
                    )
                stack.append((item, (*loc, key)))
        elif isinstance(node, list):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node))


def _too_large_message(limit: int) -> str:
    return f"The request body exceeds {limit} bytes."


# --------------------------------------------------------------------------------------------
# Field checks
# --------------------------------------------------------------------------------------------

#: A custom header name (RFC 5322 s. 2.2 field-name, narrowed to letters, digits and '-'), matched whole.
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,75}")


def _checked(check: Any, value: str, *, sub: str | None = None) -> Any:
    """Run a ``header_text`` validator; its :class:`HeaderTextError` becomes our pydantic error."""
    try:
        return check(value)
    except HeaderTextError as exc:
        raise _reject(exc.reason, exc.message, **({"sub": sub} if sub else {})) from None


def _check_header_text(value: str, *, sub: str | None = None) -> str:
    """Header text rules (``header_text.check_header_text``) on ``value`` and its decoded forms."""
    _checked(check_header_text, value, sub=sub)
    return value


def _hint(value: str, limit: int = 24) -> str:
    """A short, escaped hint of a *name* (never a value): ASCII-only, truncated."""
    escaped = json.dumps(value[:limit], ensure_ascii=True)
    return escaped[:-1] + '..."' if len(value) > limit else escaped


@dataclass(frozen=True)
class EmailAddress:
    """A validated address: ``address`` is ASCII (IDN domains in punycode); ``name`` optional."""

    address: str
    name: str | None = None

    @property
    def domain(self) -> str:
        """The domain part, lower case."""
        return self.address.rsplit("@", 1)[1].lower()

    @property
    def dedupe_key(self) -> str:
        """The address in lower case: two addresses with the same key are one mailbox. The domain
        is case-insensitive (RFC 5321 s. 2.4); the local part may be case-sensitive by that RFC, but
        the providers we send to treat it case-insensitively, so we do too (module docstring)."""
        return self.address.lower()

    def formatted(self) -> str:
        """RFC 5322 form: ``"Name" <addr>``, the name RFC 2047-encoded when not ASCII."""
        return formataddr((self.name, self.address), charset="utf-8") if self.name else self.address


#: Routing syntax in a local part: the percent hack (``user%host@relay``) and bang paths (``host!user``).
_ROUTING = re.compile(r"[%!]")


def _parse_address(value: Any) -> EmailAddress:
    """Accept ``"a@b.example"`` or ``{"email": "a@b.example", "name": "A"}``."""
    if isinstance(value, str):
        email, name = value, None
        sub = None
    elif isinstance(value, dict):
        unknown = sorted(set(value) - {"email", "name"})
        if unknown:
            raise _reject("unknown_field", f"Unknown field {_hint(unknown[0])} in an address.")
        if "email" not in value:
            raise _reject("missing_field", "An address object needs an email.", sub="email")
        email, name = value["email"], value.get("name")
        sub = "email"
        if not isinstance(email, str):
            raise _reject("wrong_type", "The email must be a string.", sub="email")
        if name is not None:
            if not isinstance(name, str):
                raise _reject("wrong_type", "The name must be a string.", sub="name")
            if len(name) > MAX_DISPLAY_NAME_CHARS:     # bound the work before decoding (linear cost)
                raise _reject(
                    "display_name_too_long",
                    f"The display name exceeds {MAX_DISPLAY_NAME_CHARS} characters.",
                    sub="name",
                )
            _check_header_text(name, sub="name")
            name = name.strip() or None
    else:
        raise _reject("wrong_type", "An address must be a string or an object with an email.")
    _checked(check_address_text, email, sub=sub)
    if not email:
        raise _reject("empty_value", "The email address must not be empty.", **({"sub": sub} if sub else {}))
    try:
        result = validate_email(
            email, check_deliverability=False, allow_smtputf8=False, allow_quoted_local=False
        )
    except EmailNotValidError:
        raise _reject(
            "invalid_address",
            "The email address is not valid (RFC 5321/5322, ASCII local part).",
            **({"sub": sub} if sub else {}),
        ) from None
    if result.ascii_email is None:   # only with SMTPUTF8, which allow_smtputf8=False refuses above
        raise _reject("invalid_address", "The email address is not valid (RFC 5321/5322, ASCII local part).",
                      **({"sub": sub} if sub else {}))
    if _ROUTING.search(result.local_part):
        raise _reject(
            "invalid_address",
            "The local part must not contain '%' or '!' (mail routing syntax, RFC 1123 s. 5.2.16).",
            **({"sub": sub} if sub else {}),
        )
    return EmailAddress(address=result.ascii_email, name=name)


Address = Annotated[EmailAddress, PlainValidator(_parse_address)]


def _strict_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _reject("wrong_type", "The content must be a base64 string.")
    if not value:
        raise _reject("empty_attachment")
    # Bound before decoding: 4 base64 characters carry 3 bytes.
    if len(value) > 4 * ((MAX_ATTACHMENT_BYTES + 2) // 3):
        raise _reject("attachment_too_large", f"An attachment exceeds {MAX_ATTACHMENT_BYTES} bytes decoded.")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise _reject(
            "invalid_base64", "The content is not strict base64 (RFC 4648 alphabet, padded)."
        ) from None
    if not data:
        raise _reject("empty_attachment")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise _reject("attachment_too_large", f"An attachment exceeds {MAX_ATTACHMENT_BYTES} bytes decoded.")
    return data


def _strict_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _reject("wrong_type", "The value must be a string.")
    return value


StrictText = Annotated[str, PlainValidator(_strict_str)]

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------

_CONFIG = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True, frozen=True)


class Attachment(BaseModel):
    """One attachment: ``{"filename": str, "content_type": str, "content": base64 str}``.

    After validation ``content`` holds the decoded bytes (at most :data:`MAX_ATTACHMENT_BYTES`).
    """

    model_config = _CONFIG

    filename: StrictText
    content_type: StrictText
    content: Annotated[bytes, PlainValidator(_strict_base64)]

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        if not value.strip():
            raise _reject("empty_value", "The filename must not be empty.")
        if len(value) > MAX_FILENAME_CHARS:
            raise _reject("invalid_filename", f"The filename exceeds {MAX_FILENAME_CHARS} characters.")
        _checked(check_filename, value)
        return value

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        if len(value) > MAX_CONTENT_TYPE_CHARS:    # bound the work before decoding
            raise _reject("attachment_type_not_allowed",
                          f"A content type has at most {MAX_CONTENT_TYPE_CHARS} characters.")
        _check_header_text(value)
        normalized = value.strip().lower()
        if normalized not in ALLOWED_ATTACHMENT_TYPES:
            raise _reject(
                "attachment_type_not_allowed",
                "Allowed content types: " + ", ".join(sorted(ALLOWED_ATTACHMENT_TYPES)) + ".",
            )
        return normalized

    @model_validator(mode="after")
    def _consistent(self) -> Attachment:
        extensions = ALLOWED_ATTACHMENT_TYPES[self.content_type]
        # The raw name and what a reader sees once RFC 2047 words are decoded must both match.
        shown_name = check_filename(self.filename)[-1]
        if not (self.filename.lower().endswith(extensions) and shown_name.lower().endswith(extensions)):
            raise _reject(
                "attachment_extension_mismatch",
                f"A {self.content_type} attachment needs a filename ending in {' or '.join(extensions)}.",
                sub="filename",
            )
        magic = _MAGIC_BYTES.get(self.content_type)
        if magic and not self.content.startswith(magic):
            raise _reject(
                "attachment_content_mismatch",
                f"The bytes are not a {self.content_type} file.",
                sub="content",
            )
        if self.content_type.startswith("text/"):
            try:
                decoded = self.content.decode("utf-8")
            except UnicodeDecodeError:
                decoded = None
            if decoded is None or "\x00" in decoded:
                raise _reject(
                    "attachment_content_mismatch",
                    "A text attachment must be UTF-8 without NUL bytes.",
                    sub="content",
                )
        return self


def _custom_headers(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_CUSTOM_HEADERS_COUNT:
        raise _reject("too_many_headers", f"At most {MAX_CUSTOM_HEADERS_COUNT} custom headers.")
    seen: set[str] = set()
    for name, header_value in value.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() not in ALLOWED_CUSTOM_HEADERS:
            raise _reject(
                "header_not_allowed",
                "Allowed custom headers: " + ", ".join(sorted(ALLOWED_CUSTOM_HEADERS)) + ".",
                sub=name,
            )
        if name.lower() in seen:     # RFC 5322 s. 1.2.2: field names are case-insensitive
            raise _reject("duplicate_header", "A custom header appears twice (names compare case-insensitively).",
                          sub=name)
        seen.add(name.lower())
        if len(header_value) > MAX_HEADER_VALUE_CHARS:   # bound the work before decoding
            raise _reject(
                "header_value_too_long",
                f"A header value exceeds {MAX_HEADER_VALUE_CHARS} characters.",
                sub=name,
            )
        _check_header_text(header_value, sub=name)
    # as for the subject: the value a reader of the message sees, without surrounding whitespace
    return {name: header_value.strip() for name, header_value in value.items()}


class MessageRequest(BaseModel):
    """The validated body of ``POST /v1/messages`` (see ``README.md`` for a JSON example).

    Fields: ``from`` (address; exposed as ``sender``), ``to``/``cc``/``bcc`` (lists of addresses),
    ``reply_to`` (address or ``None``), ``subject`` (str), ``text``/``html`` (str or ``None``),
    ``attachments`` (list of :class:`Attachment`), ``headers`` (name -> value).
    """

    model_config = _CONFIG

    sender: Address = Field(alias="from")
    to: list[Address] = Field(default_factory=list)
    cc: list[Address] = Field(default_factory=list)
    bcc: list[Address] = Field(default_factory=list)
    reply_to: Address | None = None
    subject: StrictText
    text: StrictText | None = None
    html: StrictText | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    headers: Annotated[dict[str, StrictText], AfterValidator(_custom_headers)] = Field(default_factory=dict)

    @field_validator("sender")
    @classmethod
    def _sender_allowed(cls, value: EmailAddress, info: ValidationInfo) -> EmailAddress:
        identity = ((info.context or {}).get("sender_identity") or "").strip().lower()
        address = value.address.lower()
        allowed = address == identity if "@" in identity else bool(identity) and value.domain == identity
        if not allowed:
            raise _reject("sender_not_allowed", "The sender must be the configured sending identity.")
        return value

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _distinct_recipients(cls, value: list[EmailAddress], info: ValidationInfo) -> list[EmailAddress]:
        # Fields validate in declaration order (to, cc, bcc), so info.data holds the earlier lists:
        # an address already in to (or cc) is dropped here, and repeats within a list too.
        earlier = {"to": (), "cc": ("to",), "bcc": ("to", "cc")}[info.field_name or ""]
        seen = {a.dedupe_key for key in earlier for a in info.data.get(key) or ()}
        distinct: list[EmailAddress] = []
        for address in value:
            if address.dedupe_key not in seen:
                seen.add(address.dedupe_key)
                distinct.append(address)
        return distinct

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if len(value) > MAX_SUBJECT_CHARS:            # bound the work before decoding
            raise _reject("subject_too_long", f"The subject exceeds {MAX_SUBJECT_CHARS} characters.")
        _check_header_text(value)
        if not value.strip():
            raise _reject("empty_value", "The subject must not be empty.")
        # A reader drops the whitespace around a field body (RFC 5322 s. 2.2, 3.2.2): what is
        # accepted is what every reader of the message will see.
        return value.strip()

    @field_validator("text", "html")
    @classmethod
    def _body_part(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise _reject("control_character", "The body must not contain NUL characters.")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_BODY_PART_BYTES:
            raise _reject("body_part_too_large", f"A body part exceeds {MAX_BODY_PART_BYTES} bytes (UTF-8).")
        return value

    @field_validator("attachments")
    @classmethod
    def _attachment_count(cls, value: list[Attachment]) -> list[Attachment]:
        if len(value) > MAX_ATTACHMENTS_COUNT:
            raise _reject("too_many_attachments", f"At most {MAX_ATTACHMENTS_COUNT} attachments.")
        return value

    @model_validator(mode="before")
    @classmethod
    def _early_limits(cls, data: Any) -> Any:
        # Count before validating every item, so 10,000 recipients cost no address parsing.
        if isinstance(data, dict):
            # every list counts, whatever its siblings hold (a wrong-typed cc must not let a huge
            # to list through to address parsing)
            total = sum(len(data[k]) for k in ("to", "cc", "bcc") if isinstance(data.get(k), list))
            if total > MAX_RECIPIENTS_COUNT:
                raise _reject(
                    "too_many_recipients",
                    f"At most {MAX_RECIPIENTS_COUNT} recipients across to, cc and bcc.",
                    sub="to",
                )
            attachments = data.get("attachments")
            if isinstance(attachments, list) and len(attachments) > MAX_ATTACHMENTS_COUNT:
                raise _reject(
                    "too_many_attachments", f"At most {MAX_ATTACHMENTS_COUNT} attachments.", sub="attachments"
                )
        return data

    @model_validator(mode="after")
    def _whole_message(self) -> MessageRequest:
        if not (self.to or self.cc or self.bcc):
            raise _reject("no_recipients", sub="to")
        if self.text is None and self.html is None:
            raise _reject("missing_body", sub="text")
        if estimate_message_bytes(self) > MAX_MESSAGE_BYTES:
            raise _reject(
                "message_too_large",
                f"The encoded message would exceed {MAX_MESSAGE_BYTES} bytes.",
                sub="attachments",
            )
        return self

    @property
    def recipients(self) -> list[EmailAddress]:
        """All recipients, to + cc + bcc, in order."""
        return [*self.to, *self.cc, *self.bcc]


def estimate_message_bytes(message: MessageRequest) -> int:
    """Upper-bound estimate of the MIME message size in bytes (base64 = 4/3, plus line breaks)."""

    def b64(n: int) -> int:
        encoded = 4 * ((n + 2) // 3)
        return encoded + 2 * (encoded // 76 + 1)

    size = 4096 + len(message.subject.encode("utf-8")) * 2
    for part in (message.text, message.html):
        if part is not None:
            size += b64(len(part.encode("utf-8", "surrogatepass"))) + 512
    for attachment in message.attachments:
        size += b64(len(attachment.content)) + 512
    return size


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------

_TYPE_REASONS = {"missing": "missing_field", "extra_forbidden": "unknown_field"}


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for segment in loc:
        if isinstance(segment, int):
            path += f"[{segment}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", segment):
            path += f".{segment}"
        else:
            path += f"[{_hint(segment)}]"
    return path


def validate_message(body: Any, *, sender_identity: str) -> MessageRequest:
    """Validate a parsed request body against the schema and every limit of this module.

    Args:
        body: the JSON value returned by :func:`parse_request_body`.
        sender_identity: the SES identity the API may send from: a domain (``example.com``,
            any address at exactly that domain) or one address (``alerts@example.com``).

    Returns:
        The validated :class:`MessageRequest` (attachments decoded, addresses normalized).

    Raises:
        RequestRejected: on the first problem found, with a reason code from :data:`REASONS`
        and the JSON path of the offending field. Never echoes the rejected value.
    """
    try:
        return MessageRequest.model_validate(body, context={"sender_identity": sender_identity})
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        kind = error["type"]
        loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if kind in REASONS:
            reason, message = kind, error["msg"]
        elif kind in _TYPE_REASONS:
            reason = _TYPE_REASONS[kind]
            message = REASONS[reason]
        elif kind.endswith("_type"):
            reason, message = "wrong_type", REASONS["wrong_type"]
        else:  # pragma: no cover - every constraint above raises one of our reasons
            reason, message = "wrong_type", "The value is not valid."
        if ctx.get("sub"):
            loc = (*loc, ctx["sub"])
        raise RequestRejected(reason, _json_path(loc), message) from None
