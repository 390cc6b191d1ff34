"""The JSON documents of `rotation status | plan | run | rotate`: built from fixed states, they
validate against their schemas; the schemas reject sentences where an enum belongs and non-RFC 3339
times; failure details carry an error type; no key value is ever in a document."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from rotation.config import ConsumersFile
from rotation.engine.planner import REASON_CODES, Decision, decide
from rotation.engine.runner import ConsumerOutcome, RunSummary
from rotation.records import KeyRecord, KeyState, RotationRecord, to_iso
from rotation.reporting.machine import dumps, load_schema, plan_document, run_document, status_document

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SECRET = "CANARYkeyVALUE0123456789abcdefghijklmnop"


def _consumers():
    return ConsumersFile.model_validate({
        "version": 1, "usage_plans": {"standard": "s", "premium": "p"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
        "consumers": [{"name": n, "tier": "standard", "targets": [{"type": "file", "path": f"/tmp/{n}.key"}]}
                      for n in ("fresh", "old", "rotating", "gone", "new")]}).consumers


def _key(serial, promoted_days_ago=None, **kw):
    promoted = to_iso(NOW - timedelta(days=promoted_days_ago)) if promoted_days_ago is not None else None
    return KeyRecord(serial=serial, value=SECRET + str(serial), rotation_id=f"r{serial}",
                     created_at=to_iso(NOW - timedelta(days=40)), key_id=f"k{serial}", promoted_at=promoted, **kw)


def _decisions():
    fresh, old, rotating, gone, new = _consumers()
    out = []
    st = KeyState(current=_key(2, 0.01), previous=_key(1, 20))
    j = RotationRecord(last_outcome={"outcome": "ok", "action": "rotate", "at": to_iso(NOW), "rotation_id": "r2"})
    out.append((fresh, st, j, decide(fresh, st, j, NOW)))
    st = KeyState(current=_key(1, 31))
    out.append((old, st, RotationRecord(), decide(old, st, RotationRecord(), NOW)))
    st = KeyState(current=_key(1, 31), pending=_key(2))
    j = RotationRecord(owner="host:1:abc", lease_expires_at=NOW.timestamp() + 60, rotation_id="r2", step="tested")
    out.append((rotating, st, j, decide(rotating, st, j, NOW, owner="me")))
    out.append((gone, KeyState(), RotationRecord(), Decision("gone", "blocked", "record destroyed: restore it")))
    out.append((new, KeyState(), RotationRecord(), decide(new, KeyState(), RotationRecord(), NOW)))
    return out


def _valid(doc, command):
    jsonschema.validate(doc, load_schema(command), format_checker=jsonschema.FormatChecker())
    assert SECRET not in dumps(doc)
    assert json.loads(dumps(doc)) == doc


def test_every_schema_is_a_valid_draft_2020_12_schema_with_the_shared_conventions():
    for name in ("status", "plan", "run", "audit"):
        schema = load_schema(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["schema_version"] == {"const": "1.0"}
        assert "RFC 3339" in schema["description"]


def test_status_document_gives_states_as_enums_and_times_as_rfc3339_and_seconds():
    doc = status_document(_decisions(), NOW, "dev")
    _valid(doc, "status")
    by = {c["name"]: c for c in doc["consumers"]}
    assert {n: c["state"] for n, c in by.items()} == {
        "fresh": "ok", "old": "due", "rotating": "in_flight", "gone": "blocked", "new": "due"}
    assert by["fresh"]["previous"]["revoke_at"].endswith("Z") and by["fresh"]["previous"]["revoke_in_seconds"] > 0
    assert by["fresh"]["last_outcome"] == {"action": "rotate", "outcome": "ok", "at": "2026-03-01T12:00:00Z",
                                           "rotation_id": "r2"}
    assert by["old"]["reason"] == "max_age_reached" and by["old"]["next_due_in_seconds"] < 0
    assert by["rotating"]["in_flight"]["step"] == "tested" and by["rotating"]["in_flight"]["lease_owner"]
    assert by["new"]["current"] is None and by["new"]["reason"] == "no_current_key"
    assert doc["summary"] == {"consumers": 5, "ok": 1, "due": 2, "waiting": 0, "in_flight": 1, "blocked": 1}


def test_plan_document_lists_structured_calls_and_reason_codes():
    doc = plan_document(_decisions(), NOW, "dev", iam={"policy": "p.json", "ok": True, "unwritable": []})
    _valid(doc, "plan")
    by = {c["name"]: c for c in doc["consumers"]}
    assert by["old"]["action"] == "rotate" and by["old"]["reason"] == "max_age_reached"
    assert {c["service"] for c in by["old"]["calls"]} == {"vault", "aws", "push"}
    assert by["rotating"]["locked_by"] == "host:1:abc" and by["rotating"]["calls"] == []
    assert by["gone"]["action"] == "blocked" and by["gone"]["calls"] == []
    assert all(c["reason"] in REASON_CODES for c in doc["consumers"])


def test_run_document_maps_outcomes_to_exit_codes_and_failures_to_error_types():
    s = RunSummary([ConsumerOutcome("a", "rotate", "ok", "done", serial=3, rotation_id="r3",
                                    current_promoted_at=to_iso(NOW)),
                    ConsumerOutcome("b", "rotate", "rolled_back", "VerificationFailed: key not in plan"),
                    ConsumerOutcome("c", "rotate", "locked", "lease held by x")])
    doc = run_document(s, command="run", started_at=NOW, finished_at=NOW + timedelta(seconds=2.5), stack="dev")
    _valid(doc, "run")
    assert doc["status"] == "failed" and doc["exit_code"] == 1 and doc["duration_seconds"] == 2.5
    assert doc["summary"]["by_outcome"] == {"ok": 1, "rolled_back": 1, "locked": 1}
    errs = {o["consumer"]: o["error"] for o in doc["outcomes"]}
    assert errs["a"] is None and errs["c"] is None and errs["b"]["type"] == "VerificationFailed"
    deferred = run_document(RunSummary([s.outcomes[2]]), command="rotate", started_at=NOW, finished_at=NOW,
                            stack="dev")
    _valid(deferred, "rotate")
    assert (deferred["status"], deferred["exit_code"]) == ("deferred", 3)


@pytest.mark.parametrize("path,bad", [
    (("consumers", 0, "state"), "looks fine to me"),
    (("generated_at",), "yesterday at noon"),
    (("consumers", 0, "current", "age_seconds"), "3 days"),
])
def test_schema_rejects_sentences_where_data_belongs(path, bad):
    doc = status_document(_decisions(), NOW, "dev")
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, load_schema("status"), format_checker=jsonschema.FormatChecker())
