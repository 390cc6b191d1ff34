"""Adversarial tests of the delivery side, found by a review that set out to break it. Each states
a scenario and the property it broke; all are fixed and kept as regression tests. Real OpenBao and
moto throughout (no hvac/boto3 mocks)."""

from __future__ import annotations

import json

import hvac
import pytest

from rotation.audit import REDACTOR
from rotation.client.keys import ApiKey, KeyUnavailable
from rotation.config import ConsumersFile
from tests.integration.delivery.conftest import record
from tests.integration.rotation.conftest import assert_invariants


# -- helpers ---------------------------------------------------------------------------------------
def _consumers(tmp, webhook_url="http://127.0.0.1:9/hook", required=False):
    """billing (file), crm (webhook, not required: its receiver is down), newsletter (file)."""
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
        "consumers": [
            {"name": "billing", "tier": "premium", "targets": [{"type": "file", "path": str(tmp / "billing.key")}]},
            {"name": "crm", "tier": "standard",
             "targets": [{"type": "webhook", "url": webhook_url, "required": required}]},
            {"name": "newsletter", "tier": "standard",
             "targets": [{"type": "file", "path": str(tmp / "newsletter.key")}]},
        ]})


def _as_consumer(env, name) -> hvac.Client:
    """A Vault client logged in with the consumer's own AppRole (its real policy)."""
    role_id, secret_id = env.creds.consumer_roles[name]
    c = hvac.Client(url=env.stack.vault_addr)
    c.auth.approle.login(role_id=role_id, secret_id=secret_id)
    return c


def _write_own_ack(env, name, data) -> None:
    c = _as_consumer(env, name)
    path = f"mail-api/acks/{name}"
    try:
        v = c.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=False)["data"]["metadata"]["version"]
    except hvac.exceptions.InvalidPath:
        v = 0
    c.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=v)


# -- 1. a consumer's crafted ack blocks its own emergency rotation (incident response) -------------
@pytest.mark.parametrize("report", [
    {"token": 12345, "serial": 1},                                     # non-str token
    {"token": "hvs.forged-token-xxxxxxxxxxxx", "serial": 1, "at": "yesterday"},   # unparsable "at"
    {"token": "hvs.forged-token-yyyyyyyyyyyy", "serial": 1, "at": 1700000000},    # non-str "at"
], ids=["int-token", "bad-at", "int-at"])
def test_crafted_unwrap_report_blocks_emergency_rotation_forever(env, report):
    """Scenario: crm's key leaked together with its app host (so the attacker also holds crm's
    AppRole). The consumer policy lets it write its own ack; the attacker writes one malformed
    ``unwrap_failures`` entry. The operator runs ``run --emergency crm``.
    Property broken: an emergency rotation must revoke the leaked key. Observed: the run fails on
    every attempt (AttributeError/ValueError/TypeError in ``_new_unwrap_reports``/
    ``_check_unwrap_reports``), the leaked key stays enabled indefinitely."""
    cf = _consumers(env.tmp)
    env.engine(consumers=cf).run()
    leaked = env.state("crm").current
    _write_own_ack(env, "crm", {"serial": leaked.serial, "key_id": leaked.key_id,
                                "unwrap_failures": [report]})
    for _ in range(2):  # not a transient failure
        out = env.engine(consumers=cf).run(only=["crm"], emergency=["crm"]).outcomes[0]
    assert (out.action, out.outcome) == ("emergency", "ok"), out
    assert env.state("crm").current.serial > leaked.serial
    assert env.apigw().get_api_key(apiKey=leaked.key_id)["enabled"] is False
    assert_invariants(env)


# -- 2. a consumer's "token" is registered in the process-wide redactor: it blinds the audit log ----
def test_consumer_chosen_token_redacts_other_consumers_from_the_audit_log(env):
    """Scenario: crm writes ``unwrap_failures: [{"token": "newsletter"}]`` into its own ack. The
    rotator calls ``REDACTOR.register(token)`` on the unverified string (engine._new_unwrap_reports),
    and REDACTOR is process-wide: from then on every audit event (every consumer, every run of a
    long-lived daemon / warm Lambda) has "newsletter" replaced by [REDACTED]. Any string >= 8 chars
    works: another consumer's name, "tamper_check" (hides the V6 alarm event), "rollback", a key id.
    Property broken: audit events name the consumer/step; one consumer cannot alter another's audit
    trail."""
    cf = _consumers(env.tmp)
    env.engine(consumers=cf).run()
    _write_own_ack(env, "crm", {"serial": 1, "unwrap_failures": [{"token": "newsletter", "serial": 1}]})
    try:
        eng = env.engine(consumers=cf)
        eng.run(force=["newsletter"])
        consumers_seen = {e.get("consumer") for e in eng.audit.events}
        assert "newsletter" in consumers_seen, consumers_seen
        assert "[REDACTED]" not in consumers_seen, consumers_seen
    finally:
        REDACTOR._secrets = REDACTOR._secrets - {"newsletter"}  # do not poison later tests in this process


