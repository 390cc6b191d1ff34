"""Delivery on the engine side (docs/architecture.md, "Delivery to consuming apps"): revoke when
acknowledged *and* idle (grace as the upper bound), quota carry-over, and tamper detection of
wrapping tokens. Real OpenBao and moto, except
GetUsage/UpdateUsage, which moto does not answer: those use botocore's Stubber."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import boto3
import hvac
import pytest
from botocore.stub import Stubber

from rotation.backends.traffic import ApiGatewayUsage, QuotaCarrier
from rotation.client.keys import AppRoleAuth, KeyClient
from rotation.client.receiver import WebhookReceiver, serve_webhook
from rotation.config import ConsumersFile

from .conftest import assert_invariants


class CounterSignal:
    """A TrafficSignal (our own protocol) whose counts the test sets per key id."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def request_count(self, key_id, usage_plan_id):
        return self.counts.get(key_id)


def _app(env, consumer):
    role_id, secret_id = env.creds.consumer_roles[consumer]
    return KeyClient(env.stack.vault_addr, consumer, auth=AppRoleAuth(role_id, secret_id), refresh_interval=0.01)


def _rotate_billing(env, signal):
    env.engine(traffic=signal).run()
    env.engine(traffic=signal).run(only=["billing"], force=["billing"])
    return env.state("billing")


def test_old_key_revoked_early_once_acknowledged_and_idle(env):
    signal = CounterSignal()
    st = _rotate_billing(env, signal)
    old = st.previous
    signal.counts[old.key_id] = 7
    _app(env, "billing").current_key()                  # the app now uses serial 2: its ack
    env.engine(traffic=signal).run(only=["billing"])     # first look: counter snapshot
    env.clock.advance(minutes=10)
    env.engine(traffic=signal).run(only=["billing"])     # idle 10m < quiet 15m: stays
    assert env.apigw().get_api_key(apiKey=old.key_id)["enabled"] is True
    env.clock.advance(minutes=6)                        # idle 16m, grace (1h) not over
    env.engine(traffic=signal).run(only=["billing"])
    assert env.apigw().get_api_key(apiKey=old.key_id)["enabled"] is False
    assert '"early"' in env.audit_text()
    assert_invariants(env)


def test_traffic_on_the_old_key_keeps_it(env):
    signal = CounterSignal()
    old = _rotate_billing(env, signal).previous
    _app(env, "billing").current_key()
    signal.counts[old.key_id] = 1
    env.engine(traffic=signal).run(only=["billing"])
    env.clock.advance(minutes=16)
    signal.counts[old.key_id] = 2                        # still used: the counter moved
    env.engine(traffic=signal).run(only=["billing"])
    assert env.apigw().get_api_key(apiKey=old.key_id)["enabled"] is True


def test_consumer_that_never_acknowledges_keeps_old_key_until_grace_ends(env):
    signal = CounterSignal()
    old = _rotate_billing(env, signal).previous
    signal.counts[old.key_id] = 0                        # idle, but no ack from the app
    env.engine(traffic=signal).run(only=["billing"])
    env.clock.advance(minutes=59)
    env.engine(traffic=signal).run(only=["billing"])
    assert env.apigw().get_api_key(apiKey=old.key_id)["enabled"] is True
    env.clock.advance(minutes=2)                         # grace (1h) over: the upper bound
    env.engine(traffic=signal).run(only=["billing"])
    assert env.apigw().get_api_key(apiKey=old.key_id)["enabled"] is False


def test_unknown_traffic_never_counts_as_idle(env):
    signal = CounterSignal()                              # returns None for every key
    old = _rotate_billing(env, signal).previous
    _app(env, "billing").current_key()
    env.clock.advance(minutes=30)
    env.engine(traffic=signal).run(only=["billing"])
    assert env.apigw().get_api_key(apiKey=old.key_id)["enabled"] is True


