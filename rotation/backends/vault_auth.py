"""How the rotation jobs prove who they are to Vault/OpenBao, without a stored Vault credential.

The login *material* comes from the platform at every login, never from the settings' frozen
values, so a rotated file or a fresh platform credential is always what is presented:

* ``aws`` -- HashiCorp Vault's AWS auth method, ``iam`` type: an ``sts:GetCallerIdentity``
  request signed with the runner's AWS credentials (SigV4, :class:`botocore.auth.SigV4Auth`),
  sent to Vault base64-encoded as ``iam_http_request_method``, ``iam_request_url``,
  ``iam_request_body`` and ``iam_request_headers``; Vault replays it to STS and matches the
  caller's ARN against the role's ``bound_iam_principal_arn``. With ``VAULT_AWS_IAM_SERVER_ID``
  the signed headers include ``X-Vault-AWS-IAM-Server-ID`` (the role's ``iam_server_id_header_value``,
  which stops a captured request from being replayed against another Vault).
  https://developer.hashicorp.com/vault/docs/auth/aws#iam-auth-method and
  https://developer.hashicorp.com/vault/api-docs/auth/aws#login.
* ``jwt`` -- the JWT auth method (OpenBao and Vault): the token is re-read from ``VAULT_JWT_PATH``
  (a projected Kubernetes service-account token with audience ``vault``, a CI OIDC token file),
  or minted by AWS STS ``GetWebIdentityToken`` for ``VAULT_JWT_AWS_AUDIENCE`` (IAM outbound
  identity federation; regional STS endpoint only).
  https://openbao.org/api-docs/auth/jwt/,
  https://docs.aws.amazon.com/STS/latest/APIReference/API_GetWebIdentityToken.html.
* ``approle`` -- for hosts without a platform identity: the secret id is re-read from
  ``VAULT_SECRET_ID_FILE`` before every login; with ``VAULT_SECRET_ID_WRAPPED=true`` the file holds
  a response-wrapping token, unwrapped (``sys/wrapping/unwrap``) once per distinct file content.
  A wrapping token is single-use, so the unwrapped secret id is kept in memory (never logged) until
  the file changes. https://openbao.org/docs/concepts/response-wrapping/.
* ``token`` -- ``VAULT_TOKEN``, or ``VAULT_TOKEN_FILE`` (a Vault Agent sink) re-read at every login.

Nothing here logs or echoes a credential; errors name the setting and the fix.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rotation.errors import ConfigError, VaultError

__all__ = ["GET_CALLER_IDENTITY_BODY", "AppRoleSecretSource", "aws_iam_login_payload", "aws_web_identity_token",
           "read_credential_file"]

#: The STS request Vault's iam auth expects (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).
GET_CALLER_IDENTITY_BODY = "Action=GetCallerIdentity&Version=2011-06-15"
#: STS's global endpoint, which Vault's AWS auth uses unless the server sets ``sts_endpoint``/``sts_region``.
GLOBAL_STS_URL = "https://sts.amazonaws.com/"
IAM_SERVER_ID_HEADER = "X-Vault-AWS-IAM-Server-ID"


def read_credential_file(path: Path, setting: str) -> str:
    """The stripped content of ``path`` (a token, JWT or secret id), re-read on every call.

    :raises VaultError: the file is missing, unreadable or empty; the message names ``setting``
        and the path, never the content.
    """
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise VaultError(f"{setting}={path}: cannot read the file ({reason}); check that whatever writes it "
                         "(Vault Agent, the kubelet, the deployment) has done so and that this process may read it"
                         ) from None
    if not value:
        raise VaultError(f"{setting}={path}: the file is empty; it must hold the credential itself")
    return value


def aws_iam_login_payload(credentials: Any, role: str, *, server_id: str | None = None,
                          sts_region: str | None = None) -> dict[str, str]:
    """The body of ``POST auth/<mount>/login`` for Vault's AWS ``iam`` auth.

    :param credentials: botocore credentials (``access_key``, ``secret_key``, ``token``), e.g.
        ``boto3.Session().get_credentials()``; frozen before signing.
    :param role: the Vault role (bound to the runner's IAM role ARN).
    :param server_id: value for the signed ``X-Vault-AWS-IAM-Server-ID`` header, or ``None``.
    :param sts_region: sign for ``https://sts.<region>.amazonaws.com/`` (the Vault server must set
        the same ``sts_endpoint``/``sts_region``); ``None`` = the global endpoint, ``us-east-1``.
    :returns: ``{"role", "iam_http_request_method", "iam_request_url", "iam_request_body",
        "iam_request_headers"}``, the last three base64-encoded (headers as JSON of name -> [value]).
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    if credentials is None:
        raise VaultError("aws auth: no AWS credentials found (on Lambda they come from the function's role; "
                         "elsewhere set AWS_PROFILE or the instance/pod role)")
    frozen = credentials.get_frozen_credentials() if hasattr(credentials, "get_frozen_credentials") else credentials
    url = f"https://sts.{sts_region}.amazonaws.com/" if sts_region else GLOBAL_STS_URL
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if server_id:
        headers[IAM_SERVER_ID_HEADER] = server_id
    request = AWSRequest(method="POST", url=url, data=GET_CALLER_IDENTITY_BODY, headers=headers)
    SigV4Auth(frozen, "sts", sts_region or "us-east-1").add_auth(request)

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "role": role,
        "iam_http_request_method": "POST",
        "iam_request_url": b64(url),
        "iam_request_body": b64(GET_CALLER_IDENTITY_BODY),
        "iam_request_headers": b64(json.dumps({k: [v] for k, v in request.headers.items()})),
    }


