"""Key webhooks follow Standard Webhooks: the reference `standardwebhooks` library verifies what the
real SignedWebhookTarget sends (as an app in Go, Node or Java would with its own library); our
receiver accepts a delivery signed by that library, and still accepts the deprecated X-Mail-Api-*
headers for this release; the stored secret maps to the `whsec_` form both ways."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from rotation.client.receiver import WebhookReceiver, check_signing_secret
from rotation.client.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    to_whsec,
    webhook_key,
)
from rotation.config import WebhookTarget
from rotation.targets.webhook import SignedWebhookTarget

from .conftest import record
from .test_receiver import delivery, rotator, signed_request  # noqa: F401 - fixtures and helpers


class _Capture(BaseHTTPRequestHandler):
    requests: ClassVar[list] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def capture():
    handler = type("Capture", (_Capture,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.requests
    server.shutdown()
    server.server_close()


def test_the_reference_library_verifies_our_delivery_with_the_whsec_form_of_the_stored_secret(
        consumer, rotator, capture):  # noqa: F811
    url, seen = capture
    d = delivery(consumer)
    result = SignedWebhookTarget(WebhookTarget(type="webhook", url=url), rotator, deadline_seconds=5,
                                 allow_loopback=True).push(d)
    assert result.ok, result.detail
    headers, body = seen[0]
    secret = rotator.read_webhook_secret(consumer.name)
    payload = Webhook(to_whsec(secret)).verify(body, headers)        # raises on any mismatch
    assert payload["serial"] == d.serial and payload["consumer"] == consumer.name
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["webhook-id"] == f"{d.rotation_id}:{d.serial}" == lower[IDEMPOTENCY_HEADER.lower()]
    assert lower["webhook-signature"].startswith("v1,")
    assert secret not in json.dumps(headers) and d.value not in body.decode()
    # a body changed in transit, or another consumer's secret, fails the reference verification
    with pytest.raises(WebhookVerificationError):
        Webhook(to_whsec(secret)).verify(body.replace(b'"serial":2', b'"serial":3'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(to_whsec("another-consumer-secret-0123456789abcdef")).verify(body, headers)


def test_our_receiver_accepts_a_delivery_signed_by_the_reference_library(consumer, rotator):  # noqa: F811
    consumer.write_keys(current=record(1), pending=record(2, rotation_id="rot-2"))
    client = consumer.client(refresh_interval=3600)
    secret = client.webhook_signing_secret()
    receiver = WebhookReceiver(secret, client)
    d = delivery(consumer)
    _, raw, _ = signed_request(rotator, d)
    msg_id, now = f"{d.rotation_id}:{d.serial}", datetime.now(UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(to_whsec(secret)).sign(msg_id, now, raw.decode())}
    result = receiver.handle(headers, raw)
    assert result.outcome == "accepted" and result.processed and client.current_key().serial == 2
    # the same message again: a duplicate, not processed twice
    assert receiver.handle(headers, raw).outcome == "duplicate"


def test_a_bad_standard_signature_is_rejected_even_with_valid_deprecated_headers(consumer, rotator):  # noqa: F811
    consumer.write_keys(current=record(1), pending=record(2, rotation_id="rot-2"))
    client = consumer.client(refresh_interval=3600)
    receiver = WebhookReceiver(client.webhook_signing_secret(), client)
    legacy, raw, _ = signed_request(rotator, delivery(consumer))
    ts = legacy[TIMESTAMP_HEADER]
    forged = {**legacy, "webhook-id": "rot-2:2", "webhook-timestamp": ts,
              "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
    assert receiver.handle(forged, raw).outcome == "bad_signature"
    assert client.current_key().serial == 1


def test_the_deprecated_headers_alone_are_still_accepted_and_logged_as_deprecated(consumer, rotator, caplog):  # noqa: F811
    import rotation.client.receiver as receiver_module
    receiver_module._deprecation_logged = False
    consumer.write_keys(current=record(1), pending=record(2, rotation_id="rot-2"))
    client = consumer.client(refresh_interval=3600)
    receiver = WebhookReceiver(client.webhook_signing_secret(), client)
    headers, raw, _ = signed_request(rotator, delivery(consumer))
    assert set(headers) == {TIMESTAMP_HEADER, SIGNATURE_HEADER, IDEMPOTENCY_HEADER}
    with caplog.at_level("WARNING", logger="rotation.client.receiver"):
        assert receiver.handle(headers, raw).outcome == "accepted"
    assert "deprecated" in caplog.text


def test_the_stored_secret_maps_to_whsec_and_a_whsec_secret_is_checked_by_its_decoded_length():
    plain = "k" * 40
    assert webhook_key(to_whsec(plain)) == plain.encode() == webhook_key(plain)
    assert check_signing_secret(to_whsec(plain)) == to_whsec(plain)
    short = "whsec_" + base64.b64encode(b"s" * 24).decode()     # 24 bytes: below the 32-byte minimum
    with pytest.raises(ValueError, match="at least 32 bytes") as exc:
        check_signing_secret(short)
    assert short not in str(exc.value)
    with pytest.raises(ValueError):
        check_signing_secret("whsec_not base64 at all!!" + "x" * 40)
