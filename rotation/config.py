"""The consumers file (YAML): who gets an API key, on which usage plan, how often it rotates, and
where each new key is pushed.

Shape (``version: 1``)::

    version: 1
    usage_plans:               # tier -> usage plan *name* (the Pulumi stack names them
      standard: secure-mail-api-dev-standard    #  secure-mail-api-<stack>-<tier>)
      premium: secure-mail-api-dev-premium
    defaults:                  # optional; each consumer may override
      max_age: 30d             # rotate when the current key is older (>= 1h)
      grace_period: 24h        # old key stays enabled this long after promotion (<= max_age)
      retention: 7d            # disabled old key is deleted after this long
      quiet_period: 15m        # early revoke: the old key must have been idle this long...
      acknowledged_by: app     # ...and the app acked the new key (`app`: its ack in Vault;
                               # `targets`: every required push target took it)
    consumers:
      - name: billing          # a-z, 0-9, '-'; 2-40 chars; unique
        tier: standard         # a key of usage_plans
        targets:               # where new keys are pushed (optional; apps may pull from Vault)
          - type: file
            path: /run/mail-api/billing.key          # absolute; written atomically, mode 0600
          - type: webhook
            url: https://billing.internal/hooks/key  # https (http only on loopback)
            required: true                           # promotion waits for this target
          - type: secretsmanager                     # new secret version, staging label AWSCURRENT
            secret_id: mail-api/billing
            kms_key_id: alias/secure-mail-api-data
          - type: ssm                                # SecureString parameter
            name: /mail-api/billing/api-key
            kms_key_id: alias/secure-mail-api-data

The old key is revoked at the end of the grace period at the latest, earlier once the consumer
acknowledged the new key *and* the old key saw no traffic for ``quiet_period``, and at once for an
emergency rotation.

Durations are seconds (an integer) or a number with a unit: ``s``, ``m``, ``h``, ``d``, ``w``
(at most 3650d). Unknown keys are refused, so a typo never silently falls back to a default, and
so are duplicate keys at any depth (plain YAML keeps the last one: a consumer would vanish), files
over 1 MiB, and values that decode to something else than they look like (every pattern is matched
whole, with ``fullmatch``: ``$`` would accept a trailing newline).

Checks that depend on the runtime settings (:func:`check_against_settings`, run by
:func:`load_consumers_file` when given the settings): a ``file`` target must lie inside
``ROTATION_FILE_TARGET_DIRS``; a ``webhook`` URL may name a loopback host only with
``ROTATION_WEBHOOK_ALLOW_LOOPBACK=true`` (the dev stack) and a private address literally only with
``ROTATION_WEBHOOK_ALLOW_PRIVATE=true``. A link-local or cloud metadata address (169.254.0.0/16,
fe80::/10, fd00:ec2::254) is never a webhook target.
"""

from __future__ import annotations

import math
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.functional_validators import AfterValidator, BeforeValidator

from rotation.errors import ConfigError
from rotation.settings import Settings, check_service_url, classify_host
from rotation.yaml_files import load_yaml_file

__all__ = [
    "Consumer",
    "ConsumersFile",
    "FileTarget",
    "Target",
    "WebhookTarget",
    "check_against_settings",
    "load_consumers_file",
    "parse_duration",
]

# Every pattern here is used with fullmatch (``$`` would accept a trailing newline), on ASCII classes
# only (``\d`` would accept any Unicode digit, which float() then reads).
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"[a-z][a-z0-9-]{1,39}")
#: Secrets Manager secret name: ASCII letters, digits and /_+=.@- (CreateSecret, ``Name``).
_SM_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_SM_ARN = re.compile(r"arn:aws(-[a-z]+)*:secretsmanager:[a-z]{2}(-[a-z]+)+-[0-9]:[0-9]{12}:secret:"
                     r"[A-Za-z0-9/_+=.@-]{1,512}")
