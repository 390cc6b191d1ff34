"""The pure validation module: no AWS, no handler."""

from __future__ import annotations

import base64
import json

import pytest

from infra.functions import validation
from infra.functions.validation import (
    MAX_ATTACHMENT_BYTES,
    MAX_MESSAGE_BYTES,
    REASONS,
    RequestRejected,
    parse_request_body,
    validate_message,
)


def body(**overrides):
    value = {"from": "alerts@example.com", "to": ["a@example.org"], "subject": "s", "text": "t"}
    value.update(overrides)
    return value


def reject(value, identity="example.com"):
    with pytest.raises(RequestRejected) as info:
        validate_message(value, sender_identity=identity)
    return info.value


def test_message_too_large_is_checked_across_attachments():
    # 10 attachments of the maximum decoded size: each fits, together they exceed SES's 40 MB.
    content = base64.b64encode(b"%PDF-" + b"0" * (MAX_ATTACHMENT_BYTES - 5)).decode()
    attachments = [
        {"filename": f"f{i}.pdf", "content_type": "application/pdf", "content": content} for i in range(10)
    ]
    error = reject(body(attachments=attachments))
    assert (error.reason, error.field) == ("message_too_large", "$.attachments")
    assert str(MAX_MESSAGE_BYTES) in error.message


def test_valid_message_is_normalized():
    message = validate_message(
        body(
            to=[{"email": "Bob@Bücher.example", "name": "  Bob  "}],
            attachments=[
                {
                    "filename": "a.CSV",
                    "content_type": "Text/CSV",
                    "content": base64.b64encode(b"a,b\n").decode(),
                }
            ],
        ),
        sender_identity="Example.COM",
    )
    assert message.to[0].address == "Bob@xn--bcher-kva.example"
    assert message.to[0].name == "Bob"
    assert message.attachments[0].content_type == "text/csv"
    assert message.attachments[0].content == b"a,b\n"
    assert [a.address for a in message.recipients] == ["Bob@xn--bcher-kva.example"]


@pytest.mark.parametrize(
    ("identity", "sender", "ok"),
    [
        ("example.com", "x@example.com", True),
        ("example.com", "x@EXAMPLE.com", True),
        ("example.com", "x@sub.example.com", False),
        ("alerts@example.com", "alerts@example.com", True),
        ("alerts@example.com", "other@example.com", False),
        ("", "x@example.com", False),
    ],
)
def test_sender_identity_domain_or_address(identity, sender, ok):
    if ok:
        assert (
            validate_message(body(**{"from": sender}), sender_identity=identity).sender.address.lower()
            == sender.lower()
        )
    else:
        assert reject(body(**{"from": sender}), identity).reason == "sender_not_allowed"


def test_errors_are_request_rejected_with_known_reasons_only():
    error = reject(body(subject="a\r\nb"))
    assert isinstance(error, Exception)
    assert error.to_dict() == {
        "error": {"reason": "header_injection", "field": "$.subject", "message": error.message}
    }
    assert error.reason in REASONS


def test_unknown_field_name_is_escaped_and_truncated_in_the_path():
    error = reject(body(**{"x" * 200 + "\r\n": 1}))
    assert error.reason == "unknown_field"
    assert "\r" not in error.field and "\n" not in error.field
    assert len(error.field) < 60


@pytest.mark.parametrize(
    ("raw", "content_type", "b64", "reason"),
    [
        ('{"a": 1}', "application/json", False, None),
        ('{"a": 1}', "Application/JSON; charset=UTF-8", False, None),
        (b'{"a": 1}', "application/json", False, None),
        (base64.b64encode(b'{"a": 1}').decode(), "application/json", True, None),
        ('{"a": 1}', "application/json-patch+json", False, "unsupported_media_type"),
        ('{"a": 1}', None, False, "unsupported_media_type"),
        ("", "application/json", False, "empty_body"),
        ("{", "application/json", False, "malformed_json"),
        ('{"a": Infinity}', "application/json", False, "malformed_json"),
        ('{"a": {"b": 1, "b": 2}}', "application/json", False, "duplicate_key"),
        ("\ud800", "application/json", False, "invalid_encoding"),
    ],
)
def test_parse_request_body(raw, content_type, b64, reason):
    if reason is None:
        assert parse_request_body(raw, content_type=content_type, is_base64_encoded=b64) == {"a": 1}
    else:
        with pytest.raises(RequestRejected) as info:
            parse_request_body(raw, content_type=content_type, is_base64_encoded=b64)
        assert info.value.reason == reason


def test_request_body_limit_is_exact():
    limit = validation.MAX_REQUEST_BODY_BYTES
    filler = '{"t": "' + "a" * (limit - 9) + '"}'
    assert len(filler) == limit
    assert parse_request_body(filler, content_type="application/json")["t"]
    with pytest.raises(RequestRejected) as info:
        parse_request_body(filler + " ", content_type="application/json")
    assert info.value.reason == "request_too_large"


def test_readme_lists_every_reason():
    from pathlib import Path

    readme = (Path(validation.__file__).parent / "README.md").read_text()
    missing = [reason for reason in REASONS if f"`{reason}`" not in readme]
    assert missing == []
    assert json.loads(json.dumps(REASONS)) == REASONS
