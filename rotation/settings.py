"""Runtime settings of the rotation jobs (pydantic-settings).

Sources, highest precedence first (tested by
``test_settings_precedence_kwargs_over_env_over_dotenv_over_default``):

1. keyword arguments to :class:`Settings` (what the CLI passes from its options);
2. environment variables (the names below; the ``VAULT_*`` and ``AWS_*`` names are the ones the
   Vault and AWS CLIs already use);
3. a dotenv file named by ``ROTATION_ENV_FILE`` (optional);
4. the defaults.

=============================  ==========================  =========================================
setting                        environment variable        meaning
=============================  ==========================  =========================================
vault_addr                     VAULT_ADDR                  https URL (http only on loopback)
vault_namespace                VAULT_NAMESPACE             Vault Enterprise/OpenBao namespace
vault_auth_method              VAULT_AUTH_METHOD           ``aws`` | ``jwt`` | ``kubernetes`` | ``approle`` |
                                                           ``token`` (default ``token``; see below)
vault_token                    VAULT_TOKEN                 token auth (SecretStr)
vault_token_file               VAULT_TOKEN_FILE            token auth: a file holding the token (a Vault Agent
                                                           sink), re-read at every login and after a 403
vault_role_id                  VAULT_ROLE_ID               AppRole role id
vault_secret_id_file           VAULT_SECRET_ID_FILE        AppRole secret id file, re-read before every login
vault_secret_id_wrapped        VAULT_SECRET_ID_WRAPPED     ``true``: that file holds a response-wrapping token
vault_secret_id                VAULT_SECRET_ID             AppRole secret id itself (SecretStr; prefer the file)
vault_approle_mount            VAULT_APPROLE_MOUNT         default ``approle``
vault_kubernetes_role          VAULT_KUBERNETES_ROLE       Kubernetes auth role
vault_kubernetes_mount         VAULT_KUBERNETES_MOUNT      default ``kubernetes``
vault_kubernetes_jwt_path      VAULT_KUBERNETES_JWT_PATH   service-account token file
vault_jwt_role                 VAULT_JWT_ROLE              JWT auth role, e.g. ``mail-api-rotator``
vault_jwt_mount                VAULT_JWT_MOUNT             default ``jwt``
vault_jwt_path                 VAULT_JWT_PATH              JWT file (projected SA token, CI OIDC token), re-read
                                                           at every login
vault_jwt_aws_audience         VAULT_JWT_AWS_AUDIENCE      instead of the file: a JWT for this audience from AWS
                                                           STS GetWebIdentityToken (outbound identity federation)
vault_aws_role                 VAULT_AWS_ROLE              AWS IAM auth role (HashiCorp Vault only)
vault_aws_mount                VAULT_AWS_MOUNT             default ``aws``
vault_aws_iam_server_id        VAULT_AWS_IAM_SERVER_ID     signed ``X-Vault-AWS-IAM-Server-ID`` header value
vault_aws_sts_region           VAULT_AWS_STS_REGION        sign for a regional STS endpoint (default: global)
vault_cacert                   VAULT_CACERT                CA bundle (PEM file) for Vault's TLS certificate
vault_capath                   VAULT_CAPATH                directory of CA certificates (``openssl rehash``-ed)
vault_client_cert              VAULT_CLIENT_CERT           client certificate for mutual TLS (with the key)
vault_client_key               VAULT_CLIENT_KEY            its private key
vault_timeout_seconds          VAULT_CLIENT_TIMEOUT        seconds per Vault HTTP call (default 10)
vault_kv_mount                 VAULT_KV_MOUNT              KV v2 mount, default ``secret`` (no slashes)
vault_kv_prefix                VAULT_KV_PREFIX             path prefix inside the mount, default ``mail-api``
aws_region                     AWS_REGION                  e.g. ``eu-west-1``
aws_endpoint_url               AWS_ENDPOINT_URL            only for an emulator; unset in production
stack                          ROTATION_STACK              stack name: key names, tags, usage-plan names
lease_ttl_seconds              ROTATION_LEASE_TTL          rotation lease lifetime (seconds)
verify_timeout_seconds         ROTATION_VERIFY_TIMEOUT     test-step deadline (seconds)
push_timeout_seconds           ROTATION_PUSH_TIMEOUT       per-target deadline (seconds)
apigw_rate_per_second          ROTATION_APIGW_RATE         control-plane calls per second (AWS: 10)
apigw_burst                    ROTATION_APIGW_BURST        bucket size (AWS: 40)
apigw_key_writes_per_second    ROTATION_APIGW_KEY_RATE     Create/DeleteApiKey per second (AWS: 5)
workers                        ROTATION_WORKERS            consumers worked on at once (1-64, default 8)
audit_log                      ROTATION_AUDIT_LOG          JSON-lines audit file; stderr when unset
canary_url                     ROTATION_CANARY_URL         the mail API's ``.../v1/messages``: the test step
                                                           POSTs an invalid body with the new key there
traffic_url                    ROTATION_TRAFFIC_URL        per-key counters endpoint (JSON ``{key id: count}``),
                                                           e.g. the dev gateway's ``/_dev/usage`` (default: API Gateway usage)
traffic_token                  ROTATION_TRAFFIC_TOKEN      bearer token for ``traffic_url`` (secret)
file_target_dirs               ROTATION_FILE_TARGET_DIRS   directories ``file`` targets may write under, separated by
                                                           ``:`` (default ``/run/mail-api``)
webhook_allow_private          ROTATION_WEBHOOK_ALLOW_PRIVATE   ``true``: webhook URLs may name a private address
                                                           (RFC 1918, fc00::/7) literally (default ``false``)
webhook_allow_loopback         ROTATION_WEBHOOK_ALLOW_LOOPBACK  ``true``: webhook URLs may name loopback /
                                                           ``localhost`` (the dev stack only; default ``false``)
=============================  ==========================  =========================================

OpenBao's names: ``BAO_ADDR``, ``BAO_NAMESPACE``, ``BAO_TOKEN``, ``BAO_TOKEN_FILE``, ``BAO_CACERT``,
``BAO_CAPATH``, ``BAO_CLIENT_CERT``, ``BAO_CLIENT_KEY`` and ``BAO_CLIENT_TIMEOUT`` are accepted as
twins of the ``VAULT_*`` names; when both are set, the ``VAULT_*`` one wins (one rule for the rotator
and :meth:`rotation.client.keys.KeyClient.from_env`).

No stored Vault credential (how each method logs in: :mod:`rotation.backends.vault_auth`): on AWS
the rotator uses Vault's AWS IAM auth (``aws``, its role's credentials sign an
``sts:GetCallerIdentity`` request) or, with OpenBao, ``jwt`` (a platform JWT); on Kubernetes the
service-account token (``kubernetes`` or ``jwt``). ``approle`` is for hosts without a platform
identity, with the secret id in a file (optionally response-wrapped). Files named by these settings
must exist at start: a bad path, an unknown method or a missing companion setting is a
:class:`~rotation.errors.ConfigError` (the CLI exits 2) naming the variable and the fix.

``VAULT_CAPATH`` is passed to ``requests`` as ``verify``; OpenSSL only finds certificates in a
directory by their subject-hash file names, so run ``openssl rehash <dir>`` (or ``c_rehash``) on it.
``VAULT_CACERT`` wins when both are set.

Validation errors never echo the rejected input (``hide_input_in_errors``; failure case C1),
and secrets are ``SecretStr`` so a repr prints ``**********``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.functional_validators import BeforeValidator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rotation.errors import ConfigError
from rotation.special_addresses import embedded_ipv4, is_globally_reachable

__all__ = ["AUTH_METHODS", "Settings", "check_service_url", "classify_host", "classify_ip", "decode_host", "is_loopback_url",
           "load_settings"]

#: ``VAULT_AUTH_METHOD`` values.
AUTH_METHODS = ("aws", "jwt", "kubernetes", "approle", "token")

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")   # always fullmatch: never ``$``, which allows a trailing "\n"

#: Cloud metadata endpoints and their names; never a push target, whatever the settings.
_METADATA_NETS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32"))
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                             "instance-data.ec2.internal"})

_LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}")   # what inet_aton accepts

HostKind = Literal["public", "private", "loopback", "metadata", "unroutable"]


def decode_host(url: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    """The host of ``url`` decoded before any check: percent-decoding, IDNA/Unicode normalisation
    (``ｌｏｃａｌｈｏｓｔ`` is ``localhost``), lower case, no trailing dot, an IPv6 zone id dropped,
    legacy IPv4 forms (``2130706433``, ``0x7f.1``, ``127.1``) and IPv4-mapped IPv6 resolved to the
    address they denote. Returns ``(name, ip or None)``; ``ValueError`` for a host that does not decode."""
    import socket
    from urllib.parse import unquote

    raw = unquote(urlsplit(url).hostname or "")
    try:
        name = raw.encode("idna").decode("ascii").lower().rstrip(".") if raw else ""
    except UnicodeError as exc:
        raise ValueError("has a host name that is not a valid (IDNA) domain name") from exc
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        if _LEGACY_IPV4.fullmatch(name):
            try:
                ip = ipaddress.IPv4Address(socket.inet_aton(name))
            except OSError:
                ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return name, ip


def classify_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> HostKind:
    """``metadata`` (link-local, cloud metadata), ``unroutable`` (unspecified, multicast, reserved),
    ``loopback``, ``private`` (any other address not globally reachable: ``ipaddress``'s
    ``is_global`` and the IANA special-purpose registries, e.g. ``192.0.0.0/24``) or ``public``.

    An IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible, 6to4 ``2002::/16``,
    NAT64 ``64:ff9b::/96``, Teredo) is the IPv4 address it carries, the most restrictive kind
    winning for Teredo's two: ``2002:a9fe:a9fe::`` is ``metadata``. Registries and forms:
    :mod:`rotation.special_addresses`."""
    carried = embedded_ipv4(ip)
    if carried:
        return max((_classify_one(v4) for v4 in carried), key=_KIND_SEVERITY.index)
    return _classify_one(ip)


#: the kinds from the least to the most restricted (webhook hosts: metadata and unroutable never)
_KIND_SEVERITY: tuple[HostKind, ...] = ("public", "private", "loopback", "unroutable", "metadata")


def _classify_one(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> HostKind:
    if any(ip in net for net in _METADATA_NETS if net.version == ip.version) or ip.is_link_local:
        return "metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "unroutable"
    return "public" if is_globally_reachable(ip) else "private"


def classify_host(url: str) -> HostKind:
    """The kind of ``url``'s host after :func:`decode_host` (names other than ``localhost`` and
    the metadata names are ``public`` here: resolve them to check further)."""
    name, ip = decode_host(url)
    if ip is not None:
        return classify_ip(ip)
    if name in _METADATA_NAMES:
        return "metadata"
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"
    return "public"


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback IP address (after decoding)."""
    try:
        return classify_host(url) == "loopback"
    except ValueError:
        return False


