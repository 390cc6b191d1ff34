"""Issue 20, item 8: what a rotation reads and depends on (the webhook signing secret stored in
Vault, the file target's directory) is checked before its first side effect. A secret too short
to sign with used to let the run create a new API key, fail the push and leave both keys enabled
waiting for a rollback; now the rotation does not start: no pending record, no API key, the
current key untouched. Real OpenBao and moto."""

from __future__ import annotations

import pytest

from rotation.config import ConsumersFile

from .conftest import assert_invariants


def _with_webhook(env, url: str) -> ConsumersFile:
    """The test's consumers file, crm's file target swapped for a (required) webhook to ``url``."""
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1h", "retention": "1d"},
        "consumers": [{"name": c.name, "tier": c.tier,
                       "targets": [{"type": "webhook", "url": url}] if c.name == "crm"
                       else [{"type": "file", "path": str(env.tmp / f"{c.name}.key")}]}
                      for c in env.consumers.consumers]})


def _api_key_ids(env) -> set[str]:
    return {k["id"] for k in env.apigw().get_api_keys()["items"]}


@pytest.mark.parametrize("stored", ["Q", "short-secret-of-24-bytes"], ids=["1-byte", "24-byte"])
def test_a_short_webhook_signing_secret_stops_the_rotation_before_an_api_key_is_created(env, stored):
    env.engine().run()                                             # every consumer has a key
    env.root().secrets.kv.v2.create_or_update_secret(path="mail-api/webhooks/crm",
                                                       secret={"signing_secret": stored}, cas=0)
    cf = _with_webhook(env, "http://127.0.0.1:9/hook")
    before_keys, before = _api_key_ids(env), env.state("crm")
    out = env.engine(consumers=cf).run(only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "failed", out
    assert "not started" in out.detail and "at least 32 bytes" in out.detail and "webhook:" in out.detail
    if len(stored) > 1:
        assert stored not in out.detail and stored not in env.audit_text()
    after = env.state("crm")
    assert after.pending is None and after.current == before.current and after.version == before.version
    assert _api_key_ids(env) == before_keys                         # no API key was created
    assert '"preflight"' in env.audit_text()
    assert_invariants(env)


def test_a_good_webhook_secret_lets_the_rotation_reach_the_push_for_contrast(env):
    env.engine().run()
    env.root().secrets.kv.v2.create_or_update_secret(path="mail-api/webhooks/crm",
                                                       secret={"signing_secret": "s" * 32}, cas=0)
    cf = _with_webhook(env, "http://127.0.0.1:9/hook")             # nobody listens: the push fails
    before_keys = _api_key_ids(env)
    out = env.engine(consumers=cf).run(only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "failed" and "not started" not in out.detail and "rollback" in out.detail, out
    assert len(_api_key_ids(env) - before_keys) == 1               # it got as far as a new key


def test_a_world_writable_file_target_directory_stops_the_rotation_before_an_api_key_is_created(env):
    env.engine().run()
    before_keys, before = _api_key_ids(env), env.state("billing")
    env.tmp.chmod(0o777)
    try:
        out = env.engine().run(only=["billing"], force=["billing"]).outcomes[0]
    finally:
        env.tmp.chmod(0o700)
    assert out.outcome == "failed" and "world-writable" in out.detail, out
    assert env.state("billing").version == before.version
    assert _api_key_ids(env) == before_keys


@pytest.mark.parametrize("field,bad", [("value", "short"), ("value", "x" * 30 + "\x1b[2K" + "y" * 10),
                                       ("serial", "2"), ("created_at", "yesterday")])
def test_a_malformed_key_record_in_vault_is_refused_before_any_api_key_is_created(env, field, bad):
    """A pending record someone wrote by hand (or a bad restore) is read, checked and refused: the
    run names the record and the field, creates no API key and writes nothing."""
    env.engine().run()
    root = env.root()
    path = "mail-api/keys/crm"
    r = root.secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    data = r["data"]["data"]
    data["pending"] = {"serial": 2, "value": "P" * 40, "rotation_id": "by-hand", "created_at": "2026-12-01T00:00:00+00:00",
                       field: bad}
    root.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=r["data"]["metadata"]["version"],
                                               mount_point="secret")
    before_keys, version = _api_key_ids(env), r["data"]["metadata"]["version"] + 1
    out = env.engine().run(only=["crm"]).outcomes[0]
    assert out.outcome == "failed", out
    assert f"pending.{field}" in out.detail and "malformed key record" in out.detail
    assert "\x1b" not in out.detail and (field != "value" or bad not in out.detail)
    assert _api_key_ids(env) == before_keys
    meta = root.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"]
    assert int(meta["current_version"]) == version                   # nothing written over it
