"""The Lambda handler end to end against a moto server (SES v2 + DynamoDB)."""

from __future__ import annotations

import base64
import email
import email.policy
import json

import pytest

PDF = b"%PDF-1.4\n% test document\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


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
    return {k: v for k, v in body.items() if v is not ...}


def pdf_attachment(**overrides):
    attachment = {"filename": "report.pdf", "content_type": "application/pdf", "content": b64(PDF)}
    attachment.update(overrides)
    return {k: v for k, v in attachment.items() if v is not ...}


# ---------------------------------------------------------------------------------------------
# Good sends
# ---------------------------------------------------------------------------------------------


def test_simple_send_returns_id_sends_and_records_without_body(invoke, make_event, mail_backend):
    body = good_body(subject="Quarterly numbers SUBJECT-TEXT", text="BODY-TEXT secret figures")
    status, payload, headers = invoke(make_event(body))

    assert status == 202
    message_id = payload["message_id"]
    assert message_id and isinstance(message_id, str)
    assert headers["Cache-Control"] == "no-store"

    sent = mail_backend.sent_messages()
    assert len(sent) == 1
    assert sent[0]["id"] == message_id
    assert sent[0]["destinations"] == {"ToAddresses": ["alice@example.org"]}
    assert mail_backend.sent_recipient_count() == 1

    items = mail_backend.items()
    assert len(items) == 1
    item = items[0]
    assert item["message_id"] == message_id
    assert item["sender"] == "alerts@example.com"
    assert item["recipient_count"] == 1
    assert item["subject_length"] == len(body["subject"])
    assert item["attachment_count"] == 0
    assert item["api_key_id"] == "key-id-abc123"
    assert item["request_id"] == "apigw-req-1234"
    assert item["content_kind"] == "simple"
    assert item["created_at"].endswith("Z")
    assert len(item["recipients_hmac_sha256"]) == 64 and len(item["source_ip_hmac_sha256"]) == 64
    dumped = json.dumps(item, default=str)
    for secret in ("SUBJECT-TEXT", "BODY-TEXT", "alice@example.org", "Quarterly", "203.0.113.7"):
        assert secret not in dumped


def test_raw_send_with_attachments_headers_cc_bcc(invoke, make_event, mail_backend):
    body = good_body(
        **{"from": {"email": "alerts@example.com", "name": "Équipe Alertes"}},
        to=[{"email": "alice@example.org", "name": "Alice"}],
        cc=["carol@example.net"],
        bcc=["bob@example.net"],
        reply_to="support@example.com",
        html="<p>Hello</p>",
        attachments=[
            pdf_attachment(),
            {"filename": "chart.png", "content_type": "image/png", "content": b64(PNG)},
        ],
        headers={"X-Campaign-Id": "spring-2026"},
    )
    status, payload, _ = invoke(make_event(body))
    assert status == 202, payload

    (raw,) = [m for m in mail_backend.sent_messages() if "raw_data" in m]
    assert raw["id"] == payload["message_id"]
    assert "bob@example.net" in raw["destinations"]  # Bcc reaches SES through Destination only
    parsed = email.message_from_string(raw["raw_data"], policy=email.policy.default)
    assert parsed["Bcc"] is None and "bob@example.net" not in str(parsed)[: str(parsed).find("\n\n")]
    assert parsed["X-Campaign-Id"] == "spring-2026"
    assert parsed["Reply-To"] == "support@example.com"
    assert str(parsed["From"]) == "Équipe Alertes <alerts@example.com>"
    assert raw["raw_data"].isascii()
    attachments = {p.get_filename(): p.get_content() for p in parsed.iter_attachments()}
    assert attachments == {"report.pdf": PDF, "chart.png": PNG}

    (item,) = mail_backend.items()
    assert item["recipient_count"] == 3 and item["bcc_count"] == 1
    assert item["attachment_count"] == 2 and item["attachment_bytes"] == len(PDF) + len(PNG)
    assert item["content_kind"] == "raw" and item["message_bytes"] > 0


def test_base64_encoded_event_body_is_accepted(invoke, make_event, mail_backend):
    raw = base64.b64encode(json.dumps(good_body()).encode()).decode()
    status, payload, _ = invoke(make_event(raw_body=raw, is_base64_encoded=True))
    assert status == 202, payload
    assert len(mail_backend.items()) == 1


