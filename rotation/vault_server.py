"""Which server ``rotation vault setup`` talks to (OpenBao or HashiCorp Vault, and its version),
read before the setup writes anything, and what that server refuses.

Sources: ``GET sys/seal-status`` (unauthenticated; ``version``, ``sealed``:
https://openbao.org/api-docs/system/seal-status/) and ``GET sys/health`` (HashiCorp Vault's
answer carries ``enterprise``, OpenBao's does not:
https://developer.hashicorp.com/vault/api-docs/system/health). OpenBao numbers its releases from
2.0 on, HashiCorp Vault's are 1.x, which decides when ``sys/health`` says nothing.

What each kind refuses:

* API-created audit devices: OpenBao 2.3.2 and later (CVE-2025-54997; ``unsafe_allow_api_audit_creation``
  defaults to false; 2.4 adds ``audit`` stanzas in the server configuration:
  https://openbao.org/docs/rfcs/config-audit-devices). HashiCorp Vault enables them through ``sys/audit``.
* The AWS auth method: HashiCorp Vault only (OpenBao removed it;
  https://developer.hashicorp.com/vault/api-docs/auth/aws).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OPENBAO_API_AUDIT_REFUSED_FROM", "ServerInfo", "detect_server"]

#: The first OpenBao release that refuses ``PUT sys/audit/<path>`` by default (CVE-2025-54997).
OPENBAO_API_AUDIT_REFUSED_FROM = (2, 3, 2)

#: ``call(method, path)`` -> (HTTP status, JSON body): a raw Vault API call.
ApiCall = Callable[[str, str], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class ServerInfo:
    """The server's kind (``openbao`` | ``vault``), its version string as it reports it
    (``2.7.2``, ``1.17.3+ent``) and whether it is sealed."""

    kind: Literal["openbao", "vault"]
    version: str
    sealed: bool = False

    @property
    def name(self) -> str:
        """``OpenBao 2.7.2`` / ``HashiCorp Vault 1.17.3``."""
        return f"{'OpenBao' if self.kind == 'openbao' else 'HashiCorp Vault'} {self.version or '(version unknown)'}"

    @property
    def release(self) -> tuple[int, int, int]:
        """The version as ``(major, minor, patch)``; ``(0, 0, 0)`` when it cannot be read."""
        m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", self.version)
        return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else (0, 0, 0)

    @property
    def refuses_api_audit_devices(self) -> bool:
        """True when ``PUT sys/audit/<path>`` is refused by default (OpenBao 2.3.2+)."""
        return self.kind == "openbao" and self.release >= OPENBAO_API_AUDIT_REFUSED_FROM

    @property
    def has_aws_auth(self) -> bool:
        """True when the AWS auth method exists (HashiCorp Vault only)."""
        return self.kind == "vault"


def detect_server(call: ApiCall) -> ServerInfo:
    """Read ``sys/seal-status`` and ``sys/health`` (two GET requests, no token needed) and tell
    OpenBao from HashiCorp Vault. Raises whatever ``call`` raises for an unreachable server."""
    _, seal = call("GET", "sys/seal-status")
    _, health = call("GET", "sys/health?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200")
    version = str(seal.get("version") or health.get("version") or "")
    if "enterprise" in health:
        kind: Literal["openbao", "vault"] = "vault"
    else:
        major = ServerInfo("openbao", version).release[0]
        kind = "openbao" if major >= 2 or not version else "vault"
    return ServerInfo(kind=kind, version=version, sealed=bool(seal.get("sealed", health.get("sealed", False))))
