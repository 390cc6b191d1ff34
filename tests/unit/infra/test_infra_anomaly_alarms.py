"""Issue 13 part 3 under mocks: anomaly alarms someone can act on. Bursts of 403s per stage and per
source, unusual traffic per consumer (anomaly detection, not a static threshold), WAF block surges,
SES bounce and complaint rates, and per-consumer rotation health; every alarm's description names a
runbook section that exists in docs/operations.md. Each Pulumi test returns the Output it checks (P5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi
import pytest

from infra.components.monitoring import (
    API_NAMESPACE,
    AUTH_FAILURES_METRIC,
    CONSUMER_REQUESTS_METRIC,
    ROTATION_CONSUMER_METRICS,
    RUNBOOK_DOC,
)
from rotation import metrics as rm

OPERATIONS = Path(__file__).resolve().parents[3] / RUNBOOK_DOC
RUNBOOK_RE = re.compile(r"Runbook: docs/operations\.md#(alarm-[a-z0-9-]+)")
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
CONSUMERS = ("billing", "crm", "newsletter")


def anchors() -> set[str]:
    return set(re.findall(r'<a id="([^"]+)"></a>', OPERATIONS.read_text(encoding="utf-8")))


@pulumi.runtime.test
def test_every_alarm_description_names_a_runbook_section_that_exists(dev_run, h):
    """Every MetricAlarm of the stack (monitoring, CIS, scheduled rotator) names
    docs/operations.md#alarm-<key>, and that anchor exists, followed by a section heading."""
    text = OPERATIONS.read_text(encoding="utf-8")
    existing = anchors()

    def check(resources):
        alarms = h.of_type(resources, ALARM)
        assert len(alarms) > 50
        for alarm in alarms:
            description = alarm.inputs.get("alarmDescription") or ""
            found = RUNBOOK_RE.findall(description)
            assert len(found) == 1, (alarm.name, description)
            assert found[0] in existing, (alarm.name, found[0])
            assert len(description) <= 1024
        for anchor in {RUNBOOK_RE.findall(a.inputs["alarmDescription"])[0] for a in alarms}:
            after = text.split(f'<a id="{anchor}"></a>', 1)[1].lstrip()
            assert after.startswith("#### "), anchor

    return h.check_recorded(dev_run, check)


def test_runbook_check_is_not_vacuous():
    assert "alarm-no-such-alarm" not in anchors()
    assert {"alarm-api-auth-failures", "alarm-rotation-consumer-unacknowledged"} <= anchors()


def _alarm(resources, name):
    (found,) = [r for r in resources if r.typ == ALARM and r.name == f"monitoring-{name}"]
    return found.inputs


@pulumi.runtime.test
def test_auth_failure_bursts_per_stage_and_per_source(dev_run, h):
    access_log = dev_run.stack.api.access_log_group.name

    def check(v):
        log_group = v[0]
        resources = dev_run.resources
        (flt,) = [r.inputs for r in resources if r.name == "monitoring-api-auth-failures"
                  and r.typ.endswith("LogMetricFilter")]
        assert flt["logGroupName"] == log_group and flt["pattern"] == '{ $.status = "403" }'
        assert flt["metricTransformation"]["dimensions"] == {"Stage": "$.stage"}
        stage = _alarm(resources, "api-auth-failures")
        assert (stage["namespace"], stage["metricName"]) == (API_NAMESPACE, AUTH_FAILURES_METRIC)
        assert stage["dimensions"] == {"Stage": "live"} and stage["threshold"] == 50.0
        (rule,) = [r.inputs for r in resources if r.typ == "aws:cloudwatch/contributorInsightRule:ContributorInsightRule"]
        body = json.loads(rule["ruleDefinition"])
        assert body["LogGroupNames"] == [log_group] and body["Contribution"]["Keys"] == ["$.sourceIp"]
        assert body["Contribution"]["Filters"] == [{"Match": "$.status", "In": ["403"]}]
        source = _alarm(resources, "api-auth-failures-per-source")
        (query,) = source["metricQueries"]
        assert query["expression"] == f"INSIGHT_RULE_METRIC('{rule['ruleName']}', 'MaxContributorValue')"
        assert source["threshold"] == 20.0

    return pulumi.Output.all(access_log, *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_per_consumer_traffic_uses_anomaly_detection_not_a_static_threshold(dev_run, h):
    sender_log = dev_run.stack.sender.log_group.name

    def check(v):
        resources = dev_run.resources
        (flt,) = [r.inputs for r in resources if r.name == "monitoring-api-consumer-requests"]
        assert flt["logGroupName"] == v[0] and flt["pattern"] == '{ $.message = "request record" }'
        assert flt["metricTransformation"]["dimensions"] == {"Consumer": "$.audit.consumer"}
        for consumer in CONSUMERS:
            alarm = _alarm(resources, f"api-consumer-traffic-anomaly-{consumer}")
            assert alarm["comparisonOperator"] == "GreaterThanUpperThreshold"
            assert alarm["thresholdMetricId"] == "band" and "threshold" not in alarm
            queries = {q["id"]: q for q in alarm["metricQueries"]}
            assert queries["band"]["expression"] == "ANOMALY_DETECTION_BAND(m1, 3)"
            metric = queries["m1"]["metric"]
            assert (metric["namespace"], metric["metricName"]) == (API_NAMESPACE, CONSUMER_REQUESTS_METRIC)
            assert metric["dimensions"] == {"Consumer": consumer}

    return pulumi.Output.all(sender_log, *h.component_urns(dev_run)).apply(check)


@pulumi.runtime.test
def test_waf_block_surge_has_an_anomaly_band_and_ses_rates_are_alarmed(dev_run, h):
    def check(resources):
        waf = _alarm(resources, "waf-blocked-requests-anomaly")
        queries = {q["id"]: q for q in waf["metricQueries"]}
        assert queries["m1"]["metric"]["metricName"] == "BlockedRequests"
        assert queries["band"]["expression"].startswith("ANOMALY_DETECTION_BAND(m1,")
        for key, metric in (("ses-bounce-rate-critical", "Reputation.BounceRate"),
                            ("ses-complaint-rate-critical", "Reputation.ComplaintRate")):
            assert _alarm(resources, key)["metricName"] == metric

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
@pytest.mark.parametrize("family, metric, threshold", [
    ("rotation-consumer-key-over-max-age", "KeyOverMaxAge", 1.0),
    ("rotation-consumer-unacknowledged", "UnacknowledgedKeyAgeSeconds", 48 * 3600.0),
    ("rotation-consumer-stuck-rolling-back", "RollingBackAgeSeconds", 30 * 60.0),
])
def test_rotation_health_alarms_per_consumer(dev_run, h, family, metric, threshold):
    def check(resources):
        assert metric in ROTATION_CONSUMER_METRICS
        for consumer in CONSUMERS:
            alarm = _alarm(resources, f"{family}-{consumer}")
            assert alarm["namespace"] == rm.NAMESPACE == "SecureMailApi/Rotation"
            assert alarm["metricName"] == metric and alarm["threshold"] == threshold
            assert alarm["dimensions"] == {rm.DIMENSION_STACK: "dev", "Consumer": consumer}
            assert consumer in alarm["alarmDescription"]

    return h.check_recorded(dev_run, check)
