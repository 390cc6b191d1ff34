"""Alarms (docs/security-baseline.md §3, §3.1, CloudWatch.1-17) and rotation-health alarms. Each test returns
the Output it checks (P5)."""

from __future__ import annotations

import pulumi
import pytest

from infra.components.monitoring import CIS_FILTERS, CIS_NAMESPACE
from rotation import metrics as rm

# key -> (metric, statistic, period, evaluation periods, comparison, threshold, treat_missing_data)
EXPECTED = {
    "ses-bounce-rate-warning": ("Reputation.BounceRate", "Average", 900, 1, "GreaterThanThreshold", 0.02, "notBreaching"),
    "ses-bounce-rate-critical": ("Reputation.BounceRate", "Maximum", 900, 1, "GreaterThanOrEqualToThreshold", 0.05, "notBreaching"),
    "ses-complaint-rate-warning": ("Reputation.ComplaintRate", "Average", 900, 1, "GreaterThanOrEqualToThreshold", 0.0005, "notBreaching"),
    "ses-complaint-rate-critical": ("Reputation.ComplaintRate", "Average", 900, 1, "GreaterThanOrEqualToThreshold", 0.001, "notBreaching"),
    "api-5xx": ("5XXError", "Average", 60, 3, "GreaterThanThreshold", 0.05, "notBreaching"),
    "api-4xx": ("4XXError", "Average", 60, 5, "GreaterThanThreshold", 0.05, "notBreaching"),
    "api-latency-p90": ("Latency", "p90", 60, 5, "GreaterThanOrEqualToThreshold", 2500, "notBreaching"),
    "waf-blocked-requests": ("BlockedRequests", "Sum", 300, 1, "GreaterThanThreshold", 100, "notBreaching"),
    "lambda-errors": ("Errors", "Sum", 60, 3, "GreaterThanThreshold", 0, "notBreaching"),
    "lambda-throttles": ("Throttles", "Sum", 60, 5, "GreaterThanThreshold", 0, "notBreaching"),
    "lambda-duration-p90": ("Duration", "p90", 60, 15, "GreaterThanThreshold", 8000, "notBreaching"),
    "lambda-concurrency": ("ConcurrentExecutions", "Maximum", 60, 10, "GreaterThanThreshold", 9, "notBreaching"),
    "dlq-not-empty": ("ApproximateNumberOfMessagesVisible", "Maximum", 60, 1, "GreaterThanOrEqualToThreshold", 1, "notBreaching"),
    "feedback-queue-age": ("ApproximateAgeOfOldestMessage", "Maximum", 60, 15, "GreaterThanOrEqualToThreshold", 900, "notBreaching"),
    "alarm-topic-delivery-failures": ("NumberOfNotificationsFailed", "Sum", 60, 5, "GreaterThanThreshold", 0, "notBreaching"),
    "feedback-topic-delivery-failures": ("NumberOfNotificationsFailed", "Sum", 60, 5, "GreaterThanThreshold", 0, "notBreaching"),
    "ses-rejects": ("Reject", "Sum", 300, 1, "GreaterThanThreshold", 0, "notBreaching"),
    "ses-rendering-failures": ("RenderingFailure", "Sum", 300, 1, "GreaterThanThreshold", 0, "notBreaching"),
    "rotation-failed": (rm.ROTATION_FAILED, "Sum", 3600, 1, "GreaterThanOrEqualToThreshold", 1, "notBreaching"),
    "rotation-keys-over-max-age": (rm.KEYS_OVER_MAX_AGE, "Maximum", 3600, 1, "GreaterThanOrEqualToThreshold", 1, "notBreaching"),
    "rotation-oldest-key-age": (rm.OLDEST_KEY_AGE_SECONDS, "Maximum", 3600, 1, "GreaterThanThreshold", 90 * 86400, "notBreaching"),
    "rotation-metrics-missing": (rm.OLDEST_KEY_AGE_SECONDS, "SampleCount", 3600, 24, "LessThanThreshold", 1, "breaching"),
}


@pulumi.runtime.test
@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_alarm_matches_baseline_section_3(dev_run, key):
    """§3 rows 1-7, 9-17 and the rotation-health alarms: metric, statistic, period, M/N, threshold."""
    alarm = dev_run.stack.monitoring.alarms[key]
    metric, stat, period, evals, comparison, threshold, missing = EXPECTED[key]

    def check(v):
        m, s, es, p, e, c, t, tmd = v
        assert m == metric and (s or es) == stat and p == period and e == evals
        assert c == comparison and t == pytest.approx(threshold) and tmd == missing

    return pulumi.Output.all(alarm.metric_name, alarm.statistic, alarm.extended_statistic, alarm.period,
                             alarm.evaluation_periods, alarm.comparison_operator, alarm.threshold,
                             alarm.treat_missing_data).apply(check)


