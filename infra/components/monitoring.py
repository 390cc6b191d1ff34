"""Monitoring: the CMK-encrypted alarm topic, every alarm of docs/security-baseline.md §3, the CIS metric filters.

Each alarm sends ALARM and OK to the alarm topic with actions enabled (CloudWatch.15/17,
CKV_AWS_319) and sets ``treat_missing_data`` per alarm (traffic alarms ``notBreaching`` where
silence is healthy, ``breaching`` where silence itself is the fault). The topic is encrypted
with the audit CMK whose policy grants ``cloudwatch.amazonaws.com`` (§1.2), and its policy
admits only CloudWatch from this account and denies publishing without TLS (SNS.4, SNS3).

Rotation health alarms read the metrics the rotation jobs publish (``rotation.metrics``):
``RotationFailed`` Sum >= 1, ``KeysOverMaxAge`` Maximum >= 1, ``OldestKeyAgeSeconds`` above the
configured max age, and "no rotation metric for N hours" (missing data = breaching).

CIS metric filters (Security Hub CloudWatch.1-14) sit on the CloudTrail log group, value 1 /
default 0, each with a Sum/300 s/>= 1 alarm (§3.1), plus three workload filters (API Gateway
stage/domain changes, WAF changes, SES configuration-set changes).

Anomaly alarms (issue 13 part 3): bursts of 403s per stage (a metric filter on the access log) and
per source IP (a Contributor Insights rule, alarmed through ``INSIGHT_RULE_METRIC``), unusual
traffic per consumer (an anomaly-detection band over the request records' per-consumer count: each
consumer holds one API key at a time, resolved by the handler from the key's tags), WAF block surges
(an anomaly band beside the static threshold), and per-consumer rotation health on the metrics of
:data:`ROTATION_CONSUMER_METRICS` (namespace ``SecureMailApi/Rotation``, dimensions ``Stack`` and
``Consumer``; the rotation jobs publish them).

Every alarm's description ends with ``Runbook: docs/operations.md#alarm-<key>`` (:func:`runbook`);
tests/unit/infra checks that each anchor exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components._common import service_publish_topic_policy
from infra.config import AlertingConfig
from rotation import metrics as rotation_metrics

CIS_NAMESPACE = "CISBenchmark"
#: Namespace of the API metrics derived from the access log and the request records.
API_NAMESPACE = "SecureMailApi/Api"
AUTH_FAILURES_METRIC = "AuthFailures"
CONSUMER_REQUESTS_METRIC = "Requests"
DIMENSION_CONSUMER = "Consumer"
#: Where runbooks live; an alarm's description names ``RUNBOOK_DOC#alarm-<key>``.
RUNBOOK_DOC = "docs/operations.md"

#: Per-consumer rotation metrics the alarms expect in ``SecureMailApi/Rotation``, each published with
#: the dimensions ``Stack`` and ``Consumer`` (the consumer's name in the consumers file), at least
#: hourly by every rotation run:
#:   KeyOverMaxAge (Count, 0/1): 1 while the consumer's current key is older than its max_age (or it
#:       has none);
#:   UnacknowledgedKeyAgeSeconds (Seconds): seconds since the consumer's current key was promoted
#:       while the consumer has not acknowledged it; 0 once acknowledged;
#:   RollingBackAgeSeconds (Seconds): seconds the consumer's rotation has been in ``rolling_back``;
#:       0 when no rotation of it is rolling back.
ROTATION_CONSUMER_METRICS = ("KeyOverMaxAge", "UnacknowledgedKeyAgeSeconds", "RollingBackAgeSeconds")


def runbook(key: str) -> str:
    """``Runbook: docs/operations.md#alarm-<key>`` (the section every alarm description names)."""
    return f"Runbook: {RUNBOOK_DOC}#alarm-{key}"
MISSING_DATA_VALUES = ("breaching", "notBreaching", "ignore", "missing")

