"""AWS Secrets Manager target: each key generation becomes a new version of one secret.

Secret string (JSON): ``{"api_key", "serial", "key_id"}``. The new version is put with
``VersionStages=["AWSCURRENT"]``; Secrets Manager then moves ``AWSPREVIOUS`` to the version that
was current, so an app reading ``AWSCURRENT`` gets the new key and the old one stays readable as
``AWSPREVIOUS`` during the grace period.

``ClientRequestToken`` (the version id) is a UUID derived from ``rotation_id:serial``: a retry of the
same delivery is idempotent (same token + same secret string = no new version), and a different
value under the same token is refused by AWS (``ResourceExistsException``).

A push means "serve this key", not "store this version": PutSecretValue with a token equal to an
existing version id is ignored and does *not* move ``AWSCURRENT``, so a rollback (which re-delivers
the current key under its original token) would otherwise leave the target serving the new key the
rollback just deleted. After every put the target reads the staging labels back (DescribeSecret);
when ``AWSCURRENT`` is on another version it puts the key again as a new version whose token is
:func:`restore_token` of (the delivery's token, the version it replaces), which becomes
``AWSCURRENT`` (and the replaced one ``AWSPREVIOUS``). That token is deterministic, so a retry
recognises its own restore (``AWSCURRENT`` = restore token of the ``AWSPREVIOUS`` version) and
writes nothing. (A new version rather than UpdateSecretVersionStage: it needs no further IAM action,
and GetSecretValue without ``VersionStage`` follows it on the emulator too.)
IAM: ``secretsmanager:PutSecretValue``, ``CreateSecret``, ``DescribeSecret``, ``TagResource``.

Fencing (:func:`rotation.targets.supersedes`): the secret's tag ``mail-api:held`` records
``serial=<n> fence=<f> version=<version id>`` of the key it serves (no secret; tags are returned by
DescribeSecret, so no ``GetSecretValue``/``kms:Decrypt`` is needed). Every push reads it with
DescribeSecret first and puts nothing when the secret holds a newer ``(fence, serial)``; after the
put has made the delivered key ``AWSCURRENT`` it tags the secret again. When ``AWSCURRENT`` is no
longer the tagged version (a version put by hand, or a writer killed between its put and its tag),
the tag's fence still counts and the serial is unknown (0), so a later lease holder's write, or
its reconciliation, replaces it and a stalled runner's does not.

AWS API: https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html,
https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html and
https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html.
The target never raises for an AWS failure: it reports ``ok=False`` with the AWS error code only.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from rotation.backends.aws_errors import error_code
from rotation.errors import PushError
from rotation.targets import Delivery, Held, PushResult, refused, supersedes

__all__ = ["HELD_TAG", "SecretsManagerTarget", "request_token", "restore_token"]

#: the secret's tag that records what it serves: ``serial=<n> fence=<f> version=<version id>``
HELD_TAG = "mail-api:held"

#: namespace for the deterministic ClientRequestToken (uuid5 of "<rotation_id>:<serial>")
TOKEN_NAMESPACE = uuid.UUID("5b0f1f7e-8d4e-4d61-9a57-6a3a1f0c2b11")


def request_token(rotation_id: str, serial: int) -> str:
    """The ``ClientRequestToken`` for one delivery: ``uuid5(TOKEN_NAMESPACE, "<rotation_id>:<serial>")``."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{rotation_id}:{serial}"))


