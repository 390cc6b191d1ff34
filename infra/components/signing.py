"""Lambda code signing (optional, stack config ``codeSigning``): checkov CKV_AWS_272.

Sources: Lambda "Configuring code signing for Lambda"
(https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html) and AWS Signer
"Signing profiles" / "Signing jobs" (https://docs.aws.amazon.com/signer/latest/developerguide/).

:class:`CodeSigning` declares

- an AWS Signer profile for the ``AWSLambda-SHA384-ECDSA`` platform (signature validity in months);
- an ``aws.lambda_.CodeSigningConfig`` trusting that profile's version (plus any configured
  ``trustedProfileVersionArns``) with ``untrusted_artifact_on_deployment: "Enforce"``: Lambda
  refuses to create or update a function (or add a layer) whose package is unsigned, signed by
  another profile, expired or revoked;
- a versioned, CMK-encrypted artifact bucket (:class:`~infra.components.storage.SecureBucket`;
  Signer requires a versioned source bucket).

:meth:`CodeSigning.signed_package` uploads one function package to ``unsigned/<name>.zip``, runs a
Signer job on that object version into ``signed/<name>/`` and returns the signed object's bucket
and key, which the function deploys from (``s3_bucket`` / ``s3_key``). A changed package is a new
object version, so a new signing job and a new signed object: the function is updated only with
signed code. The identity that runs ``pulumi up`` needs ``signer:StartSigningJob`` on the profile,
``s3:GetObject``/``s3:PutObject`` on the bucket and use of the data CMK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.storage import SecureBucket, SecureBucketArgs

PLATFORM_ID = "AWSLambda-SHA384-ECDSA"
ENFORCE = "Enforce"
UNSIGNED_PREFIX = "unsigned/"
SIGNED_PREFIX = "signed/"


def profile_name(prefix: str) -> str:
    """Signer profile names allow only ``[0-9A-Za-z_]{2,64}``: ``secure-mail-api-dev`` becomes
    ``secure_mail_api_dev_lambda``."""
    name = f"{prefix.replace('-', '_')}_lambda"
    if len(name) > 64:
        raise ValueError(f"signing profile name {name!r} is longer than 64 characters; use a shorter stack name")
    return name


@dataclass
class CodeSigningArgs:
    """Inputs of :class:`CodeSigning`. Validity in months (1..135)."""

    prefix: str
    data_key_arn: pulumi.Input[str]
    access_log_bucket: pulumi.Input[str]
    signature_validity_months: int = 135
    trusted_profile_version_arns: Sequence[str] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class CodeSigning(pulumi.ComponentResource):
    """Signer profile + enforcing code-signing config + artifact bucket.

    Attributes: ``profile`` (``aws.signer.SigningProfile``), ``config``
    (``aws.lambda_.CodeSigningConfig``; attach ``config.arn`` as a function's
    ``code_signing_config_arn``), ``artifacts`` (:class:`SecureBucket`).
    """

    def __init__(self, name: str, args: CodeSigningArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:security:CodeSigning", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._name = name
        self.profile = aws.signer.SigningProfile(
            f"{name}-profile", name=profile_name(args.prefix), platform_id=PLATFORM_ID,
            signature_validity_period={"type": "MONTHS", "value": args.signature_validity_months},
            tags=dict(args.tags), opts=child)
        self.config = aws.lambda_.CodeSigningConfig(
            f"{name}-config",
            description=f"{args.prefix}: only code signed by {profile_name(args.prefix)} deploys",
            allowed_publishers={"signing_profile_version_arns": [self.profile.version_arn,
                                                                 *args.trusted_profile_version_arns]},
            policies={"untrusted_artifact_on_deployment": ENFORCE},
            tags=dict(args.tags), opts=child)
        self.artifacts = SecureBucket(
            f"{name}-artifacts",
            SecureBucketArgs(kms_key_arn=args.data_key_arn, access_log_bucket=args.access_log_bucket,
                             access_log_prefix="s3/artifacts/", noncurrent_days=30, tags=args.tags),
            opts=child)
        self.register_outputs({"code_signing_config_arn": self.config.arn,
                               "profile_version_arn": self.profile.version_arn})

    def function_code(self, name: str, archive: pulumi.Archive, parent: pulumi.Resource) -> dict[str, Any]:
        """The ``aws.lambda_.Function`` code arguments for ``archive`` signed by this profile:
        ``s3_bucket``/``s3_key`` of the signed object and the enforcing ``code_signing_config_arn``."""
        s3_bucket, s3_key = self.signed_package(name, archive, parent=parent)
        return {"s3_bucket": s3_bucket, "s3_key": s3_key, "code_signing_config_arn": self.config.arn}

    def signed_package(self, name: str, archive: pulumi.Archive,
                       parent: pulumi.Resource) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """Upload ``archive`` as ``unsigned/<name>.zip``, sign it, return ``(bucket, key)`` of the
        signed object. Resources are named ``<name>-package`` / ``<name>-signing-job`` under ``parent``."""
        opts = pulumi.ResourceOptions(parent=parent)
        bucket = self.artifacts.bucket.id
        package = aws.s3.BucketObjectv2(
            f"{name}-package", bucket=bucket, key=f"{UNSIGNED_PREFIX}{name}.zip", source=archive,
            content_type="application/zip", opts=opts)
        job = aws.signer.SigningJob(
            f"{name}-signing-job", profile_name=self.profile.name,
            source={"s3": {"bucket": bucket, "key": package.key, "version": package.version_id}},
            destination={"s3": {"bucket": bucket, "prefix": f"{SIGNED_PREFIX}{name}/"}},
            ignore_signing_job_failure=False, opts=opts)
        signed = job.signed_objects.apply(_signed_s3)
        return signed.apply(lambda o: o[0]), signed.apply(lambda o: o[1])


def _signed_s3(objs: Sequence[aws.signer.outputs.SigningJobSignedObject]) -> tuple[str, str]:
    """``(bucket, key)`` of the S3 object a signing job wrote (its ``signed_objects[0].s3s[0]``);
    ``ValueError`` when the job reports none (AWS Signer StartSigningJob writes one object per job)."""
    s3s = objs[0].s3s if objs else None
    if not s3s or s3s[0].bucket is None or s3s[0].key is None:
        raise ValueError("the signing job reported no signed S3 object (bucket and key)")
    return s3s[0].bucket, s3s[0].key
