"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with a replay window.

Headers (sender and receiver share these names):

* ``X-Mail-Api-Timestamp``: Unix time in seconds when the request was signed;
* ``X-Mail-Api-Signature``: ``v1=<hex digest>``;
* ``Idempotency-Key``: ``<rotation id>:<serial>``, the same on every retry of one delivery.

The scheme follows the common pattern of Stripe/Slack webhook signing: the timestamp is signed
with the body, and a receiver rejects timestamps outside ``window_seconds`` (default 300 s) so a
captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "SignatureError", "sign", "verify"]

TIMESTAMP_HEADER = "X-Mail-Api-Timestamp"
SIGNATURE_HEADER = "X-Mail-Api-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class SignatureError(ValueError):
    """The webhook's signature is missing, malformed, wrong, or outside the replay window."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1=<hex>`` signature of ``body`` at ``timestamp`` (seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, headers: dict[str, str], body: bytes, *, window_seconds: int = 300,
           now: float | None = None) -> int:
    """Check a request's signature; return its timestamp. Raises :class:`SignatureError`."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts_raw = lower.get(TIMESTAMP_HEADER.lower())
    sig = lower.get(SIGNATURE_HEADER.lower())
    if not ts_raw or not sig:
        raise SignatureError("missing timestamp or signature header")
    try:
        ts = int(ts_raw)
    except ValueError:
        raise SignatureError("timestamp header is not an integer") from None
    now = time.time() if now is None else now
    if abs(now - ts) > window_seconds:
        raise SignatureError(f"timestamp outside the {window_seconds}s replay window")
    if not hmac.compare_digest(sign(secret, ts, body), sig):
        raise SignatureError("signature does not match")
    return ts
