"""Property tests of the mail handler's parsers: the request body (``parse_request_body``), the
request model (``validate_message``) and the MIME builder (``ses_content``). Pure: no AWS.

Contract (infra/functions/README.md): only ``RequestRejected`` with a reason of ``REASONS`` comes
out of parsing and validation; what is accepted satisfies the documented rules (each custom header
once, recipients distinct case-insensitively, no routing syntax in a local part); an accepted
message, written as MIME and parsed back, holds exactly the values accepted, each header once and
no Bcc; the pre-parse scan refuses exactly the bodies over its limits, before ``json.loads`` runs.
"""

from __future__ import annotations

import base64
import json
import string
from email import message_from_bytes
from email.policy import default
from email.utils import getaddresses
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infra.functions import validation
from infra.functions.ses_content import build_mime_message
from infra.functions.validation import (
    ALLOWED_CUSTOM_HEADERS,
    MAX_JSON_DEPTH,
    MAX_JSON_VALUES,
    REASONS,
    MessageRequest,
    RequestRejected,
    parse_request_body,
    validate_message,
)

pytestmark = pytest.mark.property

IDENTITY = "example.com"
FIELDS = ["from", "to", "cc", "bcc", "reply_to", "subject", "text", "html", "attachments", "headers", "email",
          "name", "filename", "content_type", "content"]

def outcome(body: Any) -> MessageRequest | RequestRejected:
    try:
        return validate_message(body, sender_identity=IDENTITY)
    except RequestRejected as exc:
        assert exc.reason in REASONS and exc.field.startswith("$"), (exc.reason, exc.field)
        return exc

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=30))
json_trees = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), inner, max_size=6)), max_leaves=30)

@given(raw=st.one_of(st.text(max_size=300), st.binary(max_size=300), json_trees.map(json.dumps),
                     st.text(alphabet='[]{}",:0 \\tu', max_size=300)),
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None,
                                     "application/json; charset=latin-1"]),
       b64=st.booleans())
