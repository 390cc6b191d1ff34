"""Vault/OpenBao set-up as code: one declarative definition of everything the rotation jobs and
their consumers need in Vault, applied idempotently (``rotation vault setup``) and by the dev
bootstrap (``rotation.dev.stack.bootstrap_vault``), so production and the tests run the same plan.

What the definition holds (the *setup file*, YAML, validated by :class:`VaultSetup`)::

    version: 1
    mount: secret              # KV v2 mount (created if missing; cas_required=true, max_versions)
    prefix: mail-api           # path prefix inside the mount (docs/vault-layout.md)
    max_versions: 10           # 1..100 versions kept per secret
    rotator:                   # how the rotation jobs log in (any combination)
      jwt:                     # JWT auth (e.g. a CI / workload identity token), role mail-api-rotator
        bound_audiences: [vault.example.com]
        bound_subject: system:serviceaccount:mail-api:rotator   # optional
        bound_claims: {repository: org/mail-api}                # optional
        user_claim: sub
        jwt_validation_pubkeys: [...]   # or oidc_discovery_url / jwks_url (exactly one source)
        bound_issuer: https://issuer.example.com                # optional
      kubernetes: {namespace: mail-api, service_account: mail-api-rotator}
      approle: {token_ttl: 1h, secret_id_ttl: 30d}             # e.g. the scheduled Lambda
        # user_lockout: {lockout_disable: true}   # the default and the only value allowed for the rotator
      aws: {bound_iam_principal_arn: [arn:aws:iam::123456789012:role/x-rotator-lambda]}
    apps:                      # how consumer applications log in: one role per consumer
      approle: {secret_id_ttl: 24h, token_ttl: 1h, secret_id_num_uses: 0, token_bound_cidrs: [10.0.0.0/8]}
      kubernetes: {namespace: apps, service_account: "{consumer}"}   # {consumer} = consumer name
    auditor:                   # how `rotation audit` logs in: role mail-api-auditor (approle / kubernetes)
      approle: {secret_id_ttl: 24h, token_ttl: 15m}
    kubernetes:                # the Kubernetes auth method's config (when any kubernetes role)
      kubernetes_host: https://kubernetes.default.svc
      kubernetes_ca_cert_file: /path/ca.crt        # optional
      token_reviewer_jwt_file: /path/reviewer.jwt  # optional; read at apply time, never printed
    audit: {path: mail-api, file_path: /var/log/openbao/audit.log}   # a file audit device

Names: policies ``mail-api-rotator``, ``mail-api-auditor``, ``mail-api-consumer-<name>``
(:mod:`rotation.vault_policies`); every auth role of the rotator is ``mail-api-rotator``, every
role of a consumer ``mail-api-consumer-<name>``, the auditor's ``mail-api-auditor``, on the auth mounts ``jwt``, ``kubernetes``,
``approle``, ``aws`` (configurable per section with ``mount``).

How it applies (:func:`apply_setup`): the desired state becomes a list of :class:`Step` (an HTTP
call against the Vault API plus how to read the current value); each step reads the current state
first and writes only when it differs, so a re-run changes nothing (``unchanged``) and
``dry_run=True`` performs only the reads. The user lockout policy of each AppRole mount is
written explicitly (:class:`UserLockout`) and read back after the write. Existing objects of a
different kind are never replaced (a KV v1 mount, an auth method of another type at the path, an
audit device with other options): that is an error naming the path. Secrets never appear in a step's printed form: the token
reviewer JWT is redacted, AppRole secret ids are not part of the setup (issue them with
``bao write -f auth/approle/role/<role>/secret-id``, or ``-wrap-ttl``), and
policies are shown by name, size and digest.

The AWS auth method (``rotator.aws``) exists in HashiCorp Vault only (OpenBao dropped it), so its
steps are planned only when asked for (``aws_auth=True`` / ``--aws-auth``).

Audit devices: HashiCorp Vault enables them through ``sys/audit``; OpenBao 2.4+ refuses
API-created audit devices (CVE-2025-54997; https://openbao.org/docs/rfcs/config-audit-devices)
and expects an ``audit "file" "<path>"`` stanza in the server configuration, which
:func:`audit_config_stanza` renders. An already declared device with the same options is
``unchanged``; a refused creation raises :class:`VaultSetupError` with the stanza to add.

API references: https://openbao.org/api-docs/ (``sys/mounts``, ``sys/auth``, ``sys/audit``,
``sys/policies/acl``, ``auth/jwt``, ``auth/kubernetes``, ``auth/approle``) and
https://developer.hashicorp.com/vault/api-docs/auth/aws.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rotation.backends.vault_errors import vault_errors
from rotation.config import ConsumersFile, Duration, validation_problems
from rotation.errors import ConfigError, VaultError, VaultPermissionDenied
from rotation.vault_policies import consumer_policy_name, render_vault_policy
from rotation.vault_server import ServerInfo, detect_server
from rotation.yaml_files import load_yaml_file

__all__ = [
    "ROTATOR_ROLE",
    "Change",
    "PartialSetupError",
    "SetupPreflightError",
    "Step",
    "UserLockout",
    "VaultSetup",
    "VaultSetupError",
    "apply_setup",
    "audit_config_stanza",
    "load_setup_file",
    "plan_steps",
    "summarize",
]

ROTATOR_POLICY = "mail-api-rotator"
AUDITOR_POLICY = "mail-api-auditor"
#: The auditor's role name on every auth method (``rotation audit``).
AUDITOR_ROLE = "mail-api-auditor"
#: The rotator's role name on every auth method.
ROTATOR_ROLE = "mail-api-rotator"
# Every pattern here is applied with fullmatch (``re.match`` with ``$`` lets a trailing newline
# through) and spells its digits [0-9] (``\d`` matches any Unicode digit).
_MOUNT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: IAM principal ARN (IAM User Guide, "IAM identifiers": ARNs; 12-digit account id).
_IAM_ARN = re.compile(r"arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/*-]+")
#: Kubernetes namespace: an RFC 1123 DNS label (Kubernetes docs, "Object Names and IDs").
_K8S_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_SERVICE_ACCOUNT = re.compile(r"[a-z0-9{}]([-a-z0-9.{}]*[a-z0-9{}])?")
#: The API server URL: http(s), a host name or bracketed IPv6 literal, an optional port and path,
#: printable ASCII only.
_K8S_HOST = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[!-~]*)?")
#: Fields whose value is a credential: never printed.
_REDACTED = frozenset({"token_reviewer_jwt"})


class VaultSetupError(VaultError):
    """The setup cannot be applied as defined (an object of another kind is in the way, or the
    server refuses a kind of object); the message names the path and the fix."""


def _seconds(d: timedelta) -> int:
    return int(d.total_seconds())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _mount_name(v: str) -> str:
    if not _MOUNT.fullmatch(v):
        raise ValueError("must be a plain path segment (a-z, 0-9, '-'), e.g. approle")
    return v


#: A mount path: one plain segment (``secret``, ``approle``), checked wherever a mount is named.
MountName = Annotated[str, AfterValidator(_mount_name)]


def _cidr_list(v: list[str]) -> list[str]:
    """``v`` unchanged when every entry is a CIDR block; ``ValueError`` naming the first that is not."""
    for c in v:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            raise ValueError(f"{c!r} is not a CIDR block such as 10.0.0.0/8") from None
    return v


class _TokenSettings(_Strict):
    """Token parameters shared by every auth role (Vault docs "Token parameters")."""

    token_ttl: Duration = Field(default=timedelta(hours=1))
    token_max_ttl: Duration = Field(default=timedelta(hours=4))
    token_bound_cidrs: list[str] = Field(default_factory=list)

    @field_validator("token_bound_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    @model_validator(mode="after")
    def _ttls(self):
        if self.token_ttl > self.token_max_ttl:
            raise ValueError("token_ttl must not exceed token_max_ttl")
        return self

    def token_body(self, policies: list[str]) -> dict[str, Any]:
        return {"token_policies": policies, "token_ttl": _seconds(self.token_ttl),
                "token_max_ttl": _seconds(self.token_max_ttl), "token_bound_cidrs": list(self.token_bound_cidrs)}


class UserLockout(_Strict):
    """The user lockout policy of an AppRole auth mount, written with ``POST sys/auth/<mount>/tune``
    ``{"user_lockout_config": {...}}`` and read back from ``GET sys/auth/<mount>/tune``
    (``user_lockout_*`` fields; durations in seconds). HashiCorp Vault 1.13+
    (https://developer.hashicorp.com/vault/docs/concepts/user-lockout) and OpenBao (inherited, same
    API) lock an AppRole role id out after ``lockout_threshold`` failed logins within
    ``lockout_counter_reset_duration``, for ``lockout_duration`` (server defaults: 5, 15 min, 15 min).
    Vault applies it to the userpass, ldap and approle methods only.

    The default is ``lockout_disable: true``: a role id is not a secret in this design, so with
    lockout anyone who can reach Vault locks the role out with a few wrong secret ids (a denial of
    service; ``secret_id_bound_cidrs`` does not stop it, checked on OpenBao 2.7), while a secret id
    is a random 128-bit UUID that no online guessing finds. Bind secret ids to the callers'
    networks (``secret_id_bound_cidrs``, ``token_bound_cidrs``) instead."""

    lockout_disable: bool = True
    lockout_threshold: int = Field(default=5, ge=1, le=1000)
    lockout_duration: Duration = Field(default=timedelta(minutes=15))
    lockout_counter_reset_duration: Duration = Field(default=timedelta(minutes=15))

    def tune_body(self) -> dict[str, Any]:
        """The ``user_lockout_config`` object as Vault's tune API takes it (numbers as strings)."""
        return {"user_lockout_config": {
            "lockout_disable": self.lockout_disable, "lockout_threshold": str(self.lockout_threshold),
            "lockout_duration": f"{_seconds(self.lockout_duration)}s",
            "lockout_counter_reset_duration": f"{_seconds(self.lockout_counter_reset_duration)}s"}}


