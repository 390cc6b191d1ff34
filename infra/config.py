"""Stack config for the Pulumi program, read once and validated into a typed model.

Every value the program uses comes from :class:`StackConfig`. Pulumi hands stack config to the
program as strings (structured values as JSON), namespaced ``secure-mail-api:<key>`` (plus
``aws:region``). :func:`load_stack_config` reads them from the running Pulumi program;
:func:`parse_stack_config` validates any ``dict[str, str]`` of the same shape, and
:func:`dev_stack_config` loads the checked-in ``Pulumi.dev.yaml`` into that shape.

A bad value raises :class:`ConfigError` *before any resource is declared*; the message names the
full config key (``secure-mail-api:waf.ipRateLimit``) and, for enumerations, the allowed values.
Config values are never echoed in errors for keys listed in ``secret_keys``. Only the keys of
:data:`SECRET_KEYS` may be secret config; the program keeps them secret end to end.

Public API::

    PROJECT                      "secure-mail-api"
    DEV_STACK_FILE               pathlib.Path of Pulumi.dev.yaml
    ConfigError(ValueError)      .errors: list[str], one "<key>: <reason>" per problem
    StackConfig, WafConfig, UsagePlanTier, CognitoConfig, RotationScheduleConfig,
    CodeSigningConfig, AccessLevel, LogArchiveConfig, AlertingConfig                pydantic models
    OAUTH_RESOURCE_SERVER        "mail-api", the Cognito resource server whose scopes map to access levels
    SECRET_KEYS                  the only config keys that may (and should) be stored as secrets
    DEV_SECRET_STANDINS          planted stand-ins for the ``secure:`` values of Pulumi.dev.yaml
    dev_stack_config() -> dict[str, str]
    parse_stack_config(values: Mapping[str, str], secret_keys=()) -> StackConfig
    load_stack_config() -> StackConfig            (inside a Pulumi program / under mocks)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "DEV_SECRET_STANDINS",
    "DEV_STACK_FILE",
    "LOG_RETENTION_DAYS",
    "MAX_ACCESS_ENVIRONMENT_BYTES",
    "OAUTH_RESOURCE_SERVER",
    "PROJECT",
    "QUOTA_PERIODS",
    "SECRET_KEYS",
    "TLS_POLICIES",
    "WAF_EVALUATION_WINDOWS",
    "AccessLevel",
    "AlertingConfig",
    "CodeSigningConfig",
    "CognitoConfig",
    "ConfigError",
    "LogArchiveConfig",
    "RotationAccessConfig",
    "RotationScheduleConfig",
    "RotatorVpcConfig",
    "StackConfig",
    "UsagePlanTier",
    "WafConfig",
    "access_environment",
    "dev_stack_config",
    "load_stack_config",
    "parse_stack_config",
]

PROJECT = "secure-mail-api"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_STACK_FILE = REPO_ROOT / "Pulumi.dev.yaml"

#: The only config keys that may be stored as secrets (``pulumi config set --secret``); every other
#: key is refused when it is a secret (see :func:`parse_stack_config`).
#:
#: ``rotationVaultSecretId`` is the Vault AppRole secret id of the scheduled rotator Lambda
#: (``rotationSchedule``). It is a credential, so it must never sit in Pulumi.<stack>.yaml or in the
#: state in plain text (failure case P4). The program reads it only as a secret Output
#: (``pulumi.Output.secret``, whether or not the stack stored it with ``--secret``), writes it only
#: into a CMK-encrypted Secrets Manager secret (the state keeps it encrypted), and the function
#: reads it from there at run time; it is never in the function's environment, an output or an
#: error message. Store it with ``pulumi config set --secret rotationVaultSecretId <secret id>``.
SECRET_KEYS = frozenset({f"{PROJECT}:rotationVaultSecretId"})

#: Planted stand-ins that :func:`dev_stack_config` returns for the ``secure:`` values of
#: Pulumi.dev.yaml (their ciphertext needs the stack's secrets provider, which offline runs do not
#: have). Tests assert the stand-in never appears in plain text in any recorded resource input.
DEV_SECRET_STANDINS = {f"{PROJECT}:rotationVaultSecretId": "planted-vault-secret-id-7d3e9b1c-not-real"}

#: Enhanced TLS policies for a REGIONAL REST API and custom domain that pass Security Hub
#: APIGateway.11 (docs/security-baseline.md §0.1). ``TLS_1_2`` and ``TLS_1_0`` fail that control; the two
#: ``*_EDGE`` policies are for edge-optimized endpoints only.
TLS_POLICIES = (
    "SecurityPolicy_TLS13_1_3_2025_09",
    "SecurityPolicy_TLS13_1_3_FIPS_2025_09",
    "SecurityPolicy_TLS13_1_2_PFS_PQ_2025_09",
)

#: CloudWatch Logs retention values that are both accepted by CloudWatch (PutRetentionPolicy)
#: and >= 365 days as Security Hub CloudWatch.16 / CKV_AWS_338 require (docs/security-baseline.md §1.9).
LOG_RETENTION_DAYS = (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)

#: WAF rate-based statement evaluation windows, seconds (docs/security-baseline.md §0.6).
WAF_EVALUATION_WINDOWS = (60, 120, 300, 600)

#: API Gateway usage plan quota periods.
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")

#: The Cognito resource server identifier; OAuth scopes are ``mail-api/<scope>``.
OAUTH_RESOURCE_SERVER = "mail-api"

#: Lambda caps a function's whole environment at 4 KB (AWS docs "Lambda quotas"); the access
#: environment (ACCESS_LEVELS, ACCESS_CONSUMERS, ACCESS_SCOPES) must leave room for the rest.
MAX_ACCESS_ENVIRONMENT_BYTES = 3000

_LOCAL_PART_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?$")
_CONSUMER_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_LEVEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}(?::[a-z][a-z0-9_-]{0,30})?$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?!-)([a-z0-9-]{1,63}(?<!-)\.)+[a-z]{2,63}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_ACM_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
_LAYER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]{1,140}:\d+$")
#: EventBridge Scheduler recurring expressions: ``rate(<n> <unit>)`` (singular unit for 1) or
#: ``cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)``.
_RATE_RE = re.compile(r"^rate\((?:1 (?:minute|hour|day)|(?:[2-9]|[1-9]\d+) (?:minutes|hours|days))\)$")
_CRON_RE = re.compile(r"^cron\([^\s()]+(?: [^\s()]+){5}\)$")
_CONSUMERS_FILE_RE = re.compile(r"^(?!/)(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9_./-]+\.ya?ml$")
_SIGNER_PROFILE_VERSION_RE = re.compile(
    r"^arn:aws[a-z-]*:signer:[a-z0-9-]+:\d{12}:/signing-profiles/[0-9A-Za-z_]{2,64}/[0-9A-Za-z]{1,64}$")
_IAM_PRINCIPAL_RE = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)$")


class ConfigError(ValueError):
    """Stack config that cannot be used; ``errors`` holds one ``"<key>: <reason>"`` per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid stack config:\n  " + "\n  ".join(errors))


