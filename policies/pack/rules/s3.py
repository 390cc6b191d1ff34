"""S3 rules: docs/security-baseline.md §1.3 (CloudTrail, access-log and archive buckets).

pulumi-aws v7 configures a bucket through separate resources (``BucketPublicAccessBlock``,
``BucketServerSideEncryptionConfiguration``, ``BucketVersioning``, ...); the inline ``aws.s3.Bucket``
arguments are deprecated. So these are stack rules: each ``aws.s3.Bucket`` needs its companion
resource, and each companion must be configured right. (This is also why the compliance-ready S3
policies, which read the inline arguments, report false violations on a v7 program.)

Sources: Security Hub S3 controls (https://docs.aws.amazon.com/securityhub/latest/userguide/s3-controls.html),
checkov 3.3.30, cdk-nag AwsSolutions S1/S2/S10, @pulumi/aws-compliance-policies ``aws-s3-bucket-*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pulumi_policy import PolicyResource

from ._base import (
    Finding,
    as_list,
    denies_insecure_transport,
    get,
    is_true,
    links,
    of_type,
    parse_doc,
    public_allows,
    stack_rule,
)

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BPA = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_BPA = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SSE_V2 = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
LOGGING = "aws:s3/bucketLogging:BucketLogging"
LOGGING_V2 = "aws:s3/bucketLoggingV2:BucketLoggingV2"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
LIFECYCLE_V2 = "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
VERSIONING_V2 = "aws:s3/bucketVersioningV2:BucketVersioningV2"
BPA_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def buckets(resources) -> list[PolicyResource]:
    return of_type(resources, BUCKET) + of_type(resources, BUCKET_V2)


def _companions(resources, types) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in types]


def _per_bucket(resources, types, what: str, fix: str,
                check: Callable[[PolicyResource], list[Finding]]) -> Iterator[Finding]:
    """Each bucket needs a companion of ``types``; each companion is checked with ``check``."""
    comps = _companions(resources, types)
    for b in buckets(resources):
        if not any(links(c, "bucket", b) for c in comps):
            yield Finding(what, "missing", fix, b)
    for c in comps:
        for f in check(c):
            yield Finding(f.prop, f.bad, f.fix, c)


def access_log_targets(resources) -> list[PolicyResource]:
    """Buckets that receive S3 server access logs (targets of a BucketLogging)."""
    logs = _companions(resources, (LOGGING, LOGGING_V2))
    return [b for b in buckets(resources) if any(links(lg, "targetBucket", b) for lg in logs)]


@stack_rule("s3-account-public-access-block", ["S3.1"],
            "The account blocks public access to S3 (all four settings)", types=[ACCOUNT_BPA])
def account_bpa(resources, cfg):
    """S3.1 (FSBP): one ``aws.s3.AccountPublicAccessBlock`` with all four flags true."""
    blocks = of_type(resources, ACCOUNT_BPA)
    if not blocks:
        yield Finding("AccountPublicAccessBlock", "missing",
                      "aws.s3.AccountPublicAccessBlock with all four block/ignore/restrict flags true")
    for r in blocks:
        for flag in BPA_FLAGS:
            if not is_true(r.props.get(flag)):
                yield Finding(flag, repr(r.props.get(flag)), f"{flag}=true", r)


def _bpa_check(c):
    return [Finding(flag, repr(c.props.get(flag)), f"{flag}=true") for flag in BPA_FLAGS if not is_true(c.props.get(flag))]


@stack_rule("s3-bucket-public-access-block",
            ["S3.8", "S3.2", "S3.3", "CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56", "CKV2_AWS_6",
             "AwsSolutions-S2"], "Every bucket has a public access block with all four flags", types=[BUCKET, BPA])
def bucket_bpa(resources, cfg):
    """S3.8/S3.2/S3.3, CKV_AWS_53-56, CKV2_AWS_6, AwsSolutions-S2: each bucket has a
    ``BucketPublicAccessBlock`` with blockPublicAcls, blockPublicPolicy, ignorePublicAcls and
    restrictPublicBuckets all true."""
    yield from _per_bucket(resources, (BPA,), "BucketPublicAccessBlock", "aws.s3.BucketPublicAccessBlock(bucket=b.id, "
                           "<all four flags>=True)", _bpa_check)


@stack_rule("s3-bucket-sse-kms",
            ["S3.17", "CKV_AWS_145", "CKV_AWS_19", "PCP-aws-s3-bucket-configure-server-side-encryption-customer-managed-key",
             "PCP-aws-s3-bucket-enable-server-side-encryption-bucket-key"],
            "Every bucket is encrypted with a customer-managed KMS key, bucket key on, SSE-C blocked",
            types=[BUCKET, SSE])
def bucket_sse(resources, cfg):
    """S3.17 / CKV_AWS_145 / CKV_AWS_19 / compliance-ready: a ``BucketServerSideEncryptionConfiguration``
    whose default is ``sseAlgorithm=aws:kms`` with ``kmsMasterKeyId`` (a CMK) and ``bucketKeyEnabled``.
    ``blockedEncryptionTypes`` must include ``SSE-C``.

    Exception: a bucket that receives S3 *server access logs* may use SSE-S3 (``AES256``) because S3
    log delivery does not support SSE-KMS destinations (S3 user guide, "Enabling server access
    logging"); Security Hub still reports S3.17 for it, so record that exception there too.
    """
    log_targets = {b.urn for b in access_log_targets(resources)}
    sse = _companions(resources, (SSE, SSE_V2))
    for b in buckets(resources):
        mine = [c for c in sse if links(c, "bucket", b)]
        if not mine:
            yield Finding("BucketServerSideEncryptionConfiguration", "missing",
                          "aws.s3.BucketServerSideEncryptionConfiguration(bucket=b.id, rules=[{sse_algorithm: "
                          "'aws:kms', kms_master_key_id: key.arn, bucket_key_enabled: True}])", b)
        for c in mine if b.urn in log_targets else []:
            sse.remove(c)
            for rule in as_list(c.props.get("rules")):
                if get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm") not in ("AES256", "aws:kms"):
                    yield Finding("rules.applyServerSideEncryptionByDefault.sseAlgorithm",
                                  repr(get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")),
                                  "'AES256' (access-log target) or 'aws:kms'", c)
    for c in sse:
        rules = as_list(c.props.get("rules"))
        if not rules:
            yield Finding("rules", "empty", "one rule with applyServerSideEncryptionByDefault", c)
        for rule in rules:
            algo = get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
            if algo not in ("aws:kms", "aws:kms:dsse"):
                yield Finding("rules.applyServerSideEncryptionByDefault.sseAlgorithm", repr(algo), "'aws:kms'", c)
            elif not get(rule, "applyServerSideEncryptionByDefault.kmsMasterKeyId"):
                yield Finding("rules.applyServerSideEncryptionByDefault.kmsMasterKeyId", "unset (AWS managed key)",
                              "kmsMasterKeyId=<customer-managed key ARN>", c)
            if not is_true(rule.get("bucketKeyEnabled")):
                yield Finding("rules.bucketKeyEnabled", repr(rule.get("bucketKeyEnabled")), "bucketKeyEnabled=true", c)
            if "SSE-C" not in as_list(rule.get("blockedEncryptionTypes")):
                yield Finding("rules.blockedEncryptionTypes", repr(rule.get("blockedEncryptionTypes")),
                              "blockedEncryptionTypes=['SSE-C']", c)


@stack_rule("s3-bucket-tls-only", ["S3.5", "AwsSolutions-S10"],
            "Every bucket policy denies requests without TLS (aws:SecureTransport=false)", types=[BUCKET, POLICY])
def bucket_tls_only(resources, cfg):
    """S3.5 (FSBP) / AwsSolutions-S10: a ``BucketPolicy`` with a Deny for Principal ``*`` on
    ``aws:SecureTransport`` = false."""
    yield from _per_bucket(
        resources, (POLICY,), "BucketPolicy", "aws.s3.BucketPolicy denying requests with aws:SecureTransport=false",
        lambda c: [] if denies_insecure_transport(parse_doc(c.props.get("policy"))) else
        [Finding("policy", "without a Deny on aws:SecureTransport=false",
                 "a Deny statement, Principal '*', Condition Bool aws:SecureTransport 'false'")])


@stack_rule("s3-bucket-policy-not-public", ["S3.6", "CKV_AWS_70", "CKV_AWS_93"],
            "Bucket policies grant nothing to '*' without a condition", types=[POLICY])
def bucket_policy_not_public(resources, cfg):
    """S3.6 / CKV_AWS_70 / CKV_AWS_93: no Allow to Principal ``*`` without a Condition (service
    principals use ``aws:SourceArn``/``aws:SourceAccount``)."""
    for c in of_type(resources, POLICY):
        for s in public_allows(parse_doc(c.props.get("policy"))):
            yield Finding("policy", f"statement {s.get('Sid', '?')!r} allows Principal '*'",
                          "a service principal with aws:SourceArn/aws:SourceAccount", c)


@stack_rule("s3-bucket-ownership-enforced", ["S3.12", "CKV2_AWS_65"],
            "Every bucket disables ACLs (BucketOwnerEnforced)", types=[BUCKET, OWNERSHIP])
def bucket_ownership(resources, cfg):
    """S3.12 / CKV2_AWS_65: ``BucketOwnershipControls`` with ``rule.objectOwnership=BucketOwnerEnforced``."""
    yield from _per_bucket(
        resources, (OWNERSHIP,), "BucketOwnershipControls",
        "aws.s3.BucketOwnershipControls(bucket=b.id, rule={'object_ownership': 'BucketOwnerEnforced'})",
        lambda c: [] if get(c.props, "rule.objectOwnership") == "BucketOwnerEnforced" else
        [Finding("rule.objectOwnership", repr(get(c.props, "rule.objectOwnership")), "'BucketOwnerEnforced'")])


@stack_rule("s3-bucket-access-logging", ["S3.9", "CKV_AWS_18", "AwsSolutions-S1", "AWSG-s3-bucket-logging-enabled"],
            "Every bucket (except the access-log bucket itself) has server access logging", types=[BUCKET, LOGGING])
def bucket_logging(resources, cfg):
    """S3.9 / CKV_AWS_18 / AwsSolutions-S1 / AWSGuard ``s3-bucket-logging-enabled`` (which reads the
    deprecated inline ``loggings``; this rule reads ``aws.s3.BucketLogging``): each bucket has a
    BucketLogging with a ``targetBucket``. The access-log target bucket itself is exempt (logging it
    into itself would loop; AWS advises against it); Security Hub will still list it under S3.9."""
    targets = {b.urn for b in access_log_targets(resources)}
    comps = _companions(resources, (LOGGING, LOGGING_V2))
    for b in buckets(resources):
        if b.urn not in targets and not any(links(c, "bucket", b) for c in comps):
            yield Finding("BucketLogging", "missing",
                          "aws.s3.BucketLogging(bucket=b.id, target_bucket=<access-log bucket>, target_prefix='s3/')", b)
    for c in comps:
        if not c.props.get("targetBucket"):
            yield Finding("targetBucket", "unset", "targetBucket=<access-log bucket>", c)


def _lifecycle_check(c):
    rules = [r for r in as_list(c.props.get("rules")) if r.get("status") == "Enabled"]
    if not any(get(r, "abortIncompleteMultipartUpload.daysAfterInitiation") for r in rules):
        return [Finding("rules.abortIncompleteMultipartUpload", "missing",
                        "an Enabled rule with abort_incomplete_multipart_upload={'days_after_initiation': 7}")]
    return []


@stack_rule("s3-bucket-lifecycle", ["S3.13", "CKV2_AWS_61", "CKV_AWS_300"],
            "Every bucket has a lifecycle configuration that aborts incomplete multipart uploads",
            types=[BUCKET, LIFECYCLE])
def bucket_lifecycle(resources, cfg):
    """S3.13 / CKV2_AWS_61 / CKV_AWS_300: a ``BucketLifecycleConfiguration`` with an Enabled rule
    carrying ``abortIncompleteMultipartUpload.daysAfterInitiation``."""
    yield from _per_bucket(resources, (LIFECYCLE, LIFECYCLE_V2), "BucketLifecycleConfiguration",
                           "aws.s3.BucketLifecycleConfiguration(bucket=b.id, rules=[...abort_incomplete_multipart_upload])",
                           _lifecycle_check)


@stack_rule("s3-bucket-versioning", ["S3.14", "CKV_AWS_21"], "Every bucket has versioning enabled",
            types=[BUCKET, VERSIONING])
def bucket_versioning(resources, cfg):
    """S3.14 / CKV_AWS_21: ``BucketVersioning`` with ``versioningConfiguration.status=Enabled``."""
    yield from _per_bucket(
        resources, (VERSIONING, VERSIONING_V2), "BucketVersioning",
        "aws.s3.BucketVersioning(bucket=b.id, versioning_configuration={'status': 'Enabled'})",
        lambda c: [] if get(c.props, "versioningConfiguration.status") == "Enabled" else
        [Finding("versioningConfiguration.status", repr(get(c.props, "versioningConfiguration.status")), "'Enabled'")])


OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
OBJECT_LOCK_V2 = "aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2"
FIREHOSE = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"
ARCHIVE_TAG = ("secure-mail-api:purpose", "request-archive")


def archive_buckets(resources) -> list[PolicyResource]:
    """Buckets that archive records: the S3 destination of a Firehose delivery stream, or tagged
    ``secure-mail-api:purpose=request-archive``."""
    streams = of_type(resources, FIREHOSE)
    out = []
    for b in buckets(resources):
        tagged = (b.props.get("tags") or {}).get(ARCHIVE_TAG[0]) == ARCHIVE_TAG[1]
        if tagged or any(links(s, "extendedS3Configuration.bucketArn", b) for s in streams):
            out.append(b)
    return out


@stack_rule("s3-archive-object-lock", ["S3.15", "CKV_AWS_143"],
            "Record archive buckets have Object Lock with a default retention",
            options={"minRetentionDays": ({"type": "integer", "minimum": 1}, 365)},
            types=[BUCKET, OBJECT_LOCK, FIREHOSE])
def archive_object_lock(resources, cfg):
    """S3.15 / CKV_AWS_143 for the buckets that hold the request records (issue 13 part 2): the bucket
    is created with ``objectLockEnabled`` and a ``BucketObjectLockConfiguration`` sets a default
    retention in GOVERNANCE or COMPLIANCE mode of at least ``minRetentionDays`` days (default 365),
    so no record can be deleted or overwritten before then (S3 user guide, "Locking objects with
    Object Lock")."""
    locks = _companions(resources, (OBJECT_LOCK, OBJECT_LOCK_V2))
    minimum = int(cfg.get("minRetentionDays", 365))
    for b in archive_buckets(resources):
        if not is_true(b.props.get("objectLockEnabled")):
            yield Finding("objectLockEnabled", repr(b.props.get("objectLockEnabled")),
                          "aws.s3.Bucket(object_lock_enabled=True) (set at creation)", b)
        mine = [c for c in locks if links(c, "bucket", b)]
        if not mine:
            yield Finding("BucketObjectLockConfiguration", "missing",
                          "aws.s3.BucketObjectLockConfiguration(bucket=b.id, rule={default_retention: "
                          "{mode: 'GOVERNANCE', days: N}})", b)
        for c in mine:
            mode = get(c.props, "rule.defaultRetention.mode")
            days = get(c.props, "rule.defaultRetention.days") or 0
            years = get(c.props, "rule.defaultRetention.years") or 0
            if mode not in ("GOVERNANCE", "COMPLIANCE"):
                yield Finding("rule.defaultRetention.mode", repr(mode), "'GOVERNANCE' or 'COMPLIANCE'", c)
            if max(float(days), float(years) * 365) < minimum:
                yield Finding("rule.defaultRetention.days", repr(days), f">= {minimum}", c)