def aws_web_identity_token(sts_client: Any, audience: str, duration_seconds: int = 300) -> str:
    """A JWT for ``audience`` from AWS STS ``GetWebIdentityToken`` (IAM outbound identity
    federation; the caller needs ``sts:GetWebIdentityToken`` and a *regional* STS client).

    :raises rotation.errors.AwsError: STS refused (e.g. the feature is not enabled for the account).
    """
    from rotation.backends.aws_errors import aws_errors

    with aws_errors("sts:GetWebIdentityToken", audience):
        answer = sts_client.get_web_identity_token(Audience=[audience], SigningAlgorithm="RS256",
                                                   DurationSeconds=duration_seconds)
    return answer["WebIdentityToken"]


@dataclass
class AppRoleSecretSource:
    """The AppRole secret id, from ``VAULT_SECRET_ID_FILE`` (re-read before every login) or a fixed
    value. With ``wrapped``, the file holds a response-wrapping token: it is unwrapped once per
    distinct content (a wrapping token works once) and the secret id kept in memory until the
    file changes. Thread-safe; ``repr`` shows no value."""

    file: Path | None = None
    wrapped: bool = False
    value: str | None = field(default=None, repr=False)
    _cache: tuple[str, str] | None = field(default=None, repr=False, compare=False)   # (content digest, secret id)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def secret_id(self, unwrap) -> str:
        """The secret id to log in with. ``unwrap(wrapping_token) -> dict`` answers
        ``sys/wrapping/unwrap`` (its ``data.secret_id``), called only for new wrapped content."""
        if self.file is None:
            if not self.value:
                raise ConfigError("settings", [("VAULT_SECRET_ID_FILE", "is required for AppRole login")])
            return self.value
        content = read_credential_file(self.file, "VAULT_SECRET_ID_FILE")
        if not self.wrapped:
            return content
        digest = hashlib.sha256(content.encode()).hexdigest()
        with self._lock:
            if self._cache is not None and self._cache[0] == digest:
                return self._cache[1]
            answer = unwrap(content)
            secret_id = ((answer or {}).get("data") or {}).get("secret_id")
            if not isinstance(secret_id, str) or not secret_id:
                raise VaultError("VAULT_SECRET_ID_FILE: the unwrapped response holds no secret_id; wrap the "
                                 "answer of auth/approle/role/<role>/secret-id (bao write -wrap-ttl=...)")
            self._cache = (digest, secret_id)
            return secret_id
