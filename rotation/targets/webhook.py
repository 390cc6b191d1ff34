"""Signed webhook target: tells a consumer that a new key is ready, carrying a single-use Vault
response-wrapping token instead of the key (docs/architecture.md, "Delivery to consuming apps").

Body (JSON): ``consumer``, ``serial``, ``fence`` (the fencing token, :mod:`rotation.client.fencing`:
the receiver refuses a delivery older than the key it holds), ``rotation_id``, ``key_id``,
``fingerprint``, ``wrap_token`` (unwrap it once with ``sys/wrapping/unwrap``), ``wrap_ttl`` (seconds).
Signed per :mod:`rotation.client.signing`: Standard Webhooks headers (``webhook-id`` =
``<rotation id>:<serial>``, ``webhook-timestamp``, ``webhook-signature``), plus the deprecated
``X-Mail-Api-*`` / ``Idempotency-Key`` headers for receivers not yet upgraded (this release only).

Bounded whatever the receiver does (failure cases S2 and H1, :mod:`rotation.targets.bounded_http`):
one overall deadline (``push_timeout_seconds``, counted from the start of :meth:`push`) covers
every attempt's connect, request, status line, headers and body, enforced by a watchdog that
shuts the socket down, so a receiver that hangs or trickles cannot hold the push past it; connect
timeout 3 s and read timeout 10 s per socket operation within it; the answer body is read in
bounded chunks and refused beyond :data:`MAX_ANSWER_BYTES` (64 KiB), so a flood costs at most that
much memory. At most 3 attempts, retried only on 5xx, connection errors and per-read timeouts,
with the same ``Idempotency-Key`` so a consumer that already processed one ignores the rest.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

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
from rotation.targets.bounded_http import Answer, DeadlineExceeded, ExchangeFailed
from rotation.targets.bounded_http import post as bounded_post

__all__ = ["SignedWebhookTarget"]

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 3
#: the longest answer body read from a receiver (bytes); Standard Webhooks receivers answer 2xx with
#: an empty or short body (the Standard Webhooks specification, https://www.standardwebhooks.com/)
MAX_ANSWER_BYTES = 64 * 1024


class _Retryable(Exception):
    pass


class SignedWebhookTarget:
    """Push a new key as a signed, response-wrapped webhook delivery.

    ``allow_loopback`` / ``allow_private`` (settings ``ROTATION_WEBHOOK_ALLOW_LOOPBACK`` /
    ``_PRIVATE``): whether a host that *resolves* to a loopback / private address may be sent to;
    metadata, link-local, unspecified and multicast addresses never may.
    """

    def __init__(self, spec: WebhookTarget, vault, *, deadline_seconds: float = 15.0,
                 allow_loopback: bool = False, allow_private: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.allow = {"metadata": False, "unroutable": False, "loopback": allow_loopback,
                      "private": allow_private}
        self.url = spec.url
        self.required = spec.required
        self.target_id = spec.target_id
        self.wrap_ttl = int(spec.wrap_ttl.total_seconds())
        self.vault = vault
        self.deadline = deadline_seconds
        self.clock = clock

    def preflight(self, consumer: str) -> str | None:
        """Why a push to ``consumer`` would be refused, found by reading only: the destination
        (after DNS resolution) and the signing secret read from Vault, which must be at least 32
        bytes (:func:`rotation.client.receiver.check_signing_secret`). The secret never appears in
        the answer. Raises what the Vault read raises (the engine reports it)."""
        refused = _refused_destination(self.url, self.allow)
        if refused:
            return refused
        secret = self.vault.read_webhook_secret(consumer)
        REDACTOR.register(secret)
        try:
            check_signing_secret(secret)
        except ValueError as exc:
            return f"the webhook signing secret read from Vault is unusable: {exc}"
        return None

    def push(self, delivery: Delivery) -> PushResult:
        started = self.clock()
        refused, address = _resolve_checked(self.url, self.allow)
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

        def attempt() -> Answer:
            ts = int(time.time())
            headers = {"Content-Type": "application/json", **standard_headers(secret, idem, ts, body),
                       TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body), IDEMPOTENCY_HEADER: idem}
            return self._exchange(body, headers, started + self.deadline, address)

        backoff = wait_random_exponential(multiplier=0.2, max=2)
        try:
            resp = Retrying(
                retry=retry_if_exception_type(_Retryable),
                stop=stop_after_attempt(MAX_ATTEMPTS) | stop_after_delay(self.deadline),
                wait=lambda rs: min(backoff(rs), max(0.0, started + self.deadline - self.clock())), reraise=True,
            )(attempt)
        except (_Retryable, RetryError) as exc:
            return PushResult(self.target_id, False, f"no answer after retries: {exc}",
                              {"wrap_accessor": wrap.get("accessor")})
        except DeadlineExceeded as exc:
            return PushResult(self.target_id, False, f"no answer within the {self.deadline:g} s deadline ({exc})",
                              {"wrap_accessor": wrap.get("accessor")})
        except ExchangeFailed as exc:
            return PushResult(self.target_id, False, f"answer refused: {exc}", {"wrap_accessor": wrap.get("accessor")})
        if 200 <= resp.status < 300:
            return PushResult(self.target_id, True, f"HTTP {resp.status}",
                              {"wrap_accessor": wrap.get("accessor"), "wrap_token_hash": _h(wrap["token"]),
                               "wrap_expires_at": expires_at})
        if resp.status == 410:
            return PushResult(self.target_id, False, "HTTP 410: the consumer could not unwrap the token "
                                                     "(tamper suspected)",
                              {"wrap_token_hash": _h(wrap["token"]), "wrap_expires_at": expires_at})
        return PushResult(self.target_id, False, f"HTTP {resp.status}", {"wrap_accessor": wrap.get("accessor")})

    def _exchange(self, body: bytes, headers: dict[str, str], deadline: float, address: str | None) -> Answer:
        """One attempt to ``address`` (checked by :func:`_resolve_checked`; ``None``: resolve the
        URL's host), over by ``deadline`` (on ``self.clock``). Raises ``_Retryable`` for a failure
        worth another attempt (5xx, connection error, per-read timeout), ``ExchangeFailed`` for one
        that is not (deadline passed, answer too large or malformed)."""
        try:
            answer = bounded_post(self.url, body, headers, deadline=deadline, connect_timeout=CONNECT_TIMEOUT_S,
                                  read_timeout=READ_TIMEOUT_S, max_body_bytes=MAX_ANSWER_BYTES, connect_to=address,
                                  clock=self.clock)
        except ExchangeFailed as exc:
            if exc.retryable:
                raise _Retryable(str(exc)) from None
            raise
        if answer.status >= 500:
            raise _Retryable(f"HTTP {answer.status}")
        return answer


def _refused_destination(url: str, allow: dict[str, bool]) -> str | None:
    """Why ``url`` must not be sent to after DNS resolution, or ``None`` (:func:`_resolve_checked`)."""
    return _resolve_checked(url, allow)[0]


def _resolve_checked(url: str, allow: dict[str, bool]) -> tuple[str | None, str | None]:
    """``(why url must not be sent to, or None; the address to connect to, or None)``, after DNS
    resolution: a host that resolves to a link-local / cloud metadata, unspecified or multicast
    address is refused whatever the settings, and one that resolves to a loopback or private
    address unless ``allow`` says so (the consumers file was checked for literal addresses already;
    this catches a *name* that resolves there). Every address of the answer is checked; the first
    is the one the push connects to (:func:`rotation.targets.bounded_http.post`'s ``connect_to``),
    so a DNS answer that changes between the check and the connection (rebinding) is not used.
    A name that does not resolve (or resolves to nothing usable) is refused too: connecting would
    resolve it again, unchecked."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, urlsplit(url).port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return f"not sent: the host name does not resolve ({type(exc).__name__}); check the URL and DNS", None
    first = None
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        try:
            kind = classify_ip(ipaddress.ip_address(address))
        except ValueError:
            continue
        if kind in allow and not allow[kind]:
            return f"not sent: the host resolves to a {kind} address", None
        first = first or address
    if first is None:
        return "not sent: the host name resolves to no usable address; check the URL and DNS", None
    return None, first


def _h(token: str) -> str:
    from rotation.records import fingerprint
    return fingerprint(token)