def _stubbed_apigw():
    client = boto3.client("apigateway", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_quota_carry_over_reads_old_remaining_and_sets_it_on_the_new_key():
    """GetUsage/UpdateUsage: moto answers neither, so botocore's Stubber checks the requests
    against the service model."""
    client, stub = _stubbed_apigw()
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    stub.add_response("get_usage", {"usagePlanId": "plan1", "startDate": today, "endDate": today,
                                    "items": {"old": [[800, 200]]}},
                      {"usagePlanId": "plan1", "keyId": "old", "startDate": today, "endDate": today})
    stub.add_response("update_usage", {"usagePlanId": "plan1", "items": {"new": [[0, 200]]}},
                      {"usagePlanId": "plan1", "keyId": "new",
                       "patchOperations": [{"op": "replace", "path": "/remaining", "value": "200"}]})
    with stub:
        assert QuotaCarrier(client).carry("plan1", "old", "new") == 200
    stub.assert_no_pending_responses()


def test_quota_carry_over_skips_when_usage_is_unavailable_and_raises_when_update_fails():
    from rotation.errors import AwsError
    client, stub = _stubbed_apigw()
    stub.add_client_error("get_usage", "NotFoundException", http_status_code=404)
    with stub:
        assert QuotaCarrier(client).carry("plan1", "old", "new") is None
    client, stub = _stubbed_apigw()
    stub.add_response("get_usage", {"items": {"old": [[1, 9]]}})
    stub.add_client_error("update_usage", "BadRequestException", http_status_code=400)
    with stub, pytest.raises(AwsError, match="UpdateUsage"):
        QuotaCarrier(client).carry("plan1", "old", "new")


def test_api_gateway_usage_signal_reads_the_count_since_the_key_was_created():
    client, stub = _stubbed_apigw()
    stub.add_response("get_api_key", {"id": "k1", "createdDate": dt.datetime.now(dt.UTC)})
    stub.add_response("get_usage", {"items": {"k1": [[42, 958]]}})
    stub.add_response("get_usage", {"items": {}})
    stub.add_client_error("get_usage", "TooManyRequestsException", http_status_code=429)
    with stub:
        signal = ApiGatewayUsage(client)
        assert signal.request_count("k1", "plan1") == 42
        assert signal.request_count("k1", "plan1") == 0          # no usage recorded today
        assert signal.request_count("k1", "plan1") is None       # unknown, never "idle"


# -- tamper detection (failure case V6) ---------------------------------------------------------

def _webhook_env(env, tmp_path, forward_to):
    cf = ConsumersFile.model_validate({
        "version": 1, "usage_plans": {"standard": "secure-mail-api-dev-standard"},
        "defaults": {"grace_period": "1h"},
        "consumers": [{"name": "crm", "tier": "standard",
                       "targets": [{"type": "webhook", "url": forward_to}]}]})
    return cf


class Interceptor(BaseHTTPRequestHandler):
    """A man in the middle: unwraps the token itself, then forwards the request unchanged."""

    vault_addr = ""
    upstream = ""
    stolen: ClassVar[list] = []

    def do_POST(self):
        import requests
        body = self.rfile.read(int(self.headers["Content-Length"]))
        token = json.loads(body)["wrap_token"]
        thief = hvac.Client(url=self.vault_addr, token=token)
        Interceptor.stolen.append(thief.sys.unwrap()["data"]["api_key"])
        r = requests.post(self.upstream, data=body, headers={k: v for k, v in self.headers.items()}, timeout=60)
        self.send_response(r.status_code)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_token_unwrapped_by_someone_else_raises_alarm_and_reissues_by_emergency_rotation(env, tmp_path):
    env.engine().run()                                     # billing/crm/newsletter get keys
    app = _app(env, "crm")
    # the webhook secret exists only for consumers bootstrapped with a webhook target
    env.root().secrets.kv.v2.create_or_update_secret(path="mail-api/webhooks/crm",
                                                       secret={"signing_secret": "s" * 32}, cas=0)
    receiver = WebhookReceiver("s" * 32, app, consumer="crm")
    server = serve_webhook(receiver, "127.0.0.1", 0)
    mitm = ThreadingHTTPServer(("127.0.0.1", 0), Interceptor)
    Interceptor.vault_addr, Interceptor.stolen = env.stack.vault_addr, []
    Interceptor.upstream = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=mitm.serve_forever, daemon=True).start()
    try:
        cf = _webhook_env(env, tmp_path, f"http://127.0.0.1:{mitm.server_address[1]}/")
        leaked = env.state("crm").current
        out = env.engine(consumers=cf).run(force=["crm"]).outcomes[0]
        # the receiver could not unwrap (410), so the required webhook target failed; the restore of
        # the current key went through the interceptor too, so the rollback waits (both keys enabled)
        assert out.outcome == "failed" and "rollback of serial 2 waits" in out.detail, out
        assert '"HTTP 410' in env.audit_text()
        assert Interceptor.stolen, "the interceptor did not get the key"
        ack = env.root().secrets.kv.v2.read_secret_version(path="mail-api/acks/crm",
                                                            raise_on_deleted_version=True)["data"]["data"]
        assert ack["unwrap_failures"], "the app did not report the unwrap failure"
        # next run: the rotator checks the reported token, finds it unwrapped within its TTL
        mitm.shutdown()
        cf_direct = _webhook_env(env, tmp_path, Interceptor.upstream)
        out = env.engine(consumers=cf_direct).run().outcomes[0]
        assert (out.action, out.outcome) == ("emergency", "ok"), out
        events = [json.loads(line) for line in env.audit_text().splitlines()]
        assert any(e["event"] == "tamper_check" and e["outcome"] == "alarm" for e in events)
        st = env.state("crm")
        assert st.current.serial > leaked.serial
        assert env.apigw().get_api_key(apiKey=leaked.key_id)["enabled"] is False    # revoked at once
        assert st.pending is None and len(Interceptor.stolen) == 2                    # serials 2 and 1 stolen
        assert not set(Interceptor.stolen) & {st.current.value}                       # both now dead
        enabled = {k["value"] for k in env.apigw().get_api_keys(includeValues=True)["items"] if k["enabled"]}
        assert not set(Interceptor.stolen) & enabled
        assert app.current_key().serial == st.current.serial                          # the app has the new one
        assert_invariants(env)
    finally:
        server.shutdown()
