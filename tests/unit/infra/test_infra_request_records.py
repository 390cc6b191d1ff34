"""Issue 13 part 2 under mocks: every request on the record. The API access log is structured JSON
with source, time, operation, caller, outcome and size (never a key or content), joined with the
handler's request record by request id; both are delivered by subscription filters to a Firehose
stream that writes to an archive bucket with versioning and Object Lock (GOVERNANCE, retention from
stack config). Each Pulumi test returns the Output it checks (P5)."""

from __future__ import annotations

import json

import pulumi

from infra.components.api import ACCESS_LOG_FORMAT
from infra.components.audit import REQUEST_RECORD_FILTER

#: The fields the access log must carry, by what they answer.
REQUIRED = {
    "join": {"requestId"},
    "source": {"sourceIp", "userAgent"},
    "time": {"requestTime", "requestTimeEpoch"},
    "operation": {"httpMethod", "resourcePath", "stage"},
    "caller": {"apiKeyId", "clientId"},
    "outcome": {"status", "errorResponseType", "authorizeStatus", "wafResponseCode", "integrationStatus"},
    "size": {"responseLength"},
}


def test_access_log_format_names_every_required_field_and_no_secret():
    for what, fields in REQUIRED.items():
        assert fields <= set(ACCESS_LOG_FORMAT), what
    values = set(ACCESS_LOG_FORMAT.values())
    assert all(v.startswith("$context.") for v in values)
    for secret in ("$context.identity.apiKey", "$context.authorizer.claims.scope"):
        assert secret not in values
    assert not any("body" in v.lower() or "header" in v.lower() for v in values)


@pulumi.runtime.test
def test_stage_writes_the_json_access_log_format(dev_run):
    stage = dev_run.stack.api.stage

    def check(settings):
        assert json.loads(settings["format"]) == ACCESS_LOG_FORMAT

    return stage.access_log_settings.apply(check)


@pulumi.runtime.test
def test_archive_bucket_is_versioned_and_object_locked_in_governance_mode(dev_run, h):
    archive = dev_run.stack.request_archive
    retention = dev_run.stack.config.log_archive.retention_days

    def check(resources):
        by_name = {r.name: r for r in resources}
        bucket = by_name["request-archive-bucket"]
        assert bucket.inputs["objectLockEnabled"] is True
        lock = by_name["request-archive-bucket-object-lock"]
        assert lock.inputs["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": retention}
        assert by_name["request-archive-bucket-versioning"].inputs["versioningConfiguration"]["status"] == "Enabled"
        sse = by_name["request-archive-bucket-sse"].inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert sse["sseAlgorithm"] == "aws:kms"
        (lifecycle,) = by_name["request-archive-bucket-lifecycle"].inputs["rules"]
        assert lifecycle["noncurrentVersionExpiration"]["noncurrentDays"] > retention
        assert retention == 400  # Pulumi.dev.yaml logArchive.retentionDays

    return pulumi.Output.all(archive.urn, *h.component_urns(dev_run)).apply(lambda _: check(dev_run.resources))


@pulumi.runtime.test
def test_archive_is_fed_by_subscriptions_through_an_encrypted_firehose(dev_run, h):
    archive = dev_run.stack.request_archive

    def check(resources):
        by_name = {r.name: r for r in resources}
        stream = by_name["request-archive-stream"].inputs
        assert stream["destination"] == "extended_s3"
        assert stream["serverSideEncryption"]["keyType"] == "CUSTOMER_MANAGED_CMK"
        s3 = stream["extendedS3Configuration"]
        assert s3["bucketArn"] == "arn:aws:s3:::request-archive-bucket-bucket"
        assert s3["kmsKeyArn"].startswith("arn:aws:kms:") and s3["compressionFormat"] == "GZIP"
        assert [p["type"] for p in s3["processingConfiguration"]["processors"]] == [
            "Decompression", "CloudWatchLogProcessing"]
        access = by_name["request-archive-api-access"].inputs
        records = by_name["request-archive-request-records"].inputs
        assert access["logGroup"] == "/secure-mail-api/secure-mail-api-dev/api-access"
        assert access["filterPattern"] == ""
        assert records["logGroup"] == "/secure-mail-api/secure-mail-api-dev/send-message"
        assert records["filterPattern"] == REQUEST_RECORD_FILTER
        for sub in (access, records):
            assert sub["destinationArn"].endswith(":request-archive-stream")
            assert sub["roleArn"].endswith(":request-archive-logs-role")
        logs_policy = h.policy(by_name["request-archive-logs-policy"].inputs["policy"])
        (statement,) = logs_policy["Statement"]
        assert statement["Action"] == ["firehose:PutRecord", "firehose:PutRecordBatch"]
        assert statement["Resource"][0].endswith(":deliverystream/secure-mail-api-dev-request-records")

    return pulumi.Output.all(archive.urn, *h.component_urns(dev_run)).apply(lambda _: check(dev_run.resources))


@pulumi.runtime.test
def test_pack_rule_sees_the_archive_bucket(dev_run, h):
    """The CrossGuard rule s3-archive-object-lock is not vacuous on the dev program: it selects the
    request archive (the Firehose destination), and only it."""
    from policies.pack.evaluate import to_policy_resources
    from policies.pack.rules.s3 import archive_buckets

    def check(_):
        names = [b.name for b in archive_buckets(to_policy_resources(dev_run.resources))]
        assert names == ["request-archive-bucket"], names

    return pulumi.Output.all(dev_run.stack.request_archive.urn, *h.component_urns(dev_run)).apply(check)
