"""Security review (issue 12, mail API handler): each class of attack, many variants.

The pure tests call ``validate_message`` for the full cross product (every caller-controlled
header value x every character x every encoding); the handler tests send a representative of
each class end to end against moto and check that nothing was sent or recorded.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json

import pytest

from infra.functions.validation import RequestRejected, validate_message

PDF = b"%PDF-1.4\n% test document\n"
SENDER_IDENTITY = "example.com"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def good_body(**overrides):
    body = {
        "from": {"email": "alerts@example.com", "name": "Alerts"},
        "to": ["alice@example.org"],
        "subject": "Your report",
        "text": "Hello Alice",
    }
    body.update(overrides)
    return body


def pdf(filename: str = "report.pdf") -> dict:
    return {"filename": filename, "content_type": "application/pdf", "content": b64(PDF)}


# Every header value a caller controls: (name, body builder, JSON path of the value).
HEADER_FIELDS = [
    ("subject", lambda v: good_body(subject=v), "$.subject"),
    ("from_name", lambda v: good_body(**{"from": {"email": "alerts@example.com", "name": v}}), "$.from.name"),
    ("to_name", lambda v: good_body(to=[{"email": "alice@example.org", "name": v}]), "$.to[0].name"),
    ("cc_name", lambda v: good_body(cc=[{"email": "carol@example.org", "name": v}]), "$.cc[0].name"),
    ("bcc_name", lambda v: good_body(bcc=[{"email": "dave@example.org", "name": v}]), "$.bcc[0].name"),
    ("reply_to_name", lambda v: good_body(reply_to={"email": "help@example.com", "name": v}), "$.reply_to.name"),
    ("x_campaign_id", lambda v: good_body(headers={"X-Campaign-Id": v}), "$.headers.X-Campaign-Id"),
    ("x_entity_ref_id", lambda v: good_body(headers={"X-Entity-Ref-ID": v}), "$.headers.X-Entity-Ref-ID"),
    ("x_correlation_id", lambda v: good_body(headers={"X-Correlation-Id": v}), "$.headers.X-Correlation-Id"),
    ("list_unsubscribe", lambda v: good_body(headers={"List-Unsubscribe": v}), "$.headers.List-Unsubscribe"),
    ("list_unsubscribe_post", lambda v: good_body(headers={"List-Unsubscribe-Post": v}),
     "$.headers.List-Unsubscribe-Post"),
    ("filename", lambda v: good_body(attachments=[pdf(v + ".pdf")]), "$.attachments[0].filename"),
    ("content_type", lambda v: good_body(attachments=[{**pdf(), "content_type": v}]),
     "$.attachments[0].content_type"),
]

LINE_BREAKS = {"crlf": "\r\n", "cr": "\r", "lf": "\n", "vt": "\x0b", "ff": "\x0c", "nel": "\x85",
               "fs": "\x1c", "u2028": "\u2028", "u2029": "\u2029"}
CONTROLS = {"nul": "\x00", "bel": "\x07", "esc": "\x1b", "del": "\x7f",
            **{f"c1_{c:02x}": chr(c) for c in range(0x80, 0xA0) if c != 0x85}}
INVISIBLE = {
    **{f"u{c:04x}": chr(c) for c in range(0x200B, 0x2010)},    # zero-width space .. RLM
    **{f"u{c:04x}": chr(c) for c in range(0x202A, 0x202F)},    # LRE .. RLO (U+202E)
    **{f"u{c:04x}": chr(c) for c in range(0x2066, 0x206A)},    # LRI .. PDI
    "ufeff": "\ufeff", "u2060": "\u2060", "u061c": "\u061c", "u00ad": "\u00ad", "ue0041": "\U000e0041",
}
EXPECTED_REASON = {**dict.fromkeys(LINE_BREAKS, "header_injection"), **dict.fromkeys(CONTROLS, "control_character"),
                   **dict.fromkeys(INVISIBLE, "invisible_character")}
BAD_CHARS = {**LINE_BREAKS, **CONTROLS, **INVISIBLE}


def q_word(text: str, charset: str = "utf-8", letter: str = "q") -> str:
    data = text.encode(charset)
    encoded = "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else f"={b:02X}" for b in data)
    return f"=?{charset}?{letter}?{encoded}?="


def b_word(text: str, charset: str = "utf-8", letter: str = "b") -> str:
    return f"=?{charset}?{letter}?{b64(text.encode(charset))}?="


ENCODINGS = {
    "q_lower": lambda t: q_word(t, "utf-8", "q"),
    "q_upper_charset": lambda t: q_word(t, "UTF-8", "Q"),
    "b_lower": lambda t: b_word(t, "utf-8", "b"),
    "b_upper_charset": lambda t: b_word(t, "UTF-8", "B"),
}


def rejected(body) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        validate_message(body, sender_identity=SENDER_IDENTITY)
    return info.value


# ---------------------------------------------------------------------------------------------
# 1. Header injection through RFC 2047 encoded words
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("char", sorted(LINE_BREAKS))
@pytest.mark.parametrize(("field", "build", "path"), HEADER_FIELDS, ids=[f[0] for f in HEADER_FIELDS])
def test_encoded_line_break_is_refused_in_every_header_value(field, build, path, char, encoding):
    value = ENCODINGS[encoding]("hi" + LINE_BREAKS[char] + "Bcc: attacker@evil.example")
    error = rejected(build(value))
    assert (error.reason, error.field) == ("header_injection", path)


@pytest.mark.parametrize("char", ["\r\n", "\n", "\x00"])
@pytest.mark.parametrize("charset", ["iso-8859-1", "ISO-8859-1", "us-ascii", "windows-1252"])
def test_encoded_line_break_is_refused_in_any_charset(charset, char):
    for value in (q_word("hi" + char + "Bcc: x@evil.example", charset), b_word("a" + char + "b", charset)):
        assert rejected(good_body(subject=value)).reason in ("header_injection", "control_character")


def test_c1_line_break_from_a_single_byte_charset_is_refused():
    # 0x85 in ISO-8859-1 is NEL (U+0085), a line break for Unicode-aware readers.
    assert rejected(good_body(subject="=?iso-8859-1?q?a=85Bcc:_x@evil.example?=")).reason == "header_injection"


def test_nested_encoded_words_are_decoded_before_checking():
    inner = q_word("a\r\nBcc: x@evil.example")
    outer = q_word(inner)
    assert rejected(good_body(subject=outer)).reason == "header_injection"
    assert rejected(good_body(subject=q_word(q_word(q_word(q_word("deep")))))).reason == "invalid_encoded_word"


@pytest.mark.parametrize("value", [
    "=?x-no-such-charset?q?abc?=",
    "=?utf-8?x?abc?=",
    "=?utf-8?b?!!!!?=",
    "=?utf-8?b?YQ?=",          # bad padding
    "=?utf-8?q?=ZZ?=",
    "=?utf-8?q?=C3?=",         # not UTF-8
    "=?rot13?q?abc?=",         # a Python codec that is not a text encoding
    "x=?utf-8?q?a b?=",        # space inside the word
], ids=["unknown_charset", "unknown_encoding", "b_bad_alphabet", "b_bad_padding", "q_bad_escape",
        "q_not_utf8", "not_a_text_codec", "space_inside"])
def test_encoded_word_that_does_not_decode_strictly_is_refused(value):
    error = rejected(good_body(subject=value))
    assert (error.reason, error.field) == ("invalid_encoded_word", "$.subject")


@pytest.mark.parametrize("address", [
    "=?utf-8?q?x=0ABcc:_y@evil.example?=@example.org",
    "=?utf-8?q?alice?=@example.org",
    "=?UTF-8?B?YWxpY2U=?=@example.org",
])
@pytest.mark.parametrize("field", ["to", "cc", "bcc", "reply_to"])
def test_encoded_word_in_an_address_is_refused(field, address):
    value = [address] if field != "reply_to" else address
    error = rejected(good_body(**{field: value}))
    assert error.reason == "invalid_address"
    assert error.field == (f"$.{field}[0]" if field != "reply_to" else "$.reply_to")


@pytest.mark.parametrize(("field", "build", "path"), HEADER_FIELDS[:-1], ids=[f[0] for f in HEADER_FIELDS[:-1]])
def test_clean_encoded_word_is_still_accepted(field, build, path):
    message = validate_message(build(q_word("Café")), sender_identity=SENDER_IDENTITY)
    assert message is not None


def test_encoded_word_subject_with_attachment_never_becomes_a_bcc_header(invoke, make_event, mail_backend):
    body = good_body(subject="=?utf-8?q?hi=0D=0ABcc:_attacker@evil.example?=", attachments=[pdf()])
    status, payload, _ = invoke(make_event(body))
    assert (status, payload["error"]["reason"], payload["error"]["field"]) == (400, "header_injection", "$.subject")
    assert mail_backend.sent_messages() == [] and mail_backend.items() == []


@pytest.mark.parametrize(("field", "build", "path"), HEADER_FIELDS, ids=[f[0] for f in HEADER_FIELDS])
def test_encoded_line_break_in_any_header_value_sends_nothing(invoke, make_event, mail_backend, field, build, path):
    body = build(b_word("hi\r\nBcc: attacker@evil.example"))
    body.setdefault("headers", {"X-Campaign-Id": "raw"})  # force Content.Raw (the MIME path)
    status, payload, _ = invoke(make_event(body))
    assert (status, payload["error"]["field"]) == (400, path)
    assert mail_backend.sent_messages() == [] and mail_backend.items() == []


def test_accepted_raw_message_has_only_the_headers_set(invoke, make_event, mail_backend):
    body = good_body(subject=q_word("Café"), headers={"X-Campaign-Id": b_word("spring")}, attachments=[pdf()])
    status, payload, _ = invoke(make_event(body))
    assert status == 202, payload
    (raw,) = [m for m in mail_backend.sent_messages() if "raw_data" in m]
    parsed = email.message_from_string(raw["raw_data"], policy=email.policy.default)
    assert sorted(parsed.keys()) == sorted(
        ["From", "To", "Subject", "Date", "X-Campaign-Id", "Content-Type", "MIME-Version"])
    assert parsed["Subject"] == "Café"


# ---------------------------------------------------------------------------------------------
# 2. Attachment file names: the decoded name is checked
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", [
    "=?utf-8?q?..=2Fx?=.pdf",
    "=?UTF-8?Q?=2E=2E=2F=2E=2E=2Fetc=2Fx?=.pdf",
    "=?utf-8?b?Li4vLi4v?=x.pdf",
    "=?utf-8?q?a=5Cb?=.pdf",
    "=?utf-8?q?=2Ehidden?=.pdf",
    "..%2Fx.pdf",
    "%2e%2e%2fx.pdf",
    "a%5Cb.pdf",
    "..\uff0fx.pdf",        # fullwidth solidus, NFKC -> '/'
    "a\uff3cb.pdf",         # fullwidth reverse solidus
    "=?utf-8?q?a=22b?=.pdf",  # a double quote, decoded
], ids=["q_dotdot_slash", "Q_upper", "b_dotdot", "q_backslash", "q_leading_dot", "pct_slash_upper",
        "pct_lower", "pct_backslash", "fullwidth_solidus", "fullwidth_backslash", "q_quote"])
def test_decoded_filename_with_path_parts_is_refused(filename):
    error = rejected(good_body(attachments=[pdf(filename)]))
    assert (error.reason, error.field) == ("invalid_filename", "$.attachments[0].filename")


@pytest.mark.parametrize(("filename", "reason"), [
    ("a\x00.pdf", "control_character"),
    ("a\tb.pdf", "control_character"),
    ("a%00b.pdf", "control_character"),
    ("=?utf-8?q?a=00?=.pdf", "control_character"),
    ("=?utf-8?q?a=09?=.pdf", "control_character"),
    ("=?utf-8?b?YQ1i?=.pdf", "header_injection"),
    ("a\u202egnp.pdf", "invisible_character"),
    ("=?utf-8?q?a=E2=80=AEfdp?=.pdf", "invisible_character"),
    ("%E2%80%AEfdp.pdf", "invisible_character"),
], ids=["nul", "tab", "pct_nul", "q_nul", "q_tab", "b_cr", "rlo", "q_rlo", "pct_rlo"])
def test_filename_with_nul_or_control_is_refused_in_every_form(filename, reason):
    error = rejected(good_body(attachments=[pdf(filename)]))
    assert (error.reason, error.field) == (reason, "$.attachments[0].filename")


def test_encoded_traversal_filename_sends_nothing(invoke, make_event, mail_backend):
    status, payload, _ = invoke(make_event(good_body(attachments=[pdf("=?utf-8?q?..=2Fx?=.pdf")])))
    assert (status, payload["error"]["reason"]) == (400, "invalid_filename")
    assert mail_backend.sent_messages() == []


# ---------------------------------------------------------------------------------------------
# 3. Invisible and control characters in names, subjects and header values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("char", sorted({**CONTROLS, **INVISIBLE}))
@pytest.mark.parametrize(("field", "build", "path"), HEADER_FIELDS, ids=[f[0] for f in HEADER_FIELDS])
def test_control_and_invisible_characters_are_refused_in_every_header_value(field, build, path, char):
    value = "Al" + BAD_CHARS[char] + "ice"
    error = rejected(build(value))
    assert (error.reason, error.field) == (EXPECTED_REASON[char], path)
    for word in (q_word(value), q_word(value, "UTF-8", "Q")):  # (b-encoding may hold a '/')
        encoded = rejected(build(word))
        assert (encoded.reason, encoded.field) == (EXPECTED_REASON[char], path)


def test_right_to_left_override_in_display_name_sends_nothing(invoke, make_event, mail_backend):
    body = good_body(**{"from": {"email": "alerts@example.com", "name": "Support \u202eelgooG"}})
    status, payload, _ = invoke(make_event(body))
    assert (status, payload["error"]["reason"], payload["error"]["field"]) == (
        400, "invisible_character", "$.from.name")
    assert mail_backend.sent_messages() == []


def test_ordinary_unicode_text_is_accepted():
    body = good_body(subject="Rapport — été 📈 東京 עברית", to=[{"email": "a@example.org", "name": "Zoë O'Brien"}],
                     headers={"X-Campaign-Id": "spring\t2026"})
    assert validate_message(body, sender_identity=SENDER_IDENTITY).subject.startswith("Rapport")


# ---------------------------------------------------------------------------------------------
# 4. Errors are 400, never 500
# ---------------------------------------------------------------------------------------------

S = "@SURROGATE@"  # replaced by a JSON escape of a lone surrogate in the raw body

SURROGATE_CASES = [
    ("subject", good_body(subject=S), "\\ud800", "$.subject"),
    ("subject_low", good_body(subject="a" + S), "\\udc00", "$.subject"),
    ("subject_reversed_pair", good_body(subject=S), "\\udc00\\ud800", "$.subject"),
    ("text", good_body(text=S), "\\ud800", "$.text"),
    ("html", good_body(html=S), "\\udfff", "$.html"),
    ("to", good_body(to=[S + "@example.org"]), "\\ud800", "$.to[0]"),
    ("from_name", good_body(**{"from": {"email": "alerts@example.com", "name": S}}), "\\ud800", "$.from.name"),
    ("header_value", good_body(headers={"X-Campaign-Id": S}), "\\ud800", "$.headers.X-Campaign-Id"),
    ("header_name", good_body(headers={"X-" + S: "v"}), "\\ud800", "$.headers"),
    ("unknown_key", good_body(**{S: 1}), "\\ud800", "$"),
    ("filename", good_body(attachments=[pdf(S + ".pdf")]), "\\ud800", "$.attachments[0].filename"),
]


@pytest.mark.parametrize(("body", "escape", "path"), [c[1:] for c in SURROGATE_CASES],
                         ids=[c[0] for c in SURROGATE_CASES])
def test_lone_surrogate_anywhere_is_a_400_naming_the_field(invoke, make_event, mail_backend, body, escape, path):
    raw = json.dumps(body).replace(S, escape)
    status, payload, _ = invoke(make_event(raw_body=raw))
    assert (status, payload["error"]["reason"], payload["error"]["field"]) == (400, "invalid_unicode", path)
    assert mail_backend.sent_messages() == [] and mail_backend.items() == []


HOSTILE_VALUES = [
    "\ud800", "=?utf-16?b?2ADcAA==?=", "=?utf-7?q?+2ADcAA-?=", "=?utf-8?q?" + "=41" * 400 + "?=", "=?utf-8?q?=?=",
    "=??q?a?=", "=?utf-8??a?=", "=?utf-8*en?q?a=0Ab?=", "=?utf-16?b?AA0ACg==?=", "a" * 2000, "", " ",
    "\U0010ffff", "\ufffe", "%00", "\\", "\"", "<>", "=?", "?=", "\x00" * 10, "é" * 300,
]


def test_hostile_strings_in_any_header_value_never_give_a_5xx(invoke, make_event, mail_backend):
    seen = set()
    for name, build, _path in HEADER_FIELDS:
        for value in HOSTILE_VALUES:
            body = build(value)
            body.setdefault("headers", {"X-Campaign-Id": "raw"})
            status, payload, _ = invoke(make_event(raw_body=json.dumps(body)))
            assert status in (202, 400), (name, ascii(value), status, payload)
            seen.add(status)
    assert 400 in seen


# ---------------------------------------------------------------------------------------------
# 5. Never send, then fail: everything is checked before the first side effect
# ---------------------------------------------------------------------------------------------

MALFORMED_EVENTS = [
    ("context_string", lambda e: e.update(requestContext="oops")),
    ("context_list", lambda e: e.update(requestContext=["x"])),
    ("identity_string", lambda e: e["requestContext"].update(identity="oops")),
    ("identity_list", lambda e: e["requestContext"].update(identity=[1])),
    ("source_ip_number", lambda e: e["requestContext"]["identity"].update(sourceIp=5)),
    ("source_ip_object", lambda e: e["requestContext"]["identity"].update(sourceIp={"ip": "1.2.3.4"})),
    ("source_ip_newline", lambda e: e["requestContext"]["identity"].update(sourceIp="1.2.3.4\nx")),
    ("api_key_id_list", lambda e: e["requestContext"]["identity"].update(apiKeyId=["k"])),
    ("api_key_id_huge", lambda e: e["requestContext"]["identity"].update(apiKeyId="k" * 5000)),
    ("request_id_number", lambda e: e["requestContext"].update(requestId=12)),
    ("headers_string", lambda e: e.update(headers="Content-Type: application/json")),
    ("header_value_number", lambda e: e.update(headers={"Content-Type": "application/json", "X-N": 5})),
    ("body_object", lambda e: e.update(body={"subject": "s"})),
    ("is_base64_string", lambda e: e.update(isBase64Encoded="false")),
]


@pytest.mark.parametrize("mutate", [m[1] for m in MALFORMED_EVENTS], ids=[m[0] for m in MALFORMED_EVENTS])
def test_malformed_event_is_refused_before_anything_is_sent(invoke, make_event, mail_backend, mutate):
    event = make_event(good_body())
    mutate(event)
    status, payload, _ = invoke(event)
    assert (status, payload["error"]["reason"]) == (500, "invalid_event")
    assert mail_backend.sent_messages() == [] and mail_backend.sent_recipient_count() == 0
    assert mail_backend.items() == []


def test_absent_request_context_still_sends_and_records(invoke, make_event, mail_backend):
    event = make_event(good_body())
    del event["requestContext"]
    status, payload, _ = invoke(event)
    assert status == 202, payload
    (item,) = mail_backend.items()
    assert "api_key_id" not in item and "source_ip_hmac_sha256" not in item


@pytest.mark.parametrize("key_id", ["no-such-key", "alias/missing"])
def test_audit_key_failure_sends_nothing(invoke, make_event, mail_backend, monkeypatch, key_id):
    monkeypatch.setenv("AUDIT_MAC_KEY_ID", key_id)
    status, payload, _ = invoke(make_event(good_body()))
    assert (status, payload["error"]["reason"]) == (502, "audit_unavailable")
    assert mail_backend.sent_messages() == [] and mail_backend.items() == []


def test_audit_key_of_the_wrong_kind_sends_nothing(invoke, make_event, mail_backend, monkeypatch):
    symmetric = mail_backend._client("kms").create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("AUDIT_MAC_KEY_ID", symmetric)
    status, payload, _ = invoke(make_event(good_body()))
    assert (status, payload["error"]["reason"]) == (502, "audit_unavailable")
    assert mail_backend.sent_messages() == []


# ---------------------------------------------------------------------------------------------
# 6. Duplicate recipients are sent once
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    ({"to": ["alice@example.org"] * 50}, {"to": ["alice@example.org"]}),
    ({"to": ["alice@example.org", "alice@EXAMPLE.ORG", "alice@Example.Org"]}, {"to": ["alice@example.org"]}),
    ({"to": ["alice@example.org"], "cc": ["alice@example.org"], "bcc": ["alice@EXAMPLE.org"]},
     {"to": ["alice@example.org"], "cc": [], "bcc": []}),
    ({"cc": ["bob@example.org", "bob@example.org"], "bcc": ["bob@example.org", "carol@example.org"]},
     {"to": [], "cc": ["bob@example.org"], "bcc": ["carol@example.org"]}),
    ({"to": [{"email": "alice@example.org", "name": "A"}, {"email": "alice@example.org", "name": "B"}]},
     {"to": ["alice@example.org"]}),
    ({"to": ["bob@bücher.example", "bob@xn--bcher-kva.example"]}, {"to": ["bob@xn--bcher-kva.example"]}),
    # issue 20, item 7: one mailbox whatever the case of either part (the first spelling is kept)
    ({"to": ["Alice@example.org", "alice@example.org"]}, {"to": ["Alice@example.org"]}),
    ({"to": ["Dup@Example.org"], "bcc": ["dup@example.org"]}, {"to": ["Dup@example.org"], "bcc": []}),
], ids=["same_50_times", "domain_case", "across_to_cc_bcc", "cc_and_bcc", "different_names", "idn_and_punycode",
        "local_part_case_folded", "local_part_case_folded_across_to_and_bcc"])
def test_duplicate_recipients_are_kept_once(fields, expected):
    message = validate_message(good_body(**{"to": [], **fields}), sender_identity=SENDER_IDENTITY)
    for key, addresses in expected.items():
        assert [a.address for a in getattr(message, key)] == addresses


def test_same_recipient_fifty_times_is_sent_once(invoke, make_event, mail_backend):
    status, payload, _ = invoke(make_event(good_body(to=["alice@example.org"] * 25, cc=["alice@EXAMPLE.org"] * 25)))
    assert status == 202, payload
    assert mail_backend.sent_recipient_count() == 1
    (sent,) = mail_backend.sent_messages()
    assert sent["destinations"] == {"ToAddresses": ["alice@example.org"]}
    assert mail_backend.items()[0]["recipient_count"] == 1


# ---------------------------------------------------------------------------------------------
# 7. One error format; the request model and the handler agree on explicit nulls
# ---------------------------------------------------------------------------------------------

NULL_CASES = [
    ("reply_to_null", {"reply_to": None}),
    ("text_null_with_html", {"text": None, "html": "<p>x</p>"}),
    ("html_null", {"html": None}),
    ("name_null", {"to": [{"email": "a@example.org", "name": None}]}),
    ("from_name_null", {"from": {"email": "alerts@example.com", "name": None}}),
    ("text_null_no_html", {"text": None}),
    ("to_null", {"to": None, "cc": ["a@example.org"]}),
    ("cc_null", {"cc": None}),
    ("bcc_null", {"bcc": None}),
    ("subject_null", {"subject": None}),
    ("from_null", {"from": None}),
    ("attachments_null", {"attachments": None}),
    ("headers_null", {"headers": None}),
    ("header_value_null", {"headers": {"X-Campaign-Id": None}}),
    ("email_null", {"to": [{"email": None}]}),
    ("to_empty_cc_set", {"to": [], "cc": ["a@example.org"]}),
    ("all_recipients_empty", {"to": [], "cc": []}),
]


@pytest.mark.parametrize("fields", [c[1] for c in NULL_CASES], ids=[c[0] for c in NULL_CASES])
def test_request_model_and_handler_agree_on_explicit_nulls(fields):
    from infra.functions.request_model import check_request_model

    body = good_body(**fields)
    try:
        check_request_model(body)
        model_accepts = True
    except RequestRejected as exc:
        assert exc.to_dict()["error"]["reason"] == "invalid_request_body"
        model_accepts = False
    try:
        validate_message(body, sender_identity=SENDER_IDENTITY)
        handler_accepts = True
    except RequestRejected:
        handler_accepts = False
    assert model_accepts == handler_accepts


def test_readme_names_exactly_the_nullable_fields_of_the_model():
    from pathlib import Path

    from infra.functions.request_model import load_request_model

    model = load_request_model()
    nullable = set()
    for key, schema in model["properties"].items():
        alternatives = schema.get("oneOf", [schema])
        if any("null" in (alt.get("type") if isinstance(alt.get("type"), list) else [alt.get("type")])
               for alt in alternatives):
            nullable.add(key)
    address = model["properties"]["from"]["oneOf"][1]["properties"]
    nullable |= {"name"} if "null" in address["name"]["type"] else set()
    readme = (Path(__file__).parents[3] / "infra" / "functions" / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "Explicit `null` is accepted for exactly" in ln)
    assert nullable == {"reply_to", "text", "html", "name"}
    for name in nullable:
        assert f"`{name}`" in line


def test_gateway_refusals_use_the_handler_error_format():
    from infra.functions.request_model import GATEWAY_REASONS, GATEWAY_RESPONSES
    from infra.functions.validation import REASONS

    for response_type, error in GATEWAY_RESPONSES.items():
        body = error.body()
        assert set(body) == {"error"} and set(body["error"]) == {"reason", "field", "message"}, response_type
        assert "$context" not in json.dumps(body)  # never API Gateway's validation text (it quotes values)
    assert not (GATEWAY_REASONS & set(REASONS))  # a client can tell who refused


def test_local_gateway_check_refuses_what_the_model_refuses_in_the_same_format():
    from infra.functions.request_model import gateway_body_check

    assert gateway_body_check("application/json", json.dumps(good_body()).encode()) is None
    assert gateway_body_check("text/plain", b"anything") is None  # left to the handler
    for bad in (b"not json", json.dumps(good_body(priority=1)).encode(), json.dumps(good_body(to=None)).encode()):
        status, headers, body = gateway_body_check("application/json; charset=utf-8", bad)
        assert status == 400 and headers["x-amzn-ErrorType"] == "BadRequestException"
        assert json.loads(body)["error"]["reason"] == "invalid_request_body"


# ---------------------------------------------------------------------------------------------
# 8. Audit: keyed MACs, never an unkeyed hash or the source IP in clear
# ---------------------------------------------------------------------------------------------


def test_audit_record_holds_keyed_macs_not_unkeyed_hashes(invoke, make_event, mail_backend):
    from infra.functions.audit_record import recipients_mac_message, source_ip_mac_message

    body = good_body(to=["Alice@Example.org"], bcc=["bob@example.net"])
    status, _, _ = invoke(make_event(body))
    assert status == 202
    (item,) = mail_backend.items()
    message = validate_message(body, sender_identity=SENDER_IDENTITY)
    assert item["recipients_hmac_sha256"] == mail_backend.mac(recipients_mac_message(message))
    assert item["source_ip_hmac_sha256"] == mail_backend.mac(source_ip_mac_message("203.0.113.7"))
    unkeyed = hashlib.sha256("\n".join(sorted(["alice@example.org", "bob@example.net"])).encode()).hexdigest()
    dumped = json.dumps(item, default=str)
    assert "recipients_sha256" not in item and "source_ip" not in item
    for clear in (unkeyed, "203.0.113.7", hashlib.sha256(b"203.0.113.7").hexdigest(), "alice", "bob@"):
        assert clear.lower() not in dumped.lower()


def test_without_a_mac_key_neither_hash_nor_source_ip_is_recorded(invoke, make_event, mail_backend, monkeypatch):
    monkeypatch.delenv("AUDIT_MAC_KEY_ID")
    status, _, _ = invoke(make_event(good_body()))
    assert status == 202
    (item,) = mail_backend.items()
    assert not {k for k in item if "sha256" in k or "source_ip" in k}
    assert "203.0.113.7" not in json.dumps(item, default=str)
