"""CloudTrail, CloudWatch Logs and alarm rules: docs/security-baseline.md §1.8, §1.9 and §3.

Sources: Security Hub CloudTrail/CloudWatch controls (https://docs.aws.amazon.com/securityhub/latest/userguide/
{cloudtrail,cloudwatch}-controls.html), checkov 3.3.30, the CIS metric filters of
terraform-aws-modules/terraform-aws-cloudwatch ``modules/cis-alarms``, and the CloudWatch
"Recommended alarms" page.
"""

from __future__ import annotations

import re

from ._base import Finding, as_list, get, is_true, of_type, resource_rule, stack_rule

TRAIL = "aws:cloudtrail/trail:Trail"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
METRIC_FILTER = "aws:cloudwatch/logMetricFilter:LogMetricFilter"
RETENTION_ALLOWED = [365, 400, 545, 731, 1827, 3653]


@stack_rule("cloudtrail-multi-region", ["CloudTrail.1", "CKV_AWS_67", "CKV_AWS_251"],
            "A multi-region trail logs all read and write management events", types=[TRAIL])
def trail_multi_region(resources, cfg):
    """CloudTrail.1 (FSBP) / CKV_AWS_67 / CKV_AWS_251: at least one trail, and every trail has
    ``isMultiRegionTrail``, ``includeGlobalServiceEvents``, logging on, and event selectors (if any)
    with ``readWriteType=All`` and ``includeManagementEvents``."""
    trails = of_type(resources, TRAIL)
    if not trails:
        yield Finding("Trail", "missing", "aws.cloudtrail.Trail(is_multi_region_trail=True, ...)")
    for t in trails:
        p = t.props
        for key in ("isMultiRegionTrail", "includeGlobalServiceEvents"):
            if not is_true(p.get(key)):
                yield Finding(key, repr(p.get(key)), f"{key}=true", t)
        if p.get("enableLogging") is False:
            yield Finding("enableLogging", "false", "enableLogging=true", t)
        for sel in as_list(p.get("eventSelectors")):
            if sel.get("readWriteType", "All") != "All" or sel.get("includeManagementEvents") is False:
                yield Finding("eventSelectors", repr(sel), "{'read_write_type': 'All', 'include_management_events': True}", t)


@resource_rule("cloudtrail-encrypted", ["CloudTrail.2", "CKV_AWS_35"], TRAIL, "Trails are encrypted with SSE-KMS")
def trail_kms(props, cfg, typ):
    """CloudTrail.2 / CKV_AWS_35: ``kmsKeyId`` set."""
    return [] if props.get("kmsKeyId") else [Finding("kmsKeyId", "unset", "kmsKeyId=<audit key ARN>")]


@resource_rule("cloudtrail-log-file-validation", ["CloudTrail.4", "CKV_AWS_36"], TRAIL, "Trails validate log files")
def trail_validation(props, cfg, typ):
    """CloudTrail.4 / CKV_AWS_36: ``enableLogFileValidation=true``."""
    if not is_true(props.get("enableLogFileValidation")):
        return [Finding("enableLogFileValidation", repr(props.get("enableLogFileValidation")), "enableLogFileValidation=true")]
    return []


@resource_rule("cloudtrail-cloudwatch-logs", ["CloudTrail.5", "CKV2_AWS_10"], TRAIL,
               "Trails deliver to CloudWatch Logs (needed for the CIS metric filters)")
def trail_cloudwatch(props, cfg, typ):
    """CloudTrail.5 / CKV2_AWS_10: ``cloudWatchLogsGroupArn`` ending in ``:*`` ("CloudTrail requires the
    Log Stream wildcard") and ``cloudWatchLogsRoleArn``."""
    out = []
    arn = props.get("cloudWatchLogsGroupArn")
    if not arn or not str(arn).endswith(":*"):
        out.append(Finding("cloudWatchLogsGroupArn", repr(arn), "cloudWatchLogsGroupArn=<log group ARN>:*"))
    if not props.get("cloudWatchLogsRoleArn"):
        out.append(Finding("cloudWatchLogsRoleArn", "unset", "cloudWatchLogsRoleArn=<delivery role ARN>"))
    return out


@resource_rule("cloudtrail-sns-topic", ["CKV_AWS_252"], TRAIL, "Trails notify an SNS topic of log delivery",
               )
def trail_sns(props, cfg, typ):
    """CKV_AWS_252: ``snsTopicName`` set."""
    return [] if props.get("snsTopicName") else [Finding("snsTopicName", "unset", "snsTopicName=<topic name>")]


@resource_rule("cloudwatch-log-group-retention", ["CloudWatch.16", "CKV_AWS_338", "CKV_AWS_66"], LOG_GROUP,
               "Log groups keep logs at least a year",
               {"allowedRetentionDays": ({"type": "array", "items": {"type": "integer"}}, RETENTION_ALLOWED)})
