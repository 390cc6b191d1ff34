"""The CloudWatch dashboard (infra/components/dashboard.py) under mocks, and the Grafana dashboard
in docs/: both name only metrics the code emits (rotation/metrics.py) or AWS publishes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pulumi

from infra.components.dashboard import dashboard_body
from rotation import metrics as rm

ROOT = Path(__file__).resolve().parents[3]


def _metric_names(body: dict) -> set[str]:
    names = set()
    for w in body["widgets"]:
        for entry in w.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], str):
                names.add(entry[1])
            else:
                names |= set(re.findall(r'MetricName="(\w+)"', entry[0]["expression"]))
    return names


@pulumi.runtime.test
def test_the_stack_declares_a_dashboard_with_api_waf_rotation_and_every_alarm(dev_run):
    d = dev_run.stack.dashboard.dashboard
    arns = [a.arn for a in dev_run.stack.monitoring.alarms.values()]

    def check(v):
        name, body, *alarm_arns = v
        assert name.endswith("-operations")
        body = json.loads(body)
        names = _metric_names(body)
        assert {"Count", "4XXError", "5XXError", "Latency", "BlockedRequests"} <= names
        assert {rm.KEY_AGE_SECONDS, rm.ROTATIONS, rm.TIME_TO_CONFIRM_SECONDS, rm.ACKNOWLEDGEMENTS_PENDING,
                rm.LEASE_TAKEOVERS} <= names
        in_widgets = [a for w in body["widgets"] if w["type"] == "alarm" for a in w["properties"]["alarms"]]
        assert sorted(in_widgets) == sorted(alarm_arns) and len(alarm_arns) > 20

    return pulumi.Output.all(d.dashboard_name, d.dashboard_body, *arns).apply(check)


def test_dashboard_body_is_valid_widget_json_within_the_grid():
    body = json.loads(dashboard_body(stack="prod", region="eu-west-1", api_name="api", stage="v1", web_acl="acl",
                                     alarm_arns=[f"arn:aws:cloudwatch:eu-west-1:1:alarm:a{i}" for i in range(130)]))
    for w in body["widgets"]:
        assert w["type"] in ("metric", "text", "alarm") and 0 <= w["x"] and w["x"] + w["width"] <= 24
        for entry in w["properties"].get("metrics", []):
            assert isinstance(entry, list)                 # CloudWatch: every metrics entry is an array
    alarm_widgets = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert [len(w["properties"]["alarms"]) for w in alarm_widgets] == [100, 30]   # at most 100 per widget
    key_age = next(w for w in body["widgets"] if w["properties"].get("title", "").startswith("API key age"))
    assert 'Stack="prod"' in key_age["properties"]["metrics"][0][0]["expression"]


def test_grafana_dashboard_loads_and_every_panel_queries_a_metric_the_code_emits():
    dash = json.loads((ROOT / "docs" / "grafana" / "rotation-dashboard.json").read_text())
    assert dash["title"] and dash["uid"] and dash["panels"]
    emitted = {m.prometheus for m in rm.METRICS}
    queried = set()
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            found = set(re.findall(r"\b(rotation_[a-z_]+)\b", t["expr"]))
            assert found and found <= emitted, (p["title"], found - emitted)
            queried |= found
    assert {"rotation_key_age_seconds", "rotation_rotations_total", "rotation_time_to_confirm_seconds",
            "rotation_acknowledgements_pending", "rotation_lease_takeovers_total"} <= queried
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
