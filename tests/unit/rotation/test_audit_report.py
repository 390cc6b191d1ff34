"""`rotation audit`'s report from fake observations: findings, the JSON schema, the table, the HTML
page and its charts (checked in headless Chromium when Debian's package is installed), the Vault
audit-log scanner and policy-drift comparisons. No servers here (tests/integration/rotation/
test_audit_live.py runs the command on the embedded stack)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from rotation.records import KeyRecord, KeyState, RotationRecord, to_iso
from rotation.reporting.audit_report import ConsumerObservation, Observed, build_report, load_schema, rfc3339
from rotation.reporting.policy_drift import compare_iam, compare_vault, expected_vault_policies
from rotation.reporting.render import render_html, render_json, render_table
from rotation.reporting.vault_audit_log import default_expected_identities, scan

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "S3cretValueThatMustNeverAppear0123456789"
DAY = 86400


def rec(serial: int, days_ago: float, key_id: str, value: str = SECRET, **kw) -> KeyRecord:
    t = NOW - timedelta(days=days_ago)
    return KeyRecord(serial=serial, value=value + str(serial), rotation_id=f"r{serial}", created_at=to_iso(t),
                     key_id=key_id, key_name=f"k-{key_id}", promoted_at=to_iso(t), **kw)


def observed(**kw) -> Observed:
    fresh = ConsumerObservation(
        name="billing", tier="premium", max_age_seconds=30 * DAY, grace_period_seconds=3600,
        state=KeyState(current=rec(3, 2, "k3"), previous=rec(2, 20, "k2"),
                       retired=(rec(1, 40, "k1", disabled_at=to_iso(NOW - timedelta(days=19))),), version=7),
        journal=RotationRecord(
            last_outcome={"outcome": "ok", "action": "rotate", "at": to_iso(NOW - timedelta(days=2)),
                          "rotation_id": "r3", "detail": "promoted"},
            acks={"file:/x": {"ok": True, "serial": 3, "at": to_iso(NOW - timedelta(days=2)), "required": True}},
            traffic={"k2": {"count": 5, "since": to_iso(NOW - timedelta(days=1))}}, version=9),
        app_ack={"serial": 3, "key_id": "k3", "at": to_iso(NOW - timedelta(days=1)), "host": "app-1"},
        requests_today={"k3": 120, "k2": 0}, last_seen_day={"k3": "2026-03-01", "k2": ""})
    stale = ConsumerObservation(
        name="crm", tier="standard", max_age_seconds=30 * DAY, grace_period_seconds=3600,
        state=KeyState(current=rec(1, 45, "c1"), version=1),
        journal=RotationRecord(last_outcome={"outcome": "rolled_back", "at": to_iso(NOW), "detail": "canary failed"},
                               acks={"webhook:h": {"ok": False, "serial": 2, "at": to_iso(NOW), "required": True}}),
        app_ack={"serial": 0}, requests_today={"c1": None})
    empty = ConsumerObservation(name="newsletter", tier="standard", max_age_seconds=30 * DAY,
                                grace_period_seconds=3600, state=KeyState(), journal=RotationRecord(),
                                decision_rotate="bootstrap", decision_reason="no current key")
    managed = [{"id": k, "name": k, "enabled": True, "tags": {}} for k in ("k3", "k2", "c1")]
    managed.append({"id": "orphan", "name": "secure-mail-api-dev-crm-9", "enabled": True,
                    "tags": {"secure-mail-api:consumer": "crm"}})
    kw.setdefault("managed_keys", managed)
    kw.setdefault("absent_key_ids", {"k1"})
    return Observed(stack="dev", vault_mount="secret", vault_prefix="mail-api", consumers=[fresh, stale, empty], **kw)


def validate(report: dict) -> None:
    jsonschema.validate(report, load_schema(), format_checker=jsonschema.FormatChecker())


def kinds(report: dict) -> list[tuple[str, str | None]]:
    return [(f["kind"], f["consumer"]) for f in report["findings"]]


def test_report_states_age_version_acks_traffic_per_consumer_and_validates_against_the_schema():
    report = build_report(observed(), NOW)
    validate(report)
    billing = report["consumers"][0]
    assert billing["current"]["serial"] == 3 and billing["kv_version"] == 7
    assert billing["current"]["age_seconds"] == 2 * DAY
    assert billing["current"]["promoted_at"].endswith("Z")
    assert billing["next_due_in_seconds"] == 28 * DAY and billing["overdue"] is False
    assert billing["last_rotation"]["outcome"] == "ok"
    assert billing["acknowledgements"]["app"]["on_current"] is True
    assert billing["traffic"]["current"]["requests_today"] == 120
    assert billing["traffic"]["previous"]["snapshot_count"] == 5
    assert billing["traffic"]["current"]["last_seen_day"] == "2026-03-01"
    assert billing["traffic"]["previous"]["seen_in_window"] is False        # no request in the window
    assert report["consumers"][1]["traffic"]["current"]["seen_in_window"] is None   # GetUsage did not answer
    assert [h["serial"] for h in billing["history"]] == [1, 2, 3]
    assert report["summary"]["status"] == "findings" and report["schema_version"] == "1.0"


def test_findings_name_overdue_failed_rotation_missing_ack_and_both_inventory_directions():
    report = build_report(observed(), NOW)
    found = kinds(report)
    assert ("key_overdue", "crm") in found
    assert ("rotation_failed", "crm") in found
    assert ("ack_missing", "crm") in found
    assert ("app_behind", "crm") in found
    assert ("no_current_key", "newsletter") in found
    assert ("unknown_key", "crm") in found                     # in API Gateway, not in Vault
    assert ("missing_key", "billing") in found                 # in Vault (retired), not in API Gateway
    inv = report["key_inventory"]
    assert [k["key_id"] for k in inv["unknown_to_vault"]] == ["orphan"]
    assert inv["missing_in_api_gateway"] == [{"key_id": "k1", "consumer": "billing", "label": "retired", "serial": 1}]
    sev = [f["severity"] for f in report["findings"]]
    assert sev == sorted(sev, key=["high", "medium", "low"].index)
    assert not any(c == "billing" for k, c in found if k not in ("missing_key",))


def test_a_clean_consumer_set_has_no_findings():
    obs = observed()
    obs.consumers = obs.consumers[:1]
    obs.managed_keys = [k for k in obs.managed_keys if k["id"] in ("k3", "k2")]
    obs.absent_key_ids = set()
    report = build_report(obs, NOW)
    validate(report)
    assert report["findings"] == [] and report["summary"]["status"] == "ok"


def test_no_output_format_ever_holds_a_key_value():
    report = build_report(observed(), NOW)
    for text in (render_json(report), render_table(report), render_html(report)):
        assert SECRET not in text


def test_schema_rejects_a_report_with_a_bad_state_or_a_non_rfc3339_time():
    report = build_report(observed(), NOW)
    bad = json.loads(json.dumps(report))
    bad["consumers"][0]["last_rotation"]["outcome"] = "great"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(report))
    bad["generated_at"] = "yesterday"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_rfc3339_is_utc_with_z():
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)) == "2026-01-02T03:04:05.250Z"


def test_table_lists_each_consumer_and_the_findings():
    text = render_table(build_report(observed(), NOW))
    assert "billing" in text and "OVERDUE" in text and "[high] key_overdue" in text
    assert "120 (last 2026-03-01)/0" in text                 # requests today, current/previous


def test_html_is_self_contained_escapes_names_and_holds_two_svg_charts():
    obs = observed()
    obs.consumers[0].name = "<script>alert(1)</script>"
    html = render_html(build_report(obs, NOW))
    assert html.count("<svg") == 2 and 'id="chart-key-age"' in html and 'id="chart-rotations"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "src=\"http" not in html and "href=\"http" not in html and "<link" not in html


def test_html_charts_are_drawn_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (`make browser` installs it as root)")
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(observed(), NOW)), encoding="utf-8")
    r = subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    from html.parser import HTMLParser

    class Charts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []
            self.shapes: dict[str, int] = {}

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "figure":
                self.stack.append(a.get("id") or "")
            elif self.stack and tag in ("rect", "path", "circle") and "reactive" in (a.get("class") or ""):
                self.shapes[self.stack[-1]] = self.shapes.get(self.stack[-1], 0) + 1

        def handle_endtag(self, tag):
            if tag == "figure" and self.stack:
                self.stack.pop()

    p = Charts()
    p.feed(dom)
    # bars of the key-age chart (2 series x 3 consumers) and the rotations' line dots are in the DOM
    assert p.shapes.get("chart-key-age", 0) >= 5, p.shapes
    assert p.shapes.get("chart-rotations", 0) >= 3, p.shapes


# -- the Vault audit log scanner -------------------------------------------------------------------
def _entry(path, *, allowed=True, auth=None, issued=None, error=None, typ="response"):
    e = {"time": "2026-03-01T12:00:00.123456789Z", "type": typ,
         "auth": {"client_token": "hmac-sha256:aaaa", "accessor": "hmac-sha256:bbbb",
                  "policy_results": {"allowed": allowed}, **(auth or {})},
         "request": {"id": "req-1", "operation": "update", "path": path, "remote_address": "10.0.0.9",
                     "data": {"secret_id": "hmac-sha256:cccc"}}}
    if issued is not None:
        e["response"] = {"auth": issued}
    if error:
        e["error"] = error
    return json.dumps(e)


def test_scan_reports_denied_rotation_paths_unexpected_and_failed_logins_and_no_hmac():
    lines = [
        _entry("secret/data/mail-api/keys/billing", allowed=False, auth={"metadata": {"role_name": "intruder"}}),
        _entry("secret/data/mail-api/keys/billing", allowed=False, typ="request"),   # request half: ignored
        _entry("secret/data/other/thing", allowed=False),                             # not a rotation path
        _entry("auth/approle/login", issued={"metadata": {"role_name": "mail-api-rotator"}, "client_token": "x"}),
        _entry("auth/approle/login", issued={"metadata": {"role_name": "ci-bot"}, "token_policies": ["root"]}),
        _entry("auth/approle/login", error="invalid credentials"),
        "not json {",
    ]
    out = scan(lines, mount="secret", prefix="mail-api", expected_identities=default_expected_identities(["billing"]))
    assert [d["path"] for d in out["denied"]] == ["secret/data/mail-api/keys/billing"]
    assert out["denied"][0]["identity"] == "intruder"
    assert out["denied"][0]["time"] == "2026-03-01T12:00:00.123456Z"
    assert [d["identity"] for d in out["unexpected_logins"]] == ["ci-bot"]
    assert out["unexpected_logins"][0]["policies"] == ["root"]
    assert len(out["failed_logins"]) == 1 and out["failed_logins"][0]["identity"] == "unknown"
    assert out["logins"] == 2 and out["unparsed"] == 1
    assert "hmac-sha256" not in json.dumps(out)


# -- policy drift ----------------------------------------------------------------------------------
def test_vault_drift_states_match_drift_missing_unexpected_and_unreadable(tmp_path):
    (tmp_path / "rotator.hcl").write_text('# c\npath "${mount}/data/${prefix}/*" {\n  capabilities = ["read"]\n}\n')
    (tmp_path / "consumer.hcl").write_text('path "${mount}/data/${prefix}/keys/${consumer}" { capabilities = ["read"] }\n')
    exp = expected_vault_policies(str(tmp_path), mount="secret", prefix="mail-api", consumers=["a", "b"])
    assert set(exp) == {"mail-api-rotator", "mail-api-consumer-a", "mail-api-consumer-b"}
    actual = {"mail-api-rotator": 'path "secret/data/mail-api/*" {\ncapabilities = ["read"]\n}',   # same rules
              "mail-api-consumer-a": 'path "secret/data/mail-api/keys/a" { capabilities = ["read", "update"] }',
              "mail-api-consumer-b": None}
    items = {i["name"]: i for i in compare_vault(exp, actual, ["mail-api-rotator", "mail-api-extra", "default"], None)}
    assert items["mail-api-rotator"]["state"] == "match"
    assert items["mail-api-consumer-a"]["state"] == "drift" and any('"update"' in x for x in items["mail-api-consumer-a"]["diff"])
    assert items["mail-api-consumer-b"]["state"] == "missing"
    assert items["mail-api-extra"]["state"] == "unexpected" and "default" not in items
    denied = compare_vault(exp, {}, None, "permission denied: read sys/policies/acl/mail-api-rotator")
    assert {i["state"] for i in denied} == {"unreadable"}


def test_iam_drift_ignores_key_order_and_string_vs_list_but_not_an_added_action():
    exp = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "apigateway:GET", "Resource": "*"}]}
    same = {"Statement": [{"Resource": ["*"], "Action": ["apigateway:GET"], "Effect": "Allow"}], "Version": "2012-10-17"}
    assert compare_iam(exp, same, "r/p")["state"] == "match"
    wider = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": ["apigateway:GET", "apigateway:DELETE"], "Resource": "*"}]}
    item = compare_iam(exp, wider, "r/p")
    assert item["state"] == "drift" and any("apigateway:DELETE" in x for x in item["diff"])
    assert compare_iam(exp, None, "r/p")["state"] == "missing"


def test_drift_and_audit_log_findings_reach_the_report_and_validate():
    obs = observed(policy_drift={"items": compare_vault({"mail-api-rotator": "x"}, {"mail-api-rotator": "y"}, None,
                                                        None)},
                   vault_audit=scan([_entry("secret/metadata/mail-api/keys/a", allowed=False)], mount="secret",
                                    prefix="mail-api", expected_identities=set()),
                   security_policy={"source": "f.json", "resources": 3, "rules": 9, "mandatory": 1, "advisory": 0,
                                    "violations": [{"rule": "r", "controls": ["S3.1"], "resource": "b", "urn": None,
                                                    "level": "mandatory", "message": "m"}]})
    report = build_report(obs, NOW)
    validate(report)
    found = {k for k, _ in kinds(report)}
    assert {"policy_drift", "vault_denied", "security_policy"} <= found
    html = render_html(report)
    assert "Policy drift" in html and "Vault audit log" in html and "Security policy check" in html


# -- last traffic (GetUsage: moto does not answer it, so botocore's Stubber does) -------------------
def _apigw_stub():
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("apigateway", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_last_seen_day_is_the_last_day_with_requests_empty_when_idle_and_none_when_unanswered():
    from rotation.reporting.audit_report import last_seen_day

    client, stub = _apigw_stub()
    today = NOW.date()
    args = {"usagePlanId": "p1", "keyId": "k1", "startDate": "2026-02-27", "endDate": "2026-03-01"}
    stub.add_response("get_usage", {"items": {"k1": [[4, 96], [7, 93], [0, 100]]}}, args)
    stub.add_response("get_usage", {"items": {"k1": [[0, 100], [0, 100], [0, 100]]}}, args)
    stub.add_response("get_usage", {"items": {}}, args)
    stub.add_client_error("get_usage", "TooManyRequestsException", http_status_code=429)
    with stub:
        assert last_seen_day(client, "p1", "k1", today, days=3) == "2026-02-28"
        assert last_seen_day(client, "p1", "k1", today, days=3) == ""
        assert last_seen_day(client, "p1", "k1", today, days=3) == ""
        assert last_seen_day(client, "p1", "k1", today, days=3) is None


# -- charts readable at any scale, and a legend for every symbol -------------------------------------
def _minutes_old_fleet() -> Observed:
    """Keys minutes old beside a 30-day max_age, promoted seconds apart (what the demo produces)."""
    def r(serial, seconds_ago, key_id, **kw):
        t = NOW - timedelta(seconds=seconds_ago)
        return KeyRecord(serial=serial, value=SECRET + str(serial), rotation_id=f"r{serial}", created_at=to_iso(t),
                         key_id=key_id, key_name=f"k-{key_id}", promoted_at=to_iso(t), **kw)
    billing = ConsumerObservation(
        name="billing", tier="premium", max_age_seconds=30 * DAY, grace_period_seconds=4,
        state=KeyState(current=r(3, 40, "b3", emergency=True), previous=r(2, 52, "b2"),
                       retired=(r(1, 75, "b1", disabled_at=to_iso(NOW)),), version=6),
        journal=RotationRecord())
    crm = ConsumerObservation(name="crm", tier="standard", max_age_seconds=30 * DAY, grace_period_seconds=4,
                              state=KeyState(current=r(1, 600, "c1"), version=1), journal=RotationRecord())
    return Observed(stack="dev", vault_mount="secret", vault_prefix="mail-api", consumers=[billing, crm],
                    managed_keys=[], absent_key_ids=set())


def _svg_texts(svg: str, group_class: str) -> list[str]:
    import re
    start = svg.index(f'class="{group_class}"')
    end = svg.index('<g class="series', start)
    return re.findall(r"<text[^>]*>([^<]+)</text>", svg[start:end])


def test_key_age_chart_is_a_share_of_max_age_and_labels_each_bar_with_the_real_age():
    from rotation.reporting.render import _charts

    svg = _charts(build_report(_minutes_old_fleet(), NOW))["key_age"]
    assert "as a share of its max_age (%)" in svg
    assert "crm: 10m0s of 30d0h" in svg and "billing: 0m40s of 30d0h" in svg   # the real ages, readable
    assert "max_age (100%)" in svg and "100.0%" in svg


def test_promotions_chart_has_every_recorded_promotion_and_a_time_axis_that_tells_seconds_apart():
    from rotation.reporting.render import _charts

    svg = _charts(build_report(_minutes_old_fleet(), NOW))["rotations"]
    labels = _svg_texts(svg, "axis x")
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels     # no two labels alike
    assert all(len(x.split(":")) == 3 for x in labels), labels                # HH:MM:SS at this scale
    assert svg.count("serial ") >= 4                                          # billing 1, 2, 3 and crm 1
    assert "emergency serial 3" in svg


def test_every_symbol_of_the_consumers_table_has_a_legend_in_the_html_and_the_table():
    report = build_report(observed(), NOW)
    html, table = render_html(report), render_table(report)
    assert 'id="legend"' in html
    for symbol in ('"?"', '"-"', "app=N", "0/0", "OVERDUE", "acks n/m"):
        assert symbol in html.replace("&#34;", '"').replace("&quot;", '"'), symbol
        assert symbol in table, symbol