@pulumi.runtime.test
def test_treat_missing_data_is_set_per_alarm(dev_run, h):
    """Every MetricAlarm sets treat_missing_data explicitly, and not one value blindly for all:
    silence is healthy for traffic alarms but is itself the fault for rotation-metrics-missing."""

    def check(resources):
        alarms = h.of_type(resources, "aws:cloudwatch/metricAlarm:MetricAlarm")
        values = {a.name: a.inputs.get("treatMissingData") for a in alarms}
        assert all(v in ("breaching", "notBreaching", "ignore", "missing") for v in values.values()), values
        assert values["monitoring-rotation-metrics-missing"] == "breaching"
        assert values["monitoring-dlq-not-empty"] == "notBreaching"
        assert len(set(values.values())) > 1

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_cloudwatch_15_17_every_alarm_notifies_encrypted_topic(dev_run, h):
    """CloudWatch.15/17 / CKV_AWS_319: ALARM + OK actions to the alarm topic, actions enabled; the
    topic uses the audit CMK, whose policy grants cloudwatch.amazonaws.com (§1.2)."""
    topic = dev_run.stack.monitoring.topic

    def check(v):
        topic_arn, key, audit_key = v[:3]
        assert key == audit_key
        alarms = h.of_type(dev_run.resources, "aws:cloudwatch/metricAlarm:MetricAlarm")
        scheduled = 1 if dev_run.stack.scheduled_rotator is not None else 0  # its Errors alarm
        # issue 13 part 3: 403s per stage and per source, the WAF anomaly band, and per consumer one
        # traffic anomaly alarm plus three rotation alarms (tests/unit/infra/test_infra_anomaly_alarms.py)
        anomaly = 3 + 4 * len(dev_run.stack.config.consumers)
        assert len(alarms) == len(EXPECTED) + len(CIS_FILTERS) + scheduled + anomaly
        for a in alarms:
            assert a.inputs["alarmActions"] == [topic_arn] and a.inputs["okActions"] == [topic_arn]
            assert a.inputs["actionsEnabled"] is True

    return pulumi.Output.all(topic.arn, topic.kms_master_key_id, dev_run.stack.encryption.audit_key.arn,
                             *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_cloudwatch_1_to_14_cis_metric_filters_on_trail_log_group(dev_run, h):
    """CloudWatch.1-14 (CIS 3.x/4.x): one filter per control on the CloudTrail log group, value 1 /
    default 0, and a Sum/300 s/>= 1 alarm; the KMS disable/deletion filter (CloudWatch.7) included."""
    trail_lg = dev_run.stack.audit.log_group.name

    def check(v):
        lg_name = v[0]
        filters = {f.inputs["name"]: f.inputs for f in
                   h.of_type(dev_run.resources, "aws:cloudwatch/logMetricFilter:LogMetricFilter")}
        controls = {c for _, c, _ in CIS_FILTERS}
        assert {f"CloudWatch.{i}" for i in range(1, 15)} <= controls
        for key, _control, pattern in CIS_FILTERS:
            f = filters[f"secure-mail-api-dev-{key}"]
            assert f["logGroupName"] == lg_name and f["pattern"] == pattern
            mt = f["metricTransformation"]
            assert mt["value"] == "1" and mt["defaultValue"] == "0" and mt["namespace"] == CIS_NAMESPACE
            alarm = dev_run.stack.monitoring.alarms[f"cis-{key}"]
            assert alarm is not None
        kms = filters["secure-mail-api-dev-kms-cmk-disable-or-deletion"]["pattern"]
        assert "DisableKey" in kms and "ScheduleKeyDeletion" in kms
        cis_alarms = [a for a in h.of_type(dev_run.resources, "aws:cloudwatch/metricAlarm:MetricAlarm")
                      if a.name.startswith("monitoring-cis-")]
        for a in cis_alarms:
            i = a.inputs
            assert i["statistic"] == "Sum" and i["period"] == 300.0 and i["evaluationPeriods"] == 1.0
            assert i["comparisonOperator"] == "GreaterThanOrEqualToThreshold" and i["threshold"] == 1.0
            assert i["treatMissingData"] == "notBreaching"

    return pulumi.Output.all(trail_lg, *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_rotation_alarms_use_shared_metric_names_and_stack_dimension(dev_run):
    """Rotation health: alarms read rotation.metrics (namespace SecureMailApi/Rotation, dimension Stack)."""
    m = dev_run.stack.monitoring.alarms
    keys = ("rotation-failed", "rotation-keys-over-max-age", "rotation-oldest-key-age", "rotation-metrics-missing")

    def check(v):
        for i in range(0, len(v), 2):
            ns, dims = v[i], v[i + 1]
            assert ns == rm.NAMESPACE and dims == {rm.DIMENSION_STACK: "dev"}

    outs = []
    for k in keys:
        outs += [m[k].namespace, m[k].dimensions]
    return pulumi.Output.all(*outs).apply(check)