#: (alarm key, Security Hub id, filter pattern). Patterns follow terraform-aws-modules
#: cloudwatch//modules/cis-alarms (docs/security-baseline.md §3.1).
CIS_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("root-usage", "CloudWatch.1",
     '{ $.userIdentity.type = "Root" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != "AwsServiceEvent" }'),
    ("unauthorized-api-calls", "CloudWatch.2",
     '{ ($.errorCode = "*UnauthorizedOperation") || ($.errorCode = "AccessDenied*") }'),
    ("console-signin-without-mfa", "CloudWatch.3",
     ('{ ($.eventName = "ConsoleLogin") && ($.additionalEventData.MFAUsed != "Yes") && '
     '($.userIdentity.type = "IAMUser") && ($.responseElements.ConsoleLogin = "Success") }')),
    ("iam-policy-changes", "CloudWatch.4",
     ("{($.eventName=DeleteGroupPolicy)||($.eventName=DeleteRolePolicy)||($.eventName=DeleteUserPolicy)||"
     "($.eventName=PutGroupPolicy)||($.eventName=PutRolePolicy)||($.eventName=PutUserPolicy)||"
     "($.eventName=CreatePolicy)||($.eventName=DeletePolicy)||($.eventName=CreatePolicyVersion)||"
     "($.eventName=DeletePolicyVersion)||($.eventName=AttachRolePolicy)||($.eventName=DetachRolePolicy)||"
     "($.eventName=AttachUserPolicy)||($.eventName=DetachUserPolicy)||($.eventName=AttachGroupPolicy)||"
     "($.eventName=DetachGroupPolicy)}")),
    ("cloudtrail-config-changes", "CloudWatch.5",
     ("{ ($.eventName = CreateTrail) || ($.eventName = UpdateTrail) || ($.eventName = DeleteTrail) || "
     "($.eventName = StartLogging) || ($.eventName = StopLogging) }")),
    ("console-auth-failures", "CloudWatch.6",
     '{ ($.eventName = ConsoleLogin) && ($.errorMessage = "Failed authentication") }'),
    ("kms-cmk-disable-or-deletion", "CloudWatch.7",
     "{ ($.eventSource = kms.amazonaws.com) && (($.eventName = DisableKey) || ($.eventName = ScheduleKeyDeletion)) }"),
    ("s3-bucket-policy-changes", "CloudWatch.8",
     ("{ ($.eventSource = s3.amazonaws.com) && (($.eventName = PutBucketAcl) || ($.eventName = PutBucketPolicy) || "
     "($.eventName = PutBucketCors) || ($.eventName = PutBucketLifecycle) || ($.eventName = PutBucketReplication) || "
     "($.eventName = DeleteBucketPolicy) || ($.eventName = DeleteBucketCors) || ($.eventName = DeleteBucketLifecycle) || "
     "($.eventName = DeleteBucketReplication)) }")),
    ("aws-config-changes", "CloudWatch.9",
     ("{ ($.eventSource = config.amazonaws.com) && (($.eventName=StopConfigurationRecorder)||"
     "($.eventName=DeleteDeliveryChannel)||($.eventName=PutDeliveryChannel)||($.eventName=PutConfigurationRecorder)) }")),
    ("security-group-changes", "CloudWatch.10",
     ("{ ($.eventName = AuthorizeSecurityGroupIngress) || ($.eventName = AuthorizeSecurityGroupEgress) || "
     "($.eventName = RevokeSecurityGroupIngress) || ($.eventName = RevokeSecurityGroupEgress) || "
     "($.eventName = CreateSecurityGroup) || ($.eventName = DeleteSecurityGroup) }")),
    ("nacl-changes", "CloudWatch.11",
     ("{ ($.eventName = CreateNetworkAcl) || ($.eventName = CreateNetworkAclEntry) || ($.eventName = DeleteNetworkAcl) || "
     "($.eventName = DeleteNetworkAclEntry) || ($.eventName = ReplaceNetworkAclEntry) || "
     "($.eventName = ReplaceNetworkAclAssociation) }")),
    ("network-gateway-changes", "CloudWatch.12",
     ("{ ($.eventName = CreateCustomerGateway) || ($.eventName = DeleteCustomerGateway) || "
     "($.eventName = AttachInternetGateway) || ($.eventName = CreateInternetGateway) || "
     "($.eventName = DeleteInternetGateway) || ($.eventName = DetachInternetGateway) }")),
    ("route-table-changes", "CloudWatch.13",
     ("{ ($.eventName = CreateRoute) || ($.eventName = CreateRouteTable) || ($.eventName = ReplaceRoute) || "
     "($.eventName = ReplaceRouteTableAssociation) || ($.eventName = DeleteRouteTable) || "
     "($.eventName = DeleteRoute) || ($.eventName = DisassociateRouteTable) }")),
    ("vpc-changes", "CloudWatch.14",
     ("{ ($.eventName = CreateVpc) || ($.eventName = DeleteVpc) || ($.eventName = ModifyVpcAttribute) || "
     "($.eventName = AcceptVpcPeeringConnection) || ($.eventName = CreateVpcPeeringConnection) || "
     "($.eventName = DeleteVpcPeeringConnection) || ($.eventName = RejectVpcPeeringConnection) || "
     "($.eventName = AttachClassicLinkVpc) || ($.eventName = DetachClassicLinkVpc) || "
     "($.eventName = DisableVpcClassicLink) || ($.eventName = EnableVpcClassicLink) }")),
    ("apigateway-changes", "workload",
     ("{ ($.eventSource = apigateway.amazonaws.com) && (($.eventName = UpdateStage) || ($.eventName = DeleteStage) || "
     "($.eventName = UpdateRestApi) || ($.eventName = UpdateDomainName)) }")),
    ("waf-changes", "workload",
     "{ ($.eventSource = wafv2.amazonaws.com) && (($.eventName = UpdateWebACL) || ($.eventName = DisassociateWebACL)) }"),
    ("ses-configuration-changes", "workload",
     ("{ ($.eventSource = ses.amazonaws.com) && (($.eventName = PutConfigurationSetDeliveryOptions) || "
     "($.eventName = DeleteConfigurationSet)) }")),
)