class AppRoleSpec(_TokenSettings):
    """AppRole roles (https://openbao.org/api-docs/auth/approle/): ``secret_id_ttl`` 0 = no expiry,
    ``secret_id_num_uses`` 0 = unlimited; ``user_lockout``: the mount's lockout policy
    (:class:`UserLockout`, disabled unless set otherwise)."""

    mount: MountName = "approle"
    secret_id_ttl: Duration = Field(default=timedelta(hours=24))
    secret_id_num_uses: int = Field(default=0, ge=0)
    secret_id_bound_cidrs: list[str] = Field(default_factory=list)
    user_lockout: UserLockout = Field(default_factory=UserLockout)

    @field_validator("secret_id_bound_cidrs")
    @classmethod
    def _secret_id_cidrs(cls, v: list[str]) -> list[str]:
        return _cidr_list(v)

    def role_body(self, policies: list[str]) -> dict[str, Any]:
        return {**self.token_body(policies), "bind_secret_id": True, "secret_id_ttl": _seconds(self.secret_id_ttl),
                "secret_id_num_uses": self.secret_id_num_uses,
                "secret_id_bound_cidrs": list(self.secret_id_bound_cidrs)}


class JwtRotatorSpec(_TokenSettings):
    """JWT auth for the rotator (https://openbao.org/api-docs/auth/jwt/): exactly one key source
    (``jwt_validation_pubkeys``, ``oidc_discovery_url`` or ``jwks_url``), and at least one binding:
    ``bound_audiences`` is required so a token minted for another audience never logs in."""

    mount: MountName = "jwt"
    bound_audiences: list[str] = Field(min_length=1)
    bound_subject: str | None = None
    bound_claims: dict[str, str | list[str]] = Field(default_factory=dict)
    user_claim: str = "sub"
    bound_issuer: str | None = None
    jwt_validation_pubkeys: list[str] = Field(default_factory=list)
    oidc_discovery_url: str | None = None
    jwks_url: str | None = None

    @field_validator("jwt_validation_pubkeys")
    @classmethod
    def _pem(cls, v: list[str]) -> list[str]:
        for key in v:
            if "-----BEGIN PUBLIC KEY-----" not in key:
                raise ValueError("each entry must be a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        sources = [bool(self.jwt_validation_pubkeys), bool(self.oidc_discovery_url), bool(self.jwks_url)]
        if sum(sources) != 1:
            raise ValueError("set exactly one of jwt_validation_pubkeys, oidc_discovery_url, jwks_url")
        return self

    def config_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.jwt_validation_pubkeys:
            body["jwt_validation_pubkeys"] = list(self.jwt_validation_pubkeys)
        if self.oidc_discovery_url:
            body["oidc_discovery_url"] = self.oidc_discovery_url
        if self.jwks_url:
            body["jwks_url"] = self.jwks_url
        if self.bound_issuer:
            body["bound_issuer"] = self.bound_issuer
        return body

    def role_body(self, policies: list[str]) -> dict[str, Any]:
        body = {**self.token_body(policies), "role_type": "jwt", "bound_audiences": list(self.bound_audiences),
                "user_claim": self.user_claim, "bound_claims_type": "string"}
        if self.bound_subject:
            body["bound_subject"] = self.bound_subject
        if self.bound_claims:
            body["bound_claims"] = dict(self.bound_claims)
        return body


class KubernetesRoleSpec(_TokenSettings):
    """A Kubernetes auth role bound to one namespace and service account
    (https://openbao.org/api-docs/auth/kubernetes/). For apps, ``service_account`` may contain
    ``{consumer}`` (replaced by each consumer's name)."""

    namespace: str
    service_account: str = Field(min_length=1, max_length=253)
    audience: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not _K8S_NAMESPACE.fullmatch(v):
            raise ValueError("must be a namespace name: 1-63 of a-z, 0-9 and '-', starting and ending "
                             "with a letter or digit")
        return v

    @field_validator("service_account")
    @classmethod
    def _sa(cls, v: str) -> str:
        if not _K8S_SERVICE_ACCOUNT.fullmatch(v) or v.replace("{consumer}", "x").count("{"):
            raise ValueError("must be a service account name (a-z, 0-9, '-', '.'), optionally with {consumer}")
        return v

    def role_body(self, policies: list[str], consumer: str | None = None) -> dict[str, Any]:
        sa = self.service_account.replace("{consumer}", consumer or "")
        body = {**self.token_body(policies), "bound_service_account_names": [sa],
                "bound_service_account_namespaces": [self.namespace]}
        if self.audience:
            body["audience"] = self.audience
        return body


class AwsRotatorSpec(_TokenSettings):
    """AWS IAM auth for the rotator (HashiCorp Vault only;
    https://developer.hashicorp.com/vault/api-docs/auth/aws): ``auth_type=iam`` bound to IAM
    principal ARNs (the Lambda's role)."""

    mount: MountName = "aws"
    bound_iam_principal_arn: list[str] = Field(min_length=1)

    @field_validator("bound_iam_principal_arn")
    @classmethod
    def _arns(cls, v: list[str]) -> list[str]:
        for arn in v:
            if not _IAM_ARN.fullmatch(arn):
                raise ValueError(f"{arn!r} is not an IAM principal ARN such as "
                                 "arn:aws:iam::123456789012:role/secure-mail-api-dev-rotator-lambda")
        return v

    def role_body(self, policies: list[str]) -> dict[str, Any]:
        return {**self.token_body(policies), "auth_type": "iam",
                "bound_iam_principal_arn": list(self.bound_iam_principal_arn)}


class RotatorAuth(_Strict):
    jwt: JwtRotatorSpec | None = None
    kubernetes: KubernetesRoleSpec | None = None
    approle: AppRoleSpec | None = None
    aws: AwsRotatorSpec | None = None


class AppsAuth(_Strict):
    approle: AppRoleSpec | None = None
    kubernetes: KubernetesRoleSpec | None = None


class AuditorAuth(_Strict):
    """How ``rotation audit`` logs in (role ``mail-api-auditor``, policy ``mail-api-auditor``:
    metadata, journals and acks, never a key value; docs/vault-layout.md)."""

    approle: AppRoleSpec | None = None
    kubernetes: KubernetesRoleSpec | None = None


class KubernetesConfig(_Strict):
    """The Kubernetes auth method's config. The token reviewer JWT and CA certificate are read from
    files at apply time (so the setup file holds no credential)."""

    mount: MountName = "kubernetes"
    kubernetes_host: str
    kubernetes_ca_cert_file: Path | None = None
    token_reviewer_jwt_file: Path | None = None
    disable_local_ca_jwt: bool = False

    @field_validator("kubernetes_host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not _K8S_HOST.fullmatch(v):
            raise ValueError("must be the API server URL, e.g. https://kubernetes.default.svc")
        return v


class FileAudit(_Strict):
    """A file audit device (https://openbao.org/docs/audit/file/)."""

    path: str = "mail-api"
    file_path: Path

    @field_validator("path")
    @classmethod
    def _plain_path(cls, v: str) -> str:
        return _mount_name(v)

    @field_validator("file_path")
    @classmethod
    def _abs(cls, v: Path) -> Path:
        if not v.is_absolute() or ".." in v.parts:
            raise ValueError("must be an absolute path without '..', e.g. /var/log/openbao/audit.log")
        return v


class VaultSetup(_Strict):
    """The whole Vault set-up (see the module docstring for the file shape)."""

    version: Literal[1] = 1
    mount: MountName = "secret"
    prefix: str = "mail-api"
    max_versions: int = Field(default=10, ge=1, le=100)
    rotator: RotatorAuth = Field(default_factory=RotatorAuth)
    apps: AppsAuth = Field(default_factory=AppsAuth)
    auditor: AuditorAuth = Field(default_factory=AuditorAuth)
    kubernetes: KubernetesConfig | None = None
    audit: FileAudit | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not all(_MOUNT.fullmatch(p) for p in v.split("/")):
            raise ValueError("must be path segments of a-z, 0-9, '-' separated by '/', e.g. mail-api")
        return v

    @model_validator(mode="after")
    def _k8s_config(self):
        if (self.rotator.kubernetes or self.apps.kubernetes or self.auditor.kubernetes) and self.kubernetes is None:
            raise ValueError("kubernetes: required when rotator.kubernetes, apps.kubernetes or auditor.kubernetes "
                             "is set (kubernetes_host at least)")
        if self.apps.kubernetes and "{consumer}" not in self.apps.kubernetes.service_account:
            raise ValueError("apps.kubernetes.service_account: must contain {consumer}, so each app's role "
                             "binds only its own service account")
        rot, apps = self.rotator.approle, self.apps.approle
        if rot and not rot.user_lockout.lockout_disable:
            raise ValueError("rotator.approle.user_lockout.lockout_disable: must be true: the rotator's role id is "
                             "not a secret, so with lockout a few wrong secret ids lock the rotator out "
                             "(docs/security-baseline.md), so bind its secret ids with secret_id_bound_cidrs instead")
        if rot and apps and rot.mount == apps.mount and rot.user_lockout != apps.user_lockout:
            raise ValueError(f"apps.approle.user_lockout: the auth mount {apps.mount!r} has one lockout policy "
                             "and the rotator shares it: remove this setting, or give apps.approle its own mount")
        return self


def load_setup_file(path: str | Path) -> VaultSetup:
    """Read and validate a setup file: at most 1 MiB of UTF-8 YAML, no duplicate keys at any depth
    (the key's dotted path and both lines are named), at most 32 levels deep
    (:func:`rotation.yaml_files.load_yaml_file`), then :class:`VaultSetup`. Raises
    :class:`~rotation.errors.ConfigError` (exit code 2) naming every bad field
    (``rotator.jwt.bound_audiences``); rejected values are never echoed."""
    p = Path(path)
    data = load_yaml_file(p, missing_hint="pass --setup PATH")
    if not isinstance(data, dict):
        raise ConfigError(str(p), [("(file)", "must be a YAML mapping (version, mount, prefix, rotator, apps ...)")])
    try:
        return VaultSetup.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(p), validation_problems(exc)) from None


def audit_config_stanza(audit: FileAudit) -> str:
    """The server-configuration stanza declaring ``audit`` (OpenBao declarative audit devices)."""
    return f'audit "file" "{audit.path}" {{\n  options {{\n    file_path = "{audit.file_path}"\n  }}\n}}\n'


# --- steps ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One object of the setup: ``method path body`` creates/updates it; ``read`` (a Vault API path)
    returns its current state, compared by ``same(current_response_data, body)``; ``exists`` is an
    alternative existence check for objects that are only ever created (mounts, auth methods,
    audit devices). ``after_mount`` names the auth mount the path lives under (no read when that
    mount is only about to be created). ``verify``: read ``read`` again after the write and
    compare with ``same`` (a setting a server accepts but does not apply is an error)."""

    kind: str
    name: str
    method: str
    path: str
    body: dict[str, Any] = field(repr=False)  # may hold the token reviewer JWT: describe() redacts it
    read: str | None = None
    same: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None
    exists: Callable[[Any], bool | None] | None = None
    after_mount: str | None = None
    secret_fields: frozenset[str] = field(default=_REDACTED)
    verify: bool = False   # read back after the write; a server that ignored it raises VaultSetupError

    def describe(self) -> str:
        """``POST sys/mounts/secret {...}`` with credentials redacted and policies abbreviated."""
        shown: dict[str, Any] = {}
        for k, v in self.body.items():
            if k in self.secret_fields:
                shown[k] = "<redacted>"
            elif k == "policy":
                digest = hashlib.sha256(v.encode()).hexdigest()[:12]
                shown[k] = f"<{v.count(chr(10)) + 1} lines of HCL, sha256 {digest}>"
            elif k == "jwt_validation_pubkeys":
                shown[k] = [f"<PEM public key, sha256 {hashlib.sha256(p.encode()).hexdigest()[:12]}>" for p in v]
            else:
                shown[k] = v
        return f"{self.method} {self.path} {json.dumps(shown, sort_keys=True)}"


@dataclass(frozen=True)
class Change:
    """What :func:`apply_setup` did (or would do) for one step: ``create``, ``update`` or ``unchanged``."""

    action: Literal["create", "update", "unchanged"]
    step: Step

    def __str__(self) -> str:
        return f"{self.action:9} {self.step.kind:8} {self.step.name}: {self.step.describe()}"


def _norm(v: Any) -> Any:
    if isinstance(v, list):
        return sorted(_norm(x) for x in v) if all(isinstance(x, str) for x in v) else [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v.strip() if isinstance(v, str) else v  # Vault trims PEM keys and certificates


def _subset_same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Every desired field equals the current one (lists order-insensitive; a scalar matches a
    one-element list and an empty list matches a missing/None value, as Vault normalizes)."""
    for k, want in desired.items():
        if k in _REDACTED:
            continue
        have = current.get(k)
        if isinstance(want, list) and not want and have in (None, "", [], {}):
            continue
        if isinstance(want, dict) and not want and have in (None, {}):
            continue
        if isinstance(want, str) and isinstance(have, list) and have == [want]:
            continue
        if isinstance(want, dict) and isinstance(have, dict):
            if {a: _norm(b if isinstance(b, list) else [b]) for a, b in want.items()} != \
               {a: _norm(b if isinstance(b, list) else [b]) for a, b in have.items()}:
                return False
            continue
        if _norm(want) != _norm(have):
            return False
    return True


def _policy_same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    return (current.get("policy") or "").strip() == desired["policy"].strip()


def _kv_same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    return bool(current.get("cas_required")) and current.get("max_versions") == desired["max_versions"]


def _mounted(table_path: str, name: str, type_: str, kind: str) -> Callable[[Any], bool | None]:
    def check(table: dict[str, Any]) -> bool:
        entry = table.get(f"{name}/")
        if entry is None:
            return False
        if entry.get("type") != type_:
            raise VaultSetupError(f"{table_path}: {name}/ is a {entry.get('type')!r} {kind}, not {type_!r}; "
                                  f"choose another mount in the setup file or remove it (nothing was replaced)")
        return True
    return check


def _kv_mount_exists(mount: str) -> Callable[[Any], bool | None]:
    def check(table: dict[str, Any]) -> bool:
        entry = table.get(f"{mount}/")
        if entry is None:
            return False
        version = str((entry.get("options") or {}).get("version", "1"))
        if entry.get("type") != "kv" or version != "2":
            raise VaultSetupError(f"sys/mounts: {mount}/ is not a KV version 2 mount (type {entry.get('type')!r}, "
                                  f"version {version}); check-and-set needs KV v2: choose another mount "
                                  "(failure case V3; nothing was replaced)")
        return True
    return check


def _audit_exists(audit: FileAudit) -> Callable[[Any], bool | None]:
    def check(table: dict[str, Any]) -> bool:
        entry = table.get(f"{audit.path}/")
        if entry is None:
            return False
        if entry.get("type") != "file" or (entry.get("options") or {}).get("file_path") != str(audit.file_path):
            raise VaultSetupError(f"sys/audit: {audit.path}/ exists with other options; audit devices cannot be "
                                  "changed in place: choose another audit.path (nothing was replaced)")
        return True
    return check


def _lockout_same(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """The tune read-back (``user_lockout_*``, durations in seconds) matches ``desired``
    (:meth:`UserLockout.tune_body`); a disabled lockout matches whatever its unused numbers are."""
    want = desired["user_lockout_config"]
    if current.get("user_lockout_disable") is not want["lockout_disable"]:
        return False
    if want["lockout_disable"]:
        return True
    return (str(current.get("user_lockout_threshold")) == want["lockout_threshold"]
            and f"{current.get('user_lockout_duration')}s" == want["lockout_duration"]
            and f"{current.get('user_lockout_counter_reset_duration')}s" == want["lockout_counter_reset_duration"])


def plan_steps(setup: VaultSetup, consumers: ConsumersFile, *, aws_auth: bool = False) -> list[Step]:
    """The desired state as ordered steps (mounts and auth methods before their config and roles).

    ``aws_auth``: plan the AWS auth method and role (``rotator.aws``); HashiCorp Vault only.
    Reads no file but the Kubernetes CA certificate / reviewer token files (raising
    :class:`~rotation.errors.ConfigError` when one cannot be read).
    """
    m, prefix = setup.mount, setup.prefix
    steps: list[Step] = []
    if setup.audit:  # first, so every later call of the setup is audited
        a = setup.audit
        steps.append(Step("audit", f"{a.path}/ (file)", "PUT", f"sys/audit/{a.path}",
                          {"type": "file", "options": {"file_path": str(a.file_path)}},
                          read="sys/audit", exists=_audit_exists(a)))
    steps += [
        Step("mount", f"{m}/ (kv v2)", "POST", f"sys/mounts/{m}", {"type": "kv", "options": {"version": "2"}},
             read="sys/mounts", exists=_kv_mount_exists(m)),
        Step("kv", f"{m}/config", "POST", f"{m}/config", {"cas_required": True, "max_versions": setup.max_versions},
             read=f"{m}/config", same=_kv_same, after_mount=f"kv:{m}"),
    ]
    policies = [(ROTATOR_POLICY, render_vault_policy("rotator", mount=m, prefix=prefix)),
                (AUDITOR_POLICY, render_vault_policy("auditor", mount=m, prefix=prefix))]
    policies += [(consumer_policy_name(c.name), render_vault_policy("consumer", mount=m, prefix=prefix,
                                                                    consumer=c.name)) for c in consumers.consumers]
    steps += [Step("policy", name, "PUT", f"sys/policies/acl/{name}", {"policy": text},
                   read=f"sys/policies/acl/{name}", same=_policy_same) for name, text in policies]

    def auth_method(mount: str, type_: str) -> None:
        if not any(s.kind == "auth" and s.path == f"sys/auth/{mount}" for s in steps):
            steps.append(Step("auth", f"{mount}/ ({type_})", "POST", f"sys/auth/{mount}", {"type": type_},
                              read="sys/auth", exists=_mounted("sys/auth", mount, type_, "auth method")))

    def role(mount: str, name: str, body: dict[str, Any]) -> None:
        steps.append(Step("role", f"{mount}/{name}", "POST", f"auth/{mount}/role/{name}", body,
                          read=f"auth/{mount}/role/{name}", same=_subset_same, after_mount=f"auth:{mount}"))

    rot, apps, aud = setup.rotator, setup.apps, setup.auditor
    if rot.approle or apps.approle or aud.approle:
        for spec in (rot.approle, apps.approle, aud.approle):
            if spec:
                auth_method(spec.mount, "approle")
        for spec in (rot.approle, apps.approle):   # one lockout policy per mount (VaultSetup checks they agree)
            tune = f"sys/auth/{spec.mount}/tune" if spec else None
            if spec and not any(s.path == tune for s in steps):
                steps.append(Step("lockout", f"{spec.mount}/ user lockout", "POST", f"sys/auth/{spec.mount}/tune",
                                  spec.user_lockout.tune_body(), read=f"sys/auth/{spec.mount}/tune",
                                  same=_lockout_same, after_mount=f"auth:{spec.mount}", verify=True))
        if aud.approle:
            role(aud.approle.mount, AUDITOR_ROLE, aud.approle.role_body([AUDITOR_POLICY]))
        if rot.approle:
            role(rot.approle.mount, ROTATOR_ROLE, rot.approle.role_body([ROTATOR_POLICY]))
        if apps.approle:
            for c in consumers.consumers:
                name = consumer_policy_name(c.name)
                role(apps.approle.mount, name, apps.approle.role_body([name]))
    if rot.jwt:
        auth_method(rot.jwt.mount, "jwt")
        steps.append(Step("config", f"{rot.jwt.mount}/config", "POST", f"auth/{rot.jwt.mount}/config",
                          rot.jwt.config_body(), read=f"auth/{rot.jwt.mount}/config", same=_subset_same,
                          after_mount=f"auth:{rot.jwt.mount}"))
        role(rot.jwt.mount, ROTATOR_ROLE, rot.jwt.role_body([ROTATOR_POLICY]))
    if setup.kubernetes and (rot.kubernetes or apps.kubernetes or aud.kubernetes):
        k = setup.kubernetes
        auth_method(k.mount, "kubernetes")
        body: dict[str, Any] = {"kubernetes_host": k.kubernetes_host, "disable_local_ca_jwt": k.disable_local_ca_jwt}
        for fname, key in ((k.kubernetes_ca_cert_file, "kubernetes_ca_cert"),
                           (k.token_reviewer_jwt_file, "token_reviewer_jwt")):
            if fname is not None:
                try:
                    body[key] = Path(fname).read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError("setup", [(f"kubernetes.{key}_file", f"cannot be read ({type(exc).__name__})")]
                                      ) from None
        steps.append(Step("config", f"{k.mount}/config", "POST", f"auth/{k.mount}/config", body,
                          read=f"auth/{k.mount}/config", same=_subset_same, after_mount=f"auth:{k.mount}"))
        if rot.kubernetes:
            role(k.mount, ROTATOR_ROLE, rot.kubernetes.role_body([ROTATOR_POLICY]))
        if apps.kubernetes:
            for c in consumers.consumers:
                name = consumer_policy_name(c.name)
                role(k.mount, name, apps.kubernetes.role_body([name], c.name))
        if aud.kubernetes:
            role(k.mount, AUDITOR_ROLE, aud.kubernetes.role_body([AUDITOR_POLICY]))
    if aws_auth and rot.aws:
        auth_method(rot.aws.mount, "aws")
        role(rot.aws.mount, ROTATOR_ROLE, rot.aws.role_body([ROTATOR_POLICY]))
    return steps


# --- applying -------------------------------------------------------------------------------------

class _Http:
    """Raw Vault API calls through the hvac client's adapter (its session, token, namespace, TLS
    settings), deciding by HTTP status code; transport errors become ours in ``vault_errors``."""

    def __init__(self, client):
        self.adapter = client.adapter

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        with vault_errors(method.lower(), path):
            resp = self.adapter.request(method, f"/v1/{path}", json=body, raise_exception=False)
        if isinstance(resp, dict):
            return 200, resp
        status = resp.status_code
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = {}
        return status, data if isinstance(data, dict) else {}

    def read(self, path: str) -> dict[str, Any] | None:
        """The response's ``data`` (or the body, for the ``sys/`` tables), ``None`` on 404."""
        status, data = self.call("GET", path)
        if status == 404:
            return None
        _raise_for(status, "read", path, data)
        return data.get("data", data) if isinstance(data.get("data"), dict) else data

    def write(self, method: str, path: str, body: dict[str, Any]) -> None:
        status, data = self.call(method, path, body)
        _raise_for(status, "write", path, data)


def _raise_for(status: int, op: str, path: str, data: dict[str, Any]) -> None:
    if status < 400:
        return
    if status == 403:
        raise VaultPermissionDenied(f"{op} {path}: permission denied (HTTP 403): the setup needs an "
                                    "administrator token (VAULT_TOKEN) allowed on sys/ and auth/")
    reported = data.get("errors")
    errors = reported if isinstance(reported, list) else []
    detail = "; ".join(str(e) for e in errors)[:300]  # Vault's own explanation (it never echoes a credential)
    raise VaultError(f"{op} {path}: HTTP {status}" + (f": {detail}" if detail else ""))


class SetupPreflightError(VaultSetupError):
    """The server would refuse part of the setup: found by the read-only pre-flight, before any
    write (nothing was changed). ``problems``: one message per refusal, naming the field and the
    fix; ``changes``: what a run would otherwise do."""

    def __init__(self, server: ServerInfo, problems: list[str], changes: list[Change]):
        self.server, self.problems, self.changes = server, problems, changes
        super().__init__(f"{server.name} would refuse this setup (nothing was changed):\n- " + "\n- ".join(problems))


class PartialSetupError(VaultError):
    """A write failed after others succeeded: ``applied`` took effect, ``not_applied`` did not.
    The setup is idempotent, so re-running the same command after fixing the cause resumes it
    (what was applied shows ``unchanged``)."""

    def __init__(self, applied: list[Change], not_applied: list[Change], cause: VaultError):
        self.applied, self.not_applied, self.cause = applied, not_applied, cause
        done = "; ".join(f"{c.action} {c.step.kind} {c.step.name}" for c in applied) or "nothing"
        left = "; ".join(f"{c.step.kind} {c.step.name}" for c in not_applied)
        super().__init__(f"{cause}\nthe setup is HALF APPLIED: {len(applied)} change(s) applied ({done}); "
                         f"{len(not_applied)} not applied ({left}). Fix the cause and run the same command again: "
                         "it resumes (applied objects show unchanged)")


def _preflight(setup: VaultSetup, changes: list[Change], server: ServerInfo) -> list[str]:
    """What ``server`` would refuse among ``changes``; every entry names the field and the fix."""
    problems: list[str] = []
    if server.sealed:
        problems.append("the server is sealed: unseal it (bao operator unseal), then run the setup again")
    for change in changes:
        if change.action == "unchanged":
            continue
        if change.step.kind == "audit" and server.refuses_api_audit_devices and setup.audit is not None:
            problems.append(
                f"audit: {server.name} refuses audit devices created through the API (CVE-2025-54997): declare "
                "it in the server configuration and restart the server, then run the setup again (the device then "
                "shows unchanged), or remove audit: from the setup file. The stanza:\n"
                + audit_config_stanza(setup.audit))
        if change.step.kind == "auth" and change.step.body.get("type") == "aws" and not server.has_aws_auth:
            problems.append(f"rotator.aws: {server.name} has no AWS auth method: use rotator.jwt "
                            "(rotationSchedule.vaultAuth jwt) and drop --aws-auth")
    return problems


def _write_order(changes: list[Change]) -> list[Change]:
    """The order writes are sent in: the audit device first (every later call is audited), then
    the Kubernetes auth method and its config, which the server validates against what only it
    can see (its own pod's service account when no CA/reviewer token is given), so a refusal comes
    before anything else is written; then the rest in plan order."""
    def rank(c: Change) -> int:
        if c.step.kind == "audit":
            return 0
        if c.step.kind in ("auth", "config") and (c.step.body.get("type") == "kubernetes"
                                                   or "kubernetes_host" in c.step.body):
            return 1
        return 2
    return sorted((c for c in changes if c.action != "unchanged"), key=rank)


def apply_setup(client, setup: VaultSetup, consumers: ConsumersFile, *, dry_run: bool = False,
                aws_auth: bool = False, steps: Iterable[Step] | None = None) -> list[Change]:
    """Bring Vault to the state ``setup`` defines; return one :class:`Change` per step, in order.

    ``client``: an ``hvac.Client`` holding an administrator token. ``dry_run``: read only (GET);
    the changes returned are those a real run would make. Idempotent: a second run returns only
    ``unchanged``.

    Before the first write (and in a dry run) the server is identified (:func:`detect_server`:
    OpenBao or HashiCorp Vault, version) and every change it would refuse is reported at once:
    an audit device through the API on OpenBao 2.3.2+, the AWS auth method on OpenBao, a sealed
    server. A write the server refuses for reasons only it can see (the Kubernetes config) is
    sent first; if it fails, an auth method this run created for it is disabled again, so nothing
    is left changed.

    :raises SetupPreflightError: the server would refuse part of the setup (nothing was changed).
    :raises VaultSetupError: an object of another kind is in the way (nothing was changed).
    :raises PartialSetupError: a write failed after others took effect; lists both; a re-run resumes.
    :raises VaultPermissionDenied: the token may not read or write a path (HTTP 403), before any write.
    :raises VaultError: any other refusal before any write, or an unreachable server.
    """
    http = _Http(client)
    server = detect_server(http.call)
    tables: dict[str, dict[str, Any]] = {}
    pending_mounts: set[str] = set()
    changes: list[Change] = []
    action: Literal["create", "update", "unchanged"]
    # 1. read everything first: a conflict is reported before the first write
    for step in (plan_steps(setup, consumers, aws_auth=aws_auth) if steps is None else steps):
        if step.exists is not None:
            if step.read is None:
                raise ValueError(f"setup step {step.name}: an existence check needs the path to read (Step.read)")
            if step.read not in tables:
                tables[step.read] = http.read(step.read) or {}
            present = step.exists(tables[step.read])
            action = "unchanged" if present else "create"
            if not present:
                pending_mounts.add(("kv:" if step.kind == "mount" else "auth:") + step.path.rsplit("/", 1)[1])
        elif step.after_mount in pending_mounts:
            action = "create"
        else:
            current = http.read(step.read) if step.read else None
            if current is None:
                action = "create"
            else:
                action = "unchanged" if step.same and step.same(current, step.body) else "update"
        changes.append(Change(action, step))
    # 2. pre-flight: what this server would refuse, all at once, before any write
    problems = _preflight(setup, changes, server)
    if problems:
        raise SetupPreflightError(server, problems, changes)
    if dry_run:
        return changes
    # 3. write what differs
    order = _write_order(changes)
    applied: list[Change] = []
    for i, change in enumerate(order):
        try:
            try:
                http.write(change.step.method, change.step.path, change.step.body)
                if change.step.kind == "mount":
                    _wait_until_kv_ready(http, change.step.path.rsplit("/", 1)[1])
                if change.step.verify:
                    _verify_applied(http, change.step)
            except VaultError as exc:
                if change.step.kind == "audit" and setup.audit is not None \
                        and not isinstance(exc, VaultPermissionDenied):
                    raise VaultSetupError(
                        f"{change.step.path}: the server refused to enable the audit device through the API "
                        "(OpenBao 2.3.2+ allows audit devices only in its configuration file); "
                        "add this stanza to the server configuration and restart it:\n"
                        + audit_config_stanza(setup.audit)) from exc
                if change.step.kind == "config" and "kubernetes_host" in change.step.body \
                        and not isinstance(exc, VaultPermissionDenied):
                    _undo_new_auth_mount(http, applied, change)
                    raise VaultSetupError(
                        f"{change.step.path}: the server refused the Kubernetes auth config ({exc}); without "
                        "kubernetes.kubernetes_ca_cert_file and kubernetes.token_reviewer_jwt_file the server reads "
                        "its own pod's service account, so it must run inside the cluster: give both files, or "
                        "drop the kubernetes sections from the setup file") from exc
                raise
        except VaultError as exc:
            if not applied:
                raise
            raise PartialSetupError(applied, order[i:], exc) from exc
        applied.append(change)
    return changes


def _verify_applied(http: _Http, step: Step) -> None:
    """Read ``step.read`` back after its write; raise :class:`VaultSetupError` when the server did
    not apply it (a server without user lockout, such as a Vault before 1.13, may accept
    ``user_lockout_config`` and ignore it)."""
    if step.read is None or step.same is None:
        return
    current = http.read(step.read) or {}
    if not step.same(current, step.body):
        raise VaultSetupError(f"{step.path}: the server accepted the write but reads back something else "
                              f"({step.name}); it may not support this setting (user lockout needs Vault 1.13+ "
                              "or OpenBao): check the server version, then run the setup again")


def _undo_new_auth_mount(http: _Http, applied: list[Change], failed: Change) -> None:
    """The Kubernetes config was refused: disable its auth method if this run created it (it holds
    nothing yet), so the refusal leaves nothing changed. Best effort: a failed disable is left in
    ``applied`` and reported."""
    mount = failed.step.path.split("/")[1]
    for c in list(applied):
        if c.step.kind == "auth" and c.action == "create" and c.step.path == f"sys/auth/{mount}":
            try:
                http.write("DELETE", f"sys/auth/{mount}", {})
            except VaultError:
                return
            applied.remove(c)


def _wait_until_kv_ready(http: _Http, mount: str, deadline_seconds: float = 60.0) -> None:
    """A new KV v2 mount upgrades itself in the background and answers 400 ("Upgrading from
    non-versioned to versioned data") until it is done: wait for ``<mount>/config`` to answer,
    re-checking every 0.1 s, at most ``deadline_seconds``. Raises the last ``VaultError`` then."""
    end = time.monotonic() + deadline_seconds
    while True:
        try:
            http.read(f"{mount}/config")
            return
        except VaultPermissionDenied:
            raise
        except VaultError:
            if time.monotonic() >= end:
                raise
            time.sleep(0.1)


def summarize(changes: list[Change]) -> dict[str, int]:
    """Counts per action: ``{"create": 3, "update": 0, "unchanged": 12}``."""
    out = {"create": 0, "update": 0, "unchanged": 0}
    for c in changes:
        out[c.action] += 1
    return out