def _domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _DOMAIN_RE.match(value):
        raise ValueError("must be a DNS domain name such as 'api.example.com'")
    return value


def _allowed(allowed: tuple[Any, ...]):
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(str(a) for a in allowed)}")
        return value

    return check


DomainName = Annotated[str, AfterValidator(_domain)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class WafConfig(_Model):
    """WAF rate-based rule limits (docs/security-baseline.md §1.10, §0.6).

    Limits count requests per evaluation window (seconds) per aggregation key; AWS allows
    100..2,000,000,000 in the provider (pulumi/pulumi-aws#5841 rejects < 100).
    """

    ip_rate_limit: int = Field(300, ge=100, le=2_000_000_000)
    ip_evaluation_window_sec: Annotated[int, AfterValidator(_allowed(WAF_EVALUATION_WINDOWS))] = 60
    api_key_rate_limit: int = Field(1000, ge=100, le=2_000_000_000)
    api_key_evaluation_window_sec: Annotated[int, AfterValidator(_allowed(WAF_EVALUATION_WINDOWS))] = 300
    #: BlockedRequests (Sum over 300 s) above which the WAF alarm fires (docs/security-baseline.md §3 row 9).
    blocked_requests_alarm_threshold: int = Field(100, ge=1)
    #: Count instead of block AWSManagedRulesCommonRuleSet SizeRestrictions_BODY (> 8 KB bodies, §0.7).
    allow_large_bodies: bool = True


class UsagePlanTier(_Model):
    """One usage plan tier: steady rate (requests/s), burst (requests) and quota per period."""

    rate_limit: float = Field(gt=0, le=10_000)
    burst_limit: int = Field(ge=1, le=5_000)
    quota_limit: int = Field(ge=1)
    quota_period: Annotated[str, AfterValidator(_allowed(QUOTA_PERIODS))] = "DAY"

    @model_validator(mode="after")
    def _burst_covers_rate(self) -> UsagePlanTier:
        if self.burst_limit < self.rate_limit:
            raise ValueError("burstLimit must be >= rateLimit")
        return self


class CognitoConfig(_Model):
    """Optional OAuth2 client-credentials via a Cognito user pool (docs/security-baseline.md §1.11)."""

    enabled: bool = False
    #: Hosted-domain prefix for the token endpoint: <prefix>.auth.<region>.amazoncognito.com.
    domain_prefix: str | None = None
    #: Access-token lifetime in minutes (5..1440).
    access_token_minutes: int = Field(60, ge=5, le=1440)

    @field_validator("domain_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.match(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", value):
            raise ValueError("must be lowercase letters, digits and hyphens (max 63)")
        if any(word in value for word in ("aws", "amazon", "cognito")):
            raise ValueError("must not contain 'aws', 'amazon' or 'cognito' (Cognito rejects them)")
        return value

    @model_validator(mode="after")
    def _prefix_when_enabled(self) -> CognitoConfig:
        if self.enabled and not self.domain_prefix:
            raise ValueError("domainPrefix is required when enabled is true")
        return self


class CodeSigningConfig(_Model):
    """Optional Lambda code signing (CKV_AWS_272; Lambda "Configuring code signing", AWS docs
    https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html).

    When ``enabled``, the stack declares an AWS Signer profile (platform ``AWSLambda-SHA384-ECDSA``)
    and a code-signing config that *enforces* it (``untrusted_artifact_on_deployment: Enforce``) on
    both functions; each function's package is uploaded to a versioned artifact bucket, signed by a
    Signer job and deployed from the signed object. Enforce also applies to layers: every layer in
    ``lambdaLayers`` / ``rotationSchedule.layers`` must then be signed by this profile or by one of
    ``trustedProfileVersionArns``, otherwise Lambda rejects the deployment.
    """

    enabled: bool = False
    #: Validity of each signature, months (AWS Signer: 1..135, default 135).
    signature_validity_months: int = Field(135, ge=1, le=135)
    #: Further Signer profile *version* ARNs whose signatures Lambda accepts (e.g. the profile that
    #: signs your layers); this stack's own profile is always trusted. At most 19 (Lambda allows 20).
    trusted_profile_version_arns: list[str] = Field(default_factory=list, max_length=19)

    @field_validator("trusted_profile_version_arns")
    @classmethod
    def _profile_arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _SIGNER_PROFILE_VERSION_RE.match(arn):
                raise ValueError(f"{arn!r} is not a Signer profile version ARN "
                                 "'arn:aws:signer:<region>:<account>:/signing-profiles/<name>/<version>'")
        return value


def _layer_arns(value: list[str]) -> list[str]:
    for arn in value:
        if not _LAYER_ARN_RE.match(arn):
            raise ValueError(f"{arn!r} is not a versioned Lambda layer ARN 'arn:aws:lambda:<region>:<account>:layer:<name>:<version>'")
    return value


_SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
_SECURITY_GROUP_ID_RE = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")
_VAULT_ROLE_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class RotatorVpcConfig(_Model):
    """The subnets and security groups the scheduled rotator runs in, to reach a private Vault
    (Lambda ``VpcConfig``; https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html).
    The subnets need a route to Vault and to the AWS APIs the rotator calls (API Gateway, STS,
    CloudWatch, Secrets Manager/SSM for push targets): a NAT gateway or VPC interface endpoints."""

    subnet_ids: list[str] = Field(min_length=1, max_length=16)
    security_group_ids: list[str] = Field(min_length=1, max_length=5)

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        for sid in value:
            if not _SUBNET_ID_RE.match(sid):
                raise ValueError(f"{sid!r} is not a subnet id such as subnet-0a1b2c3d4e5f60718")
        return value

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for gid in value:
            if not _SECURITY_GROUP_ID_RE.match(gid):
                raise ValueError(f"{gid!r} is not a security group id such as sg-0a1b2c3d4e5f60718")
        return value


class RotationScheduleConfig(_Model):
    """Optional scheduled rotator: ``rotation.aws_lambda`` as a Lambda run by EventBridge Scheduler.

    How it logs in to Vault (``vaultAuth``; no stored Vault credential unless ``approle``):

    * ``aws`` (default) -- Vault's AWS IAM auth: the function's role credentials sign an
      ``sts:GetCallerIdentity`` request; the Vault role ``vaultAuthRole`` must be bound to the
      function's role ARN (``arn:aws:iam::<account>:role/<prefix>-rotator-lambda``; ``rotation vault
      setup --aws-auth`` with ``rotator.aws.bound_iam_principal_arn``). HashiCorp Vault only.
    * ``jwt`` -- for OpenBao (no AWS auth method): a JWT for ``vaultJwtAudience`` from AWS STS
      ``GetWebIdentityToken`` (IAM outbound identity federation, enabled per account), logged in to
      the JWT role ``vaultAuthRole`` whose ``bound_audiences`` hold that audience and whose key
      source is the account's issuer (``oidc_discovery_url``).
    * ``approle`` -- explicit opt-in: ``vaultRoleId`` here, the secret id in the secret config key
      ``rotationVaultSecretId`` (see :data:`SECRET_KEYS`).
    """

    enabled: bool = False
    #: EventBridge Scheduler expression, ``rate(...)`` or ``cron(...)`` (UTC).
    schedule_expression: str = "rate(1 hour)"
    #: Vault address the function logs in to (https only: a Lambda has no loopback Vault).
    vault_addr: str | None = None
    #: ``aws`` | ``jwt`` | ``approle`` (see the class docstring).
    vault_auth: Literal["aws", "jwt", "approle"] = "aws"
    #: The Vault role the function logs in as (AWS or JWT auth); ``rotation.vault_setup.ROTATOR_ROLE``.
    vault_auth_role: str = Field("mail-api-rotator", pattern=_VAULT_ROLE_RE)
    #: The auth mount, when not the method's default (``aws``, ``jwt``, ``approle``).
    vault_auth_mount: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}(/[A-Za-z0-9][A-Za-z0-9_-]{0,62})*$")
    #: AWS auth: the role's ``iam_server_id_header_value`` (signed into the login; stops replay elsewhere).
    vault_aws_server_id: str | None = Field(None, pattern=r"^[A-Za-z0-9.:-]{1,253}$")
    #: JWT auth: the audience of the STS-issued JWT (the JWT role's ``bound_audiences``).
    vault_jwt_audience: str | None = Field(None, min_length=1, max_length=1000)
    #: AppRole role id (an identifier, not a credential; the secret id is ``rotationVaultSecretId``).
    vault_role_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,256}$")
    #: KV v2 mount and path prefix (``VAULT_KV_MOUNT`` / ``VAULT_KV_PREFIX``).
    vault_kv_mount: str = Field("secret", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    vault_kv_prefix: str = Field("mail-api", pattern=r"^[a-z0-9][a-z0-9-]{0,62}(/[a-z0-9][a-z0-9-]{0,62})*$")
    #: PEM CA certificate(s) that signed Vault's TLS certificate (a private CA). Public data: shipped
    #: in the consumers layer as ``/opt/vault-ca.pem`` and named by ``VAULT_CACERT``.
    vault_ca_bundle: str | None = None
    #: Subnets and security groups, for a Vault reachable only inside a VPC.
    vpc: RotatorVpcConfig | None = None
    #: Consumers file, relative to the repository root; deployed as a small layer of its own (the
    #: function's code is dist/rotator.zip as built, which already carries every dependency).
    consumers_file: str = "examples/consumers.yaml"
    #: Extra Lambda layer ARNs (optional, e.g. an extension). At most 4: Lambda allows 5 layers per
    #: function and the consumers-file layer is one of them.
    layers: Annotated[list[str], AfterValidator(_layer_arns)] = Field(default_factory=list, max_length=4)
    #: Large fleets: a planner enqueues one job per consumer to an SQS FIFO queue and worker
    #: functions carry them out (infra/components/fanout.py), instead of one run per invocation.
    fanout: bool = False

    @field_validator("schedule_expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        if not (_RATE_RE.match(value) or _CRON_RE.match(value)):
            raise ValueError("must be an EventBridge Scheduler expression 'rate(<n> minute(s)|hour(s)|day(s))' "
                             "or 'cron(<min> <hour> <day-of-month> <month> <day-of-week> <year>)'")
        return value

    @field_validator("vault_addr")
    @classmethod
    def _vault_addr(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError("must be an https:// URL such as https://vault.example.com:8200")
        return value.rstrip("/")

    @field_validator("vault_ca_bundle")
    @classmethod
    def _ca_bundle(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _PEM_CERT_RE.search(value) or "PRIVATE KEY" in value:
            raise ValueError("must be PEM CA certificate(s) (-----BEGIN CERTIFICATE----- ...), no private key; "
                             "e.g. pulumi config set --path rotationSchedule.vaultCaBundle -- \"$(cat vault-ca.pem)\"")
        return value.strip() + "\n"

    @field_validator("consumers_file")
    @classmethod
    def _consumers_file(cls, value: str) -> str:
        if not _CONSUMERS_FILE_RE.match(value):
            raise ValueError("must be a relative .yaml/.yml path inside the repository, e.g. examples/consumers.yaml")
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> RotationScheduleConfig:
        if not self.enabled:
            return self
        if not self.vault_addr:
            raise ValueError("vaultAddr is required when enabled is true")
        if self.vault_auth == "approle" and not self.vault_role_id:
            raise ValueError("vaultRoleId is required when vaultAuth is approle (or use vaultAuth: aws / jwt, "
                             "which need no stored Vault credential)")
        if self.vault_auth != "approle" and self.vault_role_id:
            raise ValueError(f"vaultRoleId is for vaultAuth: approle only; with vaultAuth: {self.vault_auth} remove "
                             "it (the function logs in as vaultAuthRole)")
        if self.vault_auth == "jwt" and not self.vault_jwt_audience:
            raise ValueError("vaultJwtAudience is required when vaultAuth is jwt (the audience the JWT role's "
                             "bound_audiences hold, e.g. https://vault.example.com)")
        if self.vault_auth != "aws" and self.vault_aws_server_id:
            raise ValueError("vaultAwsServerId applies to vaultAuth: aws only")
        if not (REPO_ROOT / self.consumers_file).is_file():
            raise ValueError(f"consumersFile {self.consumers_file} does not exist in the repository")
        return self


_OIDC_PROVIDER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/[A-Za-z0-9.-]+(/[A-Za-z0-9._-]+)*$")
_K8S_NAME_RE = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class LambdaTrust(_Model):
    """Trust the Lambda service (for this account only: ``aws:SourceAccount``)."""

    type: Literal["lambda"]


class IrsaTrust(_Model):
    """Trust one Kubernetes service account through the cluster's IAM OIDC provider (IRSA):
    ``sts:AssumeRoleWithWebIdentity`` with ``<issuer>:sub`` = ``system:serviceaccount:<ns>:<sa>``
    and ``<issuer>:aud`` = ``sts.amazonaws.com``
    (https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html)."""

    type: Literal["irsa"]
    oidc_provider_arn: str
    namespace: str = Field(pattern=_K8S_NAME_RE)
    service_account: str = Field(pattern=_K8S_NAME_RE)

    @field_validator("oidc_provider_arn")
    @classmethod
    def _provider(cls, value: str) -> str:
        if not _OIDC_PROVIDER_ARN_RE.match(value):
            raise ValueError("must be the cluster's IAM OIDC provider ARN, e.g. arn:aws:iam::123456789012:"
                             "oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE "
                             "(aws eks describe-cluster --query cluster.identity.oidc.issuer)")
        return value


class PodIdentityTrust(_Model):
    """Trust EKS Pod Identity: ``pods.eks.amazonaws.com`` with ``sts:AssumeRole`` and ``sts:TagSession``
    (https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html); the association names the
    service account."""

    type: Literal["podIdentity"]


class RoleTrust(_Model):
    """Trust one IAM role (a CI runner, an operator role)."""

    type: Literal["role"]
    arn: str

    @field_validator("arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not _IAM_PRINCIPAL_RE.match(value) or ":role/" not in value:
            raise ValueError("must be an IAM role ARN, e.g. arn:aws:iam::123456789012:role/ci-rotation")
        return value


TrustEntry = Annotated[LambdaTrust | IrsaTrust | PodIdentityTrust | RoleTrust, Field(discriminator="type")]


class RotationAccessConfig(_Model):
    """Who may assume the rotation role (``rotationAccess.trust``), as explicit principals."""

    trust: list[TrustEntry] = Field(default_factory=list, max_length=20)

class AccessLevel(_Model):
    """What one caller may send (issue 13 part 1; docs/architecture.md "Access levels").

    ``senders``: addresses at ``senderDomain`` or bare local parts (``billing`` means
    ``billing@<senderDomain>``), lower case; the handler compares the whole address exactly and the
    sender role's IAM policy allows only these ``ses:FromAddress`` values. ``displayName``: the only
    display name allowed on ``from`` (absent = no display name may be set). ``maxRecipients``:
    to + cc + bcc (1..50, the SES quota). ``attachments``: whether attachments are allowed.
    ``maxMessageBytes``: the encoded message size cap (1 KiB..40 MB, the SES v2 quota).
    ``recipientDomains``: when set, every recipient's domain must be one of these.
    """

    senders: list[str] = Field(min_length=1, max_length=20)
    display_name: str | None = Field(None, min_length=1, max_length=64)
    max_recipients: int = Field(10, ge=1, le=50)
    attachments: bool = False
    max_message_bytes: int = Field(10_000_000, ge=1024, le=40_000_000)
    recipient_domains: list[DomainName] | None = Field(None, min_length=1, max_length=20)

    @field_validator("senders")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        out = []
        for sender in value:
            local, at, domain = sender.strip().rpartition("@") if "@" in sender else (sender.strip(), "", "")
            if not _LOCAL_PART_RE.match(local):
                raise ValueError(f"{sender!r} must be a lower-case local part (letters, digits, . _ + -) "
                                 "or such an address at senderDomain")
            out.append(f"{local}@{_domain(domain)}" if at else local)
        return out

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        # IAM compares ses:FromDisplayName with StringLike: wildcards would widen it.
        if value is not None and (not value.isprintable() or any(c in value for c in '*?"\\<>')
                                  or value != value.strip()):
            raise ValueError("must be printable text without * ? \" \\ < > or outer spaces")
        return value


class LogArchiveConfig(_Model):
    """The locked archive of the API's request records (issue 13 part 2, docs/operations.md
    "Request records and their archive"): an S3 bucket with versioning and Object Lock in
    GOVERNANCE mode; ``retentionDays`` is the default retention of every archived object
    (S3 Object Lock, https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html)."""

    retention_days: int = Field(400, ge=1, le=3650)
    #: Firehose buffering before an object is written (seconds, 60..900).
    buffer_interval_seconds: int = Field(300, ge=60, le=900)


class AlertingConfig(_Model):
    """Thresholds of the anomaly alarms (issue 13 part 3; runbooks in docs/operations.md "Alarms")."""

    #: 403 responses per stage in 5 minutes at or above which ``api-auth-failures`` fires.
    auth_failures_per_stage: int = Field(50, ge=1)
    #: 403 responses from one source IP in 5 minutes (Contributor Insights top contributor).
    auth_failures_per_source: int = Field(20, ge=1)
    #: Width of the anomaly-detection band, in standard deviations (per-consumer traffic, WAF blocks).
    anomaly_band_width: float = Field(3.0, ge=1.0, le=10.0)
    #: Hours a promoted key may stay unacknowledged by its consumer before alarming.
    ack_deadline_hours: int = Field(48, ge=1, le=720)
    #: Minutes a rotation may stay in ``rolling_back`` before alarming.
    rolling_back_minutes: int = Field(30, ge=5, le=1440)


class StackConfig(_Model):
    """The whole validated stack config. Field aliases are the camelCase config keys."""

    stack: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{0,19}$")
    region: str = Field(alias="aws:region")
    api_domain: DomainName
    certificate_arn: str
    tls_policy: Annotated[str, AfterValidator(_allowed(TLS_POLICIES))] = TLS_POLICIES[0]
    stage_name: str = Field("live", pattern=r"^[A-Za-z0-9_]{1,64}$")
    alarm_email: EmailStr
    waf: WafConfig = WafConfig()
    usage_plans: dict[str, UsagePlanTier]
    log_retention_days: Annotated[int, AfterValidator(_allowed(LOG_RETENTION_DAYS))] = 365
    sender_domain: DomainName
    mail_from_subdomain: str = Field("bounce", pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
    configuration_set_name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cognito: CognitoConfig = CognitoConfig()
    #: Lambda reserved concurrency (CKV_AWS_115): caps parallel sends, so SES blast radius.
    lambda_reserved_concurrency: int = Field(10, ge=1, le=1000)
    lambda_timeout_seconds: int = Field(10, ge=1, le=29)
    lambda_memory_mb: int = Field(256, ge=128, le=10240)
    #: API Gateway -> Lambda integration timeout, milliseconds (50..29000).
    integration_timeout_ms: int = Field(29000, ge=50, le=29000)
    #: SLA for the SES feedback queue's oldest message, seconds (docs/security-baseline.md §3 row 15).
    queue_age_sla_seconds: int = Field(900, ge=60, le=1_209_600)
    #: Max age of a current API key, days; alarm when the oldest key is older.
    rotation_max_key_age_days: int = Field(90, ge=1, le=365)
    #: Alarm when the rotation jobs published no metrics for this many hours.
    rotation_silence_hours: int = Field(24, ge=1, le=24)
    #: Lambda layer ARNs for the sender's third-party imports (aws-lambda-powertools, pydantic,
    #: email-validator), e.g. the AWS-published Powertools for AWS Lambda (Python) v3 layer.
    lambda_layers: list[str] = Field(default_factory=list, max_length=5)
    #: IAM principals allowed to assume the rotation role; empty = this account's root.
    rotator_trusted_principals: list[str] = []
    #: Explicit principals trusted by the rotation role (Lambda, IRSA, EKS Pod Identity, roles);
    #: replaces ``rotatorTrustedPrincipals`` when set.
    rotation_access: RotationAccessConfig = RotationAccessConfig()
    #: Optional scheduled rotator (Lambda + EventBridge Scheduler), off by default.
    rotation_schedule: RotationScheduleConfig = RotationScheduleConfig()
    #: Optional Lambda code signing (Signer profile + enforcing code-signing config), off by default.
    code_signing: CodeSigningConfig = CodeSigningConfig()
    #: Access levels by name (issue 13 part 1); each consumer and OAuth scope maps to one.
    access_levels: dict[str, AccessLevel]
    #: Consumer (the ``secure-mail-api:consumer`` tag of its API keys) -> access level name.
    consumer_access_levels: dict[str, str]
    #: OAuth scope (``send``, ``send:attachments``, ``send:bulk``; full name ``mail-api/<scope>``) ->
    #: access level name. Required when ``cognito.enabled``.
    oauth_scopes: dict[str, str] = {}
    #: The locked request-record archive (issue 13 part 2).
    log_archive: LogArchiveConfig = LogArchiveConfig()
    #: Anomaly alarm thresholds (issue 13 part 3).
    alerting: AlertingConfig = AlertingConfig()
    #: Vault AppRole secret id of the scheduled rotator: secret config only (see SECRET_KEYS).
    rotation_vault_secret_id: SecretStr | None = None
    #: DynamoDB message-record retention via TTL attribute ``expires_at`` is enforced by the app.
    tags: dict[str, str] = {}

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION_RE.match(value):
            raise ValueError("must be an AWS region such as 'eu-west-1'")
        return value

    @field_validator("certificate_arn")
    @classmethod
    def _cert(cls, value: str) -> str:
        if not _ACM_ARN_RE.match(value):
            raise ValueError("must be an ACM certificate ARN 'arn:aws:acm:<region>:<account>:certificate/<uuid>'")
        return value

    @field_validator("usage_plans")
    @classmethod
    def _tiers(cls, value: dict[str, UsagePlanTier]) -> dict[str, UsagePlanTier]:
        if not value:
            raise ValueError("at least one usage plan tier is required")
        for tier in value:
            if not re.match(r"^[a-z][a-z0-9-]{0,31}$", tier):
                raise ValueError(f"tier name {tier!r} must match ^[a-z][a-z0-9-]{{0,31}}$")
        return value

    @field_validator("access_levels")
    @classmethod
    def _level_names(cls, value: dict[str, AccessLevel]) -> dict[str, AccessLevel]:
        if not value:
            raise ValueError("at least one access level is required")
        for name in value:
            if not _LEVEL_RE.match(name):
                raise ValueError(f"level name {name!r} must match {_LEVEL_RE.pattern}")
        return value

    @field_validator("consumer_access_levels")
    @classmethod
    def _consumer_names(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one consumer is required (consumer name -> access level)")
        for name in value:
            if not _CONSUMER_RE.match(name):
                raise ValueError(f"consumer name {name!r} must match {_CONSUMER_RE.pattern}")
        return value

    @field_validator("oauth_scopes")
    @classmethod
    def _scope_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _SCOPE_RE.match(name):
                raise ValueError(f"scope {name!r} must match {_SCOPE_RE.pattern} (e.g. send, send:attachments)")
        return value

    @field_validator("lambda_layers")
    @classmethod
    def _layers(cls, value: list[str]) -> list[str]:
        return _layer_arns(value)

    @field_validator("rotator_trusted_principals")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not _IAM_PRINCIPAL_RE.match(arn):
                raise ValueError(f"{arn!r} is not an IAM role, user or account-root ARN: use the full ARN, e.g. "
                                 "arn:aws:iam::123456789012:role/ci-rotation")
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> StackConfig:
        cert = _ACM_ARN_RE.match(self.certificate_arn)   # the field validator above refused a non-match
        cert_region = cert.group("region") if cert else None
        if cert_region != self.region:
            raise ValueError(
                f"certificateArn is in {cert_region} but a REGIONAL custom domain needs a certificate "
                f"in aws:region {self.region}"
            )
        if self.integration_timeout_ms < self.lambda_timeout_seconds * 1000 and self.integration_timeout_ms < 29000:
            raise ValueError("integrationTimeoutMs must cover lambdaTimeoutSeconds (or be 29000)")
        for field_name, mapping in (("consumerAccessLevels", self.consumer_access_levels),
                                    ("oauthScopes", self.oauth_scopes)):
            for name, level in mapping.items():
                if level not in self.access_levels:
                    raise ValueError(f"{field_name}.{name} names access level {level!r}, which accessLevels "
                                     f"does not define (defined: {', '.join(sorted(self.access_levels))})")
        for name, access_level in self.access_levels.items():
            for sender in access_level.senders:
                if "@" in sender and sender.rpartition("@")[2] != self.sender_domain:
                    raise ValueError(f"accessLevels.{name}.senders holds {sender!r}, which is not at senderDomain "
                                     f"{self.sender_domain}")
        if self.cognito.enabled and not self.oauth_scopes:
            raise ValueError("oauthScopes is required when cognito.enabled is true (scope -> access level)")
        size = sum(len(k) + len(v) for k, v in access_environment(self).items())
        if size > MAX_ACCESS_ENVIRONMENT_BYTES:
            raise ValueError(f"accessLevels (with consumerAccessLevels and oauthScopes) render to {size} bytes of "
                             f"Lambda environment; at most {MAX_ACCESS_ENVIRONMENT_BYTES} fit (Lambda's 4 KB cap)")
        secret_id = self.rotation_vault_secret_id
        schedule = self.rotation_schedule
        if schedule.enabled and schedule.vault_auth == "approle" and (
                secret_id is None or not secret_id.get_secret_value().strip()):
            raise ValueError("rotationVaultSecretId is required when rotationSchedule.vaultAuth is approle "
                             "(pulumi config set --secret rotationVaultSecretId <AppRole secret id>)")
        if secret_id is not None and not (schedule.enabled and schedule.vault_auth == "approle"):
            raise ValueError("rotationVaultSecretId is set but the scheduled rotator does not use AppRole "
                             f"(rotationSchedule.vaultAuth: {schedule.vault_auth}): remove the stored credential "
                             "with pulumi config rm rotationVaultSecretId")
        return self

    @property
    def prefix(self) -> str:
        """Physical-name prefix, ``secure-mail-api-<stack>``."""
        return f"{PROJECT}-{self.stack}"

    @property
    def mail_from_domain(self) -> str:
        return f"{self.mail_from_subdomain}.{self.sender_domain}"

    def sender_addresses(self, level: AccessLevel) -> list[str]:
        """The level's senders as full lower-case addresses at ``sender_domain``."""
        return [s if "@" in s else f"{s}@{self.sender_domain}" for s in level.senders]

    @property
    def allowed_from_addresses(self) -> list[str]:
        """Every sender address some access level allows, sorted (the IAM ``ses:FromAddress`` list)."""
        return sorted({a for level in self.access_levels.values() for a in self.sender_addresses(level)})

    @property
    def allowed_display_names(self) -> list[str]:
        """Every display name some access level allows, sorted (the IAM ``ses:FromDisplayName`` list)."""
        return sorted({level.display_name for level in self.access_levels.values() if level.display_name})

    @property
    def consumers(self) -> list[str]:
        """The consumers this stack serves (keys of ``consumerAccessLevels``), sorted."""
        return sorted(self.consumer_access_levels)


def access_environment(cfg: StackConfig) -> dict[str, str]:
    """The sender function's access environment (compact JSON), read once per cold start.

    ``ACCESS_LEVELS``: ``{level: {"senders": [address...], "displayName": str|null,
    "maxRecipients": int, "attachments": bool, "maxMessageBytes": int, "recipientDomains": [..]|null}}``;
    ``ACCESS_CONSUMERS``: ``{consumer: level}``; ``ACCESS_SCOPES``: ``{"mail-api/<scope>": level}``.
    """
    levels = {
        name: {"senders": cfg.sender_addresses(level), "displayName": level.display_name,
               "maxRecipients": level.max_recipients, "attachments": level.attachments,
               "maxMessageBytes": level.max_message_bytes, "recipientDomains": level.recipient_domains}
        for name, level in sorted(cfg.access_levels.items())
    }

    def compact(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    return {
        "ACCESS_LEVELS": compact(levels),
        "ACCESS_CONSUMERS": compact(dict(cfg.consumer_access_levels)),
        "ACCESS_SCOPES": compact({f"{OAUTH_RESOURCE_SERVER}/{k}": v for k, v in cfg.oauth_scopes.items()}),
    }


_STRUCTURED = {"waf", "usagePlans", "cognito", "rotatorTrustedPrincipals", "lambdaLayers", "rotationSchedule",
               "codeSigning", "tags", "rotationAccess", "accessLevels", "consumerAccessLevels", "oauthScopes",
               "logArchive", "alerting"}


def _key_for(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if not parts:
        return f"{PROJECT}:<root>"
    head = parts[0] if parts[0].startswith("aws:") else f"{PROJECT}:{parts[0]}"
    return ".".join([head, *parts[1:]])


def parse_stack_config(
    values: Mapping[str, str], secret_keys: Iterable[str] = (), stack: str = "dev"
) -> StackConfig:
    """Validate raw stack config (``{"secure-mail-api:<key>": "<string or JSON>", "aws:region": ...}``).

    Structured keys (waf, usagePlans, cognito, rotatorTrustedPrincipals, lambdaLayers, rotationSchedule,
    codeSigning, tags)
    hold JSON text, as Pulumi passes them. Keys of another namespace than ``secure-mail-api`` and
    ``aws:region`` are ignored. A key in ``secret_keys`` is refused unless it is one of
    :data:`SECRET_KEYS`. Raises :class:`ConfigError` naming every bad key; values of
    ``secret_keys`` and :data:`SECRET_KEYS` are never included in the message.
    """
    secret = set(secret_keys) | SECRET_KEYS
    raw: dict[str, Any] = {}
    errors: list[str] = []
    for full_key, text in values.items():
        ns, _, key = full_key.partition(":")
        if full_key == "aws:region":
            raw["aws:region"] = text
            continue
        if ns != PROJECT:
            continue
        if key not in _STRUCTURED:
            raw[key] = text
            continue
        try:
            raw[key] = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            errors.append(f"{full_key}: must be structured config (JSON object/list)")
    for full_key in sorted(secret - SECRET_KEYS):
        if full_key.startswith(f"{PROJECT}:") or full_key == "aws:region":
            # Only SECRET_KEYS are handled as secrets: any other secret value would be copied into
            # resource inputs, hence into the state, in plain text (failure case P4).
            errors.append(f"{full_key}: is stored as a secret, but this program reads it as plain config "
                          "and would write it to the state in plain text; store it as plain config")
    if errors:
        raise ConfigError(errors)
    raw["stack"] = stack  # the Pulumi stack name, never a config key
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            key = _key_for(err["loc"])
            if not err["loc"]:  # cross-field rule: its message starts with the key it is about
                key = f"{PROJECT}:{msg.split()[0]}"
            if err["type"] == "extra_forbidden":
                msg = "unknown config key"
            if key.split(".")[0] in secret:
                msg = msg.split(" got ")[0]
            errors.append(f"{key}: {msg}")
        raise ConfigError(errors) from None


def _to_config_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def dev_stack_config(path: Path = DEV_STACK_FILE) -> dict[str, str]:
    """Load ``Pulumi.dev.yaml``'s ``config:`` as the ``dict[str, str]`` Pulumi would pass.

    Scalars become strings (``true``, ``365``), maps and lists become JSON text. Encrypted
    (``secure:``) values need the stack's secrets provider: those of :data:`SECRET_KEYS` are
    replaced by their planted stand-in (:data:`DEV_SECRET_STANDINS`), any other is skipped.
    """
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, str] = {}
    for key, value in (doc.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            if key in DEV_SECRET_STANDINS:
                out[key] = DEV_SECRET_STANDINS[key]
            continue
        out[key] = _to_config_string(value)
    return out


def load_stack_config() -> StackConfig:
    """Read and validate the running program's stack config (``pulumi.Config``).

    Works under ``pulumi up``/``preview`` and under mocks (``set_all_config``). Raises
    :class:`ConfigError`.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    # Under `pulumi up` the language host passes config as PULUMI_CONFIG (JSON); under mocks
    # set_all_config fills the CONFIG context variable. Explicitly set config wins.
    all_config: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    values = {k: v for k, v in all_config.items() if k.startswith(f"{PROJECT}:") or k == "aws:region"}
    if "aws:region" not in values:
        region = pulumi.Config("aws").get("region")
        if region is not None:
            values["aws:region"] = region
    return parse_stack_config(values, secret_keys, stack=pulumi.get_stack())
