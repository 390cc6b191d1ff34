"""KMS, S3, DynamoDB, SQS, SNS controls (docs/security-baseline.md §1.2-1.6). Each test returns its Output (P5)."""

from __future__ import annotations

import json

import pulumi

from infra.components.encryption import ADMIN_SID


@pulumi.runtime.test
def test_kms_4_rotation_enabled_on_every_key(dev_run, h):
    """KMS.4 / CKV_AWS_7 / AwsSolutions-KMS5: automatic rotation, period 90..2560 days."""

    def check(resources):
        keys = h.of_type(resources, "aws:kms/key:Key")
        encryption_keys = [k for k in keys if k.inputs.get("customerMasterKeySpec", "SYMMETRIC_DEFAULT")
                           == "SYMMETRIC_DEFAULT"]
        assert len(encryption_keys) >= 2
        for key in encryption_keys:
            assert key.inputs["enableKeyRotation"] is True
            assert 90 <= key.inputs["rotationPeriodInDays"] <= 2560
        # KMS rotates only symmetric encryption keys: the HMAC key is the one exception.
        assert [k.inputs["customerMasterKeySpec"] for k in keys if k not in encryption_keys] == ["HMAC_256"]

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_kms_3_deletion_window_and_enabled(dev_run, h):
    """KMS.3 / CKV_AWS_227: 30-day deletion window, key enabled, description, no lockout bypass."""

    def check(resources):
        for key in h.of_type(resources, "aws:kms/key:Key"):
            i = key.inputs
            assert i["deletionWindowInDays"] == 30.0 and i["isEnabled"] is True
            assert i["description"] and i["bypassPolicyLockoutSafetyCheck"] is False

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_kms_5_key_policy_keeps_admin_statement_and_no_wildcard_principal(dev_run):
    """KMS.5 / P3: each key policy starts with the account-root admin statement; no '*' principal."""
    enc = dev_run.stack.encryption

    def check(policies):
        for doc in policies:
            stmts = json.loads(doc)["Statement"]
            admin = stmts[0]
            assert admin["Sid"] == ADMIN_SID and admin["Effect"] == "Allow"
            assert admin["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
            assert admin["Action"] == "kms:*"
            for s in stmts:
                assert s["Principal"] != "*" and s["Principal"].get("AWS") != "*"

    return pulumi.Output.all(enc.data_key.policy, enc.audit_key.policy).apply(check)


@pulumi.runtime.test
def test_kms_service_grants_for_logs_cloudtrail_and_alarm_topic(dev_run):
    """§1.2 service grants: logs (encryption-context scoped), CloudTrail, CloudWatch -> SNS on the
    audit key; SES -> SNS and SNS -> SQS on the data key; each scoped to this account."""
    enc = dev_run.stack.encryption

    def check(v):
        data, audit = (json.loads(d)["Statement"] for d in v)
        audit_services = {s["Principal"].get("Service"): s for s in audit if "Service" in s["Principal"]}
        assert "logs.eu-west-1.amazonaws.com" in audit_services
        assert "kms:EncryptionContext:aws:logs:arn" in json.dumps(audit_services["logs.eu-west-1.amazonaws.com"])
        assert "cloudtrail.amazonaws.com" in audit_services
        cw = audit_services["cloudwatch.amazonaws.com"]
        assert set(cw["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        assert cw["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
        data_services = {s["Principal"].get("Service") for s in data if "Service" in s["Principal"]}
        assert data_services == {"ses.amazonaws.com", "sns.amazonaws.com"}

    return pulumi.Output.all(enc.data_key.policy, enc.audit_key.policy).apply(check)


@pulumi.runtime.test
def test_kms_1_2_no_iam_policy_allows_decrypt_on_every_key(dev_run, h):
    """KMS.1 / KMS.2: no IAM role policy grants kms:Decrypt / kms:ReEncryptFrom on Resource '*'."""

    def check(resources):
        for rp in h.of_type(resources, "aws:iam/rolePolicy:RolePolicy"):
            for s in h.statements(rp.inputs["policy"]):
                actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                if any(a.startswith("kms:") for a in actions):
                    assert s["Resource"] != "*" and "*" not in s["Resource"], rp.name

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_s3_1_account_block_public_access(dev_run, h):
    """S3.1: account-level Block Public Access, all four flags."""

    def check(resources):
        (bpa,) = h.of_type(resources, "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock")
        assert all(bpa.inputs[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                    "restrictPublicBuckets"))

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_s3_8_every_bucket_blocks_public_access_and_disables_acls(dev_run, h):
    """S3.8 / S3.2 / S3.3 / S3.12 / CKV2_AWS_6 / CKV2_AWS_65: BPA + BucketOwnerEnforced per bucket."""

    def check(resources):
        buckets = {b.name for b in h.of_type(resources, "aws:s3/bucket:Bucket")}
        bpas = {r.name.removesuffix("-public-access-block"): r.inputs
                for r in h.of_type(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")}
        owners = {r.name.removesuffix("-ownership"): r.inputs
                  for r in h.of_type(resources, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")}
        assert buckets == set(bpas) == set(owners)
        for b in buckets:
            assert all(bpas[b][k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                     "restrictPublicBuckets"))
            assert owners[b]["rule"]["objectOwnership"] == "BucketOwnerEnforced"

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_s3_17_sse_kms_with_cmk_except_access_log_target(dev_run, h):
    """S3.17 / CKV_AWS_145: SSE-KMS with a CMK + bucket key; SSE-C blocked. The server-access-log
    target bucket must use SSE-S3 (S3 cannot deliver access logs to SSE-KMS buckets)."""

    def check(resources):
        sse = {r.name.removesuffix("-sse"): r.inputs["rules"][0] for r in
               h.of_type(resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")}
        assert set(sse) == {b.name for b in h.of_type(resources, "aws:s3/bucket:Bucket")}
        for bucket, rule in sse.items():
            assert rule["blockedEncryptionTypes"] == ["SSE-C"]
            default = rule["applyServerSideEncryptionByDefault"]
            if bucket == "storage-access-logs":
                assert default == {"sseAlgorithm": "AES256"}
            else:
                assert default["sseAlgorithm"] == "aws:kms"
                assert default["kmsMasterKeyId"].startswith("arn:aws:kms:")
                assert rule["bucketKeyEnabled"] is True

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_s3_5_and_s3_6_bucket_policies_tls_only_and_no_public_grant(dev_run, h):
    """S3.5 / AwsSolutions-S10: deny without TLS; S3.6: Allow only to scoped service principals."""

    def check(resources):
        policies = h.of_type(resources, "aws:s3/bucketPolicy:BucketPolicy")
        assert len(policies) == len(h.of_type(resources, "aws:s3/bucket:Bucket"))
        for p in policies:
            stmts = h.statements(p.inputs["policy"])
            deny = [s for s in stmts if s["Effect"] == "Deny"]
            assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in stmts:
                if s["Effect"] == "Allow":
                    assert set(s["Principal"]) == {"Service"} and s["Condition"]

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_s3_9_13_14_logging_lifecycle_versioning(dev_run, h):
    """S3.9 (access logging, except the log bucket itself), S3.13 (lifecycle + abort uploads),
    S3.14 (versioning) on every bucket."""

    def check(resources):
        buckets = {b.name for b in h.of_type(resources, "aws:s3/bucket:Bucket")}
        logging = {r.name.removesuffix("-logging") for r in h.of_type(resources, "aws:s3/bucketLogging:BucketLogging")}
        assert logging == buckets - {"storage-access-logs"}
        for r in h.of_type(resources, "aws:s3/bucketVersioning:BucketVersioning"):
            assert r.inputs["versioningConfiguration"]["status"] == "Enabled"
        lifecycle = h.of_type(resources, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        assert len(lifecycle) == len(buckets)
        for r in lifecycle:
            assert r.inputs["rules"][0]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7.0

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_dynamodb_pitr_cmk_deletion_protection_on_demand(dev_run):
    """DynamoDB.2 (PITR 35 d), CKV_AWS_119 (CMK), DynamoDB.6 (deletion protection), DynamoDB.1."""
    t = dev_run.stack.storage.table

    def check(v):
        pitr, sse, protection, billing, key_arn, hash_key = v
        assert pitr["enabled"] is True and pitr["recovery_period_in_days"] == 35
        assert sse["enabled"] is True and sse["kms_key_arn"] == key_arn
        assert protection is True and billing == "PAY_PER_REQUEST"
        assert hash_key == "message_id"  # the handler's partition key (infra/functions)

    return pulumi.Output.all(t.point_in_time_recovery, t.server_side_encryption, t.deletion_protection_enabled,
                             t.billing_mode, dev_run.stack.encryption.data_key.arn, t.hash_key).apply(check)


@pulumi.runtime.test
def test_sqs_1_3_queues_cmk_tls_only_dlq(dev_run, h):
    """SQS.1 (CMK, not alias/aws/sqs), SQS.3 (no public policy), SQS4 (TLS only), SQS3 (DLQ)."""

    def check(resources):
        queues = h.of_type(resources, "aws:sqs/queue:Queue")
        for q in queues:
            assert q.inputs["kmsMasterKeyId"].startswith("arn:aws:kms:")
            assert "sqsManagedSseEnabled" not in q.inputs or q.inputs["sqsManagedSseEnabled"] is False
        feedback = next(q for q in queues if q.name == "email-feedback-queue")
        redrive = json.loads(feedback.inputs["redrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith("storage-dlq") and redrive["maxReceiveCount"] == 5
        policies = h.of_type(resources, "aws:sqs/queuePolicy:QueuePolicy")
        assert len(policies) == len(queues)
        for p in policies:
            stmts = h.statements(p.inputs["policy"])
            assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                       for s in stmts)
            for s in stmts:
                if s["Effect"] == "Allow":
                    assert s["Principal"] != "*" and "aws:SourceArn" in json.dumps(s["Condition"])

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_sns_1_4_topics_cmk_no_public_tls_only(dev_run, h):
    """SNS.1 (CMK), SNS.4 (only service principals of this account), AwsSolutions-SNS3 (TLS)."""

    def check(resources):
        topics = h.of_type(resources, "aws:sns/topic:Topic")
        for t in topics:
            assert t.inputs["kmsMasterKeyId"].startswith("arn:aws:kms:")
            assert "alias/aws/sns" not in t.inputs["kmsMasterKeyId"]
        policies = h.of_type(resources, "aws:sns/topicPolicy:TopicPolicy")
        assert len(policies) == len(topics)
        for p in policies:
            stmts = h.statements(p.inputs["policy"])
            assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                       for s in stmts)
            for s in stmts:
                if s["Effect"] == "Allow":
                    assert set(s["Principal"]) == {"Service"}
                    assert s["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"

    return h.check_recorded(dev_run, check)
