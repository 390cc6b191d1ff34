"""Webhook signatures: Standard Webhooks (current) and the ``X-Mail-Api-*`` scheme (deprecated).

**Standard Webhooks** (https://www.standardwebhooks.com/, the specification in the
github.com/standard-webhooks/standard-webhooks repository, ``spec/``). Every key webhook carries

* ``webhook-id``: the message id, ``<rotation id>:<serial>``, the same on every retry of one
  delivery (so it is also the idempotency key);
* ``webhook-timestamp``: Unix time in seconds when the request was signed;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``.

An app in any language verifies them with an off-the-shelf Standard Webhooks library (Go
``github.com/standard-webhooks/standard-webhooks/libraries/go``, Node ``standardwebhooks``, Java
``com.standardwebhooks``, Python ``standardwebhooks``), given the consumer's secret in the ``whsec_``
form (:func:`to_whsec`). Signing and verifying here go through the ``standardwebhooks`` package.

**The secret.** Vault stores one string per consumer (``webhooks/<consumer>``, field
``signing_secret``). Its HMAC key is, for a value starting with ``whsec_``, the base64-decoded rest
(the Standard Webhooks form, as stored by an operator who generated it that way); for any other
value, its UTF-8 bytes (what ``secrets.token_urlsafe(32)`` gives). Either way the key must be at
least 32 bytes (RFC 2104 section 3: not shorter than the hash output). The ``whsec_`` form an app's
library expects is ``"whsec_" + base64(key)``: :func:`to_whsec`.

**Deprecated, accepted for one release** (0.3.x; removed in 0.4): ``X-Mail-Api-Timestamp``,
``X-Mail-Api-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret's UTF-8
bytes>`` and ``Idempotency-Key``. The sender still sends them next to the standard headers; the
receiver accepts a request carrying only them, and logs a deprecation warning.

A receiver rejects timestamps outside ``window_seconds`` (default 300 s, as the spec suggests) so a
captured request cannot be replayed later.

**Header text becomes a number in one place**: :func:`parse_timestamp`. A timestamp is 1 to
:data:`MAX_TIMESTAMP_DIGITS` ASCII digits, matched whole (no sign, space, underscore or non-ASCII
digit or leading zero, all of which ``int()`` would accept), so a header of four hundred ``1`` s is a
:class:`SignatureError`, never an ``OverflowError`` when compared with the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

__all__ = ["IDEMPOTENCY_HEADER", "MAX_TIMESTAMP_DIGITS", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WEBHOOK_ID_HEADER",
           "WEBHOOK_SIGNATURE_HEADER", "WEBHOOK_TIMESTAMP_HEADER", "SignatureError", "sign", "standard_headers",
           "standard_verify", "to_whsec", "verify", "webhook_key"]

WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
#: deprecated (see the module docstring)
TIMESTAMP_HEADER = "X-Mail-Api-Timestamp"
SIGNATURE_HEADER = "X-Mail-Api-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_WHSEC = "whsec_"
#: Most digits of a timestamp header: Unix seconds have 10 digits until the year 2286; 12 keep any
#: value exact as a float (the clock's type), so ``now - ts`` can never overflow.
MAX_TIMESTAMP_DIGITS = 12
_TIMESTAMP = re.compile(rf"0|[1-9][0-9]{{0,{MAX_TIMESTAMP_DIGITS - 1}}}", re.ASCII)


class SignatureError(ValueError):
    """The webhook's signature is missing, malformed, wrong, or outside the replay window."""


