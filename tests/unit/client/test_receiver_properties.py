"""Property tests of the webhook receiver and its signature check (rotation.client.receiver,
rotation.client.signing): whatever headers and body arrive, only the documented outcomes come out
(a :class:`ReceiveResult` with a status of ``STATUS``, or :class:`TamperSuspected`), nothing is
unwrapped without a valid signature, and a correctly signed notification is accepted with exactly
the values it carried.

The unwrap step is the receiver's documented injection point (a function ``unwrap(token)``), so
no Vault is needed here; the real OpenBao round trip is tests/integration/delivery/test_receiver.py.
"""

from __future__ import annotations

import http.client
import json
import secrets
import string
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rotation.client.keys import ApiKey
from rotation.client.receiver import STATUS, ReceiveResult, TamperSuspected, WebhookReceiver, serve_webhook
from rotation.client.signing import (
    IDEMPOTENCY_HEADER,
    MAX_TIMESTAMP_DIGITS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    SignatureError,
    parse_timestamp,
    sign,
    standard_headers,
    standard_verify,
)

pytestmark = pytest.mark.property

SECRET = secrets.token_urlsafe(32)
NOW = 1_800_000_000
CONSUMER = "billing"
HEADER_NAMES = [WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER, TIMESTAMP_HEADER,
                SIGNATURE_HEADER, IDEMPOTENCY_HEADER, "Content-Type"]