def log_retention(props, cfg, typ):
    """CloudWatch.16 / CKV_AWS_338 / CKV_AWS_66: ``retentionInDays`` one of 365/400/545/731/1827/3653
    (the values Security Hub accepts)."""
    v = props.get("retentionInDays")
    if v is None or float(v) not in [float(x) for x in cfg["allowedRetentionDays"]]:
        return [Finding("retentionInDays", repr(v), "retentionInDays=365 (or 400/545/731/1827/3653)")]
    return []


@resource_rule("cloudwatch-log-group-kms", ["CKV_AWS_158"], LOG_GROUP, "Log groups are encrypted with a CMK")
def log_kms(props, cfg, typ):
    """CKV_AWS_158: ``kmsKeyId`` set (the key policy must grant ``logs.<region>.amazonaws.com``)."""
    return [] if props.get("kmsKeyId") else [Finding("kmsKeyId", "unset", "kmsKeyId=<audit key ARN>")]


@resource_rule("cloudwatch-alarm-actions", ["CloudWatch.15", "CloudWatch.17", "CKV_AWS_319"], ALARM,
               "Alarms have an ALARM action and actions enabled")
def alarm_actions(props, cfg, typ):
    """CloudWatch.15 / CloudWatch.17 / CKV_AWS_319: ``alarmActions`` non-empty and ``actionsEnabled`` not false."""
    out = []
    if not as_list(props.get("alarmActions")):
        out.append(Finding("alarmActions", "empty", "alarmActions=[alarm_topic.arn]"))
    if props.get("actionsEnabled") is False:
        out.append(Finding("actionsEnabled", "false", "actionsEnabled=true"))
    return out


_RUNBOOK_RE = re.compile(r"Runbook: docs/operations\.md#alarm-[a-z0-9-]+")


@resource_rule("cloudwatch-alarm-runbook", ["BASELINE-RUNBOOKS"], ALARM,
               "Every alarm's description names its runbook section")
def alarm_runbook(props, cfg, typ):
    """Issue 13 part 3: an alarm someone can act on names its runbook, ``Runbook:
    docs/operations.md#alarm-<key>`` in ``alarmDescription`` (tests/unit/infra checks that the anchor
    exists in docs/operations.md)."""
    if not _RUNBOOK_RE.search(props.get("alarmDescription") or ""):
        return [Finding("alarmDescription", "no runbook", "end it with 'Runbook: docs/operations.md#alarm-<key>'")]
    return []


#: CloudWatch.1-9 -> tokens the CIS filter pattern must contain (exact patterns in docs/security-baseline.md §3.1)
CIS_FILTERS = {
    "CloudWatch.1": ('$.userIdentity.type = "Root"', "$.userIdentity.invokedBy NOT EXISTS"),
    "CloudWatch.2": ("UnauthorizedOperation", "AccessDenied"),
    "CloudWatch.3": ("ConsoleLogin", "MFAUsed"),
    "CloudWatch.4": ("DeleteGroupPolicy", "PutRolePolicy", "AttachRolePolicy", "DeletePolicyVersion"),
    "CloudWatch.5": ("CreateTrail", "StopLogging", "DeleteTrail"),
    "CloudWatch.6": ("ConsoleLogin", "Failed authentication"),
    "CloudWatch.7": ("kms.amazonaws.com", "DisableKey", "ScheduleKeyDeletion"),
    "CloudWatch.8": ("s3.amazonaws.com", "PutBucketPolicy", "DeleteBucketPolicy"),
    "CloudWatch.9": ("config.amazonaws.com", "StopConfigurationRecorder"),
}


@stack_rule("cloudwatch-cis-metric-filters", ["CloudWatch.1-9", "CIS-3.1-3.9"],
            "CIS metric filters on the CloudTrail log group, each with an actioned alarm",
            {"requiredControls": ({"type": "array", "items": {"type": "string"}}, list(CIS_FILTERS))},
            types=[METRIC_FILTER, ALARM])
def cis_filters(resources, cfg):
    """Security Hub CloudWatch.1-9 (CIS 3.1-3.9): for each control a ``LogMetricFilter`` whose
    ``pattern`` carries the CIS tokens, and a ``MetricAlarm`` on its metric (same name and namespace)
    with ``alarmActions``. CloudWatch.10-14 (network changes) are not relevant to a VPC-less API and
    can be added through ``requiredControls`` with their tokens in code."""
    if not of_type(resources, TRAIL) and not of_type(resources, METRIC_FILTER):
        return
    filters = of_type(resources, METRIC_FILTER)
    alarms = of_type(resources, ALARM)
    for control in cfg["requiredControls"]:
        tokens = CIS_FILTERS.get(control, ())
        match = [f for f in filters if all(t in str(f.props.get("pattern", "")) for t in tokens)]
        if not match:
            yield Finding("LogMetricFilter", f"missing for {control}",
                          f"aws.cloudwatch.LogMetricFilter with the CIS pattern for {control} (docs/security-baseline.md §3.1)")
            continue
        mts = [get(f.props, "metricTransformation") or {} for f in match]
        if not any(a.props.get("metricName") == mt.get("name") and a.props.get("namespace") == mt.get("namespace")
                   and as_list(a.props.get("alarmActions")) for a in alarms for mt in mts):
            yield Finding("MetricAlarm", f"missing for {control}",
                          "aws.cloudwatch.MetricAlarm on the filter's metric (Sum, 300 s, >= 1) with alarm_actions",
                          match[0])


