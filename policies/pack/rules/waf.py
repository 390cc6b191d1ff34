"""WAFv2 rules: docs/security-baseline.md §1.10 (scope REGIONAL, in front of the API stage).

Sources: Security Hub WAF controls (https://docs.aws.amazon.com/securityhub/latest/userguide/waf-controls.html),
checkov 3.3.30 (CKV_AWS_175/192/342, CKV2_AWS_31/77), AWS WAF developer guide (rate-based rules,
managed rule groups), pulumi/pulumi-aws#5841 (rate limit validated at >= 100).
"""

from __future__ import annotations

from ._base import Finding, as_list, get, is_true, links, of_type, resource_rule, stack_rule

WEB_ACL = "aws:wafv2/webAcl:WebAcl"
LOGGING = "aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration"
WINDOWS = (60.0, 120.0, 300.0, 600.0)
REQUIRED_GROUPS = ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                   "AWSManagedRulesAmazonIpReputationList"]


def _rules(props):
    return [r for r in as_list(props.get("rules")) if isinstance(r, dict)]


@resource_rule("waf-web-acl-rules-have-actions", ["WAF.10", "CKV_AWS_175", "CKV_AWS_342"], WEB_ACL,
               "Web ACLs have at least one rule, and every rule has an action or override action")
def rules_have_actions(props, cfg, typ):
    """WAF.10 / CKV_AWS_175 / CKV_AWS_342: ``rules`` non-empty; each rule has ``action`` (rule
    statements) or ``overrideAction`` (rule groups); and a ``defaultAction``."""
    out = []
    rules = _rules(props)
    if not rules:
        out.append(Finding("rules", "empty", "at least one rule (rate limits, AWS managed groups)"))
    for r in rules:
        if not r.get("action") and not r.get("overrideAction"):
            out.append(Finding(f"rules[{r.get('name')}].action", "unset", "action={'block': {...}} or overrideAction={'none': {}}"))
    if not props.get("defaultAction"):
        out.append(Finding("defaultAction", "unset", "defaultAction={'allow': {}}"))
    return out


@resource_rule("waf-metrics", ["WAF.12"], WEB_ACL, "The web ACL and every rule publish CloudWatch metrics and samples")
def waf_metrics(props, cfg, typ):
    """WAF.12: ``visibilityConfig.cloudwatchMetricsEnabled`` (and ``sampledRequestsEnabled``) on the web
    ACL and on every rule."""
    out = []
    for where, vc in [("visibilityConfig", props.get("visibilityConfig"))] + [
            (f"rules[{r.get('name')}].visibilityConfig", r.get("visibilityConfig")) for r in _rules(props)]:
        if not is_true(get(vc, "cloudwatchMetricsEnabled")) or not is_true(get(vc, "sampledRequestsEnabled")):
            out.append(Finding(where, repr(vc), "{'cloudwatch_metrics_enabled': True, 'sampled_requests_enabled': "
                                                 "True, 'metric_name': ...}"))
    return out


@stack_rule("waf-logging", ["WAF.11", "CKV2_AWS_31"],
            "Every web ACL logs (BLOCK/COUNT) to an aws-waf-logs-* destination with credentials redacted",
            {"redactedHeaders": ({"type": "array", "items": {"type": "string"}}, ["authorization", "x-api-key"])},
            types=[WEB_ACL, LOGGING])
def waf_logging(resources, cfg):
    """WAF.11 / CKV2_AWS_31: a ``WebAclLoggingConfiguration`` per web ACL; its destination log group is
    named ``aws-waf-logs-*`` (a WAF requirement); the ``authorization`` and ``x-api-key`` headers are
    in ``redactedFields`` (so keys and tokens never reach the logs)."""
    logs = of_type(resources, LOGGING)
    for acl in of_type(resources, WEB_ACL):
        if not any(links(lg, "resourceArn", acl) for lg in logs):
            yield Finding("WebAclLoggingConfiguration", "missing",
                          "aws.wafv2.WebAclLoggingConfiguration(resource_arn=acl.arn, log_destination_configs=[...])", acl)
    groups = of_type(resources, "aws:cloudwatch/logGroup:LogGroup")
    for lg in logs:
        redacted = {str(get(f, "singleHeader.name", "")).lower() for f in as_list(lg.props.get("redactedFields"))}
        missing = [h for h in cfg["redactedHeaders"] if h.lower() not in redacted]
        if missing:
            yield Finding("redactedFields", f"missing {', '.join(missing)}",
                          "redactedFields=[{'single_header': {'name': h}} for h in ('authorization', 'x-api-key')]", lg)
        for dest in as_list(lg.props.get("logDestinationConfigs")):
            named = [g for g in groups if links(lg, "logDestinationConfigs", g)]
            names = [g.props.get("name") for g in named] or ([dest] if ":log-group:" in str(dest) else [])
            for n in names:
                short = str(n).split(":log-group:")[-1]
                if not short.startswith("aws-waf-logs-"):
                    yield Finding("logDestinationConfigs", repr(short), "a log group named 'aws-waf-logs-<name>'", lg)


@resource_rule("waf-log4j-protection", ["CKV_AWS_192", "CKV2_AWS_77"], WEB_ACL,
               "AWSManagedRulesKnownBadInputsRuleSet is active and Log4JRCE is not downgraded to count")
