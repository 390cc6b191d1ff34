"""Lambda, CloudTrail, CloudWatch Logs, WAF, Cognito, SES and rotation-role controls
(docs/security-baseline.md §1.7-1.12). Each test returns the Output it checks (P5)."""

from __future__ import annotations

import json

import pulumi

from infra.artifacts import LAMBDA_RUNTIME
from infra.components.waf import MANAGED_GROUPS, REDACTED_HEADERS
from infra.config import LOG_RETENTION_DAYS
from policies.iam import render_policy


@pulumi.runtime.test
def test_lambda_runtime_tracing_concurrency_dlq(dev_run):
    """Lambda.2 (python3.11, the runtime the artifact is built for), CKV_AWS_50 (X-Ray), CKV_AWS_115
    (reserved concurrency), CKV_AWS_116 (DLQ)."""
    fn = dev_run.stack.sender.function

    def check(v):
        runtime, handler, tracing, reserved, dlq, dlq_arn = v
        assert runtime == "python3.11" == LAMBDA_RUNTIME and handler == "send_message.handler"
        assert tracing["mode"] == "Active"
        assert reserved == dev_run.stack.config.lambda_reserved_concurrency > 0
        assert dlq["target_arn"] == dlq_arn

    return pulumi.Output.all(fn.runtime, fn.handler, fn.tracing_config, fn.reserved_concurrent_executions,
                             fn.dead_letter_config, dev_run.stack.storage.dlq.arn).apply(check)


@pulumi.runtime.test
def test_lambda_env_encrypted_with_cmk_and_holds_no_secret(dev_run):
    """CKV_AWS_173 (env KMS CMK) / CKV_AWS_45 (no secrets in env): only the contract names; the
    audit MAC key is passed as its ARN (the key material never leaves KMS)."""
    fn = dev_run.stack.sender.function

    def check(v):
        kms_arn, env, data_key = v
        assert kms_arn == data_key
        assert set(env["variables"]) == {"TABLE_NAME", "CONFIGURATION_SET", "SENDER_IDENTITY", "AUDIT_MAC_KEY_ID",
                                         "ACCESS_LEVELS", "ACCESS_CONSUMERS", "ACCESS_SCOPES", "ACCESS_STACK"}
        assert env["variables"]["AUDIT_MAC_KEY_ID"].startswith("arn:aws:kms:")

    return pulumi.Output.all(fn.kms_key_arn, fn.environment, dev_run.stack.encryption.data_key.arn).apply(check)


@pulumi.runtime.test
def test_lambda_json_logging_to_encrypted_log_group(dev_run):
    """§1.7 logging: JSON format into an explicit CMK-encrypted log group with retention."""
    fn, lg = dev_run.stack.sender.function, dev_run.stack.sender.log_group

    def check(v):
        logging, lg_name, lg_key, retention, audit_key = v
        assert logging["log_format"] == "JSON" and logging["log_group"] == lg_name
        assert lg_key == audit_key and retention >= 365

    return pulumi.Output.all(fn.logging_config, lg.name, lg.kms_key_id, lg.retention_in_days,
                             dev_run.stack.encryption.audit_key.arn).apply(check)


