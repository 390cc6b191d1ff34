"""The rotation canary: each classification against the real dev gateway (and a stub server for
the answers the gateway never gives: 5xx, 404), then wired into the real engine."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rotation.config import Consumer
from rotation.errors import CanaryMisconfigured, VerificationFailed
from rotation.records import KeyRecord
from rotation.verifiers.canary import CANARY_BODY, CanaryVerifier

from .conftest import CACHE_SECONDS, canary_engine

CONSUMER = Consumer.model_validate({"name": "billing", "tier": "premium"})


def record(key_id: str, value: str) -> KeyRecord:
    return KeyRecord(serial=7, value=value, rotation_id="r1", created_at="2026-01-01T00:00:00Z",
                     key_name="k", key_id=key_id)


def test_accepted_key_returns_and_sends_nothing(gateway, keys):
    key_id, value = keys.make("premium")
    time.sleep(CACHE_SECONDS + 0.1)
    before = keys.sent_count()
    CanaryVerifier(gateway.url)(CONSUMER, record(key_id, value))
    assert keys.sent_count() == before           # the handler refused the canary's sender: nothing mailed
    assert gateway.request_count(key_id) == 1


def test_key_not_accepted_yet_is_a_verification_failure_without_the_key(gateway, keys):
    key_id, value = keys.make("premium", enabled=False)
    time.sleep(CACHE_SECONDS + 0.1)
    with pytest.raises(VerificationFailed) as exc:
        CanaryVerifier(gateway.url)(CONSUMER, record(key_id, value))
    assert "ForbiddenException" in str(exc.value) and "not accepted yet" in str(exc.value)
    assert value not in str(exc.value) and key_id in str(exc.value)


def test_new_key_fails_then_passes_once_the_gateway_sees_it(gateway, keys):
    key_id, value = keys.make("premium")
    canary = CanaryVerifier(gateway.url)
    deadline = time.monotonic() + 5
    while True:
        try:
            canary(CONSUMER, record(key_id, value))
            break
        except VerificationFailed:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_routing_error_is_misconfiguration_not_a_key_verdict(gateway, keys):
    key_id, value = keys.make("premium")
    time.sleep(CACHE_SECONDS + 0.1)
    with pytest.raises(CanaryMisconfigured) as exc:
        CanaryVerifier(gateway.base_url + "/v1/message")(CONSUMER, record(key_id, value))
    assert "MissingAuthenticationTokenException" in str(exc.value)
    assert not isinstance(exc.value, VerificationFailed)
    assert value not in str(exc.value)


def test_throttled_is_retryable(gateway, keys):
    api = keys.client()
    plan = api.create_usage_plan(name=f"canary-slow-{time.time_ns()}", throttle={"rateLimit": 0.5, "burstLimit": 1},
                                 apiStages=[{"apiId": gateway.rest_api_id, "stage": gateway.stage}])["id"]
    key_id, value = keys.make(plan)
    time.sleep(CACHE_SECONDS + 0.1)
    canary = CanaryVerifier(gateway.url)
    canary(CONSUMER, record(key_id, value))
    with pytest.raises(VerificationFailed, match="throttled"):
        canary(CONSUMER, record(key_id, value))


class _Stub:
    def __init__(self, status: int, error_type: str | None = None, delay: float = 0.0, body: bytes = b"{}"):
        seen = self.seen = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                seen.append((self.headers.get("x-api-key"), self.rfile.read(int(self.headers["Content-Length"]))))
                time.sleep(delay)
                self.send_response(status)
                if error_type:
                    self.send_header("x-amzn-ErrorType", error_type)
                self.send_header("Content-Length", str(len(body)))
                try:
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:     # the client timed out and left
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/messages"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


HANDLER_400 = b'{"error":{"reason":"invalid_address","field":"$.from.email","message":"not valid"}}'
GATEWAY_400 = b'{"message": "Invalid request body"}'


@pytest.mark.parametrize("status,error_type,body,expected", [
    (500, "InternalServerErrorException", b"{}", VerificationFailed),
    (502, None, b"{}", VerificationFailed),
    (503, None, b"{}", VerificationFailed),
    (403, "AccessDeniedException", b"{}", VerificationFailed),
    (404, None, b"{}", CanaryMisconfigured),
    (202, None, b"{}", None),
    (400, None, HANDLER_400, None),                                  # the handler answered: key accepted
    (422, None, HANDLER_400, None),
    (400, "BadRequestException", GATEWAY_400, CanaryMisconfigured),  # API Gateway's validator: no verdict
    (422, None, b"{}", CanaryMisconfigured),
    (401, "UnauthorizedException", b'{"message":"Unauthorized"}', CanaryMisconfigured),  # Cognito wants a token
], ids=["500", "502", "503", "403-waf", "404", "202", "400-handler", "422-handler", "400-gateway-validator",
        "422-no-handler-shape", "401-cognito"])
def test_stub_answers(status, error_type, body, expected):
    stub = _Stub(status, error_type, body=body)
    try:
        canary = CanaryVerifier(stub.url)
        key = record("kid", "V" * 40)
        if expected is None:
            canary(CONSUMER, key)
        else:
            with pytest.raises(expected) as exc:
                canary(CONSUMER, key)
            assert "V" * 40 not in str(exc.value)
        assert stub.seen == [("V" * 40, CANARY_BODY)]   # the key only in the header
    finally:
        stub.close()


def test_timeout_and_connection_refused_are_retryable():
    stub = _Stub(400, delay=1.0)
    try:
        with pytest.raises(VerificationFailed, match="no answer"):
            CanaryVerifier(stub.url, timeout_seconds=0.2)(CONSUMER, record("kid", "V" * 40))
    finally:
        stub.close()
    with pytest.raises(VerificationFailed, match="no answer"):
        CanaryVerifier("http://127.0.0.1:9/v1/messages", timeout_seconds=0.5)(CONSUMER, record("kid", "V" * 40))
    with pytest.raises(ValueError):
        CanaryVerifier("ftp://x")


# -- wired into the real engine ------------------------------------------------------------------
def test_engine_with_canary_waits_out_the_gateway_cache_and_promotes(engine_env, gateway):
    settings, tmp = engine_env
    summary = canary_engine(settings, tmp, gateway.url).run(only=["billing"], force=["billing"])
    (o,) = summary.outcomes
    assert o.outcome == "ok", o.detail
    from rotation.backends.vault import VaultStore
    cur = VaultStore(settings).read_key_state("billing").current
    assert gateway.request_count(cur.key_id) >= 1     # the canary reached the gateway with the new key


def test_engine_does_not_roll_back_on_a_routing_error(engine_env, gateway):
    """CanaryMisconfigured: the rotation stays in flight (pending kept), the consumer is failed."""
    settings, tmp = engine_env
    from rotation.backends.vault import VaultStore
    summary = canary_engine(settings, tmp, gateway.base_url + "/wrong/path").run(only=["crm"], force=["crm"])
    (o,) = summary.outcomes
    state = VaultStore(settings).read_key_state("crm")
    assert o.outcome == "failed", (o.outcome, o.detail)
    assert state.pending is not None, "rolled back on a routing error"
    assert "MissingAuthenticationTokenException" in o.detail


def test_canary_body_passes_the_api_request_validator_and_the_handler_refuses_it():
    """The canary must reach the handler whatever order API Gateway checks key and body in: the
    body fits the API's JSON schema (draft-04, as the RequestValidator uses it), and the handler
    refuses its sender, so nothing is ever sent."""
    import json

    import jsonschema

    from infra.components.api import MESSAGE_SCHEMA
    from infra.functions.validation import RequestRejected, validate_message

    body = json.loads(CANARY_BODY)
    jsonschema.Draft4Validator(MESSAGE_SCHEMA).validate(body)
    with pytest.raises(RequestRejected) as rejected:
        validate_message(body, sender_identity="example.com")
    assert rejected.value.to_dict()["error"]["field"].startswith("$.from")