@example(raw='{"a":1,"a":2}', content_type="application/json", b64=False)
@example(raw='"' + '\\"' * 1000, content_type="application/json", b64=False)
def test_any_body_parses_or_is_refused_with_a_documented_reason(raw, content_type, b64):
    if b64:
        raw = base64.b64encode(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")).decode()
    try:
        parse_request_body(raw, content_type=content_type, is_base64_encoded=b64)
    except RequestRejected as exc:
        assert exc.reason in REASONS and exc.field in ("$", "headers.Content-Type") or exc.field.startswith("$")

@given(body=json_trees)
def test_any_json_value_validates_or_is_refused_with_a_documented_reason(body):
    outcome(body)

def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0

def values_in(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(values_in(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(values_in(v) for v in value)
    return 1

tricky_strings = st.text(alphabet='[]{},"\\:ab', max_size=12)
small_trees = st.recursive(st.one_of(st.integers(), tricky_strings, st.none()), lambda inner: st.one_of(
    st.lists(inner, max_size=6), st.dictionaries(tricky_strings, inner, max_size=6)), max_leaves=40)
#: a small tree, or many copies of one side by side (cheap to generate on both sides of the limit)
wide_trees = st.one_of(small_trees, st.builds(lambda tree, copies: [tree] * copies, small_trees,
                                              st.integers(min_value=1, max_value=400)))

@given(value=wide_trees)
@example(value=[0] * (MAX_JSON_VALUES - 1))
@example(value=[0] * MAX_JSON_VALUES)
@example(value={"a,b": "[{,,,}]" * 400})
def test_the_pre_parse_scan_refuses_exactly_the_bodies_over_its_limits(value):
    text = json.dumps(value)
    over = values_in(value) > MAX_JSON_VALUES or depth_of(value) > MAX_JSON_DEPTH
    try:
        parse_request_body(text, content_type="application/json")
    except RequestRejected as exc:
        assert (exc.reason == "json_too_complex") == over, exc.reason
        return
    assert not over

@given(n=st.integers(min_value=MAX_JSON_VALUES, max_value=300_000), item=st.sampled_from(["[]", "0", "{}", '""']))
@example(n=1_400_000, item="[]")   # issue 20, item 6: 4.2 MB of tiny values
def test_a_body_of_many_tiny_values_is_refused_before_any_object_is_built(monkeypatch, n, item):
    monkeypatch.setattr(validation.json, "loads", lambda *a, **k: pytest.fail("json.loads ran on the crafted body"))
    with pytest.raises(RequestRejected) as exc:
        parse_request_body('{"to":[' + ",".join([item] * n) + "]}", content_type="application/json")
    assert exc.value.reason == "json_too_complex"

header_names = st.sampled_from(sorted(ALLOWED_CUSTOM_HEADERS)).flatmap(
    lambda n: st.sampled_from([n, n.upper(), n.title(), n.capitalize()]))
safe_text = st.text(alphabet=string.ascii_letters + string.digits + " .,-éü€", min_size=1, max_size=40)
local_parts = st.one_of(st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9.+_-]{0,10}[a-zA-Z0-9]", fullmatch=True),
                        st.sampled_from(["u%evil.com", "a!b", "Dup", "dup", "x%y"]))
domains = st.sampled_from(["example.org", "Example.ORG", "partner.example", "bücher.example"])
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
address_values = st.one_of(addresses, st.builds(lambda e, n: {"email": e, "name": n}, addresses, safe_text))

@given(to=st.lists(address_values, max_size=6), cc=st.lists(address_values, max_size=4),
       bcc=st.lists(address_values, max_size=4), subject=safe_text, text=safe_text,
       headers=st.lists(st.tuples(header_names, safe_text), max_size=5))
@example(to=["dup@example.org"], cc=[], bcc=["Dup@Example.org"], subject="s", text="t",
         headers=[("x-campaign-id", "a"), ("X-Campaign-Id", "b")])
@example(to=["u%evil.com@partner.example"], cc=[], bcc=[], subject="s", text="t", headers=[])
@example(to=[], cc=["100000000000@example.org", {"email": "000000000000@example.org", "name": "000é"},
                   "Dup@example.org"], bcc=[], subject=" padded ", text="t",
         headers=[("X-Campaign-Id", "x")])   # found by make fuzz: the folded Cc lost its last address
def test_an_accepted_message_re_parses_into_exactly_the_values_accepted(to, cc, bcc, subject, text, headers):
    body = {"from": {"email": "alerts@example.com", "name": "Alerts"}, "to": to, "cc": cc, "bcc": bcc,
            "subject": subject, "text": text, "headers": dict(headers)}
    result = outcome(body)
    if isinstance(result, RequestRejected):
        return
    message = result
    # documented rules of what is accepted
    names = [n.lower() for n in message.headers]
    assert len(names) == len(set(names)), "a custom header twice"
    recipients = [a.address.lower() for a in message.recipients]
    assert len(recipients) == len(set(recipients)), "one mailbox twice"
    assert not any(set("%!") & set(a.address.rpartition("@")[0]) for a in [*message.recipients, message.sender])
    # written as MIME and parsed back: exactly the values accepted, each header once, no Bcc
    parsed = message_from_bytes(build_mime_message(message), policy=default)
    fields = [k.lower() for k in parsed]
    assert len(fields) == len(set(fields)), fields
    assert "bcc" not in fields
    assert str(parsed["Subject"]) == message.subject
    assert [a for _, a in getaddresses([str(parsed["To"])])] == [a.address for a in message.to] if message.to \
        else "to" not in fields
    assert [a for _, a in getaddresses([str(parsed["Cc"])])] == [a.address for a in message.cc] if message.cc \
        else "cc" not in fields
    for name, value in message.headers.items():
        assert parsed.get_all(name) == [value]
    # the SMTP policy writes CRLF line ends, which quoted-printable keeps
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n") == message.text

@given(local=local_parts, domain=domains)
def test_an_address_with_routing_syntax_never_passes_as_another_domain(local, domain):
    result = outcome({"from": "alerts@example.com", "to": [f"{local}@{domain}"], "subject": "s", "text": "t"})
    if "%" in local or "!" in local:
        assert isinstance(result, RequestRejected) and result.reason == "invalid_address"
    elif isinstance(result, MessageRequest):
        (address,) = result.to
        assert address.domain in {"example.org", "partner.example", "xn--bcher-kva.example"}

def test_the_three_examples_of_issue_24_and_20_are_refused():
    base = {"from": "alerts@example.com", "subject": "s", "text": "t"}
    twice = outcome({**base, "to": ["a@example.org"], "headers": {"x-campaign-id": "1", "X-Campaign-Id": "2"}})
    assert isinstance(twice, RequestRejected) and twice.reason == "duplicate_header"
    hack = outcome({**base, "to": ["u%evil.com@partner.example"]})
    assert isinstance(hack, RequestRejected) and (hack.reason, hack.field) == ("invalid_address", "$.to[0]")
    dup = outcome({**base, "to": ["Dup@Example.org", "dup@example.org"]})
    assert isinstance(dup, MessageRequest) and [a.address for a in dup.to] == ["Dup@example.org"]

def test_json_values_with_the_same_key_spelled_twice_stay_a_duplicate_key():
    with pytest.raises(RequestRejected) as exc:
        parse_request_body('{"subject":"a","subject":"b"}', content_type="application/json")
    assert exc.value.reason == "duplicate_key"