def parse_timestamp(raw: str | None, header: str = WEBHOOK_TIMESTAMP_HEADER) -> int:
    """The Unix time in seconds of a timestamp header value ``raw``: 1 to :data:`MAX_TIMESTAMP_DIGITS`
    ASCII digits without a leading zero, the whole value (Standard Webhooks spec: "timestamp in
    seconds since epoch"; the canonical form, since the signature covers the integer's own text).
    Raises :class:`SignatureError` naming ``header`` for anything else, including ``None``."""
    if not isinstance(raw, str) or not _TIMESTAMP.fullmatch(raw):
        raise SignatureError(f"{header} must be Unix time in seconds (1 to {MAX_TIMESTAMP_DIGITS} digits 0-9, "
                             "no leading zero)")
    return int(raw)


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a stored ``signing_secret`` (module docstring). ``ValueError`` for a
    ``whsec_`` value that is not base64 (the message never holds the secret)."""
    if secret.startswith(_WHSEC):
        try:
            return base64.b64decode(secret[len(_WHSEC):], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("signing_secret starts with whsec_ but the rest is not base64") from None
    return secret.encode("utf-8")


def to_whsec(secret: str) -> str:
    """The Standard Webhooks form (``whsec_<base64 key>``) of a stored ``signing_secret``: give this
    to an app that verifies with a Standard Webhooks library."""
    return _WHSEC + base64.b64encode(webhook_key(secret)).decode("ascii")


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent as message ``msg_id`` at ``timestamp``."""
    signature = Webhook(webhook_key(secret)).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8"))
    return {WEBHOOK_ID_HEADER: msg_id, WEBHOOK_TIMESTAMP_HEADER: str(timestamp), WEBHOOK_SIGNATURE_HEADER: signature}


def standard_verify(secret: str, headers: dict[str, str], body: bytes, *, window_seconds: int = 300,
                    now: float | None = None) -> tuple[str, int]:
    """Check a Standard Webhooks request; return ``(webhook-id, timestamp)``. Raises :class:`SignatureError`.

    The expected signature is computed by ``standardwebhooks.Webhook.sign``; the timestamp is judged
    here on the injected clock ``now`` with ``window_seconds`` (the package's ``verify`` reads the
    system clock with a fixed 5-minute tolerance). Any of the space-separated ``v1,`` signatures may
    match (the spec's key rotation)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts_raw, sigs = (lower.get(h) for h in (WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER,
                                                   WEBHOOK_SIGNATURE_HEADER))
    if not msg_id or not ts_raw or not sigs:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not (msg_id.isascii() and msg_id.isprintable()):
        raise SignatureError("webhook-id is not printable ASCII")
    ts = parse_timestamp(ts_raw)
    now = time.time() if now is None else now
    if abs(now - ts) > window_seconds:
        raise SignatureError(f"timestamp outside the {window_seconds}s replay window")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("body is not UTF-8") from None
    expected = standard_headers(secret, msg_id, ts, text.encode("utf-8"))[WEBHOOK_SIGNATURE_HEADER]
    offered = [s for s in sigs.split(" ") if s.startswith("v1,")]
    if not any(_same(expected, s) for s in offered):
        raise SignatureError("signature does not match")
    return msg_id, ts


def _same(expected: str, offered: str) -> bool:
    """Constant-time comparison of two signatures as UTF-8 bytes: a header value from the network
    may hold any character (``hmac.compare_digest`` refuses non-ASCII ``str``; a lone surrogate
    does not encode strictly), and such a value is simply not the signature."""
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8", "surrogatepass"))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Deprecated scheme: the ``v1=<hex>`` signature of ``body`` at ``timestamp`` (seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, headers: dict[str, str], body: bytes, *, window_seconds: int = 300,
           now: float | None = None) -> int:
    """Deprecated scheme: check a request's signature; return its timestamp. Raises :class:`SignatureError`."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts_raw = lower.get(TIMESTAMP_HEADER.lower())
    sig = lower.get(SIGNATURE_HEADER.lower())
    if not ts_raw or not sig:
        raise SignatureError("missing timestamp or signature header")
    ts = parse_timestamp(ts_raw, TIMESTAMP_HEADER)
    now = time.time() if now is None else now
    if abs(now - ts) > window_seconds:
        raise SignatureError(f"timestamp outside the {window_seconds}s replay window")
    if not _same(sign(secret, ts, body), sig):
        raise SignatureError("signature does not match")
    return ts
