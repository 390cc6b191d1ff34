"""How the app-side client authenticates to Vault/OpenBao: a token (or a Vault Agent token file),
AppRole, JWT or Kubernetes.

Each method is a small frozen dataclass with ``login(client)``; secrets are hidden from ``repr``.
Files (token sink, secret id, JWT) are re-read at every login, so a long-lived client keeps working
after the credential behind them is rotated. A response-wrapped AppRole secret id
(``wrapped=True``) is unwrapped (``sys/wrapping/unwrap``) once per distinct file content: a wrapping
token works once. Vault doc pages: https://openbao.org/api-docs/auth/approle/,
https://openbao.org/api-docs/auth/kubernetes/, https://openbao.org/api-docs/auth/jwt/,
https://openbao.org/docs/concepts/response-wrapping/.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import hvac

from rotation.client.errors import VaultAuthError

__all__ = ["DEFAULT_K8S_JWT_PATH", "AppRoleAuth", "Auth", "JwtAuth", "KubernetesAuth", "TokenAuth", "TokenFileAuth"]

DEFAULT_K8S_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True)
class TokenAuth:
    """A ready token (``VAULT_TOKEN``). Cannot log in again: a 403 raises :class:`VaultAuthError`."""

    token: str = field(repr=False)
    can_relogin = False

    def login(self, client: hvac.Client) -> None:
        client.token = self.token


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().strip()
    except OSError as exc:
        raise VaultAuthError(f"{what}: cannot read {path} ({exc.strerror})") from None
    if not value:
        raise VaultAuthError(f"{what}: {path} is empty")
    return value


@dataclass(frozen=True)
class TokenFileAuth:
    """A token written to a file by Vault Agent (its ``sink "file"``), re-read at every login: a
    403 re-reads the file, so the agent's renewed or re-issued token is picked up. The agent owns
    the token; the client never revokes it."""

    path: str
    can_relogin = True

    def login(self, client: hvac.Client) -> None:
        client.token = _read(self.path, "VAULT_TOKEN_FILE")


@dataclass(frozen=True)
class AppRoleAuth:
    """AppRole login (``auth/<mount>/login`` with role_id + secret_id). The secret id is either
    ``secret_id`` or read from ``secret_id_file`` before every login; with ``wrapped`` that file
    holds a response-wrapping token, unwrapped once per distinct content."""

    role_id: str
    secret_id: str = field(default="", repr=False)
    mount: str = "approle"
    secret_id_file: str | None = None
    wrapped: bool = False
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    can_relogin = True

    def _secret_id(self, client: hvac.Client) -> str:
        if self.secret_id_file is None:
            return self.secret_id
        content = _read(self.secret_id_file, "VAULT_SECRET_ID_FILE")
        if not self.wrapped:
            return content
        digest = hashlib.sha256(content.encode()).hexdigest()
        with self._lock:
            if digest not in self._cache:
                client.token = content       # the wrapping token is the request's token
                try:
                    answer = client.sys.unwrap()
                finally:
                    client.token = None
                secret_id = ((answer or {}).get("data") or {}).get("secret_id")
                if not isinstance(secret_id, str) or not secret_id:
                    raise VaultAuthError("VAULT_SECRET_ID_FILE: the unwrapped response holds no secret_id")
                self._cache.clear()
                self._cache[digest] = secret_id
            return self._cache[digest]

    def login(self, client: hvac.Client) -> None:
        client.auth.approle.login(role_id=self.role_id, secret_id=self._secret_id(client), mount_point=self.mount,
                                  use_token=True)


@dataclass(frozen=True)
class JwtAuth:
    """JWT auth (``auth/<mount>/login``): the JWT is re-read from ``jwt_path`` at every login (a
    projected service-account token with audience ``vault``, a CI OIDC token file)."""

    role: str
    jwt_path: str
    mount: str = "jwt"
    can_relogin = True

    def login(self, client: hvac.Client) -> None:
        client.auth.jwt.jwt_login(role=self.role, jwt=_read(self.jwt_path, "VAULT_JWT_PATH"), path=self.mount)


@dataclass(frozen=True)
class KubernetesAuth:
    """Kubernetes auth: the service-account JWT is re-read from ``jwt_path`` at every login
    (projected tokens rotate)."""

    role: str
    jwt_path: str = DEFAULT_K8S_JWT_PATH
    mount: str = "kubernetes"
    can_relogin = True

    def login(self, client: hvac.Client) -> None:
        try:
            with open(self.jwt_path, encoding="utf-8") as f:
                jwt = f.read().strip()
        except OSError as exc:
            raise VaultAuthError(f"kubernetes auth: cannot read the service-account token at {self.jwt_path} "
                                 f"({exc.strerror})") from None
        client.auth.kubernetes.login(role=self.role, jwt=jwt, mount_point=self.mount, use_token=True)


Auth = TokenAuth | TokenFileAuth | AppRoleAuth | JwtAuth | KubernetesAuth