#: baseline §3 alarms: (row, namespace, metric) that must exist; SES critical thresholds are checked.
REQUIRED_ALARMS = [
    ("§3.1-2 SES bounce rate", "AWS/SES", "Reputation.BounceRate"),
    ("§3.3-4 SES complaint rate", "AWS/SES", "Reputation.ComplaintRate"),
    ("§3.5 API 5XX", "AWS/ApiGateway", "5XXError"),
    ("§3.6 API 4XX", "AWS/ApiGateway", "4XXError"),
    ("§3.7 API latency", "AWS/ApiGateway", "Latency"),
    ("§3.9 WAF blocks", "AWS/WAFV2", "BlockedRequests"),
    ("§3.10 Lambda errors", "AWS/Lambda", "Errors"),
    ("§3.11 Lambda throttles", "AWS/Lambda", "Throttles"),
    ("§3.12 Lambda duration", "AWS/Lambda", "Duration"),
    ("§3.13 Lambda concurrency", "AWS/Lambda", "ConcurrentExecutions"),
    ("§3.14 DLQ not empty", "AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("§3.15 queue backlog age", "AWS/SQS", "ApproximateAgeOfOldestMessage"),
    ("§3.16 SNS delivery failures", "AWS/SNS", "NumberOfNotificationsFailed"),
]
#: SES enforcement (SES FAQ): review at bounce >= 5 %, complaint >= 0.1 %: alarm no later than that.
SES_CRITICAL = {"Reputation.BounceRate": 0.05, "Reputation.ComplaintRate": 0.001}


@stack_rule("cloudwatch-recommended-alarms", ["BASELINE-ALARMS"],
            "The baseline's alarm list exists (SES reputation, API, WAF, Lambda, SQS, SNS)",
            {"optionalAlarms": ({"type": "array", "items": {"type": "string"}}, [])}, types=[ALARM])
def recommended_alarms(resources, cfg):
    """docs/security-baseline.md §3 (CloudWatch "Recommended alarms", SES enforcement FAQ): one MetricAlarm per row
    (namespace + metric name), and the SES bounce/complaint alarms fire no later than the SES review
    thresholds (bounce 5 %, complaint 0.1 %). Rows 8 and 17 are optional in the baseline; rows can be
    waived through ``optionalAlarms`` (metric names)."""
    alarms = of_type(resources, ALARM)
    if not alarms and not of_type(resources, "aws:apigateway/restApi:RestApi"):
        return
    for row, ns, metric in REQUIRED_ALARMS:
        if metric in cfg["optionalAlarms"]:
            continue
        mine = [a for a in alarms if a.props.get("namespace") == ns and a.props.get("metricName") == metric]
        if not mine:
            yield Finding("MetricAlarm", f"missing for {ns} {metric} ({row})",
                          f"aws.cloudwatch.MetricAlarm(namespace={ns!r}, metric_name={metric!r}, ...)")
        elif metric in SES_CRITICAL and not any(
                isinstance(a.props.get("threshold"), (int, float)) and a.props["threshold"] <= SES_CRITICAL[metric]
                for a in mine):
            yield Finding("threshold", f"{[a.props.get('threshold') for a in mine]} for {metric}",
                          f"an alarm at threshold <= {SES_CRITICAL[metric]} (SES review level)", mine[0])


FIREHOSE = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"


@resource_rule("firehose-encrypted-cmk", ["Firehose.1", "CKV_AWS_240", "CKV_AWS_241"], FIREHOSE,
               "Firehose delivery streams encrypt at rest with a customer-managed key")
def firehose_encrypted(props, cfg, typ):
    """Firehose.1 / CKV_AWS_240 / CKV_AWS_241: ``serverSideEncryption`` enabled with
    ``keyType=CUSTOMER_MANAGED_CMK`` and a ``keyArn``; an S3 destination also sets ``kmsKeyArn``
    (the delivered objects are SSE-KMS with that key)."""
    if not is_true(get(props, "serverSideEncryption.enabled")):
        yield Finding("serverSideEncryption.enabled", repr(get(props, "serverSideEncryption.enabled")), "true")
    if get(props, "serverSideEncryption.keyType") != "CUSTOMER_MANAGED_CMK" or not get(
            props, "serverSideEncryption.keyArn"):
        yield Finding("serverSideEncryption.keyType", repr(get(props, "serverSideEncryption.keyType")),
                      "'CUSTOMER_MANAGED_CMK' with keyArn")
    if props.get("destination") == "extended_s3" and not get(props, "extendedS3Configuration.kmsKeyArn"):
        yield Finding("extendedS3Configuration.kmsKeyArn", "missing", "the CMK ARN")
