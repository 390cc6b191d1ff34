"""The rotation's canary: a real ``POST /v1/messages`` with the new key, in the test step.

:class:`CanaryVerifier` is an engine verifier (``Engine(verifiers=[...])`` /
``build_engine(settings, consumers, verifiers=[CanaryVerifier(url)])``): called with
``(consumer, key)`` after the key-state check, it returns when the API accepted the key and
raises otherwise. The engine retries a :class:`~rotation.errors.VerificationFailed` with
exponential backoff until its ``verify_timeout_seconds`` deadline, then rolls back; a
:class:`~rotation.errors.CanaryMisconfigured` is not a verdict on the key and must not roll back.

Nothing is ever sent as mail. The body is a *structurally* valid message (it passes the API's
JSON-schema request validator, :data:`infra.components.api.MESSAGE_SCHEMA`) whose sender is an
address under the special-use ``.invalid`` domain (RFC 6761), which the handler refuses with its
own **400** ``{"error": {"reason": ...}}`` — proof that the request got past API Gateway's key check
to the handler, whatever order API Gateway checks the key and the body in. A 400 without the
handler's error shape (API Gateway's own ``BadRequestBody``) proves nothing about the key and is a
configuration error.

Classification (API Gateway error types: AWS Knowledge Center "How do I troubleshoot HTTP 403
errors from API Gateway?"; gateway response types
https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html):

=====================================================  =========================================
answer                                                 verdict
=====================================================  =========================================
400/422 with the handler's ``{"error": {"reason"}}``  accepted: return
400 from API Gateway (``BadRequestBody``, no reason)   ``CanaryMisconfigured`` (the body no longer
                                                       fits the API's schema: update the canary)
401 (a Cognito authorizer wants a token)               ``CanaryMisconfigured`` (the canary sends no
                                                       OAuth token: not supported)
2xx                                                    accepted, logged as a warning (it should
                                                       never be: the handler refuses the sender)
403 ``x-amzn-ErrorType: ForbiddenException``           ``VerificationFailed`` (key not accepted
                                                       yet: propagation; retried)
403 ``MissingAuthenticationTokenException``            ``CanaryMisconfigured`` (routing error:
                                                       wrong URL, path, stage or method)
403 anything else (``AccessDeniedException``: WAF,     ``VerificationFailed`` (retried; the
resource policy)                                       detail names the error type)
429                                                    ``VerificationFailed`` (throttled; retried)
other 4xx (404...)                                     ``CanaryMisconfigured`` (not a gateway
                                                       key verdict: the URL is not the mail API)
5xx, timeout, connection error                         ``VerificationFailed`` (retried)
=====================================================  =========================================

The key is sent only in the ``x-api-key`` header: exception texts carry the consumer, the
serial, the key *id*, the status and the error type, never the key or the response body.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests

from rotation.errors import CanaryMisconfigured, VerificationFailed

__all__ = ["CANARY_BODY", "CanaryVerifier"]

log = logging.getLogger(__name__)

#: Passes the API's request validator; the handler refuses the sender (RFC 6761 ``.invalid``).
CANARY_BODY = json.dumps({
    "from": {"email": "rotation-canary@canary.secure-mail-api.invalid", "name": "rotation canary"},
    "to": ["rotation-canary@canary.secure-mail-api.invalid"],
    "subject": "secure-mail-api rotation canary (never sent)",
    "text": "rotation canary: the handler refuses this sender, so nothing is sent",
}, separators=(",", ":")).encode()


class CanaryVerifier:
    """POST an invalid message to ``url`` with the new key; see the module docstring.

    :param url: the mail API endpoint, e.g. ``https://api.example.com/v1/messages`` or the dev
        gateway's ``http://127.0.0.1:PORT/v1/messages``.
    :param timeout_seconds: per-request connect and read timeout (seconds, default 5). The engine
        owns retries and the overall deadline; one call makes one request.
    :param session: a ``requests.Session`` to use (default: a new one per verifier).

    Raises :class:`VerificationFailed` (retry) or :class:`CanaryMisconfigured` (do not roll back).
    """

    def __init__(self, url: str, *, timeout_seconds: float = 5.0, session: requests.Session | None = None):
        if not url.startswith(("http://", "https://")):
            raise ValueError("canary url must be an http(s) URL of the mail API endpoint")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        self.url = url
        self.timeout = timeout_seconds
        self.session = session or requests.Session()
        self.calls = 0

    def __repr__(self) -> str:
        return f"CanaryVerifier(url={self.url!r}, timeout_seconds={self.timeout})"

    def __call__(self, consumer: Any, key: Any) -> None:
        name = getattr(consumer, "name", str(consumer))
        what = f"canary {name} serial {getattr(key, 'serial', '?')} key id {getattr(key, 'key_id', None)}"
        self.calls += 1
        try:
            resp = self.session.post(self.url, data=CANARY_BODY, timeout=(self.timeout, self.timeout),
                                     headers={"x-api-key": key.value, "Content-Type": "application/json"},
                                     allow_redirects=False)
        except requests.RequestException as exc:
            raise VerificationFailed(f"{what}: no answer from the API ({type(exc).__name__})") from None
        status = resp.status_code
        error_type = (resp.headers.get("x-amzn-ErrorType") or "").split(":", 1)[0].strip()
        handler_answered = status in (400, 422) and _is_handler_rejection(resp)
        resp.close()
        if handler_answered:
            log.info("%s: accepted (HTTP %s from the handler)", what, status)
            return
        if 200 <= status < 300:
            log.warning("%s: accepted, but HTTP %s: the handler should have refused the canary's sender", what, status)
            return
        if status in (400, 422):
            raise CanaryMisconfigured(f"{what}: HTTP {status} {error_type or ''} from {self.url} without the "
                                      "handler's error: the API's request validator refused the canary body "
                                      "(update CANARY_BODY to the API's schema); not a verdict on the key")
        if status == 401:
            raise CanaryMisconfigured(f"{what}: HTTP 401 from {self.url}: the method wants an OAuth token "
                                      "(Cognito authorizer); the canary sends none, so it cannot verify keys there")
        if status == 403 and error_type == "MissingAuthenticationTokenException":
            raise CanaryMisconfigured(f"{what}: HTTP 403 {error_type} from {self.url}: a routing error "
                                      "(wrong URL, stage, path or method), not a verdict on the key")
        if status == 403:
            raise VerificationFailed(f"{what}: key not accepted yet (HTTP 403 {error_type or 'no error type'})")
        if status == 429:
            raise VerificationFailed(f"{what}: throttled (HTTP 429 {error_type or 'no error type'})")
        if status >= 500:
            raise VerificationFailed(f"{what}: API error (HTTP {status} {error_type})".rstrip())
        raise CanaryMisconfigured(f"{what}: HTTP {status} from {self.url}: not the mail API's answer to a key "
                                  "(check the canary URL)")


def _is_handler_rejection(resp: requests.Response) -> bool:
    """True when the body is the mail API handler's ``{"error": {"reason": str, ...}}``. Gateway
    responses use the same body shape but carry ``x-amzn-ErrorType`` (API Gateway sets it on every
    response it makes itself; a Lambda proxy response does not), so they never count."""
    if "x-amzn-ErrorType" in resp.headers:
        return False
    try:
        body = resp.json()
    except ValueError:
        return False
    err = body.get("error") if isinstance(body, dict) else None
    return isinstance(err, dict) and isinstance(err.get("reason"), str)