@dataclass(frozen=True)
class AlarmSpec:
    """One metric alarm: statistic (or ``p90``), period seconds, M of N, comparison and missing-data rule."""

    key: str
    basis: str
    namespace: str
    metric: str
    dimensions: Mapping[str, pulumi.Input[str]]
    statistic: str
    period: int
    evaluation_periods: int
    comparison: str
    threshold: float
    treat_missing_data: str
    description: str


@dataclass
class MonitoringArgs:
    """Inputs of :class:`Monitoring`: names of everything alarmed on, limits, CMK, alarm e-mail."""

    prefix: str
    stack: str
    region: str
    account_id: pulumi.Input[str]
    audit_key_arn: pulumi.Input[str]
    alarm_email: str
    rest_api_name: pulumi.Input[str]
    stage_name: str
    web_acl_name: str
    waf_blocked_threshold: int
    function_name: pulumi.Input[str]
    function_timeout_seconds: int
    reserved_concurrency: int
    dlq_name: pulumi.Input[str]
    feedback_queue_name: pulumi.Input[str]
    queue_age_sla_seconds: int
    feedback_topic_name: pulumi.Input[str]
    configuration_set_name: str
    trail_log_group_name: pulumi.Input[str]
    rotation_max_key_age_days: int
    rotation_silence_hours: int
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Issue 13 part 3: the API access log group, the sender's log group (request records), the
    #: consumers (one traffic and three rotation alarms each) and the anomaly thresholds.
    access_log_group_name: pulumi.Input[str] | None = None
    sender_log_group_name: pulumi.Input[str] | None = None
    consumers: Sequence[str] = ()
    alerting: AlertingConfig = field(default_factory=AlertingConfig)