# -- 3. reports beyond the last 50 are re-checked on every run, forever ------------------------------
def test_unwrap_reports_are_handled_once_not_on_every_run(env):
    """Scenario: crm's ack holds 120 distinct ``unwrap_failures`` (the client keeps 10, but the
    record is the consumer's to write; a Vault KV entry may hold hundreds of thousands).
    ``handled_reports`` keeps only the last 50 fingerprints, so every run treats the other 70 as
    new: 70 ``sys/wrapping/lookup`` calls + 70 audit events + a lease take/release per run, on
    every scheduler tick, forever (and unbounded: N-50 per run, under the consumer's lease, inside
    the sequential loop that serves every other consumer).
    Property broken: a report is handled once; a consumer's record cannot make the rotator do
    unbounded work per run."""
    cf = _consumers(env.tmp)
    env.engine(consumers=cf).run()
    _write_own_ack(env, "crm", {"serial": 1, "unwrap_failures": [
        {"token": f"hvs.bogus-{i:04d}-xxxxxxxxxxxx", "serial": 1} for i in range(120)]})
    first = env.engine(consumers=cf)
    first.run(only=["crm"])
    # fixed: only the newest MAX_UNWRAP_REPORTS entries are considered, each handled once
    assert sum(e["event"] == "tamper_check" for e in first.audit.events) == first.signals.MAX_UNWRAP_REPORTS
    counts = []
    for _ in range(3):
        eng = env.engine(consumers=cf)
        eng.run(only=["crm"])
        counts.append(sum(e["event"] == "tamper_check" for e in eng.audit.events))
    assert counts == [0, 0, 0], f"tamper checks repeated on later runs: {counts}"


# -- 4. the rollback's re-push of the current key is acked but ignored by the client -----------------
def test_rollback_push_of_current_key_is_acknowledged_but_ignored(consumer):
    """Scenario: a rotation pushes pending serial 2 (the app's receiver installs it via
    ``notify_push``), then another required target fails; the engine rolls back: it re-pushes the
    *current* key (serial 1) to every target, and only when all said ok deletes key 2. The client's
    ``notify_push`` drops any key with a lower serial than the cached one, silently (the receiver
    still answers 204 "accepted", so the engine counts the target as restored and deletes key 2).
    Observed: the app keeps serving the deleted serial 2 for up to ``refresh_interval`` (60 s
    default) -> 403s. Property broken: "every consumer can always read a key that the API accepts";
    a successful rollback push means the app uses the pushed key."""
    k1, k2 = record(1), record(2, rotation_id="rot-2")
    consumer.write_keys(current=k1, pending=k2)
    client = consumer.client()
    assert client.current_key().serial == 1
    client.notify_push(ApiKey(k2["value"], 2, k2["key_id"]))       # the distribute step
    assert client.current_key().serial == 2
    consumer.write_keys(current=k1, pending=None)                 # rollback: pending dropped...
    client.notify_push(ApiKey(k1["value"], 1, k1["key_id"]))       # ...and current re-pushed
    assert client.current_key().serial == 1, "app still uses the rolled-back (deleted) key"


# -- 5. a 403 storm with no usable key bypasses the client's Vault back-off --------------------------
def test_403_storm_without_a_usable_key_hammers_vault(consumer):
    """Scenario: many in-flight requests used key K; Vault's ``current`` becomes unusable (disabled
    while an emergency is handled); each request's 403 calls ``report_forbidden(K)``. With no cached
    key, ``report_forbidden`` is never ignored and sets ``_force``; ``current_key`` skips the
    ``_failed`` back-off whenever ``_force`` is set, and ``_refresh`` then does a *non-forced*
    metadata+data read because the forced one is rate-limited. Observed: two Vault reads per 403.
    Property broken (S3/module doc): "a 403 storm cannot hammer Vault" (<= 1 forced read per
    ``min_forced_interval``)."""
    k1 = record(1)
    consumer.write_keys(current=k1)
    client = consumer.client(min_forced_interval=5.0)
    key = client.current_key()
    consumer.write_keys(current=record(1, disabled=True))
    client.report_forbidden(key)
    with pytest.raises(KeyUnavailable):
        client.current_key()                                       # the one allowed forced read
    before = client.stats["metadata_reads"] + client.stats["data_reads"]
    for _ in range(20):                                            # 20 more 403s within 5 s
        client.report_forbidden(key)
        with pytest.raises(KeyUnavailable):
            client.current_key()
    extra = client.stats["metadata_reads"] + client.stats["data_reads"] - before
    assert extra <= 2, f"{extra} Vault reads for 20 403s inside min_forced_interval"


