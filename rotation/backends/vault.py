"""KV v2 access for the rotation jobs: check-and-set writes, the per-consumer lease, staging
labels, authentication and token renewal. The one module where hvac errors become ours.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions as hexc

from rotation.backends.vault_errors import vault_errors
from rotation.errors import (
    CasConflict,
    EmptyKeyValue,
    LockHeld,
    UnsupportedMount,
    VaultError,
    VaultPermissionDenied,
)
from rotation.records import KeyState, RotationRecord
from rotation.settings import Settings

__all__ = ["VaultStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_RENEW_FRACTION = 1 / 3  # renew when less than a third of the TTL is left


class VaultStore:
    """The rotation jobs' view of Vault: :class:`KeyState` and :class:`RotationRecord` per consumer.

    Thread-safe for token handling; each method is one or two HTTP calls. Raises
    :class:`~rotation.errors.VaultError` (or a subclass) on any failure.
    """

    def __init__(self, settings: Settings, client: hvac.Client | None = None):
        self.settings = settings
        self.mount = settings.vault_kv_mount
        self.prefix = settings.vault_kv_prefix
        verify: bool | str = str(settings.vault_cacert) if settings.vault_cacert else True
        self.client = client or hvac.Client(
            url=settings.vault_addr, namespace=settings.vault_namespace, verify=verify,
            timeout=settings.vault_timeout_seconds,
        )
        self._lock = threading.RLock()
        self._token_expires_at: float | None = None  # None = not renewable / unknown
        self._token_ttl: float = 0.0
        self.login()

    # -- authentication -------------------------------------------------------------------------
    def login(self) -> None:
        """Authenticate with the configured method (token, AppRole, Kubernetes)."""
        s = self.settings
        with self._lock, vault_errors("login", s.vault_auth_method):
            if s.vault_auth_method == "token":
                self.client.token = s.vault_token.get_secret_value()
            elif s.vault_auth_method == "approle":
                self.client.auth.approle.login(
                    role_id=s.vault_role_id, secret_id=s.vault_secret_id.get_secret_value(),
                    mount_point=s.vault_approle_mount, use_token=True,
                )
            else:
                jwt = Path(s.vault_kubernetes_jwt_path).read_text().strip()
                self.client.auth.kubernetes.login(
                    role=s.vault_kubernetes_role, jwt=jwt, mount_point=s.vault_kubernetes_mount, use_token=True,
                )
            self._refresh_ttl()

    def _refresh_ttl(self) -> None:
        data = self.client.auth.token.lookup_self()["data"]
        ttl = float(data.get("ttl") or 0)
        if ttl > 0 and data.get("renewable"):
            self._token_ttl = float(data.get("creation_ttl") or ttl)
            self._token_expires_at = time.monotonic() + ttl
        elif ttl > 0:
            self._token_ttl = ttl
            self._token_expires_at = time.monotonic() + ttl
            self._renewable = False
        else:
            self._token_expires_at = None  # root/periodic-less tokens without TTL
        self._renewable = bool(data.get("renewable"))

    def ensure_token(self) -> None:
        """Renew the token with renew-self when less than a third of its TTL is left; log in
        again when it cannot be renewed (failure case V5)."""
        with self._lock:
            if self._token_expires_at is None:
                return
            left = self._token_expires_at - time.monotonic()
            if left > self._token_ttl * _RENEW_FRACTION:
                return
            if self._renewable and left > 1:
                try:
                    with vault_errors("renew-self"):
                        self.client.auth.token.renew_self()
                        self._refresh_ttl()
                    return
                except VaultError:
                    log.info("token renewal failed; logging in again")
            if self.settings.vault_auth_method == "token" and left <= 0:
                raise VaultError("token expired and token auth cannot log in again: supply a fresh VAULT_TOKEN")
            self.login()

    def _call(self, operation: str, path: str, fn: Callable[[], T], *,
              cas_lost: Callable[[], bool] | None = None) -> T:
        """Run ``fn`` with a valid token; on 403 log in once again and retry, then fail."""
        self.ensure_token()
        try:
            with vault_errors(operation, path, cas_lost=cas_lost):
                return fn()
        except VaultPermissionDenied:
            if self.settings.vault_auth_method == "token":
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

        A latest version that was deleted (``data`` null, version > 0) raises :class:`VaultError`
        unless ``deleted_ok``: treating it as "no key" would make the engine forget live keys."""
        def read():
            try:
                r = self.client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=False)
            except hexc.InvalidPath:
                return None, 0  # a 404 means "version 0" (failure case V2)
            meta = r["data"].get("metadata") or {}
            data, version = r["data"].get("data"), int(meta.get("version") or 0)
            if data is None and version > 0 and not deleted_ok:
                raise VaultError(f"{self.mount}/data/{path}: its latest version ({version}) is deleted; "
                                 f"restore it (bao kv undelete -mount={self.mount} -versions={version} {path}) "
                                 "before rotating this consumer")
            return data, version

        return self._call("read", f"{self.mount}/data/{path}", read)

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
        data, version = self._read(self.path("keys", consumer))
        return KeyState.from_dict(data, version)

    def write_key_state(self, consumer: str, state: KeyState) -> KeyState:
        """CAS-write ``state`` (expected version ``state.version``); return it at its new version.

        Also mirrors the non-secret label summary into the path's custom_metadata (best effort).
        Raises :class:`CasConflict` when another writer got there first.
        """
        for rec in (state.current, state.previous, state.pending, *state.retired):
            if rec is not None and not rec.value:
                raise EmptyKeyValue(f"refusing to store an empty value for {consumer} serial {rec.serial}")
        path = self.path("keys", consumer)
        version = self._write(path, state.to_dict(), cas=state.version)
        new = state.evolve(version=version)
        with contextlib.suppress(VaultError):
            self._call("update metadata", f"{self.mount}/metadata/{path}",
                       lambda: self.client.secrets.kv.v2.update_metadata(
                           path=path, mount_point=self.mount, custom_metadata=new.labels_summary()))
        return new

    def read_key_metadata(self, consumer: str) -> dict[str, Any] | None:
        path = self.path("keys", consumer)

        def read():
            try:
                return self.client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount)["data"]
            except hexc.InvalidPath:
                return None
        return self._call("read metadata", f"{self.mount}/metadata/{path}", read)

    # -- lease + journal ------------------------------------------------------------------------
    def read_rotation(self, consumer: str) -> RotationRecord:
        data, version = self._read(self.path("rotations", consumer))
        return RotationRecord.from_dict(data, version)

    def write_rotation(self, consumer: str, rec: RotationRecord) -> RotationRecord:
        """CAS-write the lease/journal record; :class:`CasConflict` if it changed meanwhile."""
        version = self._write(self.path("rotations", consumer), rec.to_dict(), cas=rec.version)
        return rec.evolve(version=version)

    def acquire_lease(self, consumer: str, owner: str, ttl_seconds: float,
                      rec: RotationRecord | None = None) -> RotationRecord:
        """Take the consumer's rotation lease, or take over a stale one. ``rec``: the record as
        just read (saves a read; if it is stale, the CAS write fails and that is a lost race).

        Raises :class:`LockHeld` when another owner's lease has not expired, or when another
        runner won the CAS race for it.
        """
        now = time.time()
        rec = rec if rec is not None else self.read_rotation(consumer)
        if rec.held_by_other(owner, now):
            raise LockHeld(f"{consumer}: rotation lease held by {rec.owner} for another "
                           f"{rec.lease_expires_at - now:.0f}s")
        try:
            return self.write_rotation(consumer, rec.evolve(owner=owner, lease_expires_at=now + ttl_seconds))
        except CasConflict:
            raise LockHeld(f"{consumer}: another runner took the rotation lease first") from None

    def renew_lease(self, consumer: str, rec: RotationRecord, ttl_seconds: float, **changes) -> RotationRecord:
        """Extend our lease and record journal ``changes`` in one CAS write.

        Raises :class:`CasConflict` if someone else wrote the record (we lost the lease).
        """
        return self.write_rotation(consumer, rec.evolve(lease_expires_at=time.time() + ttl_seconds, **changes))

    def release_lease(self, consumer: str, rec: RotationRecord, **changes) -> RotationRecord:
        return self.write_rotation(consumer, rec.evolve(owner=None, lease_expires_at=0.0, **changes))

    # -- consumers' side ------------------------------------------------------------------------
    def read_ack(self, consumer: str) -> dict[str, Any] | None:
        data, _ = self._read(self.path("acks", consumer), deleted_ok=True)
        return data

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
