"""The operators' CloudWatch dashboard: the API, the WAF, key rotation and every alarm on one page.

Widgets (dashboard body structure:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html):

* API requests (``AWS/ApiGateway`` ``Count``), 4XX / 5XX (``4XXError``, ``5XXError``), latency
  (``Latency`` p50/p90/p99, ``IntegrationLatency`` p90), per API name and stage;
* WAF allowed vs. blocked requests (``AWS/WAFV2``, ``Rule=ALL``);
* key age per consumer (``KeyAgeSeconds`` through a ``SEARCH`` expression, so a consumer added to
  the consumers file shows up without a deploy) and the oldest key; rotation outcomes
  (``Rotations`` by ``Outcome``, ``RotationSucceeded`` / ``RotationFailed``); time to confirm a new
  key, acknowledgements pending and lease takeovers. Metric names come from :mod:`rotation.metrics`;
* an alarm-status widget holding every alarm of :class:`~infra.components.monitoring.Monitoring`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from rotation import metrics as rm

__all__ = ["Dashboard", "DashboardArgs", "dashboard_body"]

_API = "AWS/ApiGateway"
_WAF = "AWS/WAFV2"
_ALARM_WIDGET_MAX = 100   # alarms per alarm-status widget (CloudWatch limit)


@dataclass
class DashboardArgs:
    prefix: str
    stack: str
    region: str
    rest_api_name: pulumi.Input[str]
    stage_name: str
    web_acl_name: pulumi.Input[str]
    alarm_arns: Sequence[pulumi.Input[str]]


def _metric_widget(title: str, metrics: list[list[Any]], *, x: int, y: int, region: str, stat: str = "Sum",
                   period: int = 300, w: int = 12, h: int = 6, label: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"title": title, "region": region, "view": "timeSeries", "stacked": False,
                             "stat": stat, "period": period, "metrics": metrics}
    if label:
        props["yAxis"] = {"left": {"label": label, "showUnits": False}}
    return {"type": "metric", "x": x, "y": y, "width": w, "height": h, "properties": props}


def dashboard_body(*, stack: str, region: str, api_name: str, stage: str, web_acl: str,
                   alarm_arns: Sequence[str]) -> str:
    """The dashboard body (JSON) for resolved names and alarm ARNs; pure, so it is tested directly."""
    api = ["ApiName", api_name, "Stage", stage]
    waf = ["WebACL", web_acl, "Region", region, "Rule", "ALL"]
    st = [rm.DIMENSION_STACK, stack]

    def search(metric: str, dims: str, stat: str, period: int, ident: str) -> list[list[dict[str, str]]]:
        """A metrics-array entry holding a SEARCH expression over one metric of every consumer/outcome."""
        expr = (f"SEARCH('{{{rm.NAMESPACE},{dims}}} MetricName=\"{metric}\" {rm.DIMENSION_STACK}=\"{stack}\"', "
                f"'{stat}', {period})")
        return [[{"expression": expr, "id": ident}]]

    widgets = [
        {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {
            "markdown": f"# secure-mail-api `{stack}`\nRunbooks for each alarm: docs/operations.md, section "
                        "Alarms. Rotation metrics: rotation/metrics.py."}},
        _metric_widget("API requests", [[_API, "Count", *api, {"label": "requests"}]], x=0, y=2, region=region),
        _metric_widget("API 4XX / 5XX", [[_API, "4XXError", *api, {"label": "4XX"}],
                                         [_API, "5XXError", *api, {"label": "5XX"}]], x=12, y=2, region=region),
        _metric_widget("API latency (ms)", [[_API, "Latency", *api, {"stat": "p50", "label": "p50"}],
                                            [_API, "Latency", *api, {"stat": "p90", "label": "p90"}],
                                            [_API, "Latency", *api, {"stat": "p99", "label": "p99"}],
                                            [_API, "IntegrationLatency", *api, {"stat": "p90",
                                                                                "label": "integration p90"}]],
                       x=0, y=8, region=region, stat="p90", period=60),
        _metric_widget("WAF requests", [[_WAF, "BlockedRequests", *waf, {"label": "blocked"}],
                                        [_WAF, "AllowedRequests", *waf, {"label": "allowed"}]],
                       x=12, y=8, region=region),
        _metric_widget("API key age per consumer (s)",
                       [*search(rm.KEY_AGE_SECONDS, f"Consumer,{rm.DIMENSION_STACK}", "Maximum", 3600, "age"),
                        [rm.NAMESPACE, rm.OLDEST_KEY_AGE_SECONDS, *st, {"label": "oldest", "stat": "Maximum"}]],
                       x=0, y=14, region=region, stat="Maximum", period=3600, label="seconds"),
        _metric_widget("Rotation outcomes",
                       [*search(rm.ROTATIONS, f"Outcome,{rm.DIMENSION_STACK}", "Sum", 3600, "outcomes"),
                        [rm.NAMESPACE, rm.ROTATION_SUCCEEDED, *st, {"label": "succeeded"}],
                        [rm.NAMESPACE, rm.ROTATION_FAILED, *st, {"label": "failed"}]],
                       x=12, y=14, region=region, period=3600),
        _metric_widget("Time to confirm a new key (s)",
                       search(rm.TIME_TO_CONFIRM_SECONDS, f"Consumer,{rm.DIMENSION_STACK}", "Maximum", 3600, "confirm"),
                       x=0, y=20, region=region, stat="Maximum", period=3600, w=8),
        _metric_widget("Acknowledgements pending",
                       [[rm.NAMESPACE, rm.ACKNOWLEDGEMENTS_PENDING, *st, {"stat": "Maximum"}],
                        [rm.NAMESPACE, rm.KEYS_OVER_MAX_AGE, *st, {"stat": "Maximum", "label": "keys over max age"}]],
                       x=8, y=20, region=region, stat="Maximum", period=3600, w=8),
        _metric_widget("Lease takeovers", [[rm.NAMESPACE, rm.LEASE_TAKEOVERS, *st]], x=16, y=20, region=region,
                       period=3600, w=8),
    ]
    arns = list(alarm_arns)
    for i in range(0, len(arns), _ALARM_WIDGET_MAX):
        widgets.append({"type": "alarm", "x": 0, "y": 26 + 6 * (i // _ALARM_WIDGET_MAX), "width": 24, "height": 6,
                        "properties": {"title": "Alarms", "alarms": arns[i:i + _ALARM_WIDGET_MAX],
                                       "sortBy": "stateUpdatedTimestamp", "states": []}})
    return json.dumps({"widgets": widgets}, sort_keys=True)


class Dashboard(pulumi.ComponentResource):
    """``aws.cloudwatch.Dashboard`` ``<prefix>-operations``. Attribute: ``dashboard``."""

    def __init__(self, name: str, args: DashboardArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("secure-mail-api:monitoring:Dashboard", name, None, opts)
        body = pulumi.Output.all(args.rest_api_name, args.web_acl_name, *args.alarm_arns).apply(
            lambda v: dashboard_body(stack=args.stack, region=args.region, api_name=v[0], stage=args.stage_name,
                                     web_acl=v[1], alarm_arns=v[2:]))
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-operations", dashboard_name=f"{args.prefix}-operations", dashboard_body=body,
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"dashboard_name": self.dashboard.dashboard_name})