def test_exact_limits_are_accepted(invoke, make_event, mail_backend):
    body = good_body(
        to=[f"user{i}@example.org" for i in range(20)],
        cc=[f"cc{i}@example.org" for i in range(20)],
        bcc=[f"bcc{i}@example.org" for i in range(10)],
        subject="s" * 998,
        text="t" * (256 * 1024),
    )
    status, payload, _ = invoke(make_event(body))
    assert status == 202, payload
    assert mail_backend.items()[0]["recipient_count"] == 50


# ---------------------------------------------------------------------------------------------
# Bad requests: 400, exact reason and field, nothing sent, nothing recorded
# ---------------------------------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json"}
BIG_TEXT = "x" * (256 * 1024 + 1)

BAD_REQUESTS = [
    # --- HTTP level -------------------------------------------------------------------------
    ("non_json", {"raw_body": "hello, not json"}, "malformed_json", "$"),
    ("truncated_json", {"raw_body": '{"from": "alerts@example.com", '}, "malformed_json", "$"),
    ("json_nan", {"raw_body": '{"subject": NaN}'}, "malformed_json", "$"),
    ("json_nested_too_deep", {"raw_body": "[" * 100_000 + "]" * 100_000}, "json_too_complex", "$"),
    ("duplicate_key", {"raw_body": '{"subject": "a", "subject": "b"}'}, "duplicate_key", "$"),
    (
        "content_type_text_plain",
        {"body": good_body(), "headers": {"Content-Type": "text/plain"}},
        "unsupported_media_type",
        "headers.Content-Type",
    ),
    (
        "content_type_missing",
        {"body": good_body(), "headers": {"x-api-key": "k" * 40}},
        "unsupported_media_type",
        "headers.Content-Type",
    ),
    (
        "content_type_form",
        {"body": good_body(), "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        "unsupported_media_type",
        "headers.Content-Type",
    ),
    (
        "charset_latin1",
        {"body": good_body(), "headers": {"Content-Type": "application/json; charset=latin-1"}},
        "unsupported_media_type",
        "headers.Content-Type",
    ),
    (
        "no_headers_at_all",
        {"body": good_body(), "headers": {}},
        "unsupported_media_type",
        "headers.Content-Type",
    ),
    ("empty_body", {"raw_body": ""}, "empty_body", "$"),
    ("null_body", {"raw_body": None}, "empty_body", "$"),
    ("whitespace_body", {"raw_body": "  \n "}, "empty_body", "$"),
    ("request_too_large", {"raw_body": '{"text": "' + "a" * 6_000_000 + '"}'}, "request_too_large", "$"),
    (
        "gateway_base64_invalid",
        {"raw_body": "!!notbase64!!", "is_base64_encoded": True},
        "invalid_encoding",
        "$",
    ),
    (
        "body_not_utf8",
        {"raw_body": base64.b64encode(b'{"subject": "\xff\xfe"}').decode(), "is_base64_encoded": True},
        "invalid_encoding",
        "$",
    ),
    # --- schema -----------------------------------------------------------------------------
    ("top_level_array", {"body": [good_body()]}, "wrong_type", "$"),
    ("top_level_string", {"body": "send it"}, "wrong_type", "$"),
    ("unknown_field", {"body": good_body(priority="high")}, "unknown_field", "$.priority"),
    (
        "unknown_field_python_name",
        {"body": good_body(from_="alerts@example.com")},
        "unknown_field",
        "$.from_",
    ),
    ("missing_from", {"body": good_body(**{"from": ...})}, "missing_field", "$.from"),
    ("missing_subject", {"body": good_body(subject=...)}, "missing_field", "$.subject"),
    ("subject_number", {"body": good_body(subject=42)}, "wrong_type", "$.subject"),
    ("subject_null", {"body": good_body(subject=None)}, "wrong_type", "$.subject"),
    ("to_is_string", {"body": good_body(to="alice@example.org")}, "wrong_type", "$.to"),
    ("to_item_number", {"body": good_body(to=[7])}, "wrong_type", "$.to[0]"),
    ("text_is_list", {"body": good_body(text=["hello"])}, "wrong_type", "$.text"),
    (
        "attachments_is_object",
        {"body": good_body(attachments=pdf_attachment())},
        "wrong_type",
        "$.attachments",
    ),
    ("headers_is_list", {"body": good_body(headers=["X-Campaign-Id: a"])}, "wrong_type", "$.headers"),
    (
        "address_object_unknown_key",
        {"body": good_body(to=[{"email": "a@example.org", "routing": "x"}])},
        "unknown_field",
        "$.to[0]",
    ),
    (
        "address_object_without_email",
        {"body": good_body(to=[{"name": "Alice"}])},
        "missing_field",
        "$.to[0].email",
    ),
    # --- addresses --------------------------------------------------------------------------
    ("to_invalid_address", {"body": good_body(to=["not-an-address"])}, "invalid_address", "$.to[0]"),
    ("cc_invalid_address", {"body": good_body(cc=["bob@@example.org"])}, "invalid_address", "$.cc[0]"),
    ("bcc_unicode_local_part", {"body": good_body(bcc=["josé@example.org"])}, "invalid_address", "$.bcc[0]"),
    ("to_empty_string", {"body": good_body(to=[""])}, "empty_value", "$.to[0]"),
    (
        "to_address_crlf",
        {"body": good_body(to=["alice@example.org\r\nBcc: victim@example.net"])},
        "header_injection",
        "$.to[0]",
    ),
    (
        "from_other_domain",
        {"body": good_body(**{"from": "ceo@evil.example"})},
        "sender_not_allowed",
        "$.from",
    ),
    (
        "from_lookalike_domain",
        {"body": good_body(**{"from": "alerts@example.com.evil.org"})},
        "sender_not_allowed",
        "$.from",
    ),
    (
        "from_subdomain",
        {"body": good_body(**{"from": "alerts@mail.example.com"})},
        "sender_not_allowed",
        "$.from",
    ),
    (
        "from_invalid",
        {"body": good_body(**{"from": {"email": "alerts at example.com"}})},
        "invalid_address",
        "$.from.email",
    ),
    (
        "from_name_crlf",
        {"body": good_body(**{"from": {"email": "alerts@example.com", "name": "A\r\nBcc: x@evil.org"}})},
        "header_injection",
        "$.from.name",
    ),
    (
        "from_name_too_long",
        {"body": good_body(**{"from": {"email": "alerts@example.com", "name": "n" * 257}})},
        "display_name_too_long",
        "$.from.name",
    ),
    (
        "reply_to_crlf",
        {"body": good_body(reply_to="r@example.org\nBcc: x@evil.org")},
        "header_injection",
        "$.reply_to",
    ),
    ("reply_to_invalid", {"body": good_body(reply_to="nobody")}, "invalid_address", "$.reply_to"),
    ("no_recipients", {"body": good_body(to=[])}, "no_recipients", "$.to"),
    ("no_recipient_fields", {"body": good_body(to=...)}, "no_recipients", "$.to"),
    (
        "too_many_to",
        {"body": good_body(to=[f"u{i}@example.org" for i in range(51)])},
        "too_many_recipients",
        "$.to",
    ),
    (
        "too_many_across_to_cc_bcc",
        {
            "body": good_body(
                to=[f"t{i}@example.org" for i in range(20)],
                cc=[f"c{i}@example.org" for i in range(20)],
                bcc=[f"b{i}@example.org" for i in range(11)],
            )
        },
        "too_many_recipients",
        "$.to",
    ),
    # --- subject and body -------------------------------------------------------------------
    (
        "subject_crlf",
        {"body": good_body(subject="Hi\r\nBcc: victim@example.net")},
        "header_injection",
        "$.subject",
    ),
    ("subject_lf", {"body": good_body(subject="Hi\nX-Injected: 1")}, "header_injection", "$.subject"),
    ("subject_cr", {"body": good_body(subject="Hi\rthere")}, "header_injection", "$.subject"),
    (
        "subject_unicode_line_separator",
        {"body": good_body(subject="Hi\u2028there")},
        "header_injection",
        "$.subject",
    ),
    ("subject_nul", {"body": good_body(subject="Hi\x00there")}, "control_character", "$.subject"),
    ("subject_too_long", {"body": good_body(subject="s" * 999)}, "subject_too_long", "$.subject"),
    ("subject_blank", {"body": good_body(subject="   ")}, "empty_value", "$.subject"),
    ("no_text_no_html", {"body": good_body(text=...)}, "missing_body", "$.text"),
    ("text_too_large", {"body": good_body(text=BIG_TEXT)}, "body_part_too_large", "$.text"),
    ("html_too_large", {"body": good_body(html=BIG_TEXT)}, "body_part_too_large", "$.html"),
    ("text_nul", {"body": good_body(text="a\x00b")}, "control_character", "$.text"),
    # --- attachments ------------------------------------------------------------------------
    (
        "too_many_attachments",
        {"body": good_body(attachments=[pdf_attachment(filename=f"f{i}.pdf") for i in range(11)])},
        "too_many_attachments",
        "$.attachments",
    ),
    (
        "attachment_type_exe",
        {"body": good_body(attachments=[pdf_attachment(content_type="application/x-msdownload")])},
        "attachment_type_not_allowed",
        "$.attachments[0].content_type",
    ),
    (
        "attachment_type_html",
        {"body": good_body(attachments=[pdf_attachment(filename="a.html", content_type="text/html")])},
        "attachment_type_not_allowed",
        "$.attachments[0].content_type",
    ),
    (
        "attachment_type_crlf",
        {"body": good_body(attachments=[pdf_attachment(content_type="application/pdf\r\nX: y")])},
        "header_injection",
        "$.attachments[0].content_type",
    ),
    (
        "attachment_bad_base64_chars",
        {"body": good_body(attachments=[pdf_attachment(content="not base64!")])},
        "invalid_base64",
        "$.attachments[0].content",
    ),
    (
        "attachment_base64_bad_padding",
        {"body": good_body(attachments=[pdf_attachment(content="JVBERi0")])},
        "invalid_base64",
        "$.attachments[0].content",
    ),
    (
        "attachment_base64_with_newline",
        {"body": good_body(attachments=[pdf_attachment(content="JVBE\nRi0x")])},
        "invalid_base64",
        "$.attachments[0].content",
    ),
    (
        "attachment_base64_urlsafe",
        {"body": good_body(attachments=[pdf_attachment(content="JVBERi0x-_8=")])},
        "invalid_base64",
        "$.attachments[0].content",
    ),
    (
        "attachment_empty",
        {"body": good_body(attachments=[pdf_attachment(content="")])},
        "empty_attachment",
        "$.attachments[0].content",
    ),
    (
        "attachment_too_large",
        {
            "body": good_body(
                attachments=[pdf_attachment(content=b64(b"%PDF-" + b"0" * (4 * 1024 * 1024 - 4)))]
            )
        },
        "attachment_too_large",
        "$.attachments[0].content",
    ),
    (
        "filename_crlf",
        {"body": good_body(attachments=[pdf_attachment(filename="a\r\nContent-Type: text/html.pdf")])},
        "header_injection",
        "$.attachments[0].filename",
    ),
    (
        "filename_path_traversal",
        {"body": good_body(attachments=[pdf_attachment(filename="../../etc/passwd.pdf")])},
        "invalid_filename",
        "$.attachments[0].filename",
    ),
    (
        "filename_backslash",
        {"body": good_body(attachments=[pdf_attachment(filename="C:\\temp\\a.pdf")])},
        "invalid_filename",
        "$.attachments[0].filename",
    ),
    (
        "filename_hidden",
        {"body": good_body(attachments=[pdf_attachment(filename=".pdf")])},
        "invalid_filename",
        "$.attachments[0].filename",
    ),
    (
        "filename_double_extension",
        {"body": good_body(attachments=[pdf_attachment(filename="invoice.pdf.exe")])},
        "attachment_extension_mismatch",
        "$.attachments[0].filename",
    ),
    (
        "attachment_bytes_not_pdf",
        {"body": good_body(attachments=[pdf_attachment(content=b64(PNG))])},
        "attachment_content_mismatch",
        "$.attachments[0].content",
    ),
    (
        "attachment_text_not_utf8",
        {
            "body": good_body(
                attachments=[
                    pdf_attachment(filename="a.csv", content_type="text/csv", content=b64(b"\xff\xfe\x00a"))
                ]
            )
        },
        "attachment_content_mismatch",
        "$.attachments[0].content",
    ),
    (
        "attachment_missing_content",
        {"body": good_body(attachments=[pdf_attachment(content=...)])},
        "missing_field",
        "$.attachments[0].content",
    ),
    (
        "attachment_unknown_field",
        {"body": good_body(attachments=[pdf_attachment(disposition="inline")])},
        "unknown_field",
        "$.attachments[0].disposition",
    ),
    (
        "second_attachment_bad",
        {"body": good_body(attachments=[pdf_attachment(), pdf_attachment(content_type="application/zip")])},
        "attachment_type_not_allowed",
        "$.attachments[1].content_type",
    ),
    # --- custom headers ---------------------------------------------------------------------
    (
        "header_bcc_not_allowed",
        {"body": good_body(headers={"Bcc": "victim@example.net"})},
        "header_not_allowed",
        "$.headers.Bcc",
    ),
    (
        "header_dkim_not_allowed",
        {"body": good_body(headers={"DKIM-Signature": "v=1"})},
        "header_not_allowed",
        "$.headers.DKIM-Signature",
    ),
    (
        "header_name_injection",
        {"body": good_body(headers={"X-Campaign-Id: a\r\nBcc": "x"})},
        "header_not_allowed",
        '$.headers["X-Campaign-Id: a\\r\\nBcc"]',
    ),
    (
        "header_value_crlf",
        {"body": good_body(headers={"X-Campaign-Id": "a\r\nBcc: victim@example.net"})},
        "header_injection",
        "$.headers.X-Campaign-Id",
    ),
    (
        "header_value_too_long",
        {"body": good_body(headers={"X-Campaign-Id": "v" * 999})},
        "header_value_too_long",
        "$.headers.X-Campaign-Id",
    ),
    (
        "header_value_number",
        {"body": good_body(headers={"X-Campaign-Id": 5})},
        "wrong_type",
        "$.headers.X-Campaign-Id",
    ),
    (
        "too_many_headers",
        {"body": good_body(headers={f"X-H{i}": "v" for i in range(11)})},
        "too_many_headers",
        "$.headers",
    ),
]


def test_bad_request_table_is_large_and_distinct():
    ids = [case[0] for case in BAD_REQUESTS]
    assert len(ids) == len(set(ids)) >= 40
    assert len({case[2] for case in BAD_REQUESTS}) >= 25  # many different reasons, not one reason 40 times


@pytest.mark.parametrize(
    ("kwargs", "reason", "field"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_request_is_rejected_and_nothing_sent(invoke, make_event, mail_backend, kwargs, reason, field):
    from infra.functions.validation import REASONS

    kwargs = dict(kwargs)
    if "headers" not in kwargs:
        kwargs["headers"] = dict(JSON_HEADERS)
    status, payload, _ = invoke(make_event(**kwargs))

    assert status == 400, payload
    assert set(payload) == {"error"}
    error = payload["error"]
    assert error["reason"] == reason
    assert error["field"] == field
    assert reason in REASONS
    assert isinstance(error["message"], str) and 0 < len(error["message"]) <= 300
    assert mail_backend.sent_messages() == []
    assert mail_backend.sent_recipient_count() == 0
    assert mail_backend.items() == []


def test_rejection_never_echoes_the_value(invoke, make_event, mail_backend):
    planted = "PLANTED-VALUE-7f3a"
    for body in (
        good_body(subject=f"{planted}\r\nBcc: x@evil.org"),
        good_body(to=[f"{planted}@@example.org"]),
        good_body(headers={"X-Campaign-Id": f"{planted}\r\n"}),
        good_body(attachments=[pdf_attachment(content=f"{planted}!")]),
        good_body(**{"from": f"{planted}@evil.example"}),
    ):
        status, payload, _ = invoke(make_event(body, headers=dict(JSON_HEADERS)))
        assert status == 400
        assert planted not in json.dumps(payload)


# ---------------------------------------------------------------------------------------------
# Routing, configuration and upstream failures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/messages"), ("POST", "/v1/other"), ("POST", "/v2/messages")]
)
def test_unknown_route_is_404(invoke, make_event, mail_backend, method, path):
    status, payload, _ = invoke(make_event(good_body(), method=method, path=path))
    assert status == 404
    assert payload["error"]["reason"] == "not_found"
    assert mail_backend.sent_messages() == []


def test_missing_configuration_is_500_and_sends_nothing(invoke, make_event, mail_backend, monkeypatch):
    monkeypatch.delenv("SENDER_IDENTITY")
    status, payload, _ = invoke(make_event(good_body()))
    assert status == 500
    assert payload["error"]["reason"] == "server_misconfigured"
    assert mail_backend.sent_messages() == []


def test_sender_identity_as_single_address(invoke, make_event, mail_backend, monkeypatch):
    monkeypatch.setenv("SENDER_IDENTITY", "alerts@example.com")
    assert invoke(make_event(good_body()))[0] == 202
    status, payload, _ = invoke(make_event(good_body(**{"from": "billing@example.com"})))
    assert (status, payload["error"]["reason"]) == (400, "sender_not_allowed")


def test_ses_rejection_is_502_and_nothing_recorded(invoke, make_event, mail_backend, monkeypatch):
    # The handler is allowed this domain, but SES has no verified identity for it.
    monkeypatch.setenv("SENDER_IDENTITY", "unverified.example")
    status, payload, _ = invoke(make_event(good_body(**{"from": "alerts@unverified.example"})))
    assert status == 502
    assert payload["error"]["reason"] == "ses_rejected"
    assert "unverified" not in json.dumps(payload)
    assert mail_backend.items() == []


def test_ses_unreachable_is_502(invoke, make_event, mail_backend, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("AUDIT_MAC_KEY_ID")  # else KMS, called before SES, fails first
    status, payload, _ = invoke(make_event(good_body()))
    assert status == 502
    assert payload["error"]["reason"] == "ses_unavailable"


def test_record_failure_is_502_with_the_message_id(invoke, make_event, mail_backend, monkeypatch):
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    status, payload, _ = invoke(make_event(good_body()))
    assert status == 502
    assert payload["error"]["reason"] == "record_failed"
    assert payload["error"]["message_id"] == mail_backend.sent_messages()[0]["id"]


def test_ses_throttling_is_503(invoke, make_event, mail_backend, monkeypatch):
    """moto never throttles, so SendEmail's throttling answer is played by botocore's Stubber."""
    from botocore.stub import Stubber

    from infra.functions import send_message

    client = send_message._client("sesv2", "us-east-1", mail_backend.endpoint)
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "send_email", service_error_code="TooManyRequestsException", http_status_code=429
        )
        status, payload, headers = invoke(make_event(good_body()))
    assert status == 503
    assert payload["error"]["reason"] == "ses_throttled"
    assert headers["Retry-After"] == "5"
    assert mail_backend.items() == []


# ---------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------


def test_canaries_never_reach_the_logs(invoke, make_event, mail_backend, capsys):
    subject_canary = "CANARY-SUBJECT-5b1e2d"
    key_canary = "CANARYKEY" + "Z" * 31
    body_canary = "CANARY-BODY-99c0"
    recipient = "canary-recipient-31@example.org"
    headers = {
        "Content-Type": "application/json",
        "x-api-key": key_canary,
        "Authorization": f"Bearer {key_canary}",
    }
    event = make_event(good_body(subject=subject_canary, text=body_canary, to=[recipient]), headers=headers)
    event["requestContext"]["identity"]["apiKey"] = key_canary
    status, _, _ = invoke(event)
    assert status == 202
    # and a rejected one carrying the same canaries
    rejected = make_event(
        good_body(subject=subject_canary + "\r\n", text=body_canary, to=[recipient]), headers=headers
    )
    assert invoke(rejected)[0] == 400

    captured = capsys.readouterr()
    logs = captured.out + captured.err
    records = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    messages = {r["message"] for r in records}
    assert {"message sent", "request rejected"} <= messages  # the logger did write, to stdout
    for canary in (subject_canary, key_canary, body_canary, recipient):
        assert canary not in logs


def test_event_with_null_headers_is_a_clean_400(invoke, make_event, mail_backend):
    event = make_event(good_body())
    event["headers"] = None
    event["multiValueHeaders"] = None
    status, payload, _ = invoke(event)
    assert (status, payload["error"]["reason"]) == (400, "unsupported_media_type")
    assert mail_backend.sent_messages() == []
