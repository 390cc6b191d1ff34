"""KV v2 access for the rotation jobs: check-and-set writes, the per-consumer lease, staging
labels, authentication and token renewal. The one module where hvac errors become ours.

Time: leases are judged on Vault's clock (:class:`VaultClock`: the ``Date`` header of Vault's
answers, carried forward with a monotonic clock), never on the runner's wall clock, so two runners
with skewed clocks agree on when a lease runs out.

Every write is a check-and-set (CAS) write with the version that was read: a lost race raises
:class:`~rotation.errors.CasConflict` and never clobbers the newer version (failure cases V1, V2).
The mount must be KV version 2 (V3); mount and path are separate settings (V4). The token is
renewed with ``auth/token/renew-self`` before it expires, and a 403 triggers one fresh login (V5).

Vault doc pages: https://openbao.org/api-docs/secret/kv/kv-v2/ (data, metadata, ``cas``),
https://openbao.org/api-docs/auth/approle/, https://openbao.org/api-docs/system/wrapping-wrap/.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hexc

from rotation.backends.vault_auth import (
    AppRoleSecretSource,
    aws_iam_login_payload,
    aws_web_identity_token,
    read_credential_file,
)
from rotation.backends.vault_errors import vault_errors
from rotation.errors import (
    CasConflict,
    EmptyKeyValue,
    LockHeld,
    MalformedRecord,
    RecordGone,
    UnsupportedMount,
    VaultError,
    VaultPermissionDenied,
)
from rotation.records import KeyState, RotationRecord
from rotation.settings import Settings
from rotation.status_digest import decode as decode_digest
from rotation.status_digest import encode as encode_digest

__all__ = ["VaultClock", "VaultStore", "token_lifetime"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RENEW_FRACTION = 1 / 3  # renew when less than a third of the TTL is left
_TIMER_FRACTION = 1 / 2  # the background renewer renews once half the TTL is gone


def token_lifetime(lookup: dict[str, Any]) -> float | None:
    """Seconds a token has left, from ``auth/token/lookup-self`` data; ``None`` when it never
    expires. Only a token without ``expire_time`` and without ``ttl`` never expires (a root
    token); ``ttl: 0`` with an ``expire_time`` is a token that has run out
    (https://openbao.org/api-docs/auth/token/#lookup-a-token-self)."""
    ttl = float(lookup.get("ttl") or 0)
    if not lookup.get("expire_time") and ttl <= 0:
        return None
    return max(ttl, 0.0)


def _required(value: T | None, env: str, method: str) -> T:
    """``value``, which :class:`Settings` requires for ``VAULT_AUTH_METHOD=method``; raises
    :class:`VaultError` naming ``env`` when a directly constructed Settings lacks it."""
    if value is None:
        raise VaultError(f"{env} is required for VAULT_AUTH_METHOD={method}")
    return value


class VaultClock:
    """Vault's time, which every runner shares, as an interval that only moves forward.

    A Vault answer's ``Date`` header (RFC 9110 section 6.6.1: one-second resolution, the moment
    the answer was made) was stamped somewhere inside the request's round trip. So when the answer
    is read, Vault's time is at least ``Date`` (a **lower bound**: the answer may have been held in
    transit for any time since), and at most ``Date + 1 s + round trip`` (an **upper bound**; the
    round trip is requests' ``Response.elapsed``). Both bounds are carried forward between answers
    with ``monotonic``, so a step of the local wall clock never moves them, and an answer only ever
    raises them: a late answer (its ``Date`` behind the carried-forward bound) never moves the clock
    back. ``now()`` (``__call__``) is the lower bound: lease expiries written and leases taken over
    are judged on it. :meth:`latest` is the upper bound: a runner asks whether its *own* lease may
    have run out with it (the conservative end: it stops early rather than late)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        # (lower bound, upper bound, monotonic reading), in epoch seconds
        self._anchor: tuple[float, float, float] | None = None
        self._lock = threading.Lock()

    def observe(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: read the answer's ``Date`` header and round trip."""
        date = getattr(response, "headers", {}).get("Date")
        if not date:
            return
        try:
            ts = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        elapsed = getattr(response, "elapsed", None)
        rtt = max(elapsed.total_seconds(), 0.0) if elapsed is not None else 0.0
        self.observe_date(ts, rtt)

    def observe_date(self, date: float, round_trip: float) -> None:
        """Take in one answer: ``date`` (epoch seconds of its ``Date`` header) read now, after a
        round trip of ``round_trip`` seconds. Raises the bounds, never lowers them."""
        with self._lock:
            m = self._monotonic()
            lower, upper = date, date + 1.0 + round_trip
            if self._anchor is not None:
                lo, up, at = self._anchor
                lower, upper = max(lower, lo + (m - at)), max(upper, up + (m - at))
            self._anchor = (lower, max(upper, lower), m)

    @property
    def anchored(self) -> bool:
        return self._anchor is not None

    def _bounds(self) -> tuple[float, float]:
        with self._lock:
            if self._anchor is None:
                raise VaultError("Vault's time is not known yet: no answer from Vault so far")
            lo, up, at = self._anchor
            elapsed = self._monotonic() - at
            return lo + elapsed, up + elapsed

    def __call__(self) -> float:
        """Vault's time, lower bound (epoch seconds). Raises :class:`VaultError` before any answer."""
        return self._bounds()[0]

    def latest(self) -> float:
        """Vault's time, upper bound (epoch seconds): what a lease holder judges its lease on."""
        return self._bounds()[1]


class VaultStore:
    """The rotation jobs' view of Vault: :class:`KeyState` and :class:`RotationRecord` per consumer.

    Thread-safe for token handling; each method is one or two HTTP calls. Raises
    :class:`~rotation.errors.VaultError` (or a subclass) on any failure.
    """

    def __init__(self, settings: Settings, client: hvac.Client | None = None):
        self.settings = settings
        self.mount = settings.vault_kv_mount
        self.prefix = settings.vault_kv_prefix
        if client is None:
            client = hvac.Client(url=settings.vault_addr, namespace=settings.vault_namespace,
                                 verify=settings.vault_verify, cert=settings.vault_cert,
                                 timeout=settings.vault_timeout_seconds)
            client.token = None   # never VAULT_TOKEN / ~/.vault-token implicitly: login() decides
        self.client = client
        self._secret_ids = AppRoleSecretSource(
            file=settings.vault_secret_id_file, wrapped=settings.vault_secret_id_wrapped,
            value=settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None)
        self._boto_session = None
        self._sts = None
        self._lock = threading.RLock()
        self._token_expires_at: float | None = None  # None = never expires / unknown
        self._token_ttl: float = 0.0
        self._renewable = False
        self._logged_in = False          # the token came from a login (ours to revoke), not VAULT_TOKEN
        self._stop_renewal = threading.Event()
        self._renewer: threading.Thread | None = None
        self.renewals = 0                # background renewals done (observability, tests)
        self.renewed = threading.Condition()
        self.vault_clock = VaultClock()
        # What this store last read or wrote per consumer (the newest version of each record):
        # the run's metrics and the status digest come from it, not from more reads.
        self._seen_lock = threading.Lock()
        self._seen_keys: dict[str, KeyState] = {}
        self._seen_rotations: dict[str, RotationRecord] = {}
        self._seen_acks: dict[str, dict[str, Any] | None] = {}
        self._leased: set[str] = set()          # consumers whose lease this store took and holds
        self._digests: dict[str, dict[str, Any]] = {}   # consumer -> key record custom_metadata read
        #: ``LIST <mount>/detailed-metadata/...`` (OpenBao): ``None`` until detected, then True/False
        self.bulk_metadata: bool | None = None
        hooks = self.client.adapter.session.hooks.setdefault("response", [])
        hooks.append(self.vault_clock.observe)
        self.login()

    # -- time -----------------------------------------------------------------------------------
    def now(self) -> float:
        """Vault's time in epoch seconds (:class:`VaultClock`); asks Vault once if no answer was seen."""
        if not self.vault_clock.anchored:
            self._call("lookup-self", "auth/token/lookup-self", self.client.auth.token.lookup_self)
        return self.vault_clock()

    def utcnow(self) -> datetime:
        """Vault's time as an aware UTC datetime: the engine's default clock."""
        return datetime.fromtimestamp(self.now(), UTC)

    def latest_utcnow(self) -> datetime:
        """The upper bound of Vault's time (:meth:`VaultClock.latest`) as an aware UTC datetime: the
        engine judges its own lease on it."""
        self.now()
        return datetime.fromtimestamp(self.vault_clock.latest(), UTC)

    # -- authentication -------------------------------------------------------------------------
    def login(self) -> None:
        """Authenticate with the configured method (:mod:`rotation.backends.vault_auth`: aws, jwt,
        kubernetes, approle, token). The login material (a token file, JWT, secret id file, AWS
        credentials) is read afresh at every login, so a renewed credential is always used."""
        s = self.settings
        method = s.vault_auth_method
        with self._lock, vault_errors("login", method):
            if method == "token":
                self.client.token = (read_credential_file(s.vault_token_file, "VAULT_TOKEN_FILE")
                                     if s.vault_token_file is not None
                                     else _required(s.vault_token, "VAULT_TOKEN", method).get_secret_value())
                self._logged_in = False
            elif method == "approle":
                secret_id = self._secret_ids.secret_id(self._unwrap)
                # a 403 here is the login itself refused: a locked-out role id (VaultLoginLockedOut)
                with vault_errors("login", f"auth/{s.vault_approle_mount}/login", login_method="approle"):
                    self.client.auth.approle.login(
                        role_id=s.vault_role_id, secret_id=secret_id, mount_point=s.vault_approle_mount,
                        use_token=True,
                    )
            elif method == "kubernetes":
                jwt = Path(s.vault_kubernetes_jwt_path).read_text().strip()
                self.client.auth.kubernetes.login(
                    role=s.vault_kubernetes_role, jwt=jwt, mount_point=s.vault_kubernetes_mount, use_token=True,
                )
            elif method == "jwt":
                self.client.auth.jwt.jwt_login(role=s.vault_jwt_role, jwt=self._jwt(), path=s.vault_jwt_mount)
            elif method == "aws":
                payload = aws_iam_login_payload(self._aws_session().get_credentials(),
                                                _required(s.vault_aws_role, "VAULT_AWS_ROLE", method),
                                                server_id=s.vault_aws_iam_server_id, sts_region=s.vault_aws_sts_region)
                self.client.adapter.login(f"/v1/auth/{s.vault_aws_mount}/login", json=payload)
            else:   # Settings validates the method; this guards direct construction
                raise VaultError(f"VAULT_AUTH_METHOD={method!r} is not supported")
            if method != "token":
                self._logged_in = True
            self._refresh_ttl()

    @property
    def can_relogin(self) -> bool:
        """False only for a fixed ``VAULT_TOKEN``: every other source can present a fresh credential."""
        return self.settings.vault_auth_method != "token" or self.settings.vault_token_file is not None

    def _unwrap(self, wrapping_token: str) -> dict[str, Any]:
        """``sys/wrapping/unwrap`` presenting the wrapping token itself as the request token."""
        self.client.token = wrapping_token
        try:
            return self.client.sys.unwrap()
        finally:
            self.client.token = None

    def _jwt(self) -> str:
        s = self.settings
        if s.vault_jwt_path is not None:
            return read_credential_file(s.vault_jwt_path, "VAULT_JWT_PATH")
        if self._sts is None:
            region = s.vault_aws_sts_region or s.aws_region
            # GetWebIdentityToken is not served by STS's global endpoint: always the regional one
            self._sts = self._aws_session().client(
                "sts", region_name=region, endpoint_url=s.aws_endpoint_url or f"https://sts.{region}.amazonaws.com")
        return aws_web_identity_token(self._sts, _required(s.vault_jwt_aws_audience, "VAULT_JWT_AWS_AUDIENCE", "jwt"))

    def _aws_session(self):
        if self._boto_session is None:
            import boto3
            self._boto_session = boto3.Session(region_name=self.settings.aws_region)
        return self._boto_session

    def _refresh_ttl(self) -> None:
        data = self.client.auth.token.lookup_self()["data"]
        left = token_lifetime(data)
        self._renewable = bool(data.get("renewable"))
        if left is None:
            self._token_expires_at = None  # a root token: no expiry
            return
        self._token_ttl = float(data.get("creation_ttl") or left) if self._renewable else left
        self._token_expires_at = time.monotonic() + left

    def start_renewal(self) -> None:
        """Renew the token on a background timer (once half its TTL is gone), so a stretch of
        slow AWS calls never lets it run out between Vault calls. Stopped by :meth:`close`."""
        if self._renewer is not None or self._token_expires_at is None:
            return
        self._renewer = threading.Thread(target=self._renew_loop, name="vault-token-renewer", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop_renewal.is_set():
            with self._lock:
                expires, ttl = self._token_expires_at, self._token_ttl
            if expires is None:
                return
            wait = (expires - time.monotonic()) - ttl * (1 - _TIMER_FRACTION)
            if wait > 0 and self._stop_renewal.wait(wait):
                return
            try:
                self.ensure_token(fraction=_TIMER_FRACTION)
            except VaultError as exc:
                log.warning("background token renewal failed (%s); retrying", type(exc).__name__)
            else:
                with self.renewed:
                    self.renewals += 1
                    self.renewed.notify_all()
            if self._stop_renewal.wait(min(5.0, max(ttl / 10, 0.5))):   # never a tight loop
                return

    def close(self) -> None:
        """End of the run: stop the renewer and revoke the token this process obtained by login
        (``auth/token/revoke-self``). A user-supplied ``VAULT_TOKEN`` is never revoked."""
        self._stop_renewal.set()
        if self._renewer is not None:
            self._renewer.join(10)
        with self._lock:
            if not self._logged_in or not self.client.token:
                return
            try:
                with vault_errors("revoke-self", "auth/token/revoke-self"):
                    self.client.auth.token.revoke_self()
            except VaultError as exc:
                log.warning("could not revoke the run's Vault token: %s", exc)
            self.client.token = None
            self._logged_in = False
            self._token_expires_at = None

    def ensure_token(self, *, fraction: float = _RENEW_FRACTION) -> None:
        """Renew the token with renew-self when less than ``fraction`` of its TTL is left; log in
        again when it cannot be renewed (failure case V5)."""
        with self._lock:
            if self._token_expires_at is None:
                return
            left = self._token_expires_at - time.monotonic()
            if left > self._token_ttl * fraction:
                return
            if self._renewable and left > 1:
                try:
                    with vault_errors("renew-self"):
                        self.client.auth.token.renew_self()
                        self._refresh_ttl()
                    now_left = (self._token_expires_at or float("inf")) - time.monotonic()
                    if now_left > left + 1 or not self.can_relogin:
                        return
                    log.info("token renewal capped by its max TTL; logging in again")
                except VaultError:
                    log.info("token renewal failed; logging in again")
            if not self.can_relogin and left <= 0:
                raise VaultError("token expired and token auth cannot log in again: supply a fresh VAULT_TOKEN "
                                 "(or VAULT_TOKEN_FILE, e.g. a Vault Agent sink, which is re-read)")
            self.login()

    def _call(self, operation: str, path: str, fn: Callable[[], T], *,
              cas_lost: Callable[[], bool] | None = None) -> T:
        """Run ``fn`` with a valid token; on 403 log in once again and retry, then fail."""
        self.ensure_token()
        try:
            with vault_errors(operation, path, cas_lost=cas_lost):
                return fn()
        except VaultPermissionDenied:
            if not self.can_relogin:
                raise
        self.login()
        with vault_errors(operation, path, cas_lost=cas_lost):
            return fn()

    # -- mount checks ---------------------------------------------------------------------------
    def check_mount(self) -> list[str]:
        """Refuse a KV v1 mount (:class:`UnsupportedMount`, failure case V3); return warnings
        (e.g. ``delete_version_after`` set, which breaks agents holding old versions)."""
        def read():
            return self.client.adapter.get(f"/v1/sys/internal/ui/mounts/{self.mount}")

        try:
            resp = self._call("read mount", self.mount, read)
        except VaultError as exc:
            raise VaultError(f"{exc}; is VAULT_KV_MOUNT={self.mount!r} a KV v2 mount?") from None
        data = resp.get("data", resp) if isinstance(resp, dict) else {}
        if data.get("type") not in ("kv", "generic") or str((data.get("options") or {}).get("version")) != "2":
            raise UnsupportedMount(
                f"VAULT_KV_MOUNT={self.mount!r} is {data.get('type')} version "
                f"{(data.get('options') or {}).get('version', '1')}; rotation needs KV version 2 "
                f"(check-and-set is silently ignored on KV v1). Enable one with: "
                f"bao secrets enable -path={self.mount} kv-v2"
            )
        warnings = []
        with contextlib.suppress(VaultError, Exception):
            cfg = self._call("read config", f"{self.mount}/config",
                             lambda: self.client.secrets.kv.v2.read_configuration(mount_point=self.mount))["data"]
            if cfg.get("delete_version_after") not in (None, "0s", 0, ""):
                warnings.append(f"{self.mount}: delete_version_after={cfg['delete_version_after']} deletes key "
                                "versions that agents may still hold; unset it")
            if not cfg.get("cas_required"):
                warnings.append(f"{self.mount}: cas_required is off; rotation always sends cas, "
                                "but other writers could clobber keys")
        return warnings

    # -- paths ----------------------------------------------------------------------------------
    def path(self, kind: str, consumer: str) -> str:
        return f"{self.prefix}/{kind}/{consumer}"

    def _read(self, path: str, *, deleted_ok: bool = False) -> tuple[dict[str, Any] | None, int]:
        """Read the latest version of ``path``: ``(data, version)``; ``(None, 0)`` when absent.

        "Absent" (no metadata, or no version yet) is told apart from a latest version that is
        soft-deleted (``deletion_time`` set) or destroyed (``destroyed: true``) by the path's KV v2
        metadata; those raise :class:`RecordGone` unless ``deleted_ok`` (then ``(None, version)``):
        treating them as "no key" would make the engine forget live keys."""
        def read():
            try:
                r = self.client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True)
            except hexc.InvalidPath:
                return self._gone(path)  # absent (failure case V2), deleted or destroyed
            meta = r["data"].get("metadata") or {}
            if "/keys/" in path:        # the answer carries custom_metadata: is the digest current?
                with self._seen_lock:
                    self._digests[path.rsplit("/", 1)[-1]] = meta.get("custom_metadata") or {}
            return r["data"].get("data"), int(meta.get("version") or 0)

        data, version = self._call("read", f"{self.mount}/data/{path}", read)
        if isinstance(data, RecordGone):
            if deleted_ok:
                return None, data.version
            raise data
        return data, version

    def _gone(self, path: str) -> tuple[RecordGone | None, int]:
        """After a 404 on the data: ``(None, 0)`` when the path is absent, else a :class:`RecordGone`
        naming the latest version's state (from ``read_secret_metadata``)."""
        try:
            meta = self.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount)["data"]
        except hexc.InvalidPath:
            return None, 0
        version = int(meta.get("current_version") or 0)
        if version == 0:
            return None, 0          # metadata written before any version: nothing was ever stored
        info = (meta.get("versions") or {}).get(str(version)) or {}
        where = f"{self.mount}/data/{path}"
        if info.get("destroyed") or not info:
            gone = RecordGone(
                f"{where}: its latest version ({version}) is destroyed and cannot be restored; nothing was "
                f"changed. Write a new version on purpose (bao kv put -mount={self.mount} -cas={version} {path} "
                "...) once you know what it must hold", path=where, state="destroyed", version=version)
        else:
            gone = RecordGone(
                f"{where}: its latest version ({version}) is deleted; nothing was changed. Restore it "
                f"(bao kv undelete -mount={self.mount} -versions={version} {path}) before rotating this consumer",
                path=where, state="deleted", version=version)
        return gone, version

    def _write(self, path: str, data: dict[str, Any], cas: int) -> int:
        def write():
            r = self.client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=data, cas=cas, mount_point=self.mount)
            return int(r["data"]["version"])

        def cas_lost() -> bool:
            # a 400 on a cas write: a lost race if the path is no longer at the version we sent
            try:
                meta = self.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount)
                current = int(meta["data"].get("current_version") or 0)
            except hexc.InvalidPath:
                current = 0
            except (hexc.VaultError, KeyError, TypeError, ValueError):
                return False
            return current != cas

        return self._call("cas write", f"{self.mount}/data/{path}", write, cas_lost=cas_lost)

    # -- key state ------------------------------------------------------------------------------
    def read_key_state(self, consumer: str) -> KeyState:
        """The staging labels of ``consumer`` (``<mount>/data/<prefix>/keys/<consumer>``), each record
        checked before use (:func:`rotation.records.check_key_record`). Raises :class:`VaultError`
        naming the path and the field of a malformed record (:class:`MalformedRecord`, failure case H8)."""
        path = self.path("keys", consumer)
        data, version = self._read(path)
        try:
            state = KeyState.from_dict(data, version)
        except ValueError as exc:
            raise MalformedRecord(f"{self.mount}/data/{path} version {version}: malformed key record ({exc}); "
                                  "nothing was changed: restore a good version (`bao kv rollback`) or fix the "
                                  "record") from None
        return self._saw_keys(consumer, state)

    def _saw_keys(self, consumer: str, state: KeyState) -> KeyState:
        with self._seen_lock:
            old = self._seen_keys.get(consumer)
            if old is None or state.version >= old.version:
                self._seen_keys[consumer] = state
        return state

    def _saw_rotation(self, consumer: str, rec: RotationRecord) -> RotationRecord:
        with self._seen_lock:
            old = self._seen_rotations.get(consumer)
            if old is None or rec.version >= old.version:
                self._seen_rotations[consumer] = rec
        return rec

    def seen(self, consumer: str) -> tuple[KeyState | None, RotationRecord | None, dict[str, Any] | None, bool]:
        """The newest key record, rotation record and ack this store read or wrote for
        ``consumer`` (``None`` where it did not), and whether the ack was read at all."""
        with self._seen_lock:
            return (self._seen_keys.get(consumer), self._seen_rotations.get(consumer),
                    self._seen_acks.get(consumer), consumer in self._seen_acks)

    def write_key_state(self, consumer: str, state: KeyState, *, mirror_labels: bool = True) -> KeyState:
        """CAS-write ``state`` (expected version ``state.version``); return it at its new version.

        Also mirrors the non-secret label summary and the status digest
        (:mod:`rotation.status_digest`) into the path's custom_metadata (best effort; one more
        call), unless ``mirror_labels`` is false (a write that only records the pending key). Under
        a lease this store holds, the mirror waits for the lease's release and is written once
        then, with the released rotation record in the digest (one call per lease, however many
        key writes it made).
        Raises :class:`CasConflict` when another writer got there first.
        """
        for rec in (state.current, state.previous, state.pending, *state.retired):
            if rec is not None and not rec.value:
                raise EmptyKeyValue(f"refusing to store an empty value for {consumer} serial {rec.serial}")
        path = self.path("keys", consumer)
        version = self._write(path, state.to_dict(), cas=state.version)
        new = self._saw_keys(consumer, state.evolve(version=version))
        if not mirror_labels or consumer in self._leased:
            return new
        self._mirror(consumer, new, None)
        return new

    def refresh_digests(self, consumers: list[str], *, max_workers: int = 16) -> int:
        """Write the mirror and status digest of each of ``consumers`` whose key record and
        rotation record this store read, and whose digest (seen in the key record's read answer)
        is missing or older than those records: after one run, status needs no read for them.
        Concurrent, at most ``max_workers`` at a time; best effort. Returns the number written
        (0 in the steady state: a digest is written at every lease release)."""
        stale = []
        for name in consumers:
            state, journal, _ack, _read = self.seen(name)
            with self._seen_lock:
                meta = self._digests.get(name)
            if state is None or journal is None or meta is None or not state.version or name in self._leased:
                continue
            current = decode_digest(meta, state.version, journal.version)
            if current[0] is None or current[1] is None:
                stale.append((name, state, journal))
        if not stale:
            return 0
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(len(stale), max_workers), thread_name_prefix="vault-digest") as pool:
            list(pool.map(lambda t: self._mirror(*t), stale))
        return len(stale)

    def _mirror(self, consumer: str, state: KeyState, journal: RotationRecord | None) -> None:
        """Write the label mirror and the status digest to the key record's custom_metadata
        (best effort: a failure leaves a stale digest, which readers detect by its versions)."""
        path = self.path("keys", consumer)
        meta = {**state.labels_summary(), **encode_digest(state, journal)}
        with contextlib.suppress(VaultError):
            self._call("update metadata", f"{self.mount}/metadata/{path}",
                       lambda: self.client.secrets.kv.v2.update_metadata(
                           path=path, mount_point=self.mount, custom_metadata=meta))
            with self._seen_lock:
                self._digests[consumer] = meta

    def read_key_metadata(self, consumer: str) -> dict[str, Any] | None:
        path = self.path("keys", consumer)

        def read():
            try:
                return self.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount)["data"]
            except hexc.InvalidPath:
                return None
        return self._call("read metadata", f"{self.mount}/metadata/{path}", read)

    def list_records(self, kind: str) -> set[str] | None:
        """Consumer names with a record under ``<prefix>/<kind>/`` (one KV v2 LIST on the
        metadata path; https://openbao.org/api-docs/secret/kv/kv-v2/#list-secrets). ``None``
        when the token may not list (a 403): the caller then reads every path."""
        path = f"{self.prefix}/{kind}"

        def do_list():
            try:
                return self.client.secrets.kv.v2.list_secrets(path=path, mount_point=self.mount)["data"]["keys"]
            except hexc.InvalidPath:
                return []
        try:
            keys = self._call("list", f"{self.mount}/metadata/{path}", do_list)
        except VaultPermissionDenied:
            return None
        return {k for k in keys if not k.endswith("/")}

    # -- lease + journal ------------------------------------------------------------------------
    def read_rotation(self, consumer: str) -> RotationRecord:
        data, version = self._read(self.path("rotations", consumer))
        return self._saw_rotation(consumer, RotationRecord.from_dict(data, version))

    def write_rotation(self, consumer: str, rec: RotationRecord) -> RotationRecord:
        """CAS-write the lease/journal record; :class:`CasConflict` if it changed meanwhile.
        A write that releases a lease this store took also writes the key record's mirror and
        status digest (see :meth:`write_key_state`)."""
        version = self._write(self.path("rotations", consumer), rec.to_dict(), cas=rec.version)
        new = self._saw_rotation(consumer, rec.evolve(version=version))
        if new.owner is None and consumer in self._leased:
            self._leased.discard(consumer)
            state = self.seen(consumer)[0]
            if state is not None and state.version:
                self._mirror(consumer, state, new)
        return new

    def acquire_lease(self, consumer: str, owner: str, ttl_seconds: float,
                      rec: RotationRecord | None = None, *, now: float | None = None) -> RotationRecord:
        """Take the consumer's rotation lease, or take over a stale one. ``rec``: the record as
        just read (saves a read; if it is stale, it is read again once). ``now``: epoch seconds
        on the shared clock (default: Vault's, :meth:`now`), never the runner's wall clock.

        Raises :class:`LockHeld` when another owner's lease has not expired, or when another
        runner won the CAS race for it.
        """
        now = self.now() if now is None else now
        rec = rec if rec is not None else self.read_rotation(consumer)
        for attempt in range(2):
            if rec.held_by_other(owner, now):
                raise LockHeld(f"{consumer}: rotation lease held by {rec.owner} for another "
                               f"{rec.lease_expires_at - now:.0f}s")
            try:
                taken = self.write_rotation(consumer, rec.evolve(owner=owner, lease_expires_at=now + ttl_seconds))
                self._leased.add(consumer)
                return taken
            except CasConflict:
                if attempt:
                    break
                rec = self.read_rotation(consumer)   # e.g. an emergency request was just recorded
        raise LockHeld(f"{consumer}: another runner took the rotation lease first")

    def renew_lease(self, consumer: str, rec: RotationRecord, ttl_seconds: float, *, now: float | None = None,
                    **changes) -> RotationRecord:
        """Extend our lease and record journal ``changes`` in one CAS write; ``now`` as for
        :meth:`acquire_lease`.

        Raises :class:`CasConflict` if someone else took the record (we lost the lease); a write
        that only recorded an emergency request meanwhile is merged (see :meth:`_write_own`).
        """
        now = self.now() if now is None else now
        return self._write_own(consumer, rec, rec.evolve(lease_expires_at=now + ttl_seconds, **changes))

    def release_lease(self, consumer: str, rec: RotationRecord, **changes) -> RotationRecord:
        return self._write_own(consumer, rec, rec.evolve(owner=None, lease_expires_at=0.0, **changes))

    def _write_own(self, consumer: str, rec: RotationRecord, new: RotationRecord) -> RotationRecord:
        """CAS-write ``new`` over ``rec`` (the record under our lease). On a conflict, read again:

        * the record already *is* ``new``: our own earlier write went through although its answer
          was lost; a race against ourselves is not a lost lease;
        * only ``emergency_request`` changed: a requester recorded an emergency (it may write
          without the lease); write again on top of it, keeping the newer request;
        * anything else: another runner took the lease, :class:`CasConflict`.
        """
        try:
            return self.write_rotation(consumer, new)
        except CasConflict:
            fresh = self.read_rotation(consumer)
            if fresh.to_dict() == new.to_dict():
                return fresh
            if fresh.evolve(emergency_request=rec.emergency_request, version=rec.version) != rec:
                raise
            request = new.emergency_request
            if new.emergency_request == rec.emergency_request or fresh.emergency_request.get("id") != \
                    rec.emergency_request.get("id"):
                request = fresh.emergency_request   # never drop a request we have not seen
            return self.write_rotation(consumer, new.evolve(emergency_request=request, version=fresh.version))

    def refresh_own(self, consumer: str, rec: RotationRecord) -> RotationRecord:
        """Read the record under our lease again: the fresh record when at most its
        ``emergency_request`` changed (a requester wrote it), :class:`CasConflict` when another
        runner took the lease."""
        fresh = self.read_rotation(consumer)
        if fresh.version == rec.version:
            return rec
        if fresh.evolve(emergency_request=rec.emergency_request, version=rec.version) != rec:
            raise CasConflict(f"{consumer}: the rotation lease was taken over")
        return fresh

    def request_emergency(self, consumer: str, *, by: str, asked_serial: int, now: float | None = None
                          ) -> dict[str, Any]:
        """Record an emergency rotation request for ``consumer`` in its rotation record (CAS,
        retried on a lost race), before anything else happens, whoever holds the lease. A pending
        request is widened (``asked_serial`` is the highest asked). Returns the request as stored."""
        now = self.now() if now is None else now
        for _ in range(10):
            rec = self.read_rotation(consumer)
            request = {"id": uuid.uuid4().hex, "by": by,   # a new id: a holder clears only what it saw
                       "at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                       "asked_serial": max(asked_serial, rec.asked_serial or 0)}
            try:
                self.write_rotation(consumer, rec.evolve(emergency_request=request))
                return request
            except CasConflict:
                continue
        raise CasConflict(f"{consumer}: could not record the emergency request (the rotation record keeps "
                          "changing); try again")

    # -- consumers' side ------------------------------------------------------------------------
    def read_ack(self, consumer: str) -> dict[str, Any] | None:
        data, _ = self._read(self.path("acks", consumer), deleted_ok=True)
        with self._seen_lock:
            self._seen_acks[consumer] = data
        return data

    # -- the fleet at once (status, plan) -------------------------------------------------------
    def list_detailed_metadata(self, kind: str) -> dict[str, dict[str, Any]] | None:
        """Every record's KV v2 metadata under ``<prefix>/<kind>/`` in one call, ``{name:
        metadata}``: OpenBao's ``LIST <mount>/detailed-metadata/<path>``
        (https://openbao.org/api-docs/secret/kv/kv-v2/, "List secrets with detailed metadata";
        needs the ``list`` capability on that path). HashiCorp Vault's KV v2 has no such endpoint
        (its API lists names only, https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2):
        ``None`` there, and when the token may not use it, or :attr:`bulk_metadata` is False.

        Detection: a 405/400 means no such endpoint; a 404 is either that or an empty prefix, told
        apart by one name-only LIST of the same prefix. The answer is remembered in
        :attr:`bulk_metadata`.
        """
        if self.bulk_metadata is False:
            return None
        path = f"{self.prefix}/{kind}"

        def do_list() -> dict[str, dict[str, Any]] | None:
            try:
                r = self.client.adapter.request("LIST", f"/v1/{self.mount}/detailed-metadata/{path}")
            except (hexc.UnsupportedOperation, hexc.InvalidRequest):
                return None
            except hexc.InvalidPath:
                return {}
            data = (r or {}).get("data") or {} if isinstance(r, dict) else {}
            info = data.get("key_info") or {}
            return {k: v for k, v in info.items() if not k.endswith("/") and isinstance(v, dict)}
        try:
            found = self._call("list detailed metadata", f"{self.mount}/detailed-metadata/{path}", do_list)
        except VaultPermissionDenied:
            return None
        if found is None:
            self.bulk_metadata = False
            return None
        if not found and self.bulk_metadata is None:
            names = self.list_records(kind)
            if names:                               # names exist: the endpoint does not
                self.bulk_metadata = False
                return None
        self.bulk_metadata = True
        return found

    def read_fleet(self, consumers: list[str], *, max_workers: int = 16, digests: bool = True
                   ) -> dict[str, tuple[KeyState, RotationRecord] | RecordGone | MalformedRecord]:
        """Key record and rotation record of every consumer, for ``status`` and ``plan``.

        Where the server lists detailed metadata (:meth:`list_detailed_metadata`): two LIST
        calls, and each consumer's status digest (:mod:`rotation.status_digest`) when it is
        current; a consumer whose digest is stale or missing, or whose latest key version is
        deleted or destroyed, has its records read. Elsewhere (HashiCorp Vault): one name-only
        LIST per kind, then the records of the consumers that have one, read concurrently, at most
        ``max_workers`` at a time. A deleted or destroyed record gives :class:`RecordGone`, a record
        that fails its checks :class:`MalformedRecord`.
        ``digests=False``: the full records for everyone (their acks, traffic counters and handled
        reports, which a digest leaves out; ``rotation audit`` needs them).
        """
        from concurrent.futures import ThreadPoolExecutor
        if self.bulk_metadata is False or not digests:
            keys_meta = rot_meta = None
        else:                                   # both listings at once: the server's time dominates
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="vault-list") as lists:
                keys_f = lists.submit(self.list_detailed_metadata, "keys")
                rot_f = lists.submit(self.list_detailed_metadata, "rotations")
                keys_meta, rot_meta = keys_f.result(), rot_f.result()
        out: dict[str, tuple[KeyState, RotationRecord] | RecordGone | MalformedRecord] = {}
        todo: list[tuple[str, KeyState | None, RotationRecord | None]] = []
        if keys_meta is not None and rot_meta is not None:
            for name in consumers:
                km, rm = keys_meta.get(name), rot_meta.get(name)
                kv = int((km or {}).get("current_version") or 0)
                rv = int((rm or {}).get("current_version") or 0)
                latest = ((km or {}).get("versions") or {}).get(str(kv)) or {}
                if km is None or kv == 0:
                    state: KeyState | None = KeyState()
                elif latest.get("destroyed") or latest.get("deletion_time"):
                    state = None                    # read it: the reader says deleted or destroyed
                else:
                    state = decode_digest(km.get("custom_metadata"), kv, rv)[0]
                journal = RotationRecord() if rm is None or rv == 0 else decode_digest(
                    (km or {}).get("custom_metadata"), kv, rv)[1]
                if state is not None and journal is not None:
                    out[name] = (state, journal)
                else:
                    todo.append((name, state, journal))
        else:
            have_keys = self.list_records("keys")
            have_rot = self.list_records("rotations")
            todo = [(n, None if have_keys is None or n in have_keys else KeyState(),
                     None if have_rot is None or n in have_rot else RotationRecord()) for n in consumers]

        def one(item: tuple[str, KeyState | None, RotationRecord | None]
                ) -> tuple[str, tuple[KeyState, RotationRecord] | RecordGone | MalformedRecord]:
            name, state, journal = item
            try:
                state = state if state is not None else self.read_key_state(name)
                journal = journal if journal is not None else self.read_rotation(name)
            except (RecordGone, MalformedRecord) as exc:
                return name, exc
            return name, (state, journal)
        if len(todo) <= 1:
            out.update(one(t) for t in todo)
        else:
            with ThreadPoolExecutor(max_workers=min(len(todo), max_workers),
                                    thread_name_prefix="vault-read") as pool:
                out.update(pool.map(one, todo))
        return out

    def read_webhook_secret(self, consumer: str) -> str:
        data, _ = self._read(self.path("webhooks", consumer))
        secret = (data or {}).get("signing_secret")
        if not secret:
            raise VaultError(f"{self.mount}/data/{self.path('webhooks', consumer)}: no signing_secret; "
                             "store one before adding a webhook target")
        return secret

    # -- response wrapping ----------------------------------------------------------------------
    def wrap(self, data: dict[str, Any], ttl_seconds: int) -> dict[str, Any]:
        """Wrap ``data`` in a single-use response-wrapping token (``sys/wrapping/wrap``).

        Returns the ``wrap_info`` dict: ``token``, ``accessor``, ``ttl`` (seconds), ``creation_time``.
        """
        def wrap():
            r = self.client.adapter.post("/v1/sys/wrapping/wrap", json=data, wrap_ttl=f"{int(ttl_seconds)}s")
            return r["wrap_info"]
        return self._call("wrap", "sys/wrapping/wrap", wrap)

    def lookup_wrapping_token(self, token: str) -> dict[str, Any] | None:
        """Look a wrapping token up; ``None`` once it was unwrapped or expired (failure case V6)."""
        def lookup():
            try:
                return self.client.adapter.post("/v1/sys/wrapping/lookup", json={"token": token})["data"]
            except (hexc.InvalidRequest, hexc.Forbidden, hexc.InvalidPath):
                return None
        return self._call("lookup", "sys/wrapping/lookup", lookup)