@pulumi.runtime.test
def test_sender_role_least_privilege_from_policy_template(dev_run, h):
    """§1.7 IAM: policies/iam/sender.json rendered with this stack's ARNs; runtime statements
    scoped to the log group and DLQ (X-Ray needs '*'); no wildcard actions."""

    def check(resources):
        roles = {r.name: r.inputs for r in h.of_type(resources, "aws:iam/rolePolicy:RolePolicy")}
        send = h.policy(roles["sender-send-policy"]["policy"])
        sids = {s["Sid"] for s in send["Statement"]}
        assert sids == {s["Sid"] for s in render_policy(
            "sender", ses_identity_arn="a", configuration_set_arn="b", table_arn="c", archive_bucket_arn="d",
            kms_key_arn="e", audit_mac_key_arn="f", from_addresses='["g"]', from_display_names='["h"]',
            region="i")["Statement"]}
        assert "${" not in json.dumps(send)
        for name, inputs in roles.items():
            for s in h.statements(inputs["policy"]):
                actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                assert "*" not in actions and not any(a.endswith(":*") for a in actions), name
                if s["Resource"] == "*":
                    assert all(a.startswith(("xray:", "cloudwatch:PutMetricData", "ec2:Describe"))
                               for a in actions), name

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_rotator_role_least_privilege(dev_run, h):
    """Rotation's needs: role with policies/iam/rotator.json for this stack/region/data key; trust
    limited to this account (default). The scheduled Lambda has its own role
    (test_infra_rotator.py), so no service principal is trusted here."""

    def check(resources):
        role = next(r for r in h.of_type(resources, "aws:iam/role:Role") if r.name == "rotator-role")
        trust = h.policy(role.inputs["assumeRolePolicy"])
        assert len(trust["Statement"]) == 1
        assert trust["Statement"][0]["Principal"] == {"AWS": ["arn:aws:iam::123456789012:root"]}
        pol = next(r for r in h.of_type(resources, "aws:iam/rolePolicy:RolePolicy") if r.name == "rotator-policy")
        doc = h.policy(pol.inputs["policy"])
        expected = render_policy("rotator", region="eu-west-1", stack="dev",
                                 kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/encryption-data-id")
        assert doc == expected

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_cloudtrail_1_2_4_5_trail(dev_run):
    """CloudTrail.1 (multi-region, all mgmt events, logging), .2 (CMK), .4 (validation), .5 (CWL)."""
    t = dev_run.stack.audit.trail

    def check(v):
        multi, glob, logging, validation, selectors, kms, cwl_arn, role, audit_key, lg_arn = v
        assert multi is True and glob is True and logging is True and validation is True
        assert selectors[0]["read_write_type"] == "All" and selectors[0]["include_management_events"] is True
        assert kms == audit_key
        assert cwl_arn == f"{lg_arn}:*" and role

    return pulumi.Output.all(t.is_multi_region_trail, t.include_global_service_events, t.enable_logging,
                             t.enable_log_file_validation, t.event_selectors, t.kms_key_id,
                             t.cloud_watch_logs_group_arn, t.cloud_watch_logs_role_arn,
                             dev_run.stack.encryption.audit_key.arn, dev_run.stack.audit.log_group.arn).apply(check)


@pulumi.runtime.test
def test_cloudtrail_6_7_bucket_private_logged_and_scoped_to_trail(dev_run, h):
    """CloudTrail.6/7: trail bucket BPA + access logging; its policy admits CloudTrail for this trail only."""

    def check(resources):
        pol = next(r for r in h.of_type(resources, "aws:s3/bucketPolicy:BucketPolicy")
                   if r.name == "audit-trail-bucket-policy")
        for s in h.statements(pol.inputs["policy"]):
            if s["Effect"] == "Allow":
                assert s["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
                assert s["Condition"]["StringEquals"]["aws:SourceArn"] == (
                    "arn:aws:cloudtrail:eu-west-1:123456789012:trail/secure-mail-api-dev-trail")
        assert any(r.name == "audit-trail-bucket-logging" for r in resources)
        assert any(r.name == "audit-trail-bucket-public-access-block" for r in resources)

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_ckv_aws_252_trail_notifies_its_own_encrypted_topic(dev_run):
    """CKV_AWS_252: the trail names an SNS topic: a dedicated CMK-encrypted one (not the alarm topic)."""
    audit = dev_run.stack.audit

    def check(v):
        topic_name, own_name, key, audit_key, alarm_topic_name = v
        assert topic_name == own_name != alarm_topic_name
        assert key == audit_key

    return pulumi.Output.all(audit.trail.sns_topic_name, audit.notifications.name,
                             audit.notifications.kms_master_key_id, dev_run.stack.encryption.audit_key.arn,
                             dev_run.stack.monitoring.topic.name).apply(check)


@pulumi.runtime.test
def test_cloudwatch_16_every_log_group_cmk_and_retention(dev_run, h):
    """CloudWatch.16 / CKV_AWS_338 / CKV_AWS_158: every log group has retention >= 365 (an allowed
    CloudWatch value) and a KMS key; the WAF group uses the aws-waf-logs- prefix."""

    def check(resources):
        groups = h.of_type(resources, "aws:cloudwatch/logGroup:LogGroup")
        assert len(groups) >= 5  # sender, API access, API execution, WAF, CloudTrail
        for g in groups:
            assert int(g.inputs["retentionInDays"]) in LOG_RETENTION_DAYS
            assert g.inputs["kmsKeyId"].startswith("arn:aws:kms:")
        assert any(g.inputs["name"].startswith("aws-waf-logs-") for g in groups)
        assert any(g.inputs["name"].startswith("API-Gateway-Execution-Logs_") for g in groups)

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_waf_10_12_rules_have_actions_and_metrics(dev_run, h):
    """WAF.10 / CKV_AWS_175 (>= 1 rule, each with an action) and WAF.12 (per-rule metrics)."""

    def check(resources):
        (acl,) = h.of_type(resources, "aws:wafv2/webAcl:WebAcl")
        rules = acl.inputs["rules"]
        assert rules and acl.inputs["scope"] == "REGIONAL" and acl.inputs["defaultAction"] == {"allow": {}}
        for r in rules:
            assert ("action" in r) != ("overrideAction" in r)
            vc = r["visibilityConfig"]
            assert vc["cloudwatchMetricsEnabled"] is True and vc["sampledRequestsEnabled"] is True

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_waf_rate_based_rules_per_ip_and_per_api_key(dev_run, h):
    """§1.10 rate limits: one rule aggregated on IP, one on the x-api-key header; limit >= 100,
    window in 60/120/300/600, action block 429."""
    waf = dev_run.stack.config.waf

    def check(resources):
        (acl,) = h.of_type(resources, "aws:wafv2/webAcl:WebAcl")
        rules = {r["name"]: r for r in acl.inputs["rules"]}
        ip = rules["rate-per-ip"]["statement"]["rateBasedStatement"]
        assert ip["aggregateKeyType"] == "IP" and ip["limit"] == float(waf.ip_rate_limit)
        key = rules["rate-per-api-key"]["statement"]["rateBasedStatement"]
        assert key["aggregateKeyType"] == "CUSTOM_KEYS" and key["limit"] == float(waf.api_key_rate_limit)
        assert key["customKeys"][0]["header"]["name"] == "x-api-key"
        for r in (ip, key):
            assert r["limit"] >= 100 and r["evaluationWindowSec"] in (60.0, 120.0, 300.0, 600.0)
        for name in ("rate-per-ip", "rate-per-api-key"):
            assert rules[name]["action"]["block"]["customResponse"]["responseCode"] == 429.0

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_waf_managed_groups_log4j_and_body_size_override(dev_run, h):
    """§1.10 managed groups incl. KnownBadInputs (CKV_AWS_192 Log4j, not counted), CommonRuleSet
    with SizeRestrictions_BODY counted (§0.7), API Gateway body inspection 16 KB."""

    def check(resources):
        (acl,) = h.of_type(resources, "aws:wafv2/webAcl:WebAcl")
        managed = {r["name"]: r for r in acl.inputs["rules"] if "managedRuleGroupStatement" in r["statement"]}
        assert set(managed) == set(MANAGED_GROUPS)
        for r in managed.values():
            assert r["overrideAction"] == {"none": {}}
        bad = managed["AWSManagedRulesKnownBadInputsRuleSet"]["statement"]["managedRuleGroupStatement"]
        assert "Log4JRCE" not in json.dumps(bad.get("ruleActionOverrides", []))
        common = managed["AWSManagedRulesCommonRuleSet"]["statement"]["managedRuleGroupStatement"]
        assert common["ruleActionOverrides"] == [{"name": "SizeRestrictions_BODY", "actionToUse": {"count": {}}}]
        body = acl.inputs["associationConfig"]["requestBodies"][0]["apiGateway"]
        assert body["defaultSizeInspectionLimit"] == "KB_16"

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_waf_11_logging_redacts_api_key_and_authorization(dev_run):
    """WAF.11 / CKV2_AWS_31: web ACL logging to the aws-waf-logs- group; x-api-key and
    authorization redacted; only BLOCK/COUNT kept."""
    lc = dev_run.stack.waf.logging

    def check(v):
        dests, redacted, filt, lg_arn, acl_arn, resource_arn = v
        assert dests == [lg_arn] and resource_arn == acl_arn
        assert {f["single_header"]["name"] for f in redacted} == set(REDACTED_HEADERS)
        assert filt["default_behavior"] == "DROP"

    return pulumi.Output.all(lc.log_destination_configs, lc.redacted_fields, lc.logging_filter,
                             dev_run.stack.waf.log_group.arn, dev_run.stack.waf.web_acl.arn,
                             lc.resource_arn).apply(check)


@pulumi.runtime.test
def test_cognito_client_credentials_only_with_scope(dev_run):
    """§1.11: client-credentials flow only, scope mail-api/send, secret generated, token revocation;
    pool with deletion protection (Cognito.6) and strong password policy (Cognito.3)."""
    c, pool = dev_run.stack.oauth.client, dev_run.stack.oauth.user_pool

    def check(v):
        flows, scopes, gen, revoke, idps, protection, pw, admin_only = v
        assert flows == ["client_credentials"] and sorted(scopes) == ["mail-api/send", "mail-api/send:attachments", "mail-api/send:bulk"]
        assert gen is True and revoke is True and idps == ["COGNITO"]
        assert protection == "ACTIVE"
        assert pw["minimum_length"] >= 8 and all(pw[k] for k in (
            "require_lowercase", "require_uppercase", "require_numbers", "require_symbols"))
        assert pw["temporary_password_validity_days"] <= 7
        assert admin_only["allow_admin_create_user_only"] is True

    return pulumi.Output.all(c.allowed_oauth_flows, c.allowed_oauth_scopes, c.generate_secret,
                             c.enable_token_revocation, c.supported_identity_providers, pool.deletion_protection,
                             pool.password_policy, pool.admin_create_user_config).apply(check)


@pulumi.runtime.test
def test_cognito_2_no_identity_pool(dev_run, h):
    """Cognito.2 / CKV_AWS_366: no identity pool at all (so no unauthenticated identities)."""
    return h.check_recorded(dev_run, lambda rs: _assert(
        not [r for r in rs if r.typ.startswith("aws:cognito/identityPool")]))


@pulumi.runtime.test
def test_ses_configuration_set_tls_required_reputation_suppression(dev_run):
    """CKV_AWS_365 (TLS REQUIRE), reputation metrics, suppression of bounces/complaints."""
    cs = dev_run.stack.email.configuration_set

    def check(v):
        delivery, reputation, suppression, name = v
        assert delivery["tls_policy"] == "REQUIRE"
        assert reputation["reputation_metrics_enabled"] is True
        assert set(suppression["suppressed_reasons"]) == {"BOUNCE", "COMPLAINT"}
        assert name == dev_run.stack.config.configuration_set_name

    return pulumi.Output.all(cs.delivery_options, cs.reputation_options, cs.suppression_options,
                             cs.configuration_set_name).apply(check)


@pulumi.runtime.test
def test_ses_identity_dkim_mail_from_and_feedback_destination(dev_run, h):
    """§1.12: domain identity with DKIM RSA 2048 and the configuration set; MAIL FROM subdomain;
    bounce/complaint events to the encrypted feedback topic."""

    def check(resources):
        (ident,) = h.of_type(resources, "aws:sesv2/emailIdentity:EmailIdentity")
        assert ident.inputs["emailIdentity"] == "mail.dev.example.com"
        assert ident.inputs["dkimSigningAttributes"]["nextSigningKeyLength"] == "RSA_2048_BIT"
        assert ident.inputs["configurationSetName"] == "secure-mail-api-dev"
        (mf,) = h.of_type(resources, "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes")
        assert mf.inputs["mailFromDomain"] == "bounce.mail.dev.example.com"
        dests = {d.inputs["eventDestinationName"]: d.inputs["eventDestination"] for d in
                 h.of_type(resources, "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination")}
        sns = dests["feedback-sns"]
        assert {"BOUNCE", "COMPLAINT"} <= set(sns["matchingEventTypes"]) and sns["enabled"] is True
        assert sns["snsDestination"]["topicArn"].endswith("email-feedback")

    return h.check_recorded(dev_run, check)


def _assert(condition: bool) -> None:
    assert condition


@pulumi.runtime.test
def test_audit_macs_use_a_kms_hmac_key_the_sender_may_only_generate_macs_with(dev_run, h):
    """Issue 12 item 8: the audit MACs are keyed by a KMS HMAC_256 key of the stack (never
    exported); the sender gets exactly ``kms:GenerateMac`` on it and its ARN as AUDIT_MAC_KEY_ID."""
    enc, fn = dev_run.stack.encryption, dev_run.stack.sender.function

    def check(v):
        spec, usage, arn, env = v[:4]
        assert (spec, usage) == ("HMAC_256", "GENERATE_VERIFY_MAC")
        assert env["variables"]["AUDIT_MAC_KEY_ID"] == arn
        resources = dev_run.resources
        roles = {r.name: r.inputs for r in h.of_type(resources, "aws:iam/rolePolicy:RolePolicy")}
        mac = [s for s in h.statements(roles["sender-send-policy"]["policy"]) if "kms:GenerateMac" in s["Action"]]
        assert [(s["Action"], s["Resource"]) for s in mac] == [(["kms:GenerateMac"], [arn])]

    return pulumi.Output.all(enc.audit_mac_key.customer_master_key_spec, enc.audit_mac_key.key_usage,
                             enc.audit_mac_key.arn, fn.environment, *h.component_urns(dev_run)).apply(check)