#: SSM parameter name: a-zA-Z0-9_.- and '/' between levels (PutParameter, ``Name``).
_SSM_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: object) -> timedelta:
    """Parse ``30d`` / ``12h`` / ``90m`` / ``45s`` / ``3600`` (seconds) into a timedelta.

    Raises ``ValueError`` for anything else, including negative numbers, booleans, non-finite
    numbers, non-ASCII digits and anything longer than ``MAX_DURATION`` (3650 days).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic turns ValueError into a field error
            "must be a duration such as 30d, 12h, 90m or a number of seconds")
    elif isinstance(value, int) and value > MAX_DURATION.total_seconds():
        raise ValueError(f"is too long: at most {MAX_DURATION.days}d")      # before float() overflows
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("must be a duration such as 30d, 12h, 90m, 45s or a number of seconds")
    if math.isnan(seconds):
        raise ValueError("must be a duration such as 30d, 12h, 90m, 45s or a number of seconds")
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"is too long: at most {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def check_secrets_manager_id(v: str) -> str:
    """A Secrets Manager secret name (1-512 of ``A-Za-z0-9/_+=.@-``) or secret ARN, else ``ValueError``.
    Source: CreateSecret ``Name``, https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html"""
    if v.startswith("arn:"):
        if len(v) > 2048 or not _SM_ARN.fullmatch(v):
            raise ValueError("must be a secret ARN such as arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
                             "mail-api/billing-AbCdEf, or a secret name")
        return v
    if not _SM_NAME.fullmatch(v):
        raise ValueError("must be a secret name of 1-512 ASCII letters, digits and /_+=.@- (e.g. mail-api/billing)")
    return v


def check_ssm_parameter_name(v: str) -> str:
    """An SSM parameter path: ``/`` then levels of ``a-zA-Z0-9_.-`` separated by ``/``, at most 1011
    characters and 15 levels, not starting with ``aws`` or ``ssm`` (any case), else ``ValueError``.
    Source: PutParameter ``Name``, https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html"""
    segments = v[1:].split("/") if v.startswith("/") else []
    if not segments or len(v) > 1011 or not all(_SSM_SEGMENT.fullmatch(x) for x in segments):
        raise ValueError("must be a parameter path such as /mail-api/billing/api-key: '/' then levels of "
                         "a-z, A-Z, 0-9, '_', '.', '-' (at most 1011 characters)")
    if len(segments) > 15:
        raise ValueError("must have at most 15 levels (an SSM limit)")
    if segments[0].lower().startswith(("aws", "ssm")):
        raise ValueError("must not start with 'aws' or 'ssm' (reserved by AWS, any case)")
    return v


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class FileTarget(_Strict):
    """Write the key to a file atomically (temp file + rename), mode 0600, for a sidecar."""

    type: Literal["file"]
    path: Path
    required: bool = True

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in str(v)):
            raise ValueError("must not contain control characters (a newline, a tab ...)")
        if not v.is_absolute():
            raise ValueError("must be an absolute path, e.g. /run/mail-api/billing.key")
        if ".." in v.parts:
            raise ValueError("must not contain '..'")
        return v

    @property
    def target_id(self) -> str:
        return f"file:{self.path}"


class WebhookTarget(_Strict):
    """POST a signed notification carrying a single-use Vault response-wrapping token."""

    type: Literal["webhook"]
    url: str
    required: bool = True
    wrap_ttl: Duration = Field(default=timedelta(minutes=5))

    @field_validator("url")
    @classmethod
    def _https(cls, v: str) -> str:
        from urllib.parse import urlsplit

        check_service_url(v, "https://app.internal/hooks/mail-api-key")
        parts = urlsplit(v)
        if parts.username or parts.password:
            raise ValueError("must not carry credentials in the URL; the signing secret lives in Vault")
        kind = classify_host(v)
        if kind == "metadata":
            raise ValueError("must not name a link-local or cloud metadata address (169.254.0.0/16, fe80::/10, "
                             "fd00:ec2::254): the key would go to the instance metadata service")
        if kind == "unroutable":
            raise ValueError("must name a routable host (not 0.0.0.0, ::, multicast or reserved addresses)")
        return v

    @field_validator("wrap_ttl")
    @classmethod
    def _ttl(cls, v: timedelta) -> timedelta:
        if not timedelta(seconds=30) <= v <= timedelta(hours=24):
            raise ValueError("must be between 30s and 24h")
        return v

    @property
    def target_id(self) -> str:
        return f"webhook:{self.url}"


class SecretsManagerTargetSpec(_Strict):
    """Put the key as a new AWS Secrets Manager secret version (AWSCURRENT), for apps that read there."""

    type: Literal["secretsmanager"]
    secret_id: Annotated[str, AfterValidator(check_secrets_manager_id)]
    kms_key_id: str | None = None   # the stack's KMS key (output kmsKeyArn); used when creating the secret
    required: bool = True

    @property
    def target_id(self) -> str:
        return f"secretsmanager:{self.secret_id}"


class SsmParameterTargetSpec(_Strict):
    """Put the key in an SSM Parameter Store SecureString encrypted with ``kms_key_id``."""

    type: Literal["ssm"]
    name: Annotated[str, AfterValidator(check_ssm_parameter_name)]
    kms_key_id: str | None = None
    required: bool = True

    @property
    def target_id(self) -> str:
        return f"ssm:{self.name}"


Target = Annotated[FileTarget | WebhookTarget | SecretsManagerTargetSpec | SsmParameterTargetSpec,
                   Field(discriminator="type")]


AckSource = Literal["app", "targets"]


class Defaults(_Strict):
    max_age: Duration = Field(default=timedelta(days=30))
    grace_period: Duration = Field(default=timedelta(hours=24))
    retention: Duration = Field(default=timedelta(days=7))
    quiet_period: Duration = Field(default=timedelta(minutes=15))
    acknowledged_by: AckSource = "app"


_STANDARD = Defaults()


class Consumer(_Strict):
    """One consuming application: its own API key, usage plan tier, schedule and push targets.

    A duration the consumer omits is the file's ``defaults`` (filled in by :class:`ConsumersFile`,
    which tells an omitted field by pydantic's ``model_fields_set``); a Consumer built on its own
    gets the standard defaults. So every loaded consumer holds every duration."""

    name: str
    tier: str
    max_age: Duration = _STANDARD.max_age
    grace_period: Duration = _STANDARD.grace_period
    retention: Duration = _STANDARD.retention
    quiet_period: Duration = _STANDARD.quiet_period
    acknowledged_by: AckSource | None = None
    targets: list[Target] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be 2-40 characters of a-z, 0-9 and '-', starting with a letter")
        return v

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, v: list) -> list:
        ids = [t.target_id for t in v]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate targets: {', '.join(dupes)}")
        return v


class ConsumersFile(_Strict):
    """The whole consumers file; consumers get the ``defaults`` for the durations they omit."""

    version: Literal[1]
    usage_plans: dict[str, str]
    defaults: Defaults = Field(default_factory=Defaults)
    consumers: list[Consumer]

    @field_validator("usage_plans")
    @classmethod
    def _plans(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("must map at least one tier to a usage plan name")
        for tier, plan in v.items():
            if not _NAME.fullmatch(tier):
                raise ValueError(f"tier {tier!r}: must be 2-40 characters of a-z, 0-9 and '-'")
            if not isinstance(plan, str) or not plan.strip() or any(ord(ch) < 0x20 for ch in plan):
                raise ValueError(f"tier {tier!r}: must name a usage plan (no control characters)")
        return v

    @field_validator("consumers")
    @classmethod
    def _consumers(cls, v: list[Consumer]) -> list[Consumer]:
        if not v:
            raise ValueError("must list at least one consumer")
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate consumer names: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _resolve(self) -> ConsumersFile:
        problems = []
        resolved = []
        for i, c in enumerate(self.consumers):
            if c.tier not in self.usage_plans:
                problems.append(f"consumers.{i}.tier: {c.tier!r} is not a tier of usage_plans "
                                f"({', '.join(sorted(self.usage_plans))})")
            given = c.model_fields_set
            max_age = c.max_age if "max_age" in given else self.defaults.max_age
            grace = c.grace_period if "grace_period" in given else self.defaults.grace_period
            retention = c.retention if "retention" in given else self.defaults.retention
            quiet = c.quiet_period if "quiet_period" in given else self.defaults.quiet_period
            acked_by = c.acknowledged_by or self.defaults.acknowledged_by
            if max_age < timedelta(hours=1):
                problems.append(f"consumers.{i}.max_age: must be at least 1h")
            if grace > max_age:
                problems.append(f"consumers.{i}.grace_period: must not exceed max_age "
                                "(the old key would outlive the next rotation)")
            resolved.append(c.model_copy(update={"max_age": max_age, "grace_period": grace, "retention": retention,
                                                 "quiet_period": quiet, "acknowledged_by": acked_by}))
        if problems:
            raise ValueError("; ".join(problems))
        object.__setattr__(self, "consumers", resolved)
        return self

    def consumer(self, name: str) -> Consumer:
        """Return the consumer called ``name``; ``KeyError`` naming the known ones otherwise."""
        for c in self.consumers:
            if c.name == name:
                return c
        raise KeyError(f"unknown consumer {name!r}; known: {', '.join(c.name for c in self.consumers)}")


def _loc(loc: tuple) -> str:
    tags = ("file", "webhook", "secretsmanager", "ssm")
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p in tags)) or "(file)"


def check_against_settings(consumers: ConsumersFile, settings: Settings) -> list[tuple[str, str]]:
    """Problems ``(field, message)`` of a valid consumers file under ``settings``: ``file`` targets
    outside ``ROTATION_FILE_TARGET_DIRS`` (symbolic links resolved), ``webhook`` URLs naming a
    loopback host without ``ROTATION_WEBHOOK_ALLOW_LOOPBACK`` or a private address without
    ``ROTATION_WEBHOOK_ALLOW_PRIVATE``. Empty when all is well."""
    problems = []
    dirs = [os.path.realpath(d) for d in settings.file_target_dirs]
    for i, c in enumerate(consumers.consumers):
        for j, t in enumerate(c.targets):
            where = f"consumers.{i}.targets.{j}"
            if isinstance(t, FileTarget):
                real = os.path.realpath(t.path)
                if not any(os.path.commonpath([real, d]) == d and real != d for d in dirs):
                    allowed = ":".join(str(d) for d in settings.file_target_dirs) or "none"
                    problems.append((f"{where}.path", (f"must be inside ROTATION_FILE_TARGET_DIRS ({allowed}); "
                                                      "set it to the directories your sidecars read")))
            elif isinstance(t, WebhookTarget):
                kind = classify_host(t.url)
                if kind == "loopback" and not settings.webhook_allow_loopback:
                    problems.append((f"{where}.url", ("names a loopback host; allowed only with "
                                                     "ROTATION_WEBHOOK_ALLOW_LOOPBACK=true (the dev stack)")))
                elif kind == "private" and not settings.webhook_allow_private:
                    problems.append((f"{where}.url", ("names a private address; allowed only with "
                                                     "ROTATION_WEBHOOK_ALLOW_PRIVATE=true")))
    return problems


def _field_message(text: str) -> tuple[str, str]:
    """A model rule's ``"field: message"`` split at its first ``": "``; ``("(file)", text)`` without one."""
    field, sep, message = text.partition(": ")
    return (field, message) if sep else ("(file)", text)


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """A pydantic ``ValidationError`` as ``[(dotted field, message)]`` for :class:`ConfigError`:
    no input echoed (secrets stay out), plain wording for unknown and missing fields; a model-level
    error ``"field: message; field: message"`` is split into its fields."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known field (check the spelling)"
        elif err["type"] == "missing":
            msg = "is required"
        if err["loc"] == () and "; " in msg:
            problems.extend(_field_message(part) for part in msg.split("; "))
        elif err["loc"] == ():
            problems.append(_field_message(msg))
        else:
            problems.append((_loc(err["loc"]), msg))
    return problems


def load_consumers_file(path: str | Path, *, settings: Settings | None = None) -> ConsumersFile:
    """Read and validate a consumers file: at most 1 MiB of UTF-8 YAML, no duplicate keys at any
    depth, at most 32 levels deep (:func:`rotation.yaml_files.load_yaml_file`), then the models
    above; with ``settings``, also :func:`check_against_settings`.

    Raises :class:`~rotation.errors.ConfigError` (a usage error, exit code 2) naming every bad
    field as a dotted path such as ``consumers.1.targets.0.url``. Rejected values are never echoed.
    """
    p = Path(path)
    data = load_yaml_file(p, missing_hint="pass --consumers PATH or set ROTATION_CONSUMERS_FILE")
    if not isinstance(data, dict):
        raise ConfigError(str(p), [("(file)", "must be a YAML mapping with version, usage_plans and consumers")])
    try:
        consumers = ConsumersFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(p), validation_problems(exc)) from None
    if settings is not None:
        problems = check_against_settings(consumers, settings)
        if problems:
            raise ConfigError(str(p), problems)
    return consumers
