"""rotation.client.receiver: the consumer side of the signed key webhook, against real OpenBao wrapping
tokens issued by the rotator's VaultStore and sent by the real SignedWebhookTarget."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests

from rotation.backends.vault import VaultStore
from rotation.client.keys import ApiKey, TamperSuspected
from rotation.client.receiver import WebhookReceiver, serve_webhook
from rotation.client.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from rotation.config import WebhookTarget
from rotation.settings import Settings
from rotation.targets import Delivery
from rotation.targets.webhook import SignedWebhookTarget

from .conftest import record


@pytest.fixture(scope="module")
def rotator(stack):
    return VaultStore(Settings(**stack.env(stack.creds)))


def delivery(consumer, serial=2, rotation_id="rot-2", value=None):
    rec = record(serial, value, rotation_id=rotation_id)
    return Delivery(consumer=consumer.name, serial=serial, rotation_id=rotation_id, key_id=rec["key_id"],
                    value=rec["value"], fingerprint=__import__("rotation.records").records.fingerprint(rec["value"]))


def signed_request(rotator, d: Delivery, *, ts=None, token=None, secret=None, body_changes=None):
    """Build the request SignedWebhookTarget would send (same body and headers)."""
    secret = secret or rotator.read_webhook_secret(d.consumer)
    token = token or rotator.wrap({"api_key": d.value, "serial": d.serial, "key_id": d.key_id}, 60)["token"]
    body = {"consumer": d.consumer, "serial": d.serial, "rotation_id": d.rotation_id, "key_id": d.key_id,
            "fingerprint": d.fingerprint, "wrap_token": token, "wrap_ttl": 60, **(body_changes or {})}
    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = int(time.time()) if ts is None else ts
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, raw),
            IDEMPOTENCY_HEADER: f"{d.rotation_id}:{d.serial}"}, raw, token


@pytest.fixture
def app(consumer):
    consumer.write_keys(current=record(1), pending=record(2, rotation_id="rot-2"))
    client = consumer.client(refresh_interval=3600)
    assert client.current_key().serial == 1
    receiver = WebhookReceiver(client.webhook_signing_secret(), client)
    return consumer, client, receiver


def test_valid_delivery_end_to_end_over_http(app, rotator):
    consumer, client, receiver = app
    unwraps_before = _audit_unwraps(consumer.stack)
    server = serve_webhook(receiver, "127.0.0.1", 0, path="/hooks/key")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/key"
        target = SignedWebhookTarget(WebhookTarget(type="webhook", url=url), rotator, deadline_seconds=5,
                                 allow_loopback=True)
        d = delivery(consumer)
        result = target.push(d)
        assert result.ok, result.detail
        assert result.detail == "HTTP 204"
    finally:
        server.shutdown()
        server.server_close()
    key = client.current_key()
    assert (key.serial, key.key_id, key.value) == (2, d.key_id, d.value)
    assert client.stats["data_reads"] == 1           # installed from the push, no extra Vault read
    assert consumer.ack()[0]["serial"] == 2
    assert _audit_unwraps(consumer.stack) == unwraps_before + 1   # unwrapped exactly once


def _audit_unwraps(stack) -> int:
    return sum(1 for line in stack.audit_log.read_text().splitlines()
               if (ev := json.loads(line)).get("type") == "request"
               and ev["request"].get("path") == "sys/wrapping/unwrap")


def test_tampered_signature_rejected_and_token_left_intact(app, rotator):
    consumer, client, receiver = app
    headers, body, token = signed_request(rotator, delivery(consumer))
    bad = dict(headers, **{SIGNATURE_HEADER: headers[SIGNATURE_HEADER][:-4] + "0000"})
    r = receiver.handle(bad, body)
    assert (r.outcome, r.status, r.processed) == ("bad_signature", 401, False)
    tampered_body = body.replace(b'"serial":2', b'"serial":9')
    assert receiver.handle(headers, tampered_body).outcome == "bad_signature"
    wrong_secret = signed_request(rotator, delivery(consumer), token=token, secret="not-the-secret")
    assert receiver.handle(wrong_secret[0], wrong_secret[1]).outcome == "bad_signature"
    assert rotator.lookup_wrapping_token(token) is not None     # never unwrapped
    assert client.current_key().serial == 1
    assert receiver.handle(headers, body).outcome == "accepted"  # the genuine one still works


def test_replayed_webhook_not_processed_twice(app, rotator):
    consumer, _client, receiver = app
    headers, body, token = signed_request(rotator, delivery(consumer))
    first = receiver.handle(headers, body)
    assert first.processed and first.status == 204
    again = receiver.handle(headers, body)
    assert (again.outcome, again.processed, again.status) == ("duplicate", False, 200)
    # the sender's retry (same body, same token) re-signed later is not processed again either
    h2, b2, _ = signed_request(rotator, delivery(consumer), ts=int(time.time()) + 1, token=token)
    assert receiver.handle(h2, b2).processed is False
    # a re-issue (same idempotency key, a fresh token: an expired-token re-push or a rollback
    # restore) is processed: the key it carries is installed again, idempotently
    h4, b4, _ = signed_request(rotator, delivery(consumer))
    assert receiver.handle(h4, b4).processed is True
    # a captured request replayed after the window is refused before anything else
    h3, b3, token3 = signed_request(rotator, delivery(consumer, serial=3, rotation_id="rot-3"),
                                    ts=int(time.time()) - 301)
    old = receiver.handle(h3, b3)
    assert (old.outcome, old.status, old.processed) == ("replay", 409, False)
    assert rotator.lookup_wrapping_token(token3) is not None


def test_token_unwrapped_twice_is_tamper_suspected(app, rotator):
    consumer, client, receiver = app
    d = delivery(consumer)
    headers, body, token = signed_request(rotator, d)
    client.unwrap(token)                         # an interceptor unwrapped it first
    with pytest.raises(TamperSuspected, match="already unwrapped"):
        receiver.handle(headers, body)
    assert client.current_key().serial == 1     # nothing installed
    # the same delivery is not tried again (no blind retry)
    assert receiver.handle(headers, body).outcome == "replay"
    # the rotation job re-issues it with a fresh wrapping token: that one is accepted
    fresh = signed_request(rotator, d)
    assert receiver.handle(fresh[0], fresh[1]).outcome == "accepted"
    assert client.current_key().serial == 2
    # over HTTP the sender sees 410 Gone
    server = serve_webhook(receiver)
    try:
        h2, b2, _ = signed_request(rotator, delivery(consumer, serial=3, rotation_id="rot-3"), token=token)
        r = requests.post(f"http://127.0.0.1:{server.server_address[1]}/", data=b2, headers=h2, timeout=60)
        assert r.status_code == 410
    finally:
        server.shutdown()
        server.server_close()


def test_unwrapped_contents_must_match_body(app, rotator):
    consumer, client, receiver = app
    d = delivery(consumer)
    other = rotator.wrap({"api_key": "k" * 40, "serial": 5, "key_id": "kid5"}, 60)["token"]
    headers, body, _ = signed_request(rotator, d, token=other)
    with pytest.raises(TamperSuspected, match="do not match"):
        receiver.handle(headers, body)
    assert client.current_key().serial == 1


def test_token_not_from_sys_wrapping_wrap_is_suspect(app, rotator, stack):
    consumer, _client, receiver = app
    root = stack.root_client()
    wrapped = root.adapter.get(f"/v1/secret/data/mail-api/keys/{consumer.name}", wrap_ttl="60s")
    headers, body, _ = signed_request(rotator, delivery(consumer), token=wrapped["wrap_info"]["token"])
    with pytest.raises(TamperSuspected, match="created by"):
        receiver.handle(headers, body)


def test_notification_for_another_consumer_rejected(app, rotator):
    consumer, _client, receiver = app
    headers, body, token = signed_request(rotator, delivery(consumer), body_changes={"consumer": "someone-else"})
    assert receiver.handle(headers, body).outcome == "bad_request"
    assert rotator.lookup_wrapping_token(token) is not None


def test_unwrap_function_target_and_canary(rotator, consumer, caplog):
    caplog.set_level(logging.DEBUG)
    canary = "CANARY-" + "w" * 30
    got = []
    def unwrap(token):
        return consumer.client().unwrap(token)

    secret = rotator.read_webhook_secret(consumer.name)
    receiver = WebhookReceiver(secret, unwrap, on_key=got.append, consumer=consumer.name)
    d = delivery(consumer, value=canary)
    headers, body, _ = signed_request(rotator, d)
    r = receiver.handle(headers, body)
    assert r.processed and got[0].value == canary
    used = signed_request(rotator, delivery(consumer, serial=3, rotation_id="r3", value=canary))
    unwrap(used[2])
    with pytest.raises(TamperSuspected) as err:
        receiver.handle(used[0], used[1])
    blob = "\n".join([repr(r), repr(got[0]), repr(receiver), caplog.text, str(err.value)])
    assert canary not in blob


def test_rollback_restore_with_a_higher_fence_is_accepted_and_an_older_fence_replay_refused(app, rotator):
    """The rollback's restore of serial 1 (fence 7) reaches an app that installed the pending serial 2
    (fence 5) while Vault still lists serial 2 as pending: the receiver and the KeyClient take it (a
    later lease holder's word wins); serial 2 re-delivered with the older fence stays refused."""
    consumer, client, receiver = app
    d2, d1 = delivery(consumer, 2, "rot-2"), delivery(consumer, 1, "rot-1")
    headers, raw, _ = signed_request(rotator, d2, body_changes={"fence": 5})
    assert receiver.handle(headers, raw).outcome == "accepted"
    assert client.current_key().serial == 2
    headers, raw, _ = signed_request(rotator, d1, body_changes={"fence": 7})
    result = receiver.handle(headers, raw)
    assert (result.outcome, result.status) == ("accepted", 204), result
    key = client.current_key()
    assert (key.serial, key.key_id, key.value) == (1, d1.key_id, d1.value)
    assert consumer.ack()[0]["serial"] == 1
    # the delivery of serial 2 re-issued (fresh wrapping token) with its older fence: refused
    headers, raw, _ = signed_request(rotator, d2, body_changes={"fence": 5})
    result = receiver.handle(headers, raw)
    assert (result.outcome, result.status) == ("stale", 409), result
    # and the KeyClient on its own refuses the older fence too
    assert client.notify_push(ApiKey(d2.value, 2, d2.key_id), fence=5) is False
    assert client.current_key().serial == 1