class Unwrapper:
    """The documented ``unwrap(token)`` target: records every call, returns what was wrapped."""

    def __init__(self, wrapped: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.calls: list[str] = []
        self.wrapped = dict(wrapped or {})

    def __call__(self, token: str) -> Mapping[str, Any]:
        self.calls.append(token)
        if token not in self.wrapped:
            raise TamperSuspected("wrapping token not issued")
        return self.wrapped.pop(token)


def receiver(unwrap: Unwrapper, keys: list[ApiKey] | None = None) -> WebhookReceiver:
    return WebhookReceiver(SECRET, unwrap, consumer=CONSUMER, clock=lambda: float(NOW),
                           on_key=(keys.append if keys is not None else None))


def outcome_of(rx: WebhookReceiver, headers: Mapping[str, str], body: bytes) -> str:
    try:
        result = rx.handle(headers, body)
    except TamperSuspected:
        return "tamper_suspected"
    assert isinstance(result, ReceiveResult)
    assert result.outcome in STATUS
    return result.outcome


timestamps = st.one_of(
    st.integers(min_value=0, max_value=10**12 - 1).map(str),
    st.text(alphabet="0123456789", min_size=MAX_TIMESTAMP_DIGITS + 1, max_size=500),
    st.text(alphabet="0123456789+-_ \t\n.e٣१", max_size=20),
    st.text(max_size=30),
)
header_values = st.one_of(timestamps, st.text(max_size=60), st.just("v1," + "A" * 44))
header_maps = st.dictionaries(
    st.one_of(st.sampled_from(HEADER_NAMES), st.sampled_from(HEADER_NAMES).map(str.upper)),
    header_values, max_size=7)


@given(raw=st.one_of(timestamps, st.none()))
@example(raw="1" * 400)
@example(raw="\u0661\u0662")           # Arabic-Indic digits: int() reads them, a name must not
@example(raw="17\n")
@example(raw="+1700000000")
@example(raw="01700000000")            # the signed text is the integer's own: no leading zero
def test_a_timestamp_is_ascii_digits_matched_whole_or_a_signature_error(raw):
    try:
        ts = parse_timestamp(raw)
    except SignatureError as exc:
        assert WEBHOOK_TIMESTAMP_HEADER in str(exc)
        assert raw is None or not canonical(raw)
        return
    assert raw is not None and canonical(raw)
    assert ts == int(raw) and str(ts) == raw and 0 <= ts < 10**MAX_TIMESTAMP_DIGITS


def canonical(raw: str) -> bool:
    """What a signed timestamp may be: ASCII digits, at most 12, no leading zero (the signed text)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= MAX_TIMESTAMP_DIGITS and (raw == "0" or raw[0] != "0")


@given(headers=header_maps, body=st.binary(max_size=200))
@example(headers={WEBHOOK_ID_HEADER: "r:2", WEBHOOK_TIMESTAMP_HEADER: "1" * 400, WEBHOOK_SIGNATURE_HEADER: "v1,x"},
         body=b"{}")
@example(headers={TIMESTAMP_HEADER: "9" * 400, SIGNATURE_HEADER: "v1=00"}, body=b"{}")
def test_unsigned_requests_get_a_documented_outcome_and_unwrap_nothing(headers, body):
    unwrap = Unwrapper()
    outcome = outcome_of(receiver(unwrap), headers, body)
    assert outcome in {"bad_signature", "replay", "bad_request"}
    assert unwrap.calls == []


@given(ts=st.text(alphabet="0123456789", min_size=MAX_TIMESTAMP_DIGITS + 1, max_size=400),
       other=st.sampled_from(["", " ", "+", "_", "\n"]))
def test_signature_checks_refuse_an_overlong_or_decorated_timestamp_with_signature_error(ts, other):
    body = b"{}"
    for value in (ts, other + "1700000000" if other else "", "1700000000" + other):
        with pytest.raises(SignatureError):
            standard_verify(SECRET, {WEBHOOK_ID_HEADER: "r:1", WEBHOOK_TIMESTAMP_HEADER: value,
                                     WEBHOOK_SIGNATURE_HEADER: "v1,AAAA"}, body, now=NOW)
        with pytest.raises(SignatureError):
            from rotation.client.signing import verify
            verify(SECRET, {TIMESTAMP_HEADER: value, SIGNATURE_HEADER: sign(SECRET, NOW, body)}, body, now=NOW)


notifications = st.fixed_dictionaries({
    "serial": st.integers(min_value=1, max_value=2**53),
    "rotation_id": st.text(alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=40),
    "key_id": st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=20),
    "api_key": st.text(alphabet=string.ascii_letters + string.digits, min_size=20, max_size=40),
    "skew": st.integers(min_value=-300, max_value=300),
    "deprecated": st.booleans(),
})


def signed(n: Mapping[str, Any], token: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"consumer": CONSUMER, "serial": n["serial"], "rotation_id": n["rotation_id"],
                       "key_id": n["key_id"], "wrap_token": token, "wrap_ttl": 60}).encode()
    ts, idem = NOW + n["skew"], f"{n['rotation_id']}:{n['serial']}"
    if n["deprecated"]:
        return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(SECRET, ts, body), IDEMPOTENCY_HEADER: idem}, body
    return standard_headers(SECRET, idem, ts, body), body


@given(n=notifications)
def test_a_signed_notification_is_accepted_once_with_exactly_its_values(n):
    token = "s." + secrets.token_hex(8)
    unwrap = Unwrapper({token: {"api_key": n["api_key"], "serial": n["serial"], "key_id": n["key_id"]}})
    keys: list[ApiKey] = []
    rx = receiver(unwrap, keys)
    headers, body = signed(n, token)
    assert outcome_of(rx, headers, body) == "accepted"
    assert [(k.value, k.serial, k.key_id) for k in keys] == [(n["api_key"], n["serial"], n["key_id"])]
    assert outcome_of(rx, headers, body) == "duplicate"     # the sender's retry: not a second unwrap
    assert unwrap.calls == [token]


@given(n=notifications, mutate=st.sampled_from(["body", "timestamp", "signature", "repeat"]),
       junk=st.text(alphabet=string.printable, min_size=1, max_size=20))
def test_a_tampered_or_ambiguous_notification_is_refused_before_any_unwrap(n, mutate, junk):
    token = "s." + secrets.token_hex(8)
    unwrap = Unwrapper({token: {"api_key": n["api_key"], "serial": n["serial"], "key_id": n["key_id"]}})
    headers, body = signed(n, token)
    ts_name = TIMESTAMP_HEADER if n["deprecated"] else WEBHOOK_TIMESTAMP_HEADER
    sig_name = SIGNATURE_HEADER if n["deprecated"] else WEBHOOK_SIGNATURE_HEADER
    if mutate == "body":
        body = body + b" "
    elif mutate == "timestamp":
        headers[ts_name] = junk + headers[ts_name]
    elif mutate == "signature":
        headers[sig_name] = headers[sig_name][:-2] + junk
    else:   # the same header twice, names differing in case: which one would a proxy forward?
        headers[ts_name.upper()] = headers[ts_name]
    assert outcome_of(receiver(unwrap), headers, body) in {"bad_signature", "replay", "bad_request"}
    assert unwrap.calls == []


@pytest.fixture(scope="module")
def server():
    srv = serve_webhook(receiver(Unwrapper()), "127.0.0.1", 0, path="/hook")
    yield srv
    srv.shutdown()
    srv.server_close()


http_values = st.text(alphabet=string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "")
                      .replace("\x0c", ""), max_size=40)


#: Content-Length values the server must refuse without reading (a number it would wait for is not sent)
#: (surrounding spaces are optional whitespace that the HTTP parser strips: not among them)
bad_lengths = st.sampled_from(["+{n}", "-{n}", "{n}_0", "{n}.0", "9" * 30, "1e3", "0x10", "", "{n},{n}"])


@given(headers=st.dictionaries(st.sampled_from(HEADER_NAMES),
                               st.one_of(timestamps.filter(lambda v: v.isprintable() and v.isascii()), http_values),
                               max_size=6),
       length=st.one_of(st.none(), bad_lengths),
       body=st.binary(max_size=64))
@example(headers={WEBHOOK_ID_HEADER: "r:1", WEBHOOK_TIMESTAMP_HEADER: "1" * 400, WEBHOOK_SIGNATURE_HEADER: "v1,x"},
         length=None, body=b"{}")
@example(headers={}, length="+{n}", body=b"{}")
def test_the_http_receiver_answers_a_documented_status_never_500(server, headers, length, body):
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.putrequest("POST", "/hook", skip_accept_encoding=True)
        conn.putheader("Content-Length", str(len(body)) if length is None else length.format(n=len(body)))
        for name, value in headers.items():
            conn.putheader(name, value.strip())
        conn.endheaders(body)
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status in {*STATUS.values(), 400, 413}
    if length is not None:
        assert status == 400        # a Content-Length that is not 1*DIGIT: nothing read


@pytest.mark.parametrize("headers", [
    {"webhook-id": "m1", "webhook-signature": "v1,\u00e9t\u00e9"},          # non-ASCII signature
    {"webhook-id": "m1", "webhook-signature": "v1,\ud800"},                # a lone surrogate
    {"webhook-id": "m\ud800", "webhook-signature": "v1,AAAA"},             # in the message id
])
def test_a_signature_header_with_any_character_is_a_signature_error_not_a_crash(headers):
    """Before the secret is known to the sender, anyone can send these: only SignatureError (401)
    may come out, never TypeError or UnicodeEncodeError (500)."""
    import time

    from rotation.client.signing import SignatureError, standard_verify, verify
    now = int(time.time())
    with pytest.raises(SignatureError):
        standard_verify("s" * 40, {**headers, "webhook-timestamp": str(now)}, b"{}", now=now)
    with pytest.raises(SignatureError):
        verify("s" * 40, {"X-Mail-Api-Timestamp": str(now), "X-Mail-Api-Signature": headers["webhook-signature"]},
               b"{}", now=now)
