"""Signed webhook target: tells a consumer that a new key is ready, carrying a single-use Vault
response-wrapping token instead of the key (docs/architecture.md, "Delivery to consuming apps").

Body (JSON): ``consumer``, ``serial``, ``fence`` (the fencing token, :mod:`rotation.client.fencing`:
the receiver refuses a delivery older than the key it holds), ``rotation_id``, ``key_id``,
``fingerprint``, ``wrap_token`` (unwrap it once with ``sys/wrapping/unwrap``), ``wrap_ttl`` (seconds).
Signed per :mod:`rotation.client.signing`: Standard Webhooks headers (``webhook-id`` =
``<rotation id>:<serial>``, ``webhook-timestamp``, ``webhook-signature``), plus the deprecated
``X-Mail-Api-*`` / ``Idempotency-Key`` headers for receivers not yet upgraded (this release only). Connect timeout 3 s, read timeout 10 s, and an overall
deadline (``push_timeout_seconds``); at most 3 attempts, retried only on 5xx and connection
errors, with the same ``Idempotency-Key`` so a consumer that already processed one ignores the rest
(failure case S2).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from rotation.audit import REDACTOR
from rotation.client.receiver import check_signing_secret
from rotation.client.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    standard_headers,
)
from rotation.config import WebhookTarget
from rotation.settings import classify_ip
from rotation.targets import Delivery, PushResult

__all__ = ["SignedWebhookTarget"]

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 3


class _Retryable(Exception):
    pass


class SignedWebhookTarget:
    """Push a new key as a signed, response-wrapped webhook delivery.

    ``allow_loopback`` / ``allow_private`` (settings ``ROTATION_WEBHOOK_ALLOW_LOOPBACK`` /
    ``_PRIVATE``): whether a host that *resolves* to a loopback / private address may be sent to;
    metadata, link-local, unspecified and multicast addresses never may.
    """

    def __init__(self, spec: WebhookTarget, vault, *, deadline_seconds: float = 15.0,
                 session: requests.Session | None = None, allow_loopback: bool = False,
                 allow_private: bool = False):
        self.allow = {"metadata": False, "unroutable": False, "loopback": allow_loopback,
                      "private": allow_private}
        self.url = spec.url
        self.required = spec.required
        self.target_id = spec.target_id
        self.wrap_ttl = int(spec.wrap_ttl.total_seconds())
        self.vault = vault
        self.deadline = deadline_seconds
        self.session = session or requests.Session()

    def push(self, delivery: Delivery) -> PushResult:
        refused = _refused_destination(self.url, self.allow)
        if refused:
            return PushResult(self.target_id, False, refused)
        try:
            secret = self.vault.read_webhook_secret(delivery.consumer)
        except Exception as exc:  # noqa: BLE001 - reported as this target's failure
            return PushResult(self.target_id, False, f"vault: {REDACTOR.scrub(str(exc))}")
        REDACTOR.register(secret)
        try:
            check_signing_secret(secret)
        except ValueError as exc:
            return PushResult(self.target_id, False, f"not sent: {exc}")
        try:
            wrap = self.vault.wrap({"api_key": delivery.value, "serial": delivery.serial,
                                    "key_id": delivery.key_id}, self.wrap_ttl)
        except Exception as exc:  # noqa: BLE001 - reported as this target's failure
            return PushResult(self.target_id, False, f"vault: {REDACTOR.scrub(str(exc))}")
        REDACTOR.register(secret, wrap["token"])
        # Tamper check before sending (failure case V6): the token must be live and made by sys/wrapping/wrap.
        info = self.vault.lookup_wrapping_token(wrap["token"])
        if info is None or info.get("creation_path") != "sys/wrapping/wrap":
            return PushResult(self.target_id, False, "wrapping token failed its lookup right after wrapping "
                                                     "(tamper suspected); not sent")
        expires_at = (datetime.now(UTC) + timedelta(seconds=self.wrap_ttl)).isoformat(timespec="milliseconds")
        body = json.dumps({
            "consumer": delivery.consumer, "serial": delivery.serial, "fence": delivery.fence,
            "rotation_id": delivery.rotation_id,
            "key_id": delivery.key_id, "fingerprint": delivery.fingerprint,
            "wrap_token": wrap["token"], "wrap_ttl": self.wrap_ttl,
        }, separators=(",", ":")).encode()
        idem = f"{delivery.rotation_id}:{delivery.serial}"
        started = time.monotonic()

        def attempt() -> requests.Response:
            ts = int(time.time())
            left = self.deadline - (time.monotonic() - started)
            if left <= 0:
                raise TimeoutError("deadline")
            try:
                resp = self.session.post(
                    self.url, data=body, allow_redirects=False,
                    timeout=(min(CONNECT_TIMEOUT_S, left), min(READ_TIMEOUT_S, left)),
                    headers={"Content-Type": "application/json", **standard_headers(secret, idem, ts, body),
                             TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body),
                             IDEMPOTENCY_HEADER: idem})
            except requests.ConnectionError as exc:
                raise _Retryable(f"connection error ({type(exc).__name__})") from None
            except requests.Timeout:
                raise _Retryable("timed out") from None
            if resp.status_code >= 500:
                raise _Retryable(f"HTTP {resp.status_code}")
            return resp

        try:
            resp = Retrying(
                retry=retry_if_exception_type(_Retryable),
                stop=stop_after_attempt(MAX_ATTEMPTS) | stop_after_delay(self.deadline),
                wait=wait_random_exponential(multiplier=0.2, max=2), reraise=True,
            )(attempt)
        except (_Retryable, TimeoutError, RetryError) as exc:
            return PushResult(self.target_id, False, f"no answer after retries: {exc}",
                              {"wrap_accessor": wrap.get("accessor")})
        if 200 <= resp.status_code < 300:
            return PushResult(self.target_id, True, f"HTTP {resp.status_code}",
                              {"wrap_accessor": wrap.get("accessor"), "wrap_token_hash": _h(wrap["token"]),
                               "wrap_expires_at": expires_at})
        if resp.status_code == 410:
            return PushResult(self.target_id, False, "HTTP 410: the consumer could not unwrap the token "
                                                     "(tamper suspected)",
                              {"wrap_token_hash": _h(wrap["token"]), "wrap_expires_at": expires_at})
        return PushResult(self.target_id, False, f"HTTP {resp.status_code}", {"wrap_accessor": wrap.get("accessor")})


def _refused_destination(url: str, allow: dict[str, bool]) -> str | None:
    """Why ``url`` must not be sent to *after DNS resolution*, or ``None``: a host that resolves to
    a link-local / cloud metadata, unspecified or multicast address is refused whatever the
    settings, and one that resolves to a loopback or private address unless ``allow`` says so
    (the consumers file was checked for literal addresses already; this catches a *name* that
    resolves there). A name that does not resolve is left to the HTTP client's error. The HTTP
    client resolves the name again when it connects, so a DNS answer that changes in between
    (rebinding) is not covered: keep webhook hosts under your own DNS."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, urlsplit(url).port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        try:
            kind = classify_ip(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
        if kind in allow and not allow[kind]:
            return f"not sent: the host resolves to a {kind} address"
    return None


def _h(token: str) -> str:
    from rotation.records import fingerprint
    return fingerprint(token)
