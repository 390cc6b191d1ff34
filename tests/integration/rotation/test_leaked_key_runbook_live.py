"""The leaked-key runbook (docs/operations.md, "A key leaked") on real OpenBao and moto: after an
emergency rotation the old key's id is still in the key path's metadata (``previous_key_id``,
readable with ``bao kv metadata get``, no secret), and API Gateway shows that key disabled and
detached, as the runbook's checks expect."""

from __future__ import annotations


def _metadata(env, consumer: str) -> dict[str, str]:
    meta = env.root().secrets.kv.v2.read_secret_metadata(path=f"mail-api/keys/{consumer}", mount_point="secret")
    return meta["data"]["custom_metadata"] or {}


def test_after_an_emergency_the_metadata_names_the_old_key_which_is_disabled_and_detached(env):
    assert env.engine().run().exit_code == 0
    old = env.state("crm").current
    summary = env.engine().run(only=["crm"], force=["crm"], emergency=["crm"])
    assert [o.outcome for o in summary.outcomes] == ["ok"], summary.outcomes
    new = env.state("crm").current
    meta = _metadata(env, "crm")
    assert meta["previous_key_id"] == old.key_id and meta["previous_serial"] == str(old.serial)
    assert meta["previous_state"] == "revoked" and meta["current_key_id"] == new.key_id
    assert old.value not in str(meta) and new.value not in str(meta)          # ids and fingerprints only
    api = env.apigw()
    assert api.get_api_key(apiKey=meta["previous_key_id"])["enabled"] is False
    assert api.get_usage_plans(keyId=meta["previous_key_id"])["items"] == []


def test_during_a_normal_grace_period_the_metadata_says_the_previous_key_is_in_grace(env):
    assert env.engine().run().exit_code == 0
    old = env.state("billing").current
    assert env.engine().run(only=["billing"], force=["billing"]).exit_code == 0
    meta = _metadata(env, "billing")
    assert meta["previous_key_id"] == old.key_id and meta["previous_state"] == "grace"