def log4j(props, cfg, typ):
    """CKV_AWS_192 / CKV2_AWS_77: the web ACL runs ``AWSManagedRulesKnownBadInputsRuleSet`` with
    ``overrideAction={'none': {}}`` (not count), and no ``ruleActionOverrides`` sets ``Log4JRCE`` to count."""
    for r in _rules(props):
        g = get(r, "statement.managedRuleGroupStatement") or {}
        if g.get("name") != "AWSManagedRulesKnownBadInputsRuleSet":
            continue
        out = []
        if get(r, "overrideAction.count") is not None:
            out.append(Finding("rules[AWSManagedRulesKnownBadInputsRuleSet].overrideAction", "count",
                               "overrideAction={'none': {}}"))
        for o in as_list(g.get("ruleActionOverrides")):
            if str(o.get("name", "")).startswith("Log4JRCE") and get(o, "actionToUse.count") is not None:
                out.append(Finding("ruleActionOverrides", f"{o.get('name')} -> count", "no override for Log4JRCE*"))
        return out
    return [Finding("rules", "without AWSManagedRulesKnownBadInputsRuleSet",
                    "a managed_rule_group_statement {'vendor_name': 'AWS', 'name': 'AWSManagedRulesKnownBadInputsRuleSet'}")]


def _rate_rules(props, key_type):
    return [r for r in _rules(props)
            if get(r, "statement.rateBasedStatement.aggregateKeyType") == key_type and get(r, "action.block") is not None]


def _rate_findings(rule, where):
    out = []
    rbs = get(rule, "statement.rateBasedStatement") or {}
    limit = rbs.get("limit")
    if not isinstance(limit, (int, float)) or limit < 100:
        out.append(Finding(f"{where}.limit", repr(limit), "limit >= 100 (provider validation, pulumi-aws#5841)"))
    window = rbs.get("evaluationWindowSec", 300.0)
    if float(window) not in WINDOWS:
        out.append(Finding(f"{where}.evaluationWindowSec", repr(window), "evaluationWindowSec in 60/120/300/600"))
    return out


@resource_rule("waf-rate-limit-per-ip", ["BASELINE-WAF-RATE-IP"], WEB_ACL,
               "A blocking rate-based rule aggregates per client IP")
def rate_per_ip(props, cfg, typ):
    """docs/security-baseline.md §1.10 "rate limit, per IP": a rate-based rule with ``aggregateKeyType=IP``, a block
    action, ``limit >= 100`` and ``evaluationWindowSec`` one of 60/120/300/600."""
    rules = _rate_rules(props, "IP")
    if not rules:
        return [Finding("rules", "without a blocking per-IP rate-based rule",
                        "{'rate_based_statement': {'limit': 300, 'evaluation_window_sec': 60, 'aggregate_key_type': 'IP'}}")]
    return [f for r in rules for f in _rate_findings(r, f"rules[{r.get('name')}]")]


@resource_rule("waf-rate-limit-per-api-key", ["BASELINE-WAF-RATE-API-KEY"], WEB_ACL,
               "A blocking rate-based rule aggregates per x-api-key header")
def rate_per_key(props, cfg, typ):
    """docs/security-baseline.md §1.10 "rate limit, per API key": a rate-based rule with ``aggregateKeyType=CUSTOM_KEYS``
    whose ``customKeys`` include ``header.name=x-api-key``, a block action and valid limit/window."""
    rules = [r for r in _rate_rules(props, "CUSTOM_KEYS")
             if any(str(get(k, "header.name", "")).lower() == "x-api-key"
                    for k in as_list(get(r, "statement.rateBasedStatement.customKeys")))]
    if not rules:
        return [Finding("rules", "without a blocking rate-based rule keyed on the x-api-key header",
                        "{'rate_based_statement': {'aggregate_key_type': 'CUSTOM_KEYS', 'custom_keys': "
                        "[{'header': {'name': 'x-api-key', ...}}]}}")]
    return [f for r in rules for f in _rate_findings(r, f"rules[{r.get('name')}]")]


@resource_rule("waf-managed-rule-groups", ["BASELINE-WAF-MANAGED"], WEB_ACL,
               "The baseline AWS managed rule groups are active (not in count mode)",
               {"requiredGroups": ({"type": "array", "items": {"type": "string"}}, REQUIRED_GROUPS)})
def managed_groups(props, cfg, typ):
    """docs/security-baseline.md §1.10 "managed groups": ``AWSManagedRulesCommonRuleSet``,
    ``AWSManagedRulesKnownBadInputsRuleSet`` and ``AWSManagedRulesAmazonIpReputationList``, each with
    ``overrideAction={'none': {}}``. Overriding single rules (``SizeRestrictions_BODY`` -> count for
    e-mail bodies over 8 KB) is allowed."""
    active = {get(r, "statement.managedRuleGroupStatement.name") for r in _rules(props)
              if get(r, "statement.managedRuleGroupStatement.vendorName") == "AWS" and get(r, "overrideAction.none") is not None}
    return [Finding("rules", f"without active {g}", f"a managed_rule_group_statement for {g} with override_action none")
            for g in cfg["requiredGroups"] if g not in active]