def alarm_specs(args: MonitoringArgs, alarm_topic_name: pulumi.Input[str]) -> list[AlarmSpec]:
    """Every workload alarm of docs/security-baseline.md §3 (rows 1-7, 9-17) plus the rotation-health alarms."""
    api = {"ApiName": args.rest_api_name, "Stage": args.stage_name}
    fn = {"FunctionName": args.function_name}
    stack = {rotation_metrics.DIMENSION_STACK: args.stack}
    gt, ge, lt = "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold"
    nb, br = "notBreaching", "breaching"
    return [
        AlarmSpec("ses-bounce-rate-warning", "§3 row 1", "AWS/SES", "Reputation.BounceRate", {}, "Average",
                  900, 1, gt, 0.02, nb, "SES bounce rate above 2% (AWS: keep below 2%)"),
        AlarmSpec("ses-bounce-rate-critical", "§3 row 2", "AWS/SES", "Reputation.BounceRate", {}, "Maximum",
                  900, 1, ge, 0.05, nb, "SES bounce rate >= 5%: account under review"),
        AlarmSpec("ses-complaint-rate-warning", "§3 row 3", "AWS/SES", "Reputation.ComplaintRate", {}, "Average",
                  900, 1, ge, 0.0005, nb, "SES complaint rate >= 0.05%"),
        AlarmSpec("ses-complaint-rate-critical", "§3 row 4", "AWS/SES", "Reputation.ComplaintRate", {}, "Average",
                  900, 1, ge, 0.001, nb, "SES complaint rate >= 0.1%: account under review"),
        AlarmSpec("api-5xx", "§3 row 5", "AWS/ApiGateway", "5XXError", api, "Average", 60, 3, gt, 0.05, nb,
                  "API 5XX rate above 5%"),
        AlarmSpec("api-4xx", "§3 row 6", "AWS/ApiGateway", "4XXError", api, "Average", 60, 5, gt, 0.05, nb,
                  "API 4XX rate above 5% (auth failures, validation, throttling, WAF blocks)"),
        AlarmSpec("api-latency-p90", "§3 row 7", "AWS/ApiGateway", "Latency", api, "p90", 60, 5, ge, 2500, nb,
                  "API p90 latency >= 2500 ms"),
        AlarmSpec("waf-blocked-requests", "§3 row 9", "AWS/WAFV2", "BlockedRequests",
                  {"WebACL": args.web_acl_name, "Region": args.region, "Rule": "ALL"}, "Sum", 300, 1, gt,
                  args.waf_blocked_threshold, nb, "WAF blocked-request spike"),
        AlarmSpec("lambda-errors", "§3 row 10", "AWS/Lambda", "Errors", fn, "Sum", 60, 3, gt, 0, nb,
                  "Sender Lambda errors"),
        AlarmSpec("lambda-throttles", "§3 row 11", "AWS/Lambda", "Throttles", fn, "Sum", 60, 5, gt, 0, nb,
                  "Sender Lambda throttled (reserved concurrency reached)"),
        AlarmSpec("lambda-duration-p90", "§3 row 12", "AWS/Lambda", "Duration", fn, "p90", 60, 15, gt,
                  0.8 * args.function_timeout_seconds * 1000, nb, "Sender p90 duration above 80% of timeout"),
        AlarmSpec("lambda-concurrency", "§3 row 13", "AWS/Lambda", "ConcurrentExecutions", fn, "Maximum", 60, 10,
                  gt, 0.9 * args.reserved_concurrency, nb, "Sender concurrency above 90% of reserved"),
        AlarmSpec("dlq-not-empty", "§3 row 14", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                  {"QueueName": args.dlq_name}, "Maximum", 60, 1, ge, 1, nb, "Dead-letter queue holds messages"),
        AlarmSpec("feedback-queue-age", "§3 row 15", "AWS/SQS", "ApproximateAgeOfOldestMessage",
                  {"QueueName": args.feedback_queue_name}, "Maximum", 60, 15, ge, args.queue_age_sla_seconds, nb,
                  "SES feedback backlog older than its SLA"),
        AlarmSpec("alarm-topic-delivery-failures", "§3 row 16", "AWS/SNS", "NumberOfNotificationsFailed",
                  {"TopicName": alarm_topic_name}, "Sum", 60, 5, gt, 0, nb, "Alarm notifications failing"),
        AlarmSpec("feedback-topic-delivery-failures", "§3 row 16", "AWS/SNS", "NumberOfNotificationsFailed",
                  {"TopicName": args.feedback_topic_name}, "Sum", 60, 5, gt, 0, nb, "SES feedback delivery failing"),
        AlarmSpec("ses-rejects", "§3 row 17", "AWS/SES", "Reject",
                  {"ses:configuration-set": args.configuration_set_name}, "Sum", 300, 1, gt, 0, nb,
                  "SES rejected messages (virus / policy)"),
        AlarmSpec("ses-rendering-failures", "§3 row 17", "AWS/SES", "RenderingFailure",
                  {"ses:configuration-set": args.configuration_set_name}, "Sum", 300, 1, gt, 0, nb,
                  "SES template rendering failures"),
        AlarmSpec("rotation-failed", "rotation", rotation_metrics.NAMESPACE, rotation_metrics.ROTATION_FAILED,
                  stack, "Sum", 3600, 1, ge, 1, nb, "An API key rotation failed or was rolled back"),
        AlarmSpec("rotation-keys-over-max-age", "rotation", rotation_metrics.NAMESPACE,
                  rotation_metrics.KEYS_OVER_MAX_AGE, stack, "Maximum", 3600, 1, ge, 1, nb,
                  "A consumer's current API key is older than its max age"),
        AlarmSpec("rotation-oldest-key-age", "rotation", rotation_metrics.NAMESPACE,
                  rotation_metrics.OLDEST_KEY_AGE_SECONDS, stack, "Maximum", 3600, 1, gt,
                  args.rotation_max_key_age_days * 86400, nb, "Oldest current API key above the stack max age"),
        AlarmSpec("rotation-metrics-missing", "rotation", rotation_metrics.NAMESPACE,
                  rotation_metrics.OLDEST_KEY_AGE_SECONDS, stack, "SampleCount", 3600, args.rotation_silence_hours,
                  lt, 1, br, f"No rotation metrics for {args.rotation_silence_hours} h: rotation jobs not running"),
    ]


