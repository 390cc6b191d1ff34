"""Work bounded before decoding: an oversized header value is refused on its length before any
RFC 2047 decoding runs, and a recipient list over the limit is refused before any address is
parsed, whatever its sibling fields hold. (Behaviour, not speed: the expensive steps are watched
and must not run.)"""

from __future__ import annotations

import pytest

from infra.functions import validation
from infra.functions.validation import RequestRejected, validate_message

SENDER_IDENTITY = "example.com"
CRAFTED = "a=?a?b?" * 8000          # 56 KB of encoded-word look-alikes without an end


def body(**overrides):
    b = {"from": {"email": "alerts@example.com", "name": "Alerts"}, "to": ["alice@example.org"],
         "subject": "Your report", "text": "Hello"}
    b.update(overrides)
    return b


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding a short value is fine; decoding the 56 KB one means its length came too late."""
    real = validation.check_header_text
    seen: list[int] = []

    def watched(value, *a, **k):
        seen.append(len(value))
        return real(value, *a, **k)

    monkeypatch.setattr(validation, "check_header_text", watched)
    yield seen
    assert max(seen, default=0) < len(CRAFTED), "decoded the oversized value before checking its length"


@pytest.mark.parametrize("make,reason", [
    (lambda: body(subject=CRAFTED), "subject_too_long"),
    (lambda: body(**{"from": {"email": "alerts@example.com", "name": CRAFTED}}), "display_name_too_long"),
    (lambda: body(to=[{"email": "alice@example.org", "name": CRAFTED}]), "display_name_too_long"),
    (lambda: body(headers={"X-Campaign-Id": CRAFTED}), "header_value_too_long"),
    (lambda: body(attachments=[{"filename": "a.pdf", "content_type": CRAFTED, "content": "JVBERi0="}]),
     "attachment_type_not_allowed"),
])
def test_an_oversized_header_value_is_refused_on_its_length_before_decoding(no_decoding, make, reason):
    with pytest.raises(RequestRejected) as exc:
        validate_message(make(), sender_identity=SENDER_IDENTITY)
    assert exc.value.reason == reason


@pytest.mark.parametrize("siblings", [{}, {"cc": "x"}, {"bcc": 7}, {"cc": None}])
def test_too_many_recipients_are_refused_before_any_address_is_parsed(monkeypatch, siblings):
    monkeypatch.setattr(validation, "validate_email",
                        lambda *a, **k: pytest.fail("parsed an address before counting"))
    to = [f"user{i}@example.org" for i in range(20_000)]
    with pytest.raises(RequestRejected) as exc:
        validate_message(body(to=to, **siblings), sender_identity=SENDER_IDENTITY)
    assert exc.value.reason == "too_many_recipients"
