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

Durations are seconds (an integer) or a number with a unit: ``s``, ``m``, ``h``, ``d``, ``w``.
Unknown keys are refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.functional_validators import BeforeValidator

from rotation.errors import ConfigError
from rotation.settings import check_service_url

__all__ = [
    "Consumer",
    "ConsumersFile",
    "FileTarget",
    "Target",
    "WebhookTarget",
    "load_consumers_file",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,39}$")


def parse_duration(value: object) -> timedelta:
    """Parse ``30d`` / ``12h`` / ``90m`` / ``45s`` / ``3600`` (seconds) into a timedelta.

    Raises ``ValueError`` for anything else, including negative numbers and booleans.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic turns ValueError into a field error
"must be a duration such as 30d, 12h, 90m or a number of seconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError("must be a duration such as 30d, 12h, 90m, 45s or a number of seconds")


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
    secret_id: str = Field(min_length=1, max_length=2048)
    kms_key_id: str | None = None   # the stack's KMS key (output kmsKeyArn); used when creating the secret
    required: bool = True

    @property
    def target_id(self) -> str:
        return f"secretsmanager:{self.secret_id}"


class SsmParameterTargetSpec(_Strict):
    """Put the key in an SSM Parameter Store SecureString encrypted with ``kms_key_id``."""

    type: Literal["ssm"]
    name: str = Field(pattern=r"^/[A-Za-z0-9_.\-/]{1,1010}$")
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


class Consumer(_Strict):
    """One consuming application: its own API key, usage plan tier, schedule and push targets."""

    name: str
    tier: str
    max_age: Duration | None = None
    grace_period: Duration | None = None
    retention: Duration | None = None
    quiet_period: Duration | None = None
    acknowledged_by: AckSource | None = None
    targets: list[Target] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
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
            if not _NAME.match(tier):
                raise ValueError(f"tier {tier!r}: must be 2-40 characters of a-z, 0-9 and '-'")
            if not isinstance(plan, str) or not plan.strip():
                raise ValueError(f"tier {tier!r}: must name a usage plan")
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
            max_age = c.max_age if c.max_age is not None else self.defaults.max_age
            grace = c.grace_period if c.grace_period is not None else self.defaults.grace_period
            retention = c.retention if c.retention is not None else self.defaults.retention
            quiet = c.quiet_period if c.quiet_period is not None else self.defaults.quiet_period
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


def load_consumers_file(path: str | Path) -> ConsumersFile:
    """Read and validate a consumers file.

    Raises :class:`~rotation.errors.ConfigError` (a usage error, exit code 2) naming every bad
    field as a dotted path such as ``consumers.1.targets.0.url``. Rejected values are never echoed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [("(file)", "does not exist; pass --consumers PATH or set ROTATION_CONSUMERS_FILE")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [("(file)", f"cannot be read: {type(exc).__name__}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(p), [("(file)", f"is not valid YAML{where}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(p), [("(file)", "must be a YAML mapping with version, usage_plans and consumers")])
    try:
        return ConsumersFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "is not a known field (check the spelling)"
            elif err["type"] == "missing":
                msg = "is required"
            if err["loc"] == () and "; " in msg:
                problems.extend(tuple(part.split(": ", 1)) for part in msg.split("; "))
            elif err["loc"] == ():
                problems.append(tuple(msg.split(": ", 1)) if ": " in msg else ("(file)", msg))
            else:
                problems.append((_loc(err["loc"]), msg))
        raise ConfigError(str(p), problems) from None