class Monitoring(pulumi.ComponentResource):
    """Alarm topic + alarms + CIS filters.

    Attributes: ``topic``, ``alarms`` (dict key -> ``aws.cloudwatch.MetricAlarm``),
    ``metric_filters`` (dict key -> ``aws.cloudwatch.LogMetricFilter``), ``specs`` (dict key -> AlarmSpec).
    """

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        topic_name = f"{args.prefix}-alarms"
        self.topic = aws.sns.Topic(
            f"{name}-alarms", name=topic_name, kms_master_key_id=args.audit_key_arn, signature_version=2,
            tags=dict(args.tags), opts=child)
        self.topic_policy = aws.sns.TopicPolicy(
            f"{name}-alarms-policy", arn=self.topic.arn,
            policy=service_publish_topic_policy(self.topic.arn, sid="AllowCloudWatchAlarms",
                                                service="cloudwatch.amazonaws.com", account_id=args.account_id),
            opts=child)
        aws.sns.TopicSubscription(
            f"{name}-alarms-email", topic=self.topic.arn, protocol="email", endpoint=args.alarm_email, opts=child)

        self.specs = {s.key: s for s in alarm_specs(args, topic_name)}
        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        for spec in self.specs.values():
            stat = {"extended_statistic": spec.statistic} if spec.statistic.startswith("p") else {
                "statistic": spec.statistic}
            self.alarms[spec.key] = self._alarm(
                name, spec.key, namespace=spec.namespace, metric_name=spec.metric, dimensions=dict(spec.dimensions),
                period=spec.period, evaluation_periods=spec.evaluation_periods, datapoints_to_alarm=spec.evaluation_periods,
                comparison_operator=spec.comparison, threshold=spec.threshold,
                treat_missing_data=spec.treat_missing_data,
                alarm_description=f"{spec.description} [{spec.basis}] {runbook(spec.key)}",
                prefix=args.prefix, **stat)

        self.metric_filters: dict[str, aws.cloudwatch.LogMetricFilter] = {}
        for key, control, pattern in CIS_FILTERS:
            metric = f"{args.prefix}-{key}"
            self.metric_filters[key] = aws.cloudwatch.LogMetricFilter(
                f"{name}-cis-{key}", name=metric, log_group_name=args.trail_log_group_name, pattern=pattern,
                metric_transformation={"name": metric, "namespace": CIS_NAMESPACE, "value": "1", "default_value": "0"},
                opts=child)
            self.alarms[f"cis-{key}"] = self._alarm(
                name, f"cis-{key}", namespace=CIS_NAMESPACE, metric_name=metric, statistic="Sum", period=300,
                evaluation_periods=1, comparison_operator="GreaterThanOrEqualToThreshold", threshold=1,
                treat_missing_data="notBreaching",
                alarm_description=f"CloudTrail: {key} [{control}] {runbook(f'cis-{key}')}",
                prefix=args.prefix, depends_on=[self.metric_filters[key]])
        self.insight_rules: dict[str, aws.cloudwatch.ContributorInsightRule] = {}
        self._anomaly_alarms(name, args)
        self.register_outputs({"alarm_topic_arn": self.topic.arn})

    def _anomaly_alarms(self, name: str, args: MonitoringArgs) -> None:
        """Issue 13 part 3: auth-failure bursts, per-consumer traffic anomalies, WAF block surges,
        per-consumer rotation health."""
        child = pulumi.ResourceOptions(parent=self)
        al = args.alerting
        stage = {"Stage": args.stage_name}
        if args.access_log_group_name is not None:
            # 403s per stage: API Gateway's metrics have 4XXError but not 403 alone.
            self.metric_filters["api-auth-failures"] = aws.cloudwatch.LogMetricFilter(
                f"{name}-api-auth-failures", name=f"{args.prefix}-api-auth-failures",
                log_group_name=args.access_log_group_name, pattern='{ $.status = "403" }',
                metric_transformation={"name": AUTH_FAILURES_METRIC, "namespace": API_NAMESPACE, "value": "1",
                                       "dimensions": {"Stage": "$.stage"}, "unit": "Count"},
                opts=child)
            self.alarms["api-auth-failures"] = self._alarm(
                name, "api-auth-failures", namespace=API_NAMESPACE, metric_name=AUTH_FAILURES_METRIC,
                dimensions=stage, statistic="Sum", period=300, evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold", threshold=al.auth_failures_per_stage,
                treat_missing_data="notBreaching",
                alarm_description=(f"Burst of 403 (failed authentication) on stage {args.stage_name}: "
                                   f">= {al.auth_failures_per_stage} in 5 min {runbook('api-auth-failures')}"),
                prefix=args.prefix, depends_on=[self.metric_filters["api-auth-failures"]])
            # 403s per source IP: the top contributor of a Contributor Insights rule.
            rule_name = f"{args.prefix}-auth-failures-by-source"
            self.insight_rules["auth-failures-by-source"] = aws.cloudwatch.ContributorInsightRule(
                f"{name}-auth-failures-by-source", rule_name=rule_name, rule_state="ENABLED",
                rule_definition=pulumi.Output.from_input(args.access_log_group_name).apply(lambda group: json.dumps({
                    "Schema": {"Name": "CloudWatchLogRule", "Version": 1}, "LogGroupNames": [group],
                    "LogFormat": "JSON",
                    "Contribution": {"Keys": ["$.sourceIp"], "Filters": [{"Match": "$.status", "In": ["403"]}]},
                    "AggregateOn": "Count"}, sort_keys=True)),
                tags=dict(args.tags), opts=child)
            self.alarms["api-auth-failures-per-source"] = self._alarm(
                name, "api-auth-failures-per-source", evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold", threshold=al.auth_failures_per_source,
                treat_missing_data="notBreaching",
                metric_queries=[{"id": "top", "return_data": True, "period": 300, "label": "403s of the top source",
                                 "expression": f"INSIGHT_RULE_METRIC('{rule_name}', 'MaxContributorValue')"}],
                alarm_description=(f"One source IP got >= {al.auth_failures_per_source} 403s in 5 min "
                                   f"{runbook('api-auth-failures-per-source')}"),
                prefix=args.prefix, depends_on=[self.insight_rules["auth-failures-by-source"]])
        if args.sender_log_group_name is not None and args.consumers:
            self.metric_filters["api-consumer-requests"] = aws.cloudwatch.LogMetricFilter(
                f"{name}-api-consumer-requests", name=f"{args.prefix}-api-consumer-requests",
                log_group_name=args.sender_log_group_name, pattern='{ $.message = "request record" }',
                metric_transformation={"name": CONSUMER_REQUESTS_METRIC, "namespace": API_NAMESPACE, "value": "1",
                                       "dimensions": {DIMENSION_CONSUMER: "$.audit.consumer"}, "unit": "Count"},
                opts=child)
            for consumer in args.consumers:
                key = f"api-consumer-traffic-anomaly-{consumer}"
                self.alarms[key] = self._anomaly_alarm(
                    name, key, family="api-consumer-traffic-anomaly", band=al.anomaly_band_width,
                    metric={"namespace": API_NAMESPACE, "metric_name": CONSUMER_REQUESTS_METRIC,
                            "dimensions": {DIMENSION_CONSUMER: consumer}, "period": 300, "stat": "Sum"},
                    description=f"Unusual request count for consumer {consumer} (its API key)",
                    prefix=args.prefix, depends_on=[self.metric_filters["api-consumer-requests"]])
        self.alarms["waf-blocked-requests-anomaly"] = self._anomaly_alarm(
            name, "waf-blocked-requests-anomaly", family="waf-blocked-requests-anomaly", band=al.anomaly_band_width,
            metric={"namespace": "AWS/WAFV2", "metric_name": "BlockedRequests", "period": 300, "stat": "Sum",
                    "dimensions": {"WebACL": args.web_acl_name, "Region": args.region, "Rule": "ALL"}},
            description="WAF blocked requests above their usual band (block surge)", prefix=args.prefix)
        rotation = {
            "rotation-consumer-key-over-max-age": (
                "KeyOverMaxAge", "Maximum", 3600, 1, "{c}'s current API key is older than its max age"),
            "rotation-consumer-unacknowledged": (
                "UnacknowledgedKeyAgeSeconds", "Maximum", 3600, al.ack_deadline_hours * 3600,
                f"{{c}} has not acknowledged its new API key within {al.ack_deadline_hours} h"),
            "rotation-consumer-stuck-rolling-back": (
                "RollingBackAgeSeconds", "Maximum", 300, al.rolling_back_minutes * 60,
                f"{{c}}'s rotation has been rolling back for over {al.rolling_back_minutes} min"),
        }
        for consumer in args.consumers:
            for family, (metric, stat, period, threshold, text) in rotation.items():
                key = f"{family}-{consumer}"
                self.alarms[key] = self._alarm(
                    name, key, namespace=rotation_metrics.NAMESPACE, metric_name=metric,
                    dimensions={rotation_metrics.DIMENSION_STACK: args.stack, DIMENSION_CONSUMER: consumer},
                    statistic=stat, period=period, evaluation_periods=1,
                    comparison_operator="GreaterThanOrEqualToThreshold" if metric == "KeyOverMaxAge"
                    else "GreaterThanThreshold",
                    threshold=threshold, treat_missing_data="notBreaching",
                    alarm_description=f"{text.format(c=consumer)} [rotation] {runbook(family)}",
                    prefix=args.prefix)

    def _anomaly_alarm(self, name: str, key: str, *, family: str, band: float, metric: dict, description: str,
                       prefix: str, depends_on=None) -> aws.cloudwatch.MetricAlarm:
        """An anomaly-detection alarm: ALARM when the metric is above ``ANOMALY_DETECTION_BAND(m1, band)``
        for 3 of 3 periods (CloudWatch "Using CloudWatch anomaly detection")."""
        return self._alarm(
            name, key, evaluation_periods=3, datapoints_to_alarm=3, comparison_operator="GreaterThanUpperThreshold",
            threshold_metric_id="band", treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "m1", "return_data": True, "metric": metric},
                {"id": "band", "return_data": True, "label": "expected band",
                 "expression": f"ANOMALY_DETECTION_BAND(m1, {band:g})"},
            ],
            alarm_description=f"{description} [anomaly band {band:g}] {runbook(family)}",
            prefix=prefix, depends_on=depends_on)

    def _alarm(self, name: str, key: str, *, prefix: str, depends_on=None, **kwargs) -> aws.cloudwatch.MetricAlarm:
        if kwargs["treat_missing_data"] not in MISSING_DATA_VALUES:
            raise ValueError(f"treat_missing_data for {key} must be one of {MISSING_DATA_VALUES}")
        return aws.cloudwatch.MetricAlarm(
            f"{name}-{key}", name=f"{prefix}-{key}", alarm_actions=[self.topic.arn], ok_actions=[self.topic.arn],
            actions_enabled=True, **kwargs,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on or []))
