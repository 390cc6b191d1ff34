"""Property tests of the Vault audit-log scanner (rotation.reporting.vault_audit_log): whatever the
lines hold (torn JSON, fields of the wrong type, deep nesting, planted secrets), ``scan`` returns
the documented section and nothing else comes out; every line is counted once; a reported event
holds only the documented fields, and never a value from ``request.data``, ``response.data``, a
client token or an accessor.

(What counts as a failed login is the scanner's detection rule, tested in test_audit_report.py;
these properties hold whatever that rule is.)
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rotation.reporting.vault_audit_log import scan, scan_file

pytestmark = pytest.mark.property

CANARY = "hmac-sha256:CanaryThatMustNeverBeReported0123456789"
KEYS = ["type", "time", "request", "response", "auth", "error", "path", "operation", "remote_address", "id",
        "policy_results", "allowed", "metadata", "role_name", "role", "display_name", "token_policies", "policies",
        "data", "client_token", "accessor", "service_account_name"]
SECTION = {"source", "entries", "responses", "unparsed", "logins", "denied", "unexpected_logins", "failed_logins"}
EVENT = {"time", "operation", "path", "identity", "policies", "remote_address", "request_id"}

leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                   st.sampled_from(["response", "request", "auth/approle/login", "secret/data/mail-api/keys/a",
                                    "secret/config", "2026-03-01T12:00:00.1234567891Z", "update", "mail-api-rotator"]))
values = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)), max_leaves=30)
entries = st.dictionaries(st.sampled_from(KEYS), values, max_size=8).map(lambda d: {"type": "response", **d})


def with_secrets(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with the canary where the audit device writes HMACs and request/response data."""
    planted = dict(entry)
    for part in ("request", "response", "auth"):
        if isinstance(planted.get(part), dict):
            planted[part] = {**planted[part], "data": {"secret": CANARY}, "client_token": CANARY,
                             "accessor": CANARY}
    return planted


lines = st.lists(st.one_of(entries.map(with_secrets).map(json.dumps), values.map(json.dumps), st.text(max_size=40),
                           st.sampled_from(["[" * 100_000, "{", '{"type": "response", "request": "x"}', "  "])),
                 max_size=12)


def check(out: dict[str, Any], given_lines: list[str]) -> None:
    assert set(out) == SECTION
    nonblank = [line for line in given_lines if line.strip()]
    assert out["entries"] == len(nonblank)
    assert 0 <= out["responses"] + out["unparsed"] <= out["entries"]
    assert out["logins"] >= len(out["unexpected_logins"])
    for key in ("denied", "unexpected_logins", "failed_logins"):
        for event in out[key]:
            assert set(event) == EVENT
            assert isinstance(event["policies"], list) and all(isinstance(p, str) for p in event["policies"])
            assert all(v is None or isinstance(v, str) for k, v in event.items() if k != "policies")
    assert CANARY not in json.dumps(out)


@given(given_lines=lines)
@example(given_lines=['{"type": "response", "request": "secret/data/x", "auth": 7}'])
@example(given_lines=['{"type": "response", "request": {"path": "auth/approle/login"}, "response": ["auth"]}'])
@example(given_lines=['{"type": "response", "auth": {"policy_results": "no", "metadata": 1, "policies": 3}}'])
@example(given_lines=[('{"type": "response", "request": {"path": "auth/approle/login"}, '
                      '"response": {"auth": {"metadata": "x", "token_policies": "abc"}}}')])
@example(given_lines=["[" * 100_000])
def test_any_lines_give_the_documented_section_and_no_secret(given_lines):
    out = scan(given_lines, mount="secret", prefix="mail-api", expected_identities={"mail-api-rotator"})
    check(out, given_lines)


@given(given_lines=lines)
def test_scan_file_reads_any_bytes_into_the_same_section(tmp_path_factory, given_lines):
    path = tmp_path_factory.mktemp("audit") / "audit.log"
    path.write_bytes(b"\n".join(line.encode("utf-8", "surrogatepass") for line in given_lines) + b"\n\xff\xfe\n")
    out = scan_file(path, mount="secret", prefix="mail-api", expected_identities=set())
    assert set(out) == SECTION and CANARY not in json.dumps(out)
    assert out["entries"] >= len([line for line in given_lines if line.strip() and "\n" not in line])


def test_an_unreadable_log_is_the_documented_oserror(tmp_path):
    with pytest.raises(OSError):
        scan_file(tmp_path / "missing.log", mount="secret", prefix="mail-api", expected_identities=set())


def test_a_login_path_is_recognised_in_one_pass_whatever_the_log_holds():
    """A request path in the audit log is attacker-influenced: ``auth/x`` followed by a megabyte of
    ``/login/`` and a newline used to cost a backtracking pattern hours; it is decided in one pass
    (the test's 300 s timeout is the bound, not a speed assertion) and it is not a login."""
    from rotation.reporting.vault_audit_log import _is_login_path

    crafted = "auth/x" + "/login/" * (1 << 17) + "\n"
    assert _is_login_path(crafted) is False
    assert _is_login_path("auth/approle/login") and _is_login_path("auth/jwt/login/role-name")
    assert not _is_login_path("auth/login") and not _is_login_path("auth/jwt/loginx")
    assert not _is_login_path("auth/approle/login\n") and not _is_login_path("sys/auth/approle/login")
