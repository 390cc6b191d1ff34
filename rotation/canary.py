"""The rotation's canary: a real ``POST /v1/messages`` with the new key, in the test step.

:class:`CanaryVerifier` is an engine verifier (``Engine(verifiers=[...])`` /
``build_engine(settings, consumers, verifiers=[CanaryVerifier(url)])``): called with
``(consumer, key)`` after the key-state check, it returns when the API accepted the key and
raises otherwise. The engine retries a :class:`~rotation.errors.VerificationFailed` with
exponential backoff until its ``verify_timeout_seconds`` deadline, then rolls back; a
:class:`~rotation.errors.CanaryMisconfigured` is not a verdict on the key and must not roll back.

Nothing is ever sent as mail: the body is deliberately invalid (``{}``), so a request that gets
past API Gateway's key check reaches the handler's validation and answers **400**
(``missing_field``) — proof the key was accepted, with nothing sent or recorded.

Classification (API Gateway error types: AWS Knowledge Center "How do I troubleshoot HTTP 403
errors from API Gateway?"; gateway response types
https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html):

=====================================================  =========================================
answer                                                 verdict
=====================================================  =========================================
2xx, 400, 422                                          accepted: return
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

import logging
from typing import Any

import requests

from .errors import CanaryMisconfigured, VerificationFailed

__all__ = ["CANARY_BODY", "CanaryVerifier"]

log = logging.getLogger(__name__)

CANARY_BODY = b"{}"  # fails the handler's validation (missing_field): nothing is ever sent


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
        resp.close()
        if 200 <= status < 300 or status in (400, 422):
            log.info("%s: accepted (HTTP %s)", what, status)
            return
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
