"""How the app-side client authenticates to Vault/OpenBao: a token, AppRole, or Kubernetes.

Each method is a small frozen dataclass with ``login(client)``; secrets are hidden from ``repr``.
Vault doc pages: https://openbao.org/api-docs/auth/approle/, https://openbao.org/api-docs/auth/kubernetes/.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hvac

from rotation.client.errors import VaultAuthError

__all__ = ["DEFAULT_K8S_JWT_PATH", "AppRoleAuth", "Auth", "KubernetesAuth", "TokenAuth"]

DEFAULT_K8S_JWT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True)
class TokenAuth:
    """A ready token (``VAULT_TOKEN``). Cannot log in again: a 403 raises :class:`VaultAuthError`."""

    token: str = field(repr=False)
    can_relogin = False

    def login(self, client: hvac.Client) -> None:
        client.token = self.token


@dataclass(frozen=True)
class AppRoleAuth:
    """AppRole login (``auth/<mount>/login`` with role_id + secret_id)."""

    role_id: str
    secret_id: str = field(repr=False)
    mount: str = "approle"
    can_relogin = True

    def login(self, client: hvac.Client) -> None:
        client.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id, mount_point=self.mount,
                                  use_token=True)


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


Auth = TokenAuth | AppRoleAuth | KubernetesAuth
