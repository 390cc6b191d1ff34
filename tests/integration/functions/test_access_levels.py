"""Per-caller access levels (issue 13 part 1) end to end against moto: the handler resolves the API
key's consumer from its tags (GetApiKey, cached), applies the consumer's level and, on the OAuth
path, a level of one of the token's scopes; refusals are 403 with a machine-readable reason, and
nothing is sent or recorded. Every request ends with one request record (part 2)."""

from __future__ import annotations

import base64
import json

import pytest

from infra.functions import send_message
from infra.functions.access import (
    AccessConfigError,
    AccessRefused,
    KeyConsumers,
    check_level,
    load_access_config,
)

STACK = "dev"
PDF = b"%PDF-1.4\n% test document\n"

LEVELS = {
    "transactional": {"senders": ["billing@example.com", "no-reply@example.com"], "displayName": "Billing",
                      "maxRecipients": 3, "attachments": True, "maxMessageBytes": 200_000,
                      "recipientDomains": None},
    "notifications": {"senders": ["crm@example.com"], "displayName": None, "maxRecipients": 10,
                      "attachments": False, "maxMessageBytes": 20_000, "recipientDomains": ["example.org"]},
    "oauth-send": {"senders": ["billing@example.com", "crm@example.com"], "displayName": "Billing",
                   "maxRecipients": 10, "attachments": False, "maxMessageBytes": 200_000,
                   "recipientDomains": None},
    "oauth-attachments": {"senders": ["billing@example.com"], "displayName": "Billing", "maxRecipients": 10,
                          "attachments": True, "maxMessageBytes": 200_000, "recipientDomains": None},
}
CONSUMERS = {"billing": "transactional", "crm": "notifications"}
SCOPES = {"mail-api/send": "oauth-send", "mail-api/send:attachments": "oauth-attachments"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body(sender="billing@example.com", name="Billing", to=("alice@example.org",), **extra):
    out = {"from": {"email": sender, **({"name": name} if name else {})}, "to": list(to),
           "subject": "Invoice", "text": "Hello"}
    out.update(extra)
    return out


ATTACHMENT = {"filename": "invoice.pdf", "content_type": "application/pdf", "content": b64(PDF)}


@pytest.fixture
def keys(mail_backend, monkeypatch):
    """Set the access environment and mint tagged keys in moto; returns consumer -> key id."""
    monkeypatch.setenv("ACCESS_LEVELS", json.dumps(LEVELS))
    monkeypatch.setenv("ACCESS_CONSUMERS", json.dumps(CONSUMERS))
    monkeypatch.setenv("ACCESS_SCOPES", json.dumps(SCOPES))
    monkeypatch.setenv("ACCESS_STACK", STACK)
    send_message._KEY_CONSUMERS.clear()
    client = mail_backend._client("apigateway")

    def mint(name, tags):
        return client.create_api_key(name=name, value=name.replace("-", "") + "x" * 30, enabled=True,
                                     tags=tags)["id"]

    ids = {c: mint(f"key-{c}", {"secure-mail-api:stack": STACK, "secure-mail-api:consumer": c})
           for c in ("billing", "crm")}
    ids["unmapped"] = mint("key-unmapped", {"secure-mail-api:stack": STACK, "secure-mail-api:consumer": "ghost"})
    ids["untagged"] = mint("key-untagged", {})
    ids["other-stack"] = mint("key-other", {"secure-mail-api:stack": "prod", "secure-mail-api:consumer": "billing"})
    yield ids
    send_message._KEY_CONSUMERS.clear()


def event_for(make_event, key_id, payload, *, scope=None, client_id="client-123"):
    event = make_event(payload)
    event["requestContext"]["identity"]["apiKeyId"] = key_id
    if scope is not None:
        event["requestContext"]["authorizer"] = {"claims": {"client_id": client_id, "scope": scope}}
    return event


def assert_refused(invoke, event, mail_backend, reason, field):
    status, payload, _ = invoke(event)
    assert status == 403, payload
    assert payload["error"]["reason"] == reason
    assert payload["error"]["field"] == field
    assert mail_backend.sent_messages() == [] and mail_backend.items() == []


# ---- allowed --------------------------------------------------------------------------------


def test_key_within_its_level_sends_with_attachment_and_display_name(invoke, make_event, mail_backend, keys):
    status, payload, _ = invoke(event_for(make_event, keys["billing"],
                                          body(to=("a@example.org", "b@example.net"), attachments=[ATTACHMENT])))
    assert status == 202, payload
    assert len(mail_backend.sent_messages()) == 1


def test_second_sender_of_the_level_is_allowed_without_display_name(invoke, make_event, mail_backend, keys):
    status, payload, _ = invoke(event_for(make_event, keys["billing"], body(sender="no-reply@example.com", name=None)))
    assert status == 202, payload


# ---- refused by the key's level -------------------------------------------------------------


def test_key_sending_as_another_consumers_address_is_refused(invoke, make_event, mail_backend, keys):
    assert_refused(invoke, event_for(make_event, keys["billing"], body(sender="crm@example.com", name=None)),
                   mail_backend, "sender_not_allowed", "$.from")
    assert_refused(invoke, event_for(make_event, keys["crm"], body(sender="billing@example.com", name=None)),
                   mail_backend, "sender_not_allowed", "$.from")


def test_sender_local_part_compares_exactly(invoke, make_event, mail_backend, keys):
    assert_refused(invoke, event_for(make_event, keys["billing"], body(sender="Billing@example.com")),
                   mail_backend, "sender_not_allowed", "$.from")


def test_other_display_name_is_refused(invoke, make_event, mail_backend, keys):
    assert_refused(invoke, event_for(make_event, keys["billing"], body(name="Your Bank")),
                   mail_backend, "sender_not_allowed", "$.from.name")


def test_display_name_on_a_level_without_one_is_refused(invoke, make_event, mail_backend, keys):
    assert_refused(invoke, event_for(make_event, keys["crm"], body(sender="crm@example.com", name="CRM")),
                   mail_backend, "sender_not_allowed", "$.from.name")


def test_more_recipients_than_the_level_allows_is_refused(invoke, make_event, mail_backend, keys):
    payload = body(to=("a@example.org", "b@example.org"), cc=["c@example.org"], bcc=["d@example.org"])
    assert_refused(invoke, event_for(make_event, keys["billing"], payload), mail_backend,
                   "too_many_recipients", "$.to")


def test_attachments_on_a_level_without_them_are_refused(invoke, make_event, mail_backend, keys):
    payload = body(sender="crm@example.com", name=None, attachments=[ATTACHMENT])
    assert_refused(invoke, event_for(make_event, keys["crm"], payload), mail_backend,
                   "attachments_not_allowed", "$.attachments")


def test_message_above_the_level_size_is_refused(invoke, make_event, mail_backend, keys):
    payload = body(sender="crm@example.com", name=None, text="x" * 30_000)
    assert_refused(invoke, event_for(make_event, keys["crm"], payload), mail_backend, "message_too_large", "$")


def test_recipient_outside_the_level_domains_is_refused(invoke, make_event, mail_backend, keys):
    payload = body(sender="crm@example.com", name=None, to=("a@example.org",), cc=["b@elsewhere.example"])
    assert_refused(invoke, event_for(make_event, keys["crm"], payload), mail_backend,
                   "recipient_domain_not_allowed", "$.cc[0]")


@pytest.mark.parametrize("address", ["u%evil.example@example.org", "evil.example!u@example.org",
                                     "u%evil.example%example.org@example.org"])
def test_routing_syntax_cannot_pass_the_recipient_domain_allow_list(invoke, make_event, mail_backend, keys, address):
    """crm may send only to example.org; a relay honouring the percent hack or a bang path would
    deliver these to evil.example (issue 20, item 7): refused as addresses, nothing sent."""
    status, payload, _ = invoke(event_for(make_event, keys["crm"],
                                          body(sender="crm@example.com", name=None, to=(address,))))
    assert (status, payload["error"]["reason"], payload["error"]["field"]) == (400, "invalid_address", "$.to[0]")
    assert mail_backend.sent_messages() == [] and mail_backend.items() == []


@pytest.mark.parametrize("which", ["unmapped", "untagged", "other-stack"])
def test_key_without_a_level_of_this_stack_is_refused(invoke, make_event, mail_backend, keys, which):
    assert_refused(invoke, event_for(make_event, keys[which], body()), mail_backend, "caller_not_allowed", "$")


def test_unknown_key_id_and_missing_key_id_are_refused(invoke, make_event, mail_backend, keys):
    assert_refused(invoke, event_for(make_event, "nosuchkey1", body()), mail_backend, "caller_not_allowed", "$")
    event = make_event(body())
    del event["requestContext"]["identity"]["apiKeyId"]
    assert_refused(invoke, event, mail_backend, "caller_not_allowed", "$")


# ---- OAuth scopes ---------------------------------------------------------------------------


def test_send_scope_refuses_attachments_the_key_would_allow(invoke, make_event, mail_backend, keys):
    event = event_for(make_event, keys["billing"], body(attachments=[ATTACHMENT]), scope="mail-api/send")
    assert_refused(invoke, event, mail_backend, "attachments_not_allowed", "$.attachments")


def test_attachments_scope_allows_attachments(invoke, make_event, mail_backend, keys):
    event = event_for(make_event, keys["billing"], body(attachments=[ATTACHMENT]),
                      scope="mail-api/send mail-api/send:attachments")
    status, payload, _ = invoke(event)
    assert status == 202, payload


def test_scope_never_widens_the_keys_level(invoke, make_event, mail_backend, keys):
    # oauth-send allows crm@ as sender, but the billing key's level does not.
    event = event_for(make_event, keys["billing"], body(sender="crm@example.com", name=None), scope="mail-api/send")
    assert_refused(invoke, event, mail_backend, "sender_not_allowed", "$.from")


def test_token_without_a_mapped_scope_is_refused(invoke, make_event, mail_backend, keys):
    event = event_for(make_event, keys["billing"], body(), scope="mail-api/admin openid")
    assert_refused(invoke, event, mail_backend, "caller_not_allowed", "$")


# ---- hot path: one key lookup per key and TTL -----------------------------------------------


def test_key_is_looked_up_once_per_key_not_per_request(invoke, make_event, mail_backend, keys):
    for _ in range(3):
        status, _, _ = invoke(event_for(make_event, keys["billing"], body()))
        assert status == 202
    cache = next(iter(send_message._KEY_CONSUMERS.values()))
    assert cache.lookups == 1


def test_key_cache_expires_after_its_ttl_with_a_fake_clock():
    now = [1000.0]
    answers = {"k1": {"secure-mail-api:consumer": "billing", "secure-mail-api:stack": "dev"}}
    calls = []

    def lookup(key_id):
        calls.append(key_id)
        return answers.get(key_id)

    cache = KeyConsumers(lookup, ttl_seconds=300, clock=lambda: now[0])
    assert cache.consumer("k1", "dev") == "billing"
    now[0] += 299
    assert cache.consumer("k1", "dev") == "billing" and calls == ["k1"]
    answers["k1"] = {"secure-mail-api:consumer": "crm", "secure-mail-api:stack": "dev"}
    now[0] += 2
    assert cache.consumer("k1", "dev") == "crm" and calls == ["k1", "k1"]
    assert cache.consumer("k1", "prod") is None
    assert cache.consumer(None, "dev") is None


def test_key_cache_is_bounded():
    cache = KeyConsumers(lambda key_id: {}, max_entries=4, clock=lambda: 0.0)
    for i in range(20):
        cache.tags(f"k{i}")
    assert len(cache._cache) <= 4


# ---- configuration --------------------------------------------------------------------------


def test_malformed_access_environment_is_500_and_sends_nothing(invoke, make_event, mail_backend, keys,
                                                               monkeypatch):
    monkeypatch.setenv("ACCESS_CONSUMERS", json.dumps({"billing": "no-such-level"}))
    status, payload, _ = invoke(event_for(make_event, keys["billing"], body()))
    assert status == 500 and payload["error"]["reason"] == "server_misconfigured"
    assert mail_backend.sent_messages() == []


@pytest.mark.parametrize("env", [
    {"ACCESS_LEVELS": "[]"},
    {"ACCESS_LEVELS": "{not json"},
    {"ACCESS_LEVELS": json.dumps({"x": {"senders": []}})},
    {"ACCESS_LEVELS": json.dumps(LEVELS), "ACCESS_SCOPES": json.dumps({"mail-api/send": "nope"})},
])
def test_load_access_config_refuses_malformed_environment(env):
    with pytest.raises(AccessConfigError):
        load_access_config(env)


def test_unset_access_levels_means_no_per_caller_levels():
    assert load_access_config({}) is None


def test_refusal_order_is_sender_first():
    config = load_access_config({"ACCESS_LEVELS": json.dumps(LEVELS)})
    from infra.functions.validation import validate_message

    message = validate_message(body(sender="crm@example.com", name=None, attachments=[ATTACHMENT],
                                    to=("a@x.example", "b@x.example", "c@x.example", "d@x.example")),
                               sender_identity="example.com")
    with pytest.raises(AccessRefused) as exc:
        check_level(config.levels["transactional"], message, message_bytes=10)
    assert exc.value.reason == "sender_not_allowed"


# ---- part 2: the request record -------------------------------------------------------------


def _records(captured: str) -> list[dict]:
    out = []
    for line in captured.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("message") == "request record":
            out.append(doc["audit"])
    return out


RECORD_FIELDS = {"request_id", "request_time_epoch_ms", "operation", "stage", "source_ip", "api_key_id",
                 "consumer", "client_id", "access_level", "status", "reason", "request_bytes", "message_bytes",
                 "recipient_count", "attachment_count", "response_bytes", "message_id"}


def test_every_request_leaves_one_record_with_caller_outcome_and_size_but_no_content(
        invoke, make_event, mail_backend, keys, capsys):
    capsys.readouterr()
    sent = event_for(make_event, keys["billing"], body(subject="SUBJECT-CANARY", text="BODY-CANARY"),
                     scope="mail-api/send")
    sent["requestContext"]["requestTimeEpoch"] = 1764000000000
    status, payload, _ = invoke(sent)
    assert status == 202
    refused = event_for(make_event, keys["crm"], body(sender="billing@example.com", name=None))
    assert invoke(refused)[0] == 403
    out = capsys.readouterr().out
    ok, no = _records(out)
    assert set(ok) == RECORD_FIELDS and set(no) == RECORD_FIELDS
    assert ok["request_id"] == "apigw-req-1234" and ok["operation"] == "SendMessage"
    assert ok["request_time_epoch_ms"] == 1764000000000 and ok["stage"] == "prod"
    assert (ok["api_key_id"], ok["consumer"], ok["client_id"], ok["access_level"]) == (
        keys["billing"], "billing", "client-123", "transactional")
    assert ok["status"] == 202 and ok["reason"] is None and ok["message_id"] == payload["message_id"]
    assert ok["request_bytes"] > 0 and ok["response_bytes"] > 0 and ok["recipient_count"] == 1
    assert no["status"] == 403 and no["reason"] == "sender_not_allowed" and no["consumer"] == "crm"
    for canary in ("SUBJECT-CANARY", "BODY-CANARY", "alice@example.org", "k" * 40):
        assert canary not in out


def test_a_request_refused_before_parsing_still_has_a_record(invoke, make_event, mail_backend, capsys):
    capsys.readouterr()
    status, _, _ = invoke(make_event(raw_body="{not json", headers={"Content-Type": "application/json"}))
    assert status == 400
    (record,) = _records(capsys.readouterr().out)
    assert record["status"] == 400 and record["reason"] == "malformed_json"
    assert record["consumer"] is None and record["message_bytes"] is None