# -- 6. the receiver answers "duplicate" to the rollback's restore push (fresh token, same key) -------
def test_receiver_swallows_rollback_restore_push_as_duplicate(consumer):
    """Scenario: serial 1 (rotation rot-1) was pushed and accepted; within 2x the replay window
    (10 min) rotation rot-2 pushes pending serial 2 (accepted), then fails on another target and
    rolls back: the engine re-pushes the *current* key with a FRESH wrapping token under the
    Idempotency-Key ``rot-1:1`` (engine._rollback builds it from cur.rotation_id/cur.serial). The
    receiver finds ``rot-1:1`` already "accepted" and answers 200 duplicate without unwrapping, so
    the engine counts the target as restored and deletes key 2 while the app still uses it.
    Property broken: a restore push is applied; "duplicate" only for a retry of the same token."""
    from rotation.client.receiver import WebhookReceiver

    secret = consumer.root.secrets.kv.v2.read_secret_version(
        path=f"mail-api/webhooks/{consumer.name}", raise_on_deleted_version=True)["data"]["data"]["signing_secret"]
    k1, k2 = record(1, rotation_id="rot-1"), record(2, rotation_id="rot-2")
    client = consumer.client()
    rx = WebhookReceiver(secret, client)

    def deliver(rec):
        tok = consumer.root.adapter.post("/v1/sys/wrapping/wrap", json={
            "api_key": rec["value"], "serial": rec["serial"], "key_id": rec["key_id"]},
            wrap_ttl="300s")["wrap_info"]["token"]
        body = json.dumps({"consumer": consumer.name, "serial": rec["serial"], "rotation_id": rec["rotation_id"],
                           "key_id": rec["key_id"], "wrap_token": tok, "wrap_ttl": 300}).encode()
        import time as _t

        from rotation.client.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
        ts = int(_t.time())
        return rx.handle({TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body),
                          IDEMPOTENCY_HEADER: f"{rec['rotation_id']}:{rec['serial']}"}, body)

    consumer.write_keys(current=k1)
    assert deliver(k1).outcome == "accepted"
    consumer.write_keys(current=k1, pending=k2)
    assert deliver(k2).outcome == "accepted"
    assert client.current_key().serial == 2
    consumer.write_keys(current=k1, pending=None)            # rolled back
    res = deliver(k1)                                        # the restore push
    assert res.processed, f"restore push not applied: {res.outcome}"
    assert client.current_key().serial == 1


# -- 4b. end to end: after a rollback the app keeps a key the engine has just deleted -----------------
def test_end_to_end_rollback_leaves_webhook_app_on_a_deleted_key(env):
    """Scenario (real engine, real receiver + KeyClient, real OpenBao/moto): crm has a required
    webhook target (its app) and a second required target that fails the new key once (e.g. an SSM
    hiccup). Distribute hands serial 2 to the app, the second target fails, the engine rolls back:
    it re-pushes serial 1 to both targets, both answer ok (the app's receiver 204 "accepted", but
    ``notify_push`` ignored the lower serial), so the engine disables and deletes API key 2.
    Property broken (invariant): "every consumer can always read a key that the API accepts" -- the
    app's ``current_key()`` returns the deleted key until its next refresh (60 s default)."""
    from rotation.client.keys import AppRoleAuth, KeyClient
    from rotation.client.receiver import WebhookReceiver, serve_webhook
    from rotation.targets import PushResult
    from rotation.wiring import make_targets

    env.engine().run()                                                   # bootstrap (file targets)
    env.root().secrets.kv.v2.create_or_update_secret(path="mail-api/webhooks/crm",
                                                       secret={"signing_secret": "s" * 32}, cas=0)
    role_id, secret_id = env.creds.consumer_roles["crm"]
    app = KeyClient(env.stack.vault_addr, "crm", auth=AppRoleAuth(role_id, secret_id))
    assert app.current_key().serial == 1
    server = serve_webhook(WebhookReceiver("s" * 32, app), "127.0.0.1", 0)
    try:
        cf = _consumers(env.tmp, f"http://127.0.0.1:{server.server_address[1]}/", required=True)

        class FlakyOnce:                                  # a second required target: fails serial 2 once
            target_id, required, calls = "flaky", True, []

            def push(self, d):
                self.calls.append(d.serial)
                return PushResult(self.target_id, d.serial == 1, "hiccup" if d.serial != 1 else "ok")

        flaky = FlakyOnce()
        out = env.engine(consumers=cf, targets_for=lambda c: make_targets(c, env.engine().vault, env.settings)
                         + ([flaky] if c.name == "crm" else [])).run(only=["crm"], force=["crm"]).outcomes[0]
        assert out.outcome == "rolled_back", out
        st = env.state("crm")
        in_use = app.current_key()
        live = {k["id"] for k in env.apigw().get_api_keys()["items"] if k["enabled"]}
        assert in_use.key_id in live, (f"app uses serial {in_use.serial} (key {in_use.key_id}), deleted by the "
                                       f"rollback; Vault current is serial {st.current.serial}")
    finally:
        server.shutdown()
