"""App-side client: read this consumer's current mail API key from Vault/OpenBao, cache it, refresh
it only when it changed, and record which key the app now uses (its ack).

Dependencies: ``hvac`` and the standard library only (no pydantic, no boto3), so a consuming app can
import it cheaply.

Usage::

    client = KeyClient.from_env()                 # or KeyClient(addr, "billing", auth=AppRoleAuth(...))
    key = client.current_key()                    # ApiKey(serial=3, key_id='abc123')  (value hidden)
    resp = http.post(url, headers={"x-api-key": key.value})
    if resp.status == 403:
        client.report_forbidden(key)              # next current_key() re-reads Vault (rate-limited)

Refresh policy (failure case S3; issue 21): the key is cached in memory and served without a
lock while it is fresh (``refresh_interval`` seconds since Vault last confirmed it). After that,
stale-while-revalidate, after botocore's ``RefreshableCredentials`` (its advisory and mandatory
windows, https://github.com/boto/botocore, ``botocore/credentials.py``):

* *advisory* window (up to ``max_stale`` seconds since Vault last confirmed the key): every caller
  gets the cached key at once and one background thread checks Vault (the refresh lock is taken
  without blocking: at most one refresh runs). A failed check is logged with the staleness
  (``stale for N s``, also :attr:`KeyClient.stale_seconds` and :meth:`KeyClient.metrics`), never
  raised to a caller holding a key;
* *mandatory* window (no key at all, a key older than ``max_stale``, or a key the mail API refused
  with a 403 once a forced read is allowed): the caller waits for a refresh, at most ``max_wait``
  seconds, then gets the key or the refresh's error.

A check reads the secret's *metadata* first (no secret in it) and the *data* only when
``current_version`` moved. After a failure the next try waits ``backoff_base * 2**(n-1)`` seconds
(at most ``max_backoff``), jittered between half and all of it ("equal jitter",
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), counted from the *end*
of the failed try, so a hanging Vault is asked once per back-off, not once per call. A push
(:meth:`KeyClient.notify_push`) or a 403 from the API (:meth:`KeyClient.report_forbidden`) forces
a data read, at most once per ``min_forced_interval`` seconds so a 403 storm cannot hammer Vault.
Every wait is bounded: ``timeout`` per HTTP call, ``max_wait`` for a caller.

Serials only go up: a key with a lower serial than the one in use is never installed on a push's
word or from a Vault answer at an older KV version (a lagging standby, a delayed webhook, a stale
runner); the client moves down when Vault, at the newest version it has read (or a newer one), no
longer lists the key in use as ``current``, ``previous`` or ``pending`` (a rollback that finished, a
pushed key Vault dropped: on a refresh or after a 403), or when a fenced push carries a higher fence
than any push it accepted (a later lease holder's restore, :mod:`rotation.client.fencing`).

Authentication: :class:`TokenAuth`, :class:`TokenFileAuth` (Vault Agent sink), :class:`AppRoleAuth`
(secret id given, or from a file re-read before every login, optionally response-wrapped),
:class:`JwtAuth`, :class:`KubernetesAuth`. The token is
renewed with ``auth/token/renew-self`` once less than a third of its TTL is left; when Vault answers
403 the client logs in again once and retries, then raises :class:`VaultAuthError` (failure case V5).

Fails closed: a missing ``current`` record, an empty value, a missing key id or a record whose
``disabled_at`` is set raises :class:`KeyUnavailable`; nothing here ever returns an empty key. Key
values never appear in logs, reprs or exception text (failure case C1).

Vault endpoints used (https://openbao.org/api-docs/):

* ``GET  <mount>/metadata/<prefix>/keys/<consumer>`` and ``GET <mount>/data/<prefix>/keys/<consumer>?version=N``
  -- https://openbao.org/api-docs/secret/kv/kv-v2/ (read secret metadata / read secret version);
* ``GET/POST <mount>/data/<prefix>/acks/<consumer>`` with ``options.cas`` -- same page (create/update, CAS);
* ``GET  <mount>/data/<prefix>/webhooks/<consumer>`` -- the webhook signing secret;
* ``POST auth/approle/login`` -- https://openbao.org/api-docs/auth/approle/;
* ``POST auth/kubernetes/login`` -- https://openbao.org/api-docs/auth/kubernetes/;
* ``GET  auth/token/lookup-self``, ``POST auth/token/renew-self`` -- https://openbao.org/api-docs/auth/token/;
* ``POST sys/wrapping/lookup``, ``POST sys/wrapping/unwrap`` -- https://openbao.org/api-docs/system/wrapping-lookup/
  and https://openbao.org/api-docs/system/wrapping-unwrap/.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hexc
import requests

from rotation.client.auth import (
    DEFAULT_K8S_JWT_PATH,
    AppRoleAuth,
    Auth,
    JwtAuth,
    KubernetesAuth,
    TokenAuth,
    TokenFileAuth,
)
from rotation.client.errors import (
    KeyClientConfigError,
    KeyClientError,
    KeyUnavailable,
    TamperSuspected,
    VaultAuthError,
    VaultUnavailable,
)
from rotation.client.fencing import Held, supersedes

__all__ = ["ApiKey", "KeyClient"]   # the auth classes and errors: rotation.client.auth / .errors

log = logging.getLogger(__name__)
T = TypeVar("T")

_RENEW_FRACTION = 1 / 3


# -- the key -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiKey:
    """One API key generation as the app uses it. ``value`` is the secret (hidden from ``repr``)."""

    value: str = field(repr=False)
    serial: int
    key_id: str

    @property
    def fingerprint(self) -> str:
        """A non-reversible identifier safe to log: ``sha256:`` + 12 hex digits."""
        return "sha256:" + hashlib.sha256(self.value.encode()).hexdigest()[:12]


def _deleted(deletion_time: Any) -> bool:
    """A KV v2 ``deletion_time`` that has passed (it may be set in the future by
    ``delete_version_after``; an empty string means not deleted)."""
    if not isinstance(deletion_time, str) or not deletion_time:
        return False
    try:
        head, _, frac = deletion_time.rstrip("Z").partition(".")
        when = datetime.fromisoformat(head + ("." + frac[:6] if frac else "")).replace(tzinfo=UTC)
    except ValueError:
        return True   # unparseable: fail closed
    return when <= datetime.now(UTC)


def _validated(record: Any, where: str) -> ApiKey:
    """Build an :class:`ApiKey` from a KeyRecord dict, or raise :class:`KeyUnavailable`."""
    if not isinstance(record, Mapping):
        raise KeyUnavailable(f"{where}: no current key recorded")
    serial = record.get("serial")
    if record.get("disabled_at"):
        raise KeyUnavailable(f"{where}: current key serial {serial} is disabled; refusing to use it")
    value, key_id = record.get("value"), record.get("key_id")
    if not isinstance(value, str) or not value.strip():
        raise KeyUnavailable(f"{where}: current key serial {serial} has an empty value")
    if not isinstance(key_id, str) or not key_id:
        raise KeyUnavailable(f"{where}: current key serial {serial} has no API Gateway key id")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise KeyUnavailable(f"{where}: current key has no valid serial")
    return ApiKey(value=value, serial=serial, key_id=key_id)


class _Forbidden(Exception):
    pass


# -- the client ----------------------------------------------------------------------------------
class KeyClient:
    """Cached, thread-safe access to one consumer's current mail API key in Vault KV v2.

    :param vault_addr: Vault/OpenBao URL, e.g. ``https://vault.internal:8200``.
    :param consumer: consumer name (the ``<consumer>`` path segment).
    :param auth: :class:`TokenAuth`, :class:`AppRoleAuth` or :class:`KubernetesAuth`.
    :param mount: KV v2 mount (default ``secret``); :param prefix: path prefix (default ``mail-api``).
    :param namespace: Vault Enterprise/OpenBao namespace, or ``None``.
    :param refresh_interval: seconds between version checks (default 60).
    :param min_forced_interval: minimum seconds between forced (push/403) refreshes (default 5).
    :param verify: TLS verification (``True``, ``False``, a CA bundle file or a rehashed CA directory).
    :param cert: ``(certificate, key)`` file paths for mutual TLS, or ``None``.
    :param timeout: seconds per Vault HTTP call (default 5).
    :param max_stale: seconds after Vault last confirmed the key during which it is still served
        while Vault does not answer (the advisory window; default ``max(10 * refresh_interval,
        900)``, so a Vault outage of minutes is not felt at any refresh interval); after that a
        caller waits for Vault (at most ``max_wait``) and gets :class:`VaultUnavailable` if it fails.
    :param max_wait: the longest a caller waits for Vault, in seconds (default 10); only a caller
        without a usable key ever waits.
    :param backoff_base: / :param max_backoff: the back-off after a failed refresh, in seconds
        (defaults 1 and 60), doubled per consecutive failure, jittered, from the end of the failure.
    :param clock: monotonic seconds (default ``time.monotonic``; tests inject a fake clock);
        :param jitter: a number in [0, 1) (default ``random.random``); :param spawn: starts a
        background refresh on another thread, never inline (default: a daemon thread).
    :param host: the host name written into the ack (default ``socket.gethostname()``).

    Counters in :attr:`stats` (``metadata_reads``, ``data_reads``, ``logins``, ``renewals``,
    ``ack_writes``, ``refresh_failures``, ``stale_served``, ``lower_serial_refused``;
    ``stale_seconds`` at the last failure) let apps and tests observe how often Vault is called.
    """

    def __init__(self, vault_addr: str, consumer: str, *, auth: Auth, mount: str = "secret",
                 prefix: str = "mail-api", namespace: str | None = None, refresh_interval: float = 60.0,
                 min_forced_interval: float = 5.0, verify: bool | str = True, timeout: float = 5.0,
                 max_stale: float | None = None, host: str | None = None, cert: tuple[str, str] | None = None,
                 max_wait: float = 10.0, backoff_base: float = 1.0, max_backoff: float = 60.0,
                 clock: Callable[[], float] | None = None, jitter: Callable[[], float] | None = None,
                 spawn: Callable[[Callable[[], None]], None] | None = None) -> None:
        if not consumer or "/" in consumer:
            raise KeyClientConfigError("consumer: must be a single path segment such as 'billing'")
        if refresh_interval <= 0 or min_forced_interval < 0:
            raise KeyClientConfigError("refresh_interval must be > 0 s and min_forced_interval >= 0 s")
        if max_wait <= 0 or backoff_base <= 0 or max_backoff < backoff_base:
            raise KeyClientConfigError("max_wait and backoff_base must be > 0 s and max_backoff >= backoff_base")
        self.vault_addr = vault_addr.rstrip("/")
        self.consumer = consumer
        self.auth = auth
        self.mount = mount
        self.prefix = prefix.strip("/")
        self.namespace = namespace
        self.refresh_interval = float(refresh_interval)
        self.min_forced_interval = float(min_forced_interval)
        self.verify = verify
        self.timeout = timeout
        self.max_stale = max(10 * self.refresh_interval, 900.0) if max_stale is None else float(max_stale)
        self.max_wait = float(max_wait)
        self.backoff_base = float(backoff_base)
        self.max_backoff = float(max_backoff)
        self.host = host or socket.gethostname()
        self.key_path = f"{self.prefix}/keys/{consumer}"
        self.ack_path = f"{self.prefix}/acks/{consumer}"
        self.webhook_path = f"{self.prefix}/webhooks/{consumer}"
        self._client = hvac.Client(url=self.vault_addr, namespace=namespace, verify=verify, cert=cert,
                                   timeout=timeout)
        self._client.token = None  # never pick up VAULT_TOKEN / ~/.vault-token implicitly; auth decides
        self._clock: Callable[[], float] = clock or time.monotonic
        self._jitter: Callable[[], float] = jitter or random.random
        self._spawn: Callable[[Callable[[], None]], None] = spawn or self._thread
        self._io_lock = threading.RLock()          # Vault I/O: one hvac session, one token
        self._cond = threading.Condition(threading.Lock())   # state below; never held during I/O
        # (key, clock time until which it is served without a look at Vault): the lock-free fast path
        self._snap: tuple[ApiKey, float] | None = None
        self._key: ApiKey | None = None
        self._version = 0               # KV version the cached key was read at (0 = pushed / none)
        self._max_version = 0           # the highest KV version of the key record read so far
        self._fence = 0                 # the highest fence of a push accepted (0 = no fenced push yet)
        self._confirmed_at = float("-inf")   # clock time Vault last vouched for the key in use
        self._force = False
        self._suspect = False           # the mail API refused the key in use (report_forbidden)
        self._last_forced = float("-inf")
        self._refreshing = False
        self._started = 0               # refreshes started / finished (waiters wait for theirs)
        self._done = 0
        self._failures = 0              # consecutive failed refreshes (the back-off exponent)
        self._retry_at = float("-inf")  # no refresh before this clock time (back-off)
        self._last_error: KeyClientError | None = None
        self._acked: tuple[int, str] | None = None
        self._logged_in = False
        self._token_expires_at: float | None = None
        self._token_ttl = 0.0
        self._renewable = False
        self.stats: dict[str, Any] = {"metadata_reads": 0, "data_reads": 0, "logins": 0, "renewals": 0,
                                      "ack_writes": 0, "refresh_failures": 0, "stale_served": 0,
                                      "stale_seconds": 0.0, "lower_serial_refused": 0}

    def __repr__(self) -> str:
        return (f"KeyClient(vault_addr={self.vault_addr!r}, consumer={self.consumer!r}, "
                f"auth={type(self.auth).__name__}, mount={self.mount!r}, prefix={self.prefix!r})")

    # -- construction from the environment -------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> KeyClient:
        """Build a client from environment variables (the Vault CLI's names where they exist):

        ``VAULT_ADDR`` (required), ``MAIL_API_CONSUMER`` (required), ``VAULT_AUTH_METHOD``
        (``token`` | ``approle`` | ``kubernetes`` | ``jwt``; default ``token``), ``VAULT_TOKEN`` or
        ``VAULT_TOKEN_FILE`` (a Vault Agent sink, re-read after a 403), ``VAULT_ROLE_ID`` +
        ``VAULT_SECRET_ID_FILE`` (re-read before each login; ``VAULT_SECRET_ID_WRAPPED=true`` when
        it holds a response-wrapping token) or ``VAULT_SECRET_ID`` (+ ``VAULT_APPROLE_MOUNT``),
        ``VAULT_KUBERNETES_ROLE`` (+ ``VAULT_KUBERNETES_JWT_PATH``, ``VAULT_KUBERNETES_MOUNT``),
        ``VAULT_JWT_ROLE`` + ``VAULT_JWT_PATH`` (+ ``VAULT_JWT_MOUNT``), ``VAULT_KV_MOUNT`` (default
        ``secret``), ``VAULT_KV_PREFIX`` (default ``mail-api``), ``VAULT_NAMESPACE``, ``VAULT_CACERT``
        (a CA bundle file) or ``VAULT_CAPATH`` (a directory prepared with ``openssl rehash``),
        ``VAULT_CLIENT_CERT`` + ``VAULT_CLIENT_KEY`` (mutual TLS), ``MAIL_API_KEY_REFRESH_SECONDS``
        (default 60). OpenBao's ``BAO_ADDR``, ``BAO_TOKEN``, ``BAO_TOKEN_FILE``, ``BAO_NAMESPACE``,
        ``BAO_CACERT``, ``BAO_CAPATH``, ``BAO_CLIENT_CERT``, ``BAO_CLIENT_KEY`` are accepted when
        the ``VAULT_*`` name is unset (the rotator's rule, :mod:`rotation.settings`). The AWS IAM
        method is the rotator's only: it needs botocore, which this base install does not carry.
        Keyword ``overrides`` win over the environment.

        Raises :class:`KeyClientConfigError` naming the missing/bad variable (never its value).
        """
        raw = os.environ if environ is None else environ
        twins = ("ADDR", "TOKEN", "TOKEN_FILE", "NAMESPACE", "CACERT", "CAPATH", "CLIENT_CERT", "CLIENT_KEY")
        env = {**raw, **{f"VAULT_{n}": raw[f"BAO_{n}"] for n in twins if not raw.get(f"VAULT_{n}") and raw.get(f"BAO_{n}")}}

        def need(name: str) -> str:
            v = env.get(name)
            if not v:
                raise KeyClientConfigError(f"{name} is required")
            return v

        def existing(name: str, kind: str = "file") -> str | None:
            v = env.get(name)
            check = os.path.isdir if kind == "directory" else os.path.isfile
            if v and not check(v):
                raise KeyClientConfigError(f"{name} names no readable {kind}: point it at the {kind} that exists")
            return v or None

        addr = overrides.pop("vault_addr", None) or need("VAULT_ADDR")
        consumer = overrides.pop("consumer", None) or need("MAIL_API_CONSUMER")
        auth = overrides.pop("auth", None)
        if auth is None:
            method = env.get("VAULT_AUTH_METHOD", "token")
            if method == "token":
                token_file = existing("VAULT_TOKEN_FILE")
                if token_file:
                    auth = TokenFileAuth(token_file)
                elif env.get("VAULT_TOKEN"):
                    auth = TokenAuth(env["VAULT_TOKEN"])
                else:
                    raise KeyClientConfigError("VAULT_TOKEN or VAULT_TOKEN_FILE is required when "
                                               "VAULT_AUTH_METHOD=token")
            elif method == "approle":
                secret_file = existing("VAULT_SECRET_ID_FILE")
                wrapped = env.get("VAULT_SECRET_ID_WRAPPED", "").lower() in ("1", "true", "yes")
                if wrapped and not secret_file:
                    raise KeyClientConfigError("VAULT_SECRET_ID_WRAPPED=true needs VAULT_SECRET_ID_FILE")
                auth = AppRoleAuth(need("VAULT_ROLE_ID"), "" if secret_file else need("VAULT_SECRET_ID"),
                                   env.get("VAULT_APPROLE_MOUNT") or "approle", secret_id_file=secret_file,
                                   wrapped=wrapped)
            elif method == "kubernetes":
                auth = KubernetesAuth(need("VAULT_KUBERNETES_ROLE"),
                                      env.get("VAULT_KUBERNETES_JWT_PATH") or DEFAULT_K8S_JWT_PATH,
                                      env.get("VAULT_KUBERNETES_MOUNT") or "kubernetes")
            elif method == "jwt":
                auth = JwtAuth(need("VAULT_JWT_ROLE"), existing("VAULT_JWT_PATH") or need("VAULT_JWT_PATH"),
                               env.get("VAULT_JWT_MOUNT") or "jwt")
            else:
                raise KeyClientConfigError("VAULT_AUTH_METHOD must be token, approle, kubernetes or jwt (AWS IAM "
                                           "auth is for the rotator only)")
        cert_file, key_file = existing("VAULT_CLIENT_CERT"), existing("VAULT_CLIENT_KEY")
        if bool(cert_file) != bool(key_file):
            raise KeyClientConfigError("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together: set both or neither")
        kwargs: dict[str, Any] = {
            "mount": env.get("VAULT_KV_MOUNT") or "secret",
            "prefix": env.get("VAULT_KV_PREFIX") or "mail-api",
            "namespace": env.get("VAULT_NAMESPACE") or None,
            "verify": existing("VAULT_CACERT") or existing("VAULT_CAPATH", "directory") or True,
            "cert": (cert_file, key_file) if cert_file else None,
        }
        if env.get("MAIL_API_KEY_REFRESH_SECONDS"):
            try:
                kwargs["refresh_interval"] = float(env["MAIL_API_KEY_REFRESH_SECONDS"])
            except ValueError:
                raise KeyClientConfigError("MAIL_API_KEY_REFRESH_SECONDS must be a number of seconds") from None
        kwargs.update(overrides)
        return cls(addr, consumer, auth=auth, **kwargs)

    # -- public API ------------------------------------------------------------------------------
    def current_key(self) -> ApiKey:
        """Return the key to use now. Never waits on Vault while a usable key is held.

        * fresh (checked less than ``refresh_interval`` s ago): the cached key, no lock, no I/O;
        * stale but usable (the *advisory* window, up to ``max_stale`` s after Vault last
          confirmed it): the cached key at once; one background refresh is started when none is
          running and no failure back-off is in force (the lock is taken without blocking);
        * no key at all, past ``max_stale``, or a key the mail API refused (:meth:`report_forbidden`)
          once a forced read is allowed (the *mandatory* window): waits for a refresh, at most
          ``max_wait`` s.

        Raises :class:`KeyUnavailable` (no usable key), :class:`VaultUnavailable` (Vault
        unreachable, or no answer within ``max_wait`` s, and no usable cached key) or
        :class:`VaultAuthError`. The two windows follow botocore's ``RefreshableCredentials``
        (advisory and mandatory refresh; https://github.com/boto/botocore, botocore/credentials.py).
        """
        snap = self._snap
        if snap is not None and self._clock() < snap[1]:
            return snap[0]
        with self._cond:
            now = self._clock()
            key = self._key
            forced_due = self._force and now >= self._last_forced + self.min_forced_interval
            if key is not None and not (self._suspect and forced_due) and now - self._confirmed_at < self.max_stale:
                if (forced_due or now >= self._retry_at) and self._start_refresh_locked(forced=forced_due):
                    self._snap = (key, now + self.refresh_interval)   # the fast path again meanwhile
                return key
        return self._wait_for_key(forced=forced_due)

    def refresh(self) -> ApiKey:
        """Force a data read now (ignores the rate limit and the back-off) and wait for it, at
        most ``max_wait`` s; returns the key in use afterwards or raises that read's error."""
        with self._cond:
            self._force = True
            self._last_forced = float("-inf")
        return self._wait_for_key(forced=True, fresh_read=True)

    def wait_for_refresh(self, timeout: float | None = None) -> bool:
        """Wait until no background refresh is in flight (at most ``timeout`` s, default
        ``max_wait``). Returns False when one is still running at the deadline."""
        end = time.monotonic() + (self.max_wait if timeout is None else timeout)
        with self._cond:
            while self._refreshing:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    @property
    def stale_seconds(self) -> float:
        """Seconds the key in use is overdue for confirmation by Vault: 0.0 while Vault confirmed
        it within ``refresh_interval``; it grows while Vault does not answer (the staleness
        metric; ``stats["stale_seconds"]`` holds the value at the last failed refresh)."""
        if self._key is None:
            return 0.0
        return max(0.0, self._clock() - self._confirmed_at - self.refresh_interval)

    def notify_push(self, key: ApiKey | None = None, fence: int | None = None) -> bool:
        """A push arrived. With ``key`` (e.g. unwrapped from a webhook's wrapping token) it becomes
        the key in use at once and is acked, when its serial is higher than the key in use. A key
        with a *lower* serial is never installed on an unfenced push's word (a delayed or replayed
        webhook, a stale runner): the client only moves down when Vault itself no longer lists the
        key in use (a finished rollback; one data read here).

        ``fence`` (optional; :mod:`rotation.client.fencing`): the delivery's fencing token. A fenced
        push is decided by :func:`~rotation.client.fencing.supersedes` against the highest fence
        this client has accepted: a lower fence (a stalled or replayed delivery) is refused whatever
        its serial; a higher fence (a later lease holder, e.g. a rollback restoring the current key
        while Vault still lists the rolled-back key as pending) is installed even with a lower serial.
        Without ``key``, a background refresh re-reads Vault (rate-limited by ``min_forced_interval``).

        Returns True when the pushed key is now in use (a receiver answers 2xx only then), False
        when it was ignored. Waits at most ``max_wait`` s for a refresh in flight.
        """
        if key is None:
            with self._cond:
                self._request_forced_locked()
                if self._clock() >= self._last_forced + self.min_forced_interval and not self._refreshing:
                    self._start_refresh_locked(forced=True)
            return True
        if fence is not None and (not isinstance(fence, int) or isinstance(fence, bool) or fence < 0):
            raise KeyClientError("pushed key: fence must be a non-negative integer")
        key = _validated({"value": key.value, "serial": key.serial, "key_id": key.key_id}, "pushed key")
        with self._io():
            cur = self._key
            if cur is not None and (key.serial, key.key_id, key.value) == (cur.serial, cur.key_id, cur.value):
                with self._cond:
                    self._fence = max(self._fence, fence or 0)
                return True
            if cur is not None and fence is not None and self._fence > 0:
                if not supersedes(key.serial, fence, Held(cur.serial, self._fence, cur.key_id)):
                    log.info("mail API key push for serial %s (fence %s) ignored: older than serial %s "
                             "(fence %s) in use", key.serial, fence, cur.serial, self._fence)
                    self.stats["lower_serial_refused"] += 1
                    return False
                if fence > self._fence:
                    # a later lease holder's word wins, even for a lower serial (a rollback's restore)
                    return self._install_pushed(key, fence)
            if cur is not None and key.serial <= cur.serial:
                try:
                    self._refresh_io(forced=True)
                except KeyClientError as exc:
                    log.info("mail API key push for serial %s ignored: serial %s in use and Vault could not "
                             "be read (%s)", key.serial, cur.serial, type(exc).__name__)
                    return False
                now_in_use = self._key
                if now_in_use is not None and (now_in_use.serial, now_in_use.key_id, now_in_use.value) == (
                        key.serial, key.key_id, key.value):
                    with self._cond:
                        self._fence = max(self._fence, fence or 0)
                    return True
                log.info("mail API key push for serial %s ignored: serial %s in use (never a lower serial on a "
                         "push's word without a higher fence)", key.serial, cur.serial)
                self.stats["lower_serial_refused"] += 1
                return False
            return self._install_pushed(key, fence)

    def _install_pushed(self, key: ApiKey, fence: int | None) -> bool:
        """Install a pushed key (caller holds the I/O lock) and ack it."""
        with self._cond:
            self._install_locked(key, version=0)
            self._fence = max(self._fence, fence or 0)
        log.info("mail API key serial %s (%s) installed from a push (fence %s)", key.serial, key.fingerprint, fence)
        self._ack_best_effort(key)
        return True

    def report_forbidden(self, key: ApiKey | None = None) -> None:
        """The mail API answered 403 with ``key`` (or the cached key): the next :meth:`current_key`
        call waits (at most ``max_wait`` s) for a forced data read, but not sooner than
        ``min_forced_interval`` seconds after the previous forced read; until then the cached key
        is served. Reports for a key that is no longer the cached one are ignored."""
        with self._cond:
            cur = self._key
            if key is not None and cur is not None and key.serial != cur.serial:
                return
            self._suspect = cur is not None
            self._request_forced_locked()

    def metrics(self) -> dict[str, float]:
        """Prometheus-style gauges and counters of this client, for the app to export:
        ``mail_api_key_stale_seconds`` (:attr:`stale_seconds`), ``mail_api_key_serial`` (0 with
        no key), ``mail_api_key_refresh_failures_total``, ``mail_api_key_stale_served_total``."""
        key = self._key
        return {"mail_api_key_stale_seconds": self.stale_seconds,
                "mail_api_key_serial": float(key.serial if key else 0),
                "mail_api_key_refresh_failures_total": float(self.stats["refresh_failures"]),
                "mail_api_key_stale_served_total": float(self.stats["stale_served"])}

    def webhook_signing_secret(self) -> str:
        """Read this consumer's webhook HMAC secret (``<prefix>/webhooks/<consumer>``, field
        ``signing_secret``). Raises :class:`KeyUnavailable` when it is missing."""
        with self._io():
            def read() -> Any:
                return self._client.secrets.kv.v2.read_secret_version(
                    path=self.webhook_path, mount_point=self.mount, raise_on_deleted_version=True)
            r = self._vault("read", self.webhook_path, read)
        secret = ((r.get("data") or {}).get("data") or {}).get("signing_secret")
        if not isinstance(secret, str) or not secret:
            raise KeyUnavailable(f"{self.mount}/data/{self.webhook_path}: no signing_secret")
        return secret

    def unwrap(self, wrap_token: str) -> dict[str, Any]:
        """Unwrap a response-wrapping token exactly once and return its data.

        First looks the token up (``sys/wrapping/lookup``, unauthenticated): it must exist and have
        been created by ``sys/wrapping/wrap``. Then unwraps it with the wrapping token itself as the
        client token (``sys/wrapping/unwrap``), so this app's own token is not needed.
        Raises :class:`TamperSuspected` when the token is unknown, already used, expired or created
        elsewhere; :class:`VaultUnavailable` when Vault cannot be reached (the token may be intact).
        """
        if not wrap_token or not isinstance(wrap_token, str):
            raise TamperSuspected("no wrapping token in the notification")
        c = hvac.Client(url=self.vault_addr, namespace=self.namespace, verify=self.verify, timeout=self.timeout)
        c.token = None  # hvac falls back to VAULT_TOKEN / ~/.vault-token: send no token to lookup
        try:
            info = c.adapter.post("/v1/sys/wrapping/lookup", json={"token": wrap_token})["data"]
        except (hexc.InvalidRequest, hexc.Forbidden, hexc.InvalidPath):
            raise TamperSuspected("wrapping token is not valid: already unwrapped, expired or never issued") from None
        except (hexc.VaultDown, hexc.InternalServerError, hexc.BadGateway, requests.RequestException) as exc:
            raise VaultUnavailable(f"sys/wrapping/lookup: cannot reach Vault ({type(exc).__name__})") from None
        if info.get("creation_path") != "sys/wrapping/wrap":
            raise TamperSuspected(f"wrapping token was created by {info.get('creation_path')!r}, "
                                  "not sys/wrapping/wrap")
        c.token = wrap_token
        try:
            data = c.sys.unwrap()["data"]
        except (hexc.InvalidRequest, hexc.Forbidden, hexc.InvalidPath):
            raise TamperSuspected("wrapping token was unwrapped by someone else between lookup and unwrap") from None
        except (hexc.VaultDown, hexc.InternalServerError, hexc.BadGateway, requests.RequestException) as exc:
            raise VaultUnavailable(f"sys/wrapping/unwrap: cannot reach Vault ({type(exc).__name__})") from None
        finally:
            c.token = None
        if not isinstance(data, dict):
            raise TamperSuspected("wrapping token held no data")
        return data

    # -- internals -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        """Hold the Vault I/O lock (one hvac session, one token), waiting at most ``max_wait`` s."""
        if not self._io_lock.acquire(timeout=self.max_wait):
            raise VaultUnavailable(f"{self.mount}/{self.key_path}: a Vault call has not finished within "
                                   f"{self.max_wait:g} s")
        try:
            yield
        finally:
            self._io_lock.release()

    def _request_forced_locked(self) -> None:
        self._force = True
        snap = self._snap
        if snap is not None:
            when = max(self._clock(), self._last_forced + self.min_forced_interval)
            self._snap = (snap[0], min(snap[1], when))

    def _install_locked(self, key: ApiKey, version: int) -> None:
        now = self._clock()
        if self._key is None or (key.serial, key.key_id) != (self._key.serial, self._key.key_id):
            log.info("mail API key for %s: now serial %s (%s)", self.consumer, key.serial, key.fingerprint)
        self._key = key
        self._version = version
        self._max_version = max(self._max_version, version)
        self._confirm_locked(now)

    def _confirm_locked(self, now: float) -> None:
        """Vault vouched for the key in use at ``now``: fresh again, failures forgotten."""
        if self._failures:
            log.info("Vault answered again: the mail API key of %s is confirmed after %.1f s stale",
                     self.consumer, max(0.0, now - self._confirmed_at - self.refresh_interval))
        self._confirmed_at = now
        self._suspect = False
        self._failures = 0
        self._last_error = None
        self._retry_at = float("-inf")
        self._snap = (self._key, now + self.refresh_interval) if self._key is not None else None
        if self._force:
            self._request_forced_locked()

    def _drop_locked(self) -> None:
        """Fail closed: Vault no longer vouches for any key (disabled, deleted, destroyed, gone)."""
        self._key = None
        self._snap = None
        self._suspect = False

    def _start_refresh_locked(self, *, forced: bool) -> bool:
        """Start one background refresh (caller holds ``_cond``; never blocks: at most one runs).
        Returns False when one is already running."""
        if self._refreshing:
            return False
        self._refreshing = True
        self._started += 1
        if forced:
            self._force = False
            self._last_forced = self._clock()
        self._spawn(lambda: self._refresh_worker(forced))
        return True

    @staticmethod
    def _thread(target: Callable[[], None]) -> None:
        threading.Thread(target=target, name="mail-api-key-refresh", daemon=True).start()

    def _refresh_worker(self, forced: bool) -> None:
        """One refresh: check Vault and install its answer, wake the waiters, then write the ack
        (best effort; :meth:`wait_for_refresh` returns after it, waiters do not wait for it)."""
        finished = False

        def finish() -> None:
            nonlocal finished
            with self._cond:
                if not finished:
                    finished = True
                    self._done += 1
                    self._cond.notify_all()
        try:
            with self._io():
                key: ApiKey | None = None
                try:
                    key = self._refresh_io(forced=forced)
                except KeyClientError:
                    pass              # recorded by _refresh_io (back-off, staleness log)
                finally:
                    finish()
                if key is not None:
                    self._ack_best_effort(key)
        except Exception as exc:  # noqa: BLE001 - never leave waiters without an outcome
            with self._cond:
                if not finished:
                    self._failed_locked(exc if isinstance(exc, KeyClientError) else KeyClientError(
                        f"{self.mount}/{self.key_path}: refresh failed ({type(exc).__name__})"))
            finish()
        finally:
            with self._cond:
                self._refreshing = False
                self._cond.notify_all()

    def _wait_for_key(self, *, forced: bool, fresh_read: bool = False) -> ApiKey:
        """The mandatory window: start a refresh (or join the one in flight) and wait for its
        outcome, at most ``max_wait`` s. ``fresh_read``: a refresh started after this call must
        finish (:meth:`refresh`), a usable key alone is not enough."""
        end = time.monotonic() + self.max_wait
        mine: int | None = None
        with self._cond:
            while True:
                now = self._clock()
                key = self._key
                if mine is not None and self._done >= mine:
                    if key is not None and not self._suspect and (not fresh_read or self._last_error is None):
                        return key
                    raise self._error_copy()
                if mine is None and not fresh_read and key is not None and not self._suspect \
                        and now - self._confirmed_at < self.max_stale:
                    return key            # another refresh made it usable meanwhile
                if not self._refreshing and mine is None:
                    forced_due = forced and now >= self._last_forced + self.min_forced_interval
                    if not forced_due and self._last_error is not None and now < self._retry_at:
                        raise self._error_copy()   # back off: a failing Vault is not asked on every call
                    self._start_refresh_locked(forced=forced_due or fresh_read)
                    mine = self._started
                left = end - time.monotonic()
                if left <= 0:
                    raise VaultUnavailable(f"{self.mount}/{self.key_path}: no answer from Vault within "
                                           f"{self.max_wait:g} s and no usable key to serve")
                self._cond.wait(left)

    def _error_copy(self) -> KeyClientError:
        err = self._last_error or VaultUnavailable(f"{self.mount}/{self.key_path}: no key read yet")
        return type(err)(*err.args)

    def _failed_locked(self, exc: KeyClientError) -> None:
        """A refresh failed: back off from *now* (the end of the failure), with jitter; drop the
        key when Vault says it is unusable; log the staleness."""
        now = self._clock()
        self._failures += 1
        self._last_error = exc
        self.stats["refresh_failures"] += 1
        base = min(self.max_backoff, self.backoff_base * 2 ** (self._failures - 1))
        delay = base / 2 + self._jitter() * base / 2       # "equal jitter": between base/2 and base
        self._retry_at = now + delay
        if isinstance(exc, KeyUnavailable) and not isinstance(exc, VaultUnavailable):
            self._drop_locked()                            # fail closed
            return
        key = self._key
        if key is None:
            return
        stale = max(0.0, now - self._confirmed_at - self.refresh_interval)
        self.stats["stale_seconds"] = stale
        self.stats["stale_served"] += 1
        until = self._confirmed_at + self.max_stale
        self._snap = (key, min(self._retry_at, until))
        if self._force:
            self._request_forced_locked()
        log.warning("Vault refresh failed (%s); serving the cached mail API key serial %s of %s, stale for "
                    "%.1f s (mail_api_key_stale_seconds), for at most %.0f s more; next try in %.1f s",
                    type(exc).__name__, key.serial, self.consumer, stale, max(0.0, until - now), delay)

    def _refresh_io(self, *, forced: bool) -> ApiKey | None:
        """Check Vault (metadata, then data if needed) and install what it says. Caller holds the
        I/O lock, not ``_cond``. Returns the key in use afterwards; raises (and records) the error."""
        try:
            return self._check(forced)
        except KeyClientError as exc:
            with self._cond:
                self._failed_locked(exc)
            raise

    def _check(self, forced: bool) -> ApiKey | None:
        with self._cond:
            cached, cached_version = self._key, self._version
        if not forced:
            meta = self._read_metadata()
            version = int(meta.get("current_version") or 0)
            info = (meta.get("versions") or {}).get(str(version)) or {}
            if version > 0 and (info.get("destroyed") or _deleted(info.get("deletion_time"))):
                # never keep serving a version Vault no longer vouches for (KV v2 metadata
                # ``destroyed`` / ``deletion_time``, https://openbao.org/api-docs/secret/kv/kv-v2/)
                raise KeyUnavailable(f"{self.mount}/data/{self.key_path}: its latest version ({version}) is "
                                     f"{'destroyed' if info.get('destroyed') else 'deleted'}")
            with self._cond:
                if cached is not None and version > 0 and version <= self._max_version and \
                        (version == cached_version or version < self._max_version):
                    # unchanged (or an older version from a lagging replica): the key stands
                    if version == cached_version:
                        self._confirm_locked(self._clock())
                    return self._key
            read = self._read_current(version)
        else:
            read = self._read_current()
        key, version, listed = read
        with self._cond:
            held = self._key
            newest = version >= self._max_version
            if held is None or key.serial > held.serial or (key.serial == held.serial and newest):
                self._install_locked(key, version)
                return key
            if newest and ((held.serial, held.key_id) in listed or (held.serial, None) in listed):
                # Vault still lists the key in use (e.g. a pushed key that is pending): it stands
                self._version = version
                self._max_version = version
                self._confirm_locked(self._clock())
                return held
            if newest:
                # Vault, at the newest version this client has read (or a newer one), does not list
                # the key in use (a rollback finished, or a pushed key Vault never kept): its current
                # key is the one to use, although its serial is lower
                log.info("mail API key serial %s was dropped in Vault (version %s); back to serial %s",
                         held.serial, version, key.serial)
                self._install_locked(key, version)
                return key
            self.stats["lower_serial_refused"] += 1
            self._suspect = False     # the forced read is done: the key in use stays the best there is
            log.warning("Vault answered serial %s at version %s, older than serial %s in use (version %s): "
                        "not switching to a lower serial", key.serial, version, held.serial, self._max_version)
            return held

    def _read_metadata(self) -> dict[str, Any]:
        def read() -> Any:
            return self._client.secrets.kv.v2.read_secret_metadata(path=self.key_path, mount_point=self.mount)
        self.stats["metadata_reads"] += 1
        data: dict[str, Any] = self._vault("read metadata", self.key_path, read)["data"]
        return data

    def _read_current(self, version: int | None = None) -> tuple[ApiKey, int, set[tuple[int, str | None]]]:
        """Read the key record: ``(current key, KV version, {(serial, key id)}`` of the keys Vault
        still lists as ``current``, ``previous`` or ``pending`` and not disabled; the key id is
        ``None`` when the record has none yet: a pending key's API key id reaches Vault only when
        it is promoted)."""
        def read() -> Any:
            return self._client.secrets.kv.v2.read_secret_version(
                path=self.key_path, version=version or None, mount_point=self.mount,
                raise_on_deleted_version=True)
        self.stats["data_reads"] += 1
        r = self._vault("read", self.key_path, read)["data"]
        data = r.get("data") or {}
        listed: set[tuple[int, str | None]] = set()
        for label in ("current", "previous", "pending"):
            rec = data.get(label)
            if isinstance(rec, Mapping) and not rec.get("disabled_at") and isinstance(rec.get("serial"), int):
                kid = rec.get("key_id")
                listed.add((rec["serial"], kid if isinstance(kid, str) and kid else None))
        key = _validated(data.get("current"), f"{self.mount}/data/{self.key_path}")
        return key, int((r.get("metadata") or {}).get("version") or 0), listed

    def _ack_best_effort(self, key: ApiKey) -> None:
        if self._acked == (key.serial, key.key_id):
            return
        try:
            self._write_ack(key)
            self._acked = (key.serial, key.key_id)
        except KeyClientError as exc:
            log.warning("could not record the ack for serial %s (%s); will retry at the next refresh",
                        key.serial, exc)

    def _write_ack(self, key: ApiKey) -> None:
        """CAS-write ``{"serial","key_id","at","host"}`` to ``<prefix>/acks/<consumer>``, keeping
        any ``unwrap_failures`` already reported; on a CAS conflict re-read and retry once."""
        self._update_ack(lambda data: {**data, "serial": key.serial, "key_id": key.key_id,
                                       "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                                       "host": self.host})

    def report_unwrap_failure(self, wrap_token: str, serial: int | None = None) -> None:
        """Tell the rotation jobs that ``wrap_token`` could not be unwrapped (failure case V6).

        Appends ``{"token", "serial", "at"}`` to ``unwrap_failures`` in the consumer's ack record
        (at most the last 10). The token is dead or suspect either way; the rotator looks it up
        and, if someone else unwrapped it within its TTL, raises an alarm and re-issues the key by
        an emergency rotation. Raises :class:`KeyClientError` if the write fails twice.
        """
        report = {"token": wrap_token, "serial": serial,
                  "at": datetime.now(UTC).isoformat(timespec="milliseconds")}
        self._update_ack(lambda data: {**data, "unwrap_failures": [
            *(data.get("unwrap_failures") or [])[-9:], report]})

    def _update_ack(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        def current() -> tuple[int, dict[str, Any]]:
            def read() -> tuple[int, dict[str, Any]]:
                try:
                    r = self._client.secrets.kv.v2.read_secret_version(
                        path=self.ack_path, mount_point=self.mount, raise_on_deleted_version=False)
                except hexc.InvalidPath:
                    return 0, {}
                d = r.get("data") or {}
                return int((d.get("metadata") or {}).get("version") or 0), dict(d.get("data") or {})
            return self._vault("read", self.ack_path, read)

        def write(cas: int, body: dict[str, Any]) -> Callable[[], Any]:
            return lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=self.ack_path, secret=body, cas=cas, mount_point=self.mount)

        for attempt in (1, 2):
            version, data = current()
            try:
                self._vault("cas write", self.ack_path, write(version, change(data)))
                self.stats["ack_writes"] += 1
                return
            except _CasLost:
                if attempt == 2:
                    raise KeyClientError(f"{self.mount}/data/{self.ack_path}: check-and-set lost twice") from None

    # -- token handling --------------------------------------------------------------------------
    def login(self) -> None:
        """Log in with the configured auth method and learn the token's TTL.
        Raises :class:`VaultAuthError` or :class:`VaultUnavailable`."""
        with self._io():
            try:
                try:
                    self.auth.login(self._client)
                except hexc.Forbidden:
                    if isinstance(self.auth, AppRoleAuth):   # a wrong secret id is a 400; 403 = locked out
                        raise VaultAuthError(
                            f"AppRoleAuth login refused with 403: the role is locked out after repeated failed "
                            f"logins (Vault/OpenBao user lockout on auth/{self.auth.mount}); an operator unlocks "
                            "it (sys/locked-users/<mount accessor>/unlock/<role id>) or it unlocks after the "
                            "lockout duration; the operator runbook: docs/operations.md") from None
                    raise
                data = self._client.auth.token.lookup_self()["data"]
            except KeyClientError:
                raise
            except (hexc.Forbidden, hexc.InvalidRequest, hexc.Unauthorized, hexc.InvalidPath) as exc:
                raise VaultAuthError(f"{type(self.auth).__name__} login refused ({type(exc).__name__})") from None
            except (hexc.VaultError, requests.RequestException) as exc:
                raise VaultUnavailable(f"login: cannot reach Vault ({type(exc).__name__})") from None
            self.stats["logins"] += 1
            self._logged_in = True
            self._set_ttl(float(data.get("ttl") or 0), bool(data.get("renewable")),
                          float(data.get("creation_ttl") or 0))

    def _set_ttl(self, ttl: float, renewable: bool, full_ttl: float = 0.0) -> None:
        """``ttl``: seconds left (Vault rounds down to whole seconds); ``full_ttl``: the token's
        TTL period, which the 1/3 renewal threshold is measured against."""
        self._renewable = renewable
        if ttl > 0:
            self._token_ttl = max(ttl, full_ttl)
            self._token_expires_at = time.monotonic() + ttl
        else:
            self._token_expires_at = None

    def _ensure_token(self) -> None:
        if not self._logged_in:
            self.login()
            return
        if self._token_expires_at is None:
            return
        left = self._token_expires_at - time.monotonic()
        if left > self._token_ttl * _RENEW_FRACTION:
            return
        if self._renewable and left > 0:
            try:
                r = self._client.auth.token.renew_self()
                self.stats["renewals"] += 1
                auth = r.get("auth") or {}
                self._set_ttl(float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
                new_left = self._token_expires_at - time.monotonic() if self._token_expires_at else None
                if new_left is None or new_left > self._token_ttl * _RENEW_FRACTION:
                    return
                # max_ttl reached: the renewal could not extend the token far enough
            except (hexc.VaultError, requests.RequestException) as exc:
                log.info("token renewal failed (%s); logging in again", type(exc).__name__)
        if self.auth.can_relogin:
            self.login()
        elif left <= 0:
            raise VaultAuthError("the Vault token expired and token auth cannot log in again")

    def _vault(self, operation: str, path: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with a valid token; on 403 log in once more and retry, then raise
        :class:`VaultAuthError`. Maps hvac/requests errors to this module's errors."""
        where = f"{operation} {self.mount}/{path}"
        self._ensure_token()
        try:
            return self._mapped(where, fn)
        except _Forbidden:
            if not self.auth.can_relogin:
                raise VaultAuthError(f"{where}: permission denied (token auth cannot log in again)") from None
        log.info("%s: permission denied; logging in again once", where)
        self.login()
        try:
            return self._mapped(where, fn)
        except _Forbidden:
            raise VaultAuthError(f"{where}: permission denied after a fresh login (check the policy)") from None

    @staticmethod
    def _mapped(where: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except hexc.Forbidden:
            raise _Forbidden() from None
        except hexc.InvalidPath:
            raise KeyUnavailable(f"{where}: not found") from None
        except hexc.InvalidRequest as exc:
            text = " ".join(getattr(exc, "errors", None) or [str(exc)])
            if "check-and-set" in text or "did not match the current version" in text:
                raise _CasLost() from None
            raise KeyClientError(f"{where}: invalid request") from None
        except (hexc.VaultDown, hexc.InternalServerError, hexc.BadGateway) as exc:
            raise VaultUnavailable(f"{where}: Vault unavailable ({type(exc).__name__})") from None
        except hexc.VaultError as exc:
            raise KeyClientError(f"{where}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            raise VaultUnavailable(f"{where}: cannot reach Vault ({type(exc).__name__})") from None


class _CasLost(KeyClientError):
    pass
