"""The app-side client (the base install: ``pip install secure-mail-api``; hvac + requests).

- :class:`KeyClient`: read this app's current mail API key from Vault KV v2, cached, refreshed
  on rotation, on a push, or on a 403; records the version in use (the ack).
- :class:`WebhookReceiver` / :func:`serve_webhook`: take a signed push carrying a response-wrapping
  token; :func:`verify` checks a signature.
- Auth: :class:`TokenAuth`, :class:`TokenFileAuth` (Vault Agent sink), :class:`AppRoleAuth` (secret id
  file, optionally response-wrapped), :class:`JwtAuth`, :class:`KubernetesAuth`.

Nothing here imports the rotation engine, pydantic or boto3.
"""

from rotation.client.auth import AppRoleAuth, JwtAuth, KubernetesAuth, TokenAuth, TokenFileAuth
from rotation.client.errors import (
    KeyClientConfigError,
    KeyClientError,
    KeyUnavailable,
    TamperSuspected,
    VaultAuthError,
    VaultUnavailable,
)
from rotation.client.keys import ApiKey, KeyClient
from rotation.client.receiver import ReceiveResult, WebhookReceiver, serve_webhook
from rotation.client.signing import SignatureError, sign, verify

__all__ = [
    "ApiKey",
    "AppRoleAuth",
    "JwtAuth",
    "KeyClient",
    "KeyClientConfigError",
    "KeyClientError",
    "KeyUnavailable",
    "KubernetesAuth",
    "ReceiveResult",
    "SignatureError",
    "TamperSuspected",
    "TokenAuth",
    "TokenFileAuth",
    "VaultAuthError",
    "VaultUnavailable",
    "WebhookReceiver",
    "serve_webhook",
    "sign",
    "verify",
]