def check_service_url(url: str, example: str) -> str:
    """Return ``url`` if it is an https URL, or an http URL on loopback (the dev stack).

    Raises ``ValueError`` naming the fix, with ``example`` as a well-formed value (pydantic turns
    it into a field error). TLS on every channel: docs/security-policy.md, "Encryption in transit".
    """
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise ValueError(f"must be a URL such as {example} (no spaces or control characters)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"must be a URL such as {example}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be a URL such as {example}")
    if parts.scheme == "http" and not is_loopback_url(url):
        raise ValueError("must use https:// (plain http is allowed only on loopback, for the dev stack)")
    return url


def _split_dirs(value: object) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(":") if v.strip()]
    elif value is None:
        value = []
    elif not isinstance(value, (list, tuple)):
        raise ValueError("must be absolute directories separated by ':', e.g. /run/mail-api")
    out = []
    for v in value:
        p = Path(str(v).strip())
        if not p.is_absolute() or ".." in p.parts:
            raise ValueError("must be absolute directories without '..', separated by ':', e.g. /run/mail-api")
        out.append(Path(os.path.normpath(p)))
    return tuple(out)


class Settings(BaseSettings):
    """Typed runtime settings; see the module docstring for each field's variable and meaning."""

    model_config = SettingsConfigDict(
        extra="ignore", hide_input_in_errors=True, populate_by_name=True, frozen=True,
    )

    vault_addr: str = Field("https://127.0.0.1:8200",
                            validation_alias=AliasChoices("VAULT_ADDR", "BAO_ADDR", "vault_addr"))
    vault_namespace: str | None = Field(
        None, validation_alias=AliasChoices("VAULT_NAMESPACE", "BAO_NAMESPACE", "vault_namespace"))
    vault_auth_method: str = Field(
        "token", validation_alias=AliasChoices("VAULT_AUTH_METHOD", "vault_auth_method"))
    vault_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("VAULT_TOKEN", "BAO_TOKEN", "vault_token"))
    vault_token_file: Path | None = Field(
        None, validation_alias=AliasChoices("VAULT_TOKEN_FILE", "BAO_TOKEN_FILE", "vault_token_file"))
    vault_role_id: str | None = Field(None, validation_alias=AliasChoices("VAULT_ROLE_ID", "vault_role_id"))
    vault_secret_id: SecretStr | None = Field(None, validation_alias=AliasChoices("VAULT_SECRET_ID", "vault_secret_id"))
    vault_secret_id_file: Path | None = Field(
        None, validation_alias=AliasChoices("VAULT_SECRET_ID_FILE", "vault_secret_id_file"))
    vault_secret_id_wrapped: bool = Field(
        False, validation_alias=AliasChoices("VAULT_SECRET_ID_WRAPPED", "vault_secret_id_wrapped"))
    vault_approle_mount: str = Field("approle", validation_alias=AliasChoices("VAULT_APPROLE_MOUNT", "vault_approle_mount"))
    vault_kubernetes_role: str | None = Field(
        None, validation_alias=AliasChoices("VAULT_KUBERNETES_ROLE", "vault_kubernetes_role"))
    vault_kubernetes_mount: str = Field(
        "kubernetes", validation_alias=AliasChoices("VAULT_KUBERNETES_MOUNT", "vault_kubernetes_mount"))
    vault_kubernetes_jwt_path: Path = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        validation_alias=AliasChoices("VAULT_KUBERNETES_JWT_PATH", "vault_kubernetes_jwt_path"))
    vault_jwt_role: str | None = Field(None, validation_alias=AliasChoices("VAULT_JWT_ROLE", "vault_jwt_role"))
    vault_jwt_mount: str = Field("jwt", validation_alias=AliasChoices("VAULT_JWT_MOUNT", "vault_jwt_mount"))
    vault_jwt_path: Path | None = Field(None, validation_alias=AliasChoices("VAULT_JWT_PATH", "vault_jwt_path"))
    vault_jwt_aws_audience: str | None = Field(
        None, validation_alias=AliasChoices("VAULT_JWT_AWS_AUDIENCE", "vault_jwt_aws_audience"))
    vault_aws_role: str | None = Field(None, validation_alias=AliasChoices("VAULT_AWS_ROLE", "vault_aws_role"))
    vault_aws_mount: str = Field("aws", validation_alias=AliasChoices("VAULT_AWS_MOUNT", "vault_aws_mount"))
    vault_aws_iam_server_id: str | None = Field(
        None, validation_alias=AliasChoices("VAULT_AWS_IAM_SERVER_ID", "vault_aws_iam_server_id"))
    vault_aws_sts_region: str | None = Field(
        None, validation_alias=AliasChoices("VAULT_AWS_STS_REGION", "vault_aws_sts_region"))
    vault_cacert: Path | None = Field(
        None, validation_alias=AliasChoices("VAULT_CACERT", "BAO_CACERT", "vault_cacert"))
    vault_capath: Path | None = Field(
        None, validation_alias=AliasChoices("VAULT_CAPATH", "BAO_CAPATH", "vault_capath"))
    vault_client_cert: Path | None = Field(
        None, validation_alias=AliasChoices("VAULT_CLIENT_CERT", "BAO_CLIENT_CERT", "vault_client_cert"))
    vault_client_key: Path | None = Field(
        None, validation_alias=AliasChoices("VAULT_CLIENT_KEY", "BAO_CLIENT_KEY", "vault_client_key"))
    vault_kv_mount: str = Field("secret", validation_alias=AliasChoices("VAULT_KV_MOUNT", "vault_kv_mount"))
    vault_kv_prefix: str = Field("mail-api", validation_alias=AliasChoices("VAULT_KV_PREFIX", "vault_kv_prefix"))
    vault_timeout_seconds: float = Field(
        10.0, gt=0, le=300,
        validation_alias=AliasChoices("VAULT_CLIENT_TIMEOUT", "BAO_CLIENT_TIMEOUT", "vault_timeout_seconds"))

    aws_region: str = Field("us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"))
    aws_endpoint_url: str | None = Field(None, validation_alias=AliasChoices("AWS_ENDPOINT_URL", "aws_endpoint_url"))

    stack: str = Field("dev", validation_alias=AliasChoices("ROTATION_STACK", "stack"))
    lease_ttl_seconds: int = Field(300, ge=5, le=3600, validation_alias=AliasChoices("ROTATION_LEASE_TTL", "lease_ttl_seconds"))
    verify_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, validation_alias=AliasChoices("ROTATION_VERIFY_TIMEOUT", "verify_timeout_seconds"))
    push_timeout_seconds: float = Field(
        15.0, gt=0, le=300, validation_alias=AliasChoices("ROTATION_PUSH_TIMEOUT", "push_timeout_seconds"))
    apigw_rate_per_second: float = Field(
        10.0, gt=0, le=10, validation_alias=AliasChoices("ROTATION_APIGW_RATE", "apigw_rate_per_second"))
    apigw_burst: int = Field(40, ge=1, le=40, validation_alias=AliasChoices("ROTATION_APIGW_BURST", "apigw_burst"))
    apigw_key_writes_per_second: float = Field(
        5.0, gt=0, le=5, validation_alias=AliasChoices("ROTATION_APIGW_KEY_RATE", "apigw_key_writes_per_second"))
    audit_log: Path | None = Field(None, validation_alias=AliasChoices("ROTATION_AUDIT_LOG", "audit_log"))
    workers: int = Field(8, ge=1, le=64, validation_alias=AliasChoices("ROTATION_WORKERS", "workers"))
    canary_url: str | None = Field(None, validation_alias=AliasChoices("ROTATION_CANARY_URL", "canary_url"))
    traffic_url: str | None = Field(None, validation_alias=AliasChoices("ROTATION_TRAFFIC_URL", "traffic_url"))
    traffic_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ROTATION_TRAFFIC_TOKEN", "traffic_token"))
    file_target_dirs: Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_split_dirs)] = Field(
        (Path("/run/mail-api"),), validation_alias=AliasChoices("ROTATION_FILE_TARGET_DIRS", "file_target_dirs"))
    webhook_allow_private: bool = Field(
        False, validation_alias=AliasChoices("ROTATION_WEBHOOK_ALLOW_PRIVATE", "webhook_allow_private"))
    webhook_allow_loopback: bool = Field(
        False, validation_alias=AliasChoices("ROTATION_WEBHOOK_ALLOW_LOOPBACK", "webhook_allow_loopback"))

    @field_validator("vault_addr")
    @classmethod
    def _vault_addr(cls, v: str) -> str:
        return check_service_url(v, "https://vault.example.com:8200").rstrip("/")

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return check_service_url(v, "http://127.0.0.1:5000 (emulators only)").rstrip("/") if v else None

    @field_validator("canary_url", "traffic_url")
    @classmethod
    def _dev_urls(cls, v: str | None) -> str | None:
        return check_service_url(v, "https://mail-api.example.com/v1/messages") if v else None

    @field_validator("vault_kv_mount")
    @classmethod
    def _mount(cls, v: str) -> str:
        if not _SEGMENT.fullmatch(v):
            raise ValueError("must be one path segment without slashes, e.g. 'secret' (the path goes in VAULT_KV_PREFIX)")
        return v

    @field_validator("vault_kv_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        parts = v.strip("/").split("/")
        if parts and parts[0] in ("data", "metadata"):
            raise ValueError("must not start with 'data/' or 'metadata/': the KV v2 client inserts those itself")
        if not all(_SEGMENT.fullmatch(p) for p in parts):
            raise ValueError("must be slash-separated segments of a-z, 0-9 and '-', e.g. 'mail-api'")
        return "/".join(parts)

    @field_validator("stack")
    @classmethod
    def _stack(cls, v: str) -> str:
        if not _SEGMENT.fullmatch(v):
            raise ValueError("must be a-z, 0-9 and '-' (it becomes part of API key and usage plan names)")
        return v

    @field_validator("aws_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", v):
            raise ValueError("must be an AWS region code such as eu-west-1")
        return v

    @model_validator(mode="after")
    def _prefix_not_mount(self) -> Settings:
        if self.vault_kv_prefix.split("/")[0] == self.vault_kv_mount:
            raise ValueError("VAULT_KV_PREFIX must not start with the mount (VAULT_KV_MOUNT): it is the path "
                             "inside the mount, e.g. 'mail-api'")
        return self

    @field_validator("vault_auth_method", mode="before")
    @classmethod
    def _method(cls, v: object) -> str:
        if not isinstance(v, str) or v.strip().lower() not in AUTH_METHODS:
            raise ValueError(f"must be one of {', '.join(AUTH_METHODS)}: aws (HashiCorp Vault's AWS IAM auth; "
                             "the default on Lambda), jwt (OpenBao/Vault JWT auth), kubernetes, approle (hosts "
                             "without a platform identity), token (a ready token or a Vault Agent token file)")
        return v.strip().lower()

    @field_validator("vault_approle_mount", "vault_kubernetes_mount", "vault_jwt_mount", "vault_aws_mount")
    @classmethod
    def _auth_mount(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}(/[A-Za-z0-9][A-Za-z0-9_-]{0,62})*", v):
            raise ValueError("must be an auth mount path such as 'approle' (no leading or trailing slash)")
        return v

    @field_validator("vault_cacert", "vault_client_cert", "vault_client_key")
    @classmethod
    def _pem_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("names no readable file: point it at a PEM file that exists (for VAULT_CACERT the "
                             "CA bundle that signed Vault's certificate, e.g. /etc/ssl/vault-ca.pem)")
        return v

    @field_validator("vault_capath")
    @classmethod
    def _ca_dir(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():
            raise ValueError("names no directory: point it at a directory of PEM CA certificates prepared with "
                             "'openssl rehash <dir>' (or use VAULT_CACERT for one bundle file)")
        return v

    @field_validator("vault_aws_sts_region")
    @classmethod
    def _sts_region(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", v):
            raise ValueError("must be an AWS region code such as eu-west-1 (the Vault server's sts_region)")
        return v

    @model_validator(mode="after")
    def _tls_complete(self) -> Settings:
        if (self.vault_client_cert is None) != (self.vault_client_key is None):
            raise ValueError("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together (mutual TLS needs both the "
                             "certificate and its key): set both or neither")
        return self

    @model_validator(mode="after")
    def _auth_complete(self) -> Settings:
        def empty(v) -> bool:
            return v is None or not (v.get_secret_value() if isinstance(v, SecretStr) else v).strip()

        def readable(path: Path | None, name: str) -> None:
            if path is not None and not path.is_file():
                raise ValueError(f"{name} names no readable file: point it at the file that holds the value "
                                 "(it is re-read at every login)")

        method = self.vault_auth_method
        if method == "token":
            if empty(self.vault_token) and self.vault_token_file is None:
                raise ValueError("VAULT_TOKEN or VAULT_TOKEN_FILE (e.g. a Vault Agent token sink) is required "
                                 "when VAULT_AUTH_METHOD=token")
            readable(self.vault_token_file, "VAULT_TOKEN_FILE")
        elif method == "approle":
            if empty(self.vault_role_id) or (empty(self.vault_secret_id) and self.vault_secret_id_file is None):
                raise ValueError("VAULT_ROLE_ID and VAULT_SECRET_ID_FILE (or VAULT_SECRET_ID) are required when "
                                 "VAULT_AUTH_METHOD=approle")
            readable(self.vault_secret_id_file, "VAULT_SECRET_ID_FILE")
        elif method == "kubernetes":
            if not self.vault_kubernetes_role:
                raise ValueError("VAULT_KUBERNETES_ROLE is required when VAULT_AUTH_METHOD=kubernetes")
        elif method == "jwt":
            if empty(self.vault_jwt_role):
                raise ValueError("VAULT_JWT_ROLE is required when VAULT_AUTH_METHOD=jwt (the Vault JWT role, "
                                 "e.g. mail-api-rotator)")
            if (self.vault_jwt_path is None) == empty(self.vault_jwt_aws_audience):
                raise ValueError("set exactly one JWT source when VAULT_AUTH_METHOD=jwt: VAULT_JWT_PATH (a token "
                                 "file, e.g. a projected service-account token) or VAULT_JWT_AWS_AUDIENCE (a JWT "
                                 "from AWS STS GetWebIdentityToken for that audience)")
            readable(self.vault_jwt_path, "VAULT_JWT_PATH")
        elif method == "aws" and empty(self.vault_aws_role):
            raise ValueError("VAULT_AWS_ROLE is required when VAULT_AUTH_METHOD=aws (the Vault AWS auth role "
                             "bound to this runner's IAM role ARN, e.g. mail-api-rotator)")
        if self.vault_secret_id_wrapped and self.vault_secret_id_file is None:
            raise ValueError("VAULT_SECRET_ID_WRAPPED=true needs VAULT_SECRET_ID_FILE (the file holding the "
                             "response-wrapping token)")
        return self

    @property
    def vault_verify(self) -> bool | str:
        """``requests``' ``verify``: ``VAULT_CACERT`` (a bundle file) wins over ``VAULT_CAPATH`` (a
        directory of hashed CA certificates, as ``openssl rehash`` leaves it); else the system store."""
        if self.vault_cacert is not None:
            return str(self.vault_cacert)
        if self.vault_capath is not None:
            return str(self.vault_capath)
        return True

    @property
    def vault_cert(self) -> tuple[str, str] | None:
        """``(certificate, key)`` for mutual TLS, or ``None``."""
        if self.vault_client_cert is None or self.vault_client_key is None:
            return None
        return str(self.vault_client_cert), str(self.vault_client_key)


def _env_name(name: str, alias: object) -> str:
    """The environment variable of the Settings field ``name``: the first of its ``AliasChoices``."""
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return name


_FIELD_TO_ENV = {name: _env_name(name, field.validation_alias) for name, field in Settings.model_fields.items()}


def load_settings(**overrides) -> Settings:
    """Build :class:`Settings` from ``overrides``, the environment and ``ROTATION_ENV_FILE``.

    Raises :class:`~rotation.errors.ConfigError` listing each bad setting by its environment
    variable name; the rejected values are never echoed.
    """
    import os

    env_file = os.environ.get("ROTATION_ENV_FILE")
    try:
        return Settings(_env_file=env_file, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = err["loc"][0] if err["loc"] else None
            field = _FIELD_TO_ENV.get(str(loc), str(loc)) if loc is not None else "settings"
            problems.append((field, err["msg"].removeprefix("Value error, ")))
        raise ConfigError("settings", problems) from None