def restore_token(token: str, replaced_version_id: str | None) -> str:
    """The token of a version that makes delivery ``token``'s key current again over version
    ``replaced_version_id``: ``uuid5(TOKEN_NAMESPACE, "<token>:restore:<replaced>")``."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, f"{token}:restore:{replaced_version_id or '-'}"))


class SecretsManagerTarget:
    """Put each new key into Secrets Manager secret ``secret_id`` (name or ARN).

    :param client: a boto3 ``secretsmanager`` client (timeouts/retries configured by the caller).
    :param secret_id: secret name or ARN; created (with ``kms_key_id``) when absent.
    :param kms_key_id: KMS key id/ARN/alias used when creating the secret.
    :param required: whether promotion waits for this target.
    :param tags: tags for a secret this target creates.
    """

    def __init__(self, client: Any, secret_id: str, *, kms_key_id: str | None = None, required: bool = True,
                 tags: dict[str, str] | None = None):
        self.client = client
        self.secret_id = secret_id
        self.kms_key_id = kms_key_id
        self.required = required
        self.tags = tags or {}
        self.target_id = f"secretsmanager:{secret_id}"

    def __repr__(self) -> str:
        return f"SecretsManagerTarget(secret_id={self.secret_id!r}, kms_key_id={self.kms_key_id!r})"

    def _describe(self) -> dict[str, Any] | None:
        """DescribeSecret, ``None`` when the secret does not exist."""
        try:
            return dict(self.client.describe_secret(SecretId=self.secret_id))
        except Exception as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    @staticmethod
    def _held(described: dict[str, Any] | None) -> Held | None:
        """What a described secret serves, from its :data:`HELD_TAG` (module docstring)."""
        if described is None:
            return None
        tags = {t.get("Key"): t.get("Value") for t in described.get("Tags") or []}
        fields = dict(part.split("=", 1) for part in (tags.get(HELD_TAG) or "").split() if "=" in part)
        current = next((v for v, labels in (described.get("VersionIdsToStages") or {}).items()
                        if "AWSCURRENT" in labels), None)
        try:
            serial, fence = int(fields.get("serial", "0")), int(fields.get("fence", "0"))
        except ValueError:
            serial, fence = 0, 0
        if current is None or fields.get("version") != current:
            serial = 0      # AWSCURRENT is not the version we tagged: its serial is unknown
        return Held(serial, fence)

    def read_back(self, consumer: str) -> Held | None:
        """What ``AWSCURRENT`` serves (serial, fence) per the secret's tag; ``None`` when the secret
        does not exist. Raises :class:`~rotation.errors.PushError` (AWS error code only)."""
        try:
            return self._held(self._describe())
        except Exception as exc:  # noqa: BLE001 - reported by code only
            raise PushError(f"{self.target_id}: cannot read it back: aws: {error_code(exc)}") from None

    def push(self, delivery: Delivery) -> PushResult:
        token = request_token(delivery.rotation_id, delivery.serial)
        # no fence in the secret string: a re-delivery under a later fence reuses the token
        secret = json.dumps({"api_key": delivery.value, "serial": delivery.serial, "key_id": delivery.key_id},
                            separators=(",", ":"))
        try:
            held = self._held(self._describe())
            if held is not None and not supersedes(delivery.serial, delivery.fence, held):
                return refused(self.target_id, delivery, held)
            try:
                r = self.client.put_secret_value(SecretId=self.secret_id, ClientRequestToken=token,
                                                 SecretString=secret, VersionStages=["AWSCURRENT"])
            except Exception as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                r = self._create(token, secret)
            version_id, restored = self._make_current(token, secret, r.get("VersionId") or token)
            if version_id is not None:
                self.client.tag_resource(SecretId=self.secret_id, Tags=[{
                    "Key": HELD_TAG, "Value": f"serial={delivery.serial} fence={delivery.fence} version={version_id}"}])
        except Exception as exc:  # noqa: BLE001 - a target never raises (targets/__init__.py)
            return PushResult(self.target_id, False, f"aws: {error_code(exc)}")
        if version_id is None:
            return PushResult(self.target_id, False, "AWSCURRENT could not be moved to the delivered key")
        detail = "key put again as a new AWSCURRENT version" if restored else "version put as AWSCURRENT"
        return PushResult(self.target_id, True, detail, {"version_id": version_id})

    def _make_current(self, token: str, secret: str, version_id: str) -> tuple[str | None, bool]:
        """Make the delivered key the ``AWSCURRENT`` one. Returns ``(version id serving it, restored)``
        where ``restored`` says a restore version was put now; ``(None, True)`` when AWS did not make
        the restore version current."""
        stages = self.client.describe_secret(SecretId=self.secret_id).get("VersionIdsToStages") or {}
        holder = {label: v for v, labels in stages.items() for label in labels}
        current, previous = holder.get("AWSCURRENT"), holder.get("AWSPREVIOUS")
        if current == version_id:
            return version_id, False
        if current is not None and current == restore_token(token, previous):
            return current, False                       # a retry: our restore is already current
        again = restore_token(token, current)
        r = self.client.put_secret_value(SecretId=self.secret_id, ClientRequestToken=again,
                                         SecretString=secret, VersionStages=["AWSCURRENT"])
        if "AWSCURRENT" not in (r.get("VersionStages") or ["AWSCURRENT"]):
            return None, True
        return r.get("VersionId") or again, True

    def _create(self, token: str, secret: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Name": self.secret_id, "ClientRequestToken": token, "SecretString": secret,
                                  "Description": "mail API key (managed by the rotation job; do not edit)"}
        if self.kms_key_id:
            kwargs["KmsKeyId"] = self.kms_key_id
        if self.tags:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in self.tags.items()]
        try:
            return self.client.create_secret(**kwargs)
        except Exception as exc:
            if error_code(exc) != "ResourceExistsException":
                raise
            # created concurrently by another runner: put our version on it
            return self.client.put_secret_value(SecretId=self.secret_id, ClientRequestToken=token,
                                                SecretString=secret, VersionStages=["AWSCURRENT"])
