"""WAF: a REGIONAL web ACL in front of the API stage (docs/security-baseline.md §1.10, APIGateway.4).

Rules (each with CloudWatch metrics and sampled requests, WAF.10/WAF.12):

- ``rate-per-ip``: rate-based rule aggregated on the client IP, answers 429.
- ``rate-per-api-key``: rate-based rule aggregated on the ``x-api-key`` header (CUSTOM_KEYS),
  answers 429. Requests without the header are covered by the per-IP rule.
- AWS managed groups ``AWSManagedRulesAmazonIpReputationList``, ``AWSManagedRulesCommonRuleSet``
  (``SizeRestrictions_BODY`` set to count when large bodies are allowed, §0.7) and
  ``AWSManagedRulesKnownBadInputsRuleSet`` (Log4j, CKV_AWS_192).

Logging (WAF.11) goes to a CMK-encrypted ``aws-waf-logs-*`` log group, with the
``authorization`` and ``x-api-key`` headers redacted and only BLOCK/COUNT requests kept.

Failure case P2: the ACL's ``name`` and ``scope`` (the arguments that force a replacement) are
derived from the stack prefix only, never from the rules, and no ``replace_on_changes`` or
``delete_before_replace`` option is set, so a rule edit is an in-place update and the
association stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components._common import encrypted_log_group
from infra.config import WafConfig

REDACTED_HEADERS = ("authorization", "x-api-key")
MANAGED_GROUPS = ("AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesCommonRuleSet",
                  "AWSManagedRulesKnownBadInputsRuleSet")


def _visibility(metric: str) -> aws.wafv2.WebAclVisibilityConfigArgsDict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def web_acl_rules(prefix: str, waf: WafConfig) -> list[aws.wafv2.WebAclRuleArgsDict]:
    """Return the web ACL ``rules`` (snake_case input dicts) for ``waf`` limits.

    Rate limits are requests per evaluation window (seconds) per IP / per API key.
    """
    too_many: aws.wafv2.WebAclRuleActionArgsDict = {"block": {"custom_response": {"response_code": 429}}}
    rules: list[aws.wafv2.WebAclRuleArgsDict] = [
        {"name": "rate-per-ip", "priority": 0, "action": too_many,
         "statement": {"rate_based_statement": {
             "limit": waf.ip_rate_limit, "evaluation_window_sec": waf.ip_evaluation_window_sec,
             "aggregate_key_type": "IP"}},
         "visibility_config": _visibility(f"{prefix}-rate-per-ip")},
        {"name": "rate-per-api-key", "priority": 1, "action": too_many,
         "statement": {"rate_based_statement": {
             "limit": waf.api_key_rate_limit, "evaluation_window_sec": waf.api_key_evaluation_window_sec,
             "aggregate_key_type": "CUSTOM_KEYS",
             "custom_keys": [{"header": {"name": "x-api-key",
                                         "text_transformations": [{"priority": 0, "type": "NONE"}]}}]}},
         "visibility_config": _visibility(f"{prefix}-rate-per-api-key")},
    ]
    for priority, group in enumerate(MANAGED_GROUPS, start=10):
        statement: aws.wafv2.WebAclRuleStatementManagedRuleGroupStatementArgsDict = {"vendor_name": "AWS",
                                                                                      "name": group}
        if group == "AWSManagedRulesCommonRuleSet" and waf.allow_large_bodies:
            statement["rule_action_overrides"] = [{"name": "SizeRestrictions_BODY", "action_to_use": {"count": {}}}]
        rules.append({"name": group, "priority": priority, "override_action": {"none": {}},
                      "statement": {"managed_rule_group_statement": statement},
                      "visibility_config": _visibility(f"{prefix}-{group}")})
    return rules


@dataclass
class WafArgs:
    """Inputs of :class:`Waf`: the stage ARN to protect, limits, the audit CMK and log retention (days)."""

    prefix: str
    stage_arn: pulumi.Input[str]
    waf: WafConfig
    audit_key_arn: pulumi.Input[str]
    log_retention_days: int
    tags: Mapping[str, str] = field(default_factory=dict)


class Waf(pulumi.ComponentResource):
    """Web ACL + association + logging. Attributes: ``web_acl``, ``association``, ``logging``, ``acl_name``."""

    def __init__(self, name: str, args: WafArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:security:Waf", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.acl_name = f"{args.prefix}-api"
        self.web_acl = aws.wafv2.WebAcl(
            f"{name}-web-acl",
            name=self.acl_name,
            scope="REGIONAL",
            description="secure-mail-api: rate limits and AWS managed rules",
            default_action={"allow": {}},
            rules=web_acl_rules(args.prefix, args.waf),
            association_config={"request_bodies": [{"api_gateway": {"default_size_inspection_limit": "KB_16"}}]},
            visibility_config=_visibility(f"{args.prefix}-web-acl"),
            tags=dict(args.tags),
            opts=child)
        self.association = aws.wafv2.WebAclAssociation(
            f"{name}-association", resource_arn=args.stage_arn, web_acl_arn=self.web_acl.arn, opts=child)
        self.log_group = encrypted_log_group(
            f"{name}-logs", log_group_name=f"aws-waf-logs-{args.prefix}", kms_key_arn=args.audit_key_arn,
            retention_days=args.log_retention_days, tags=args.tags, parent=self)
        self.logging = aws.wafv2.WebAclLoggingConfiguration(
            f"{name}-logging",
            resource_arn=self.web_acl.arn,
            log_destination_configs=[self.log_group.arn],
            redacted_fields=[{"single_header": {"name": h}} for h in REDACTED_HEADERS],
            logging_filter={"default_behavior": "DROP", "filters": [{
                "behavior": "KEEP", "requirement": "MEETS_ANY",
                "conditions": [{"action_condition": {"action": "BLOCK"}},
                               {"action_condition": {"action": "COUNT"}}]}]},
            opts=child)
        self.register_outputs({"web_acl_arn": self.web_acl.arn})
