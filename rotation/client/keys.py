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

Refresh policy (failure case S3): the key is cached in memory. :meth:`KeyClient.current_key` goes to
Vault only when ``refresh_interval`` seconds have passed since the last check, and then reads the
secret's *metadata* first (no secret in it); the *data* (the key) is read only when
``current_version`` moved. A push (:meth:`KeyClient.notify_push`) or a 403 from the API
(:meth:`KeyClient.report_forbidden`) forces a data read on the next call, at most once per
``min_forced_interval`` seconds so a 403 storm cannot hammer Vault. One lock serialises refreshes:
many threads calling at once cause one read.

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

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
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
    :param max_stale: seconds a cached key may still be served while Vault is unreachable during a
        *periodic* refresh (default ``10 * refresh_interval``); after that, or on a forced refresh,
        :class:`VaultUnavailable` is raised.
    :param host: the host name written into the ack (default ``socket.gethostname()``).

    Counters in :attr:`stats` (``metadata_reads``, ``data_reads``, ``logins``, ``renewals``,
    ``ack_writes``) let apps and tests observe how often Vault is called.
    """

    def __init__(self, vault_addr: str, consumer: str, *, auth: Auth, mount: str = "secret",
                 prefix: str = "mail-api", namespace: str | None = None, refresh_interval: float = 60.0,
                 min_forced_interval: float = 5.0, verify: bool | str = True, timeout: float = 5.0,
                 max_stale: float | None = None, host: str | None = None, cert: tuple[str, str] | None = None):
        if not consumer or "/" in consumer:
            raise KeyClientConfigError("consumer: must be a single path segment such as 'billing'")
        if refresh_interval <= 0 or min_forced_interval < 0:
            raise KeyClientConfigError("refresh_interval must be > 0 s and min_forced_interval >= 0 s")
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
        self.max_stale = 10 * self.refresh_interval if max_stale is None else float(max_stale)
        self.host = host or socket.gethostname()
        self.key_path = f"{self.prefix}/keys/{consumer}"
        self.ack_path = f"{self.prefix}/acks/{consumer}"
        self.webhook_path = f"{self.prefix}/webhooks/{consumer}"
        self._client = hvac.Client(url=self.vault_addr, namespace=namespace, verify=verify, cert=cert,
                                   timeout=timeout)
        self._client.token = None  # never pick up VAULT_TOKEN / ~/.vault-token implicitly; auth decides
        self._lock = threading.RLock()
        # (key, monotonic time of the next check): read without the lock on the fast path
        self._snap: tuple[ApiKey, float] | None = None
        self._version = 0               # KV version the cached key was read at (0 = pushed / none)
        self._fetched_at = 0.0          # monotonic time of the last successful check
        self._force = False
        self._last_forced = float("-inf")
        self._acked: tuple[int, str] | None = None
        self._failed: tuple[float, KeyClientError] | None = None  # (retry not before, error)
        self._logged_in = False
        self._token_expires_at: float | None = None
        self._token_ttl = 0.0
        self._renewable = False
        self.stats = {"metadata_reads": 0, "data_reads": 0, "logins": 0, "renewals": 0, "ack_writes": 0}

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
        """Return the key to use now (cached; see the module docstring for when Vault is read).

        Raises :class:`KeyUnavailable` (no usable key), :class:`VaultUnavailable` (Vault
        unreachable and no fresh-enough cached key) or :class:`VaultAuthError`.
        """
        snap = self._snap
        if snap is not None and time.monotonic() < snap[1]:
            return snap[0]
        with self._lock:
            snap = self._snap
            now = time.monotonic()
            if snap is not None and now < snap[1]:
                return snap[0]  # another thread refreshed while we waited
            forced_read_due = self._force and now >= self._last_forced + self.min_forced_interval
            if self._failed is not None and now < self._failed[0] and not forced_read_due:
                err = self._failed[1]
                raise type(err)(*err.args)  # back off: a failing Vault is not asked on every call
            try:
                return self._refresh()
            except KeyClientError as exc:
                self._failed = (time.monotonic() + min(self.refresh_interval, self.min_forced_interval or 1.0), exc)
                raise

    def refresh(self) -> ApiKey:
        """Force a data read now (ignores the rate limit); returns the key in use afterwards."""
        with self._lock:
            self._force = True
            self._last_forced = float("-inf")
            return self._refresh()

    def notify_push(self, key: ApiKey | None = None) -> bool:
        """A push arrived. With ``key`` (e.g. unwrapped from a webhook's wrapping token) it becomes
        the key in use at once and is acked. A key *older* than the cached one is what a rollback
        pushes (the newer key was a pending one that the rotation dropped): it is installed only
        when Vault confirms it is ``current`` (one data read). Without ``key``, the next
        :meth:`current_key` re-reads Vault (rate-limited).

        Returns True when the pushed key is now in use (a receiver answers 2xx only then), False
        when it was ignored.
        """
        with self._lock:
            if key is None:
                self._request_forced()
                return True
            key = _validated({"value": key.value, "serial": key.serial, "key_id": key.key_id}, "pushed key")
            cur = self._snap[0] if self._snap else None
            version = 0
            if cur is not None and key.serial < cur.serial:
                try:
                    in_vault, version = self._read_current()
                except KeyClientError:
                    in_vault = None
                if in_vault is None or (in_vault.serial, in_vault.key_id, in_vault.value) != (
                        key.serial, key.key_id, key.value):
                    log.info("mail API key push for serial %s ignored: serial %s in use and Vault's current "
                             "is not the pushed key", key.serial, cur.serial)
                    return False
                log.info("mail API key serial %s rolled back to serial %s (Vault's current)", cur.serial, key.serial)
            self._install(key, version=version)
            log.info("mail API key serial %s (%s) installed from a push", key.serial, key.fingerprint)
            self._ack_best_effort(key)
            return True

    def report_forbidden(self, key: ApiKey | None = None) -> None:
        """The mail API answered 403 with ``key`` (or the cached key): re-read Vault on the next
        :meth:`current_key` call, but not sooner than ``min_forced_interval`` seconds after the
        previous forced read. Reports for a key that is no longer the cached one are ignored."""
        with self._lock:
            cur = self._snap[0] if self._snap else None
            if key is not None and cur is not None and key.serial != cur.serial:
                return
            self._request_forced()

    def webhook_signing_secret(self) -> str:
        """Read this consumer's webhook HMAC secret (``<prefix>/webhooks/<consumer>``, field
        ``signing_secret``). Raises :class:`KeyUnavailable` when it is missing."""
        with self._lock:
            def read() -> Any:  # hvac's responses are untyped JSON
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
    def _request_forced(self) -> None:
        self._force = True
        if self._snap is not None:
            key, due = self._snap
            when = max(time.monotonic(), self._last_forced + self.min_forced_interval)
            self._snap = (key, min(due, when))

    def _install(self, key: ApiKey, version: int) -> None:
        now = time.monotonic()
        self._version = version
        self._fetched_at = now
        self._snap = (key, now + self.refresh_interval)

    def _refresh(self) -> ApiKey:
        """Check Vault (metadata, then data if needed). Caller holds the lock."""
        now = time.monotonic()
        forced = self._force and now >= self._last_forced + self.min_forced_interval
        cached = self._snap[0] if self._snap else None
        try:
            if forced:
                self._force = False
                self._last_forced = now
                key, version = self._read_current()
            else:
                meta = self._read_metadata()
                version = int(meta.get("current_version") or 0)
                info = (meta.get("versions") or {}).get(str(version)) or {}
                if version > 0 and (info.get("destroyed") or _deleted(info.get("deletion_time"))):
                    # never keep serving a version Vault no longer vouches for (KV v2 metadata
                    # ``destroyed`` / ``deletion_time``, https://openbao.org/api-docs/secret/kv/kv-v2/)
                    raise KeyUnavailable(f"{self.mount}/data/{self.key_path}: its latest version ({version}) is "
                                         f"{'destroyed' if info.get('destroyed') else 'deleted'}")
                if cached is not None and version == self._version and version > 0:
                    self._fetched_at = now
                    self._failed = None
                    self._snap = (cached, now + self.refresh_interval)
                    return cached
                key, version = self._read_current(version)
        except VaultUnavailable:
            if cached is not None and not forced and now - self._fetched_at < self.max_stale:
                log.warning("Vault unreachable; using the cached mail API key serial %s for now", cached.serial)
                self._snap = (cached, now + min(self.refresh_interval, 5.0))
                return cached
            raise
        except KeyUnavailable:
            self._snap = None  # fail closed: never serve a key Vault no longer vouches for
            raise
        key = self._prefer_pushed(cached, key)
        if cached is None or (key.serial, key.key_id) != (cached.serial, cached.key_id):
            log.info("mail API key for %s: now serial %s (%s)", self.consumer, key.serial, key.fingerprint)
        self._install(key, version)
        self._failed = None
        self._ack_best_effort(key)
        return key

    def _prefer_pushed(self, cached: ApiKey | None, key: ApiKey) -> ApiKey:
        """A pushed key may be newer than ``current`` (delivered before promotion). Keep it while
        Vault still lists it as ``pending``; go back to ``current`` if the pending key was dropped."""
        if cached is None or cached.serial <= key.serial:
            return key
        pending = self._last_pending
        if pending and pending.get("serial") == cached.serial and pending.get("key_id") == cached.key_id \
                and not pending.get("disabled_at"):
            return cached
        return key

    _last_pending: Mapping[str, Any] | None = None

    def _read_metadata(self) -> dict[str, Any]:
        def read() -> Any:  # hvac's responses are untyped JSON
            return self._client.secrets.kv.v2.read_secret_metadata(path=self.key_path, mount_point=self.mount)
        self.stats["metadata_reads"] += 1
        metadata: dict[str, Any] = self._vault("read metadata", self.key_path, read)["data"]
        return metadata

    def _read_current(self, version: int | None = None) -> tuple[ApiKey, int]:
        def read() -> Any:  # hvac's responses are untyped JSON
            return self._client.secrets.kv.v2.read_secret_version(
                path=self.key_path, version=version or None, mount_point=self.mount,
                raise_on_deleted_version=True)
        self.stats["data_reads"] += 1
        r = self._vault("read", self.key_path, read)["data"]
        data = r.get("data") or {}
        self._last_pending = data.get("pending") if isinstance(data.get("pending"), Mapping) else None
        key = _validated(data.get("current"), f"{self.mount}/data/{self.key_path}")
        return key, int((r.get("metadata") or {}).get("version") or 0)

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
        with self._lock:
            try:
                self.auth.login(self._client)
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
