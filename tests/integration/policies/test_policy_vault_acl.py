"""The Vault/OpenBao ACL policies of ``policies/vault``, checked live against OpenBao.

For each policy a table of allowed and denied operations; every row runs with a real token that
holds only that policy (plus ``default``). Denied rows must raise hvac ``Forbidden`` (403), not
just any error; allowed rows must succeed. ``python -m pytest tests/integration/policies -k vault -v`` prints
the table as test ids.
"""

from __future__ import annotations

import uuid

import hvac
import pytest

from .conftest import MOUNT, PREFIX

ROTATOR, AUDITOR = "mail-api-rotator", "mail-api-auditor"
BILLING = "mail-api-consumer-billing"


def _kv(c: hvac.Client):
    return c.secrets.kv.v2


def _read(path):
    return lambda c: _kv(c).read_secret_version(path=path, mount_point=MOUNT, raise_on_deleted_version=False)


def _meta(path):
    return lambda c: _kv(c).read_secret_metadata(path=path, mount_point=MOUNT)


def _list(path):
    return lambda c: _kv(c).list_secrets(path=path, mount_point=MOUNT)


def _create(path_fmt):
    """Write a fresh path (cas=0 creates) so re-runs never collide."""
    return lambda c: _kv(c).create_or_update_secret(path=path_fmt.format(uuid.uuid4().hex[:8]), secret={"x": "1"},
                                                    cas=0, mount_point=MOUNT)


def _cas_update(path):
    def op(c):
        # the version comes from the root view, so the row tests the write capability only
        return _kv(c).create_or_update_secret(path=path, secret={"serial": 2}, cas=_version(path), mount_point=MOUNT)
    return op


_ROOT: list[hvac.Client] = []


def _version(path):
    return _ROOT[0].secrets.kv.v2.read_secret_metadata(path=path, mount_point=MOUNT)["data"]["current_version"]


def _custom_meta(path):
    return lambda c: _kv(c).update_metadata(path=path, mount_point=MOUNT, custom_metadata={"current": "1"})


def _adapter(method, url, **kw):
    return lambda c: getattr(c.adapter, method)(url, **kw)


ROWS = [
    # --- rotator: its own prefix on the KV mount, wrapping, mount checks; nothing else ---
    ("rotator-create-key-in-own-prefix", ROTATOR, _create(PREFIX + "/keys/new-{}"), True),
    ("rotator-read-consumer-key", ROTATOR, _read(f"{PREFIX}/keys/billing"), True),
    ("rotator-cas-update-consumer-key", ROTATOR, _cas_update(f"{PREFIX}/keys/crm"), True),
    ("rotator-update-key-custom-metadata", ROTATOR, _custom_meta(f"{PREFIX}/keys/billing"), True),
    ("rotator-read-key-metadata", ROTATOR, _meta(f"{PREFIX}/keys/billing"), True),
    ("rotator-list-consumers", ROTATOR, _list(f"{PREFIX}/keys"), True),
    ("rotator-write-rotation-lease", ROTATOR, _create(PREFIX + "/rotations/new-{}"), True),
    ("rotator-read-ack", ROTATOR, _read(f"{PREFIX}/acks/billing"), True),
    ("rotator-read-webhook-secret", ROTATOR, _read(f"{PREFIX}/webhooks/billing"), True),
    ("rotator-read-kv-config", ROTATOR, lambda c: _kv(c).read_configuration(mount_point=MOUNT), True),
    ("rotator-read-mount-info", ROTATOR, _adapter("get", f"/v1/sys/internal/ui/mounts/{MOUNT}"), True),
    ("rotator-wrap", ROTATOR, _adapter("post", "/v1/sys/wrapping/wrap", json={"k": "v"}, wrap_ttl="60s"), True),
    ("rotator-read-outside-prefix", ROTATOR, _read("other-app/keys/x"), False),
    ("rotator-read-sibling-prefix", ROTATOR, _read(f"{PREFIX}-evil/keys/x"), False),
    ("rotator-write-outside-prefix", ROTATOR, _create("other-app/keys/new-{}"), False),
    ("rotator-destroy-key-versions", ROTATOR,
     lambda c: _kv(c).destroy_secret_versions(path=f"{PREFIX}/keys/billing", versions=[1], mount_point=MOUNT), False),
    ("rotator-delete-key-metadata-permanently", ROTATOR,
     lambda c: _kv(c).delete_metadata_and_all_versions(path=f"{PREFIX}/keys/billing", mount_point=MOUNT), False),
    ("rotator-reconfigure-kv-mount", ROTATOR,
     lambda c: _kv(c).configure(cas_required=False, mount_point=MOUNT), False),
    ("rotator-write-acl-policy", ROTATOR,
     lambda c: c.sys.create_or_update_policy("mail-api-rotator", 'path "*" { capabilities = ["sudo"] }'), False),
    # --- consumer billing: its own key, its own ack, its own webhook secret ---
    ("consumer-billing-read-own-key", BILLING, _read(f"{PREFIX}/keys/billing"), True),
    ("consumer-billing-read-own-key-metadata", BILLING, _meta(f"{PREFIX}/keys/billing"), True),
    ("consumer-billing-read-own-ack", BILLING, _read(f"{PREFIX}/acks/billing"), True),
    ("consumer-billing-write-own-ack", BILLING, _cas_update(f"{PREFIX}/acks/billing"), True),
    ("consumer-billing-read-own-webhook-secret", BILLING, _read(f"{PREFIX}/webhooks/billing"), True),
    ("consumer-billing-read-other-consumer-key", BILLING, _read(f"{PREFIX}/keys/crm"), False),
    ("consumer-billing-read-other-consumer-key-metadata", BILLING, _meta(f"{PREFIX}/keys/crm"), False),
    ("consumer-billing-write-other-consumer-ack", BILLING, _cas_update(f"{PREFIX}/acks/crm"), False),
    ("consumer-billing-read-other-webhook-secret", BILLING, _read(f"{PREFIX}/webhooks/crm"), False),
    ("consumer-billing-write-own-key", BILLING, _cas_update(f"{PREFIX}/keys/billing"), False),
    ("consumer-billing-read-rotation-lease", BILLING, _read(f"{PREFIX}/rotations/billing"), False),
    ("consumer-billing-list-consumers", BILLING, _list(f"{PREFIX}/keys"), False),
    # the built-in default policy grants sys/wrapping/*: a consumer can only wrap data it already holds
    ("consumer-billing-wrap-own-data-via-default-policy", BILLING,
     _adapter("post", "/v1/sys/wrapping/wrap", json={"k": "v"}, wrap_ttl="60s"), True),
    # --- auditor: metadata only, never values ---
    ("auditor-list-consumers", AUDITOR, _list(f"{PREFIX}/keys"), True),
    ("auditor-list-prefix", AUDITOR, _list(PREFIX), True),
    ("auditor-read-key-metadata-with-custom-metadata", AUDITOR,
     lambda c: _assert_custom_metadata(_meta(f"{PREFIX}/keys/billing")(c)), True),
    ("auditor-read-key-value", AUDITOR, _read(f"{PREFIX}/keys/billing"), False),
    ("auditor-read-webhook-secret", AUDITOR, _read(f"{PREFIX}/webhooks/billing"), False),
    ("auditor-read-key-subkeys", AUDITOR, _adapter("get", f"/v1/{MOUNT}/subkeys/{PREFIX}/keys/billing"), False),
    ("auditor-update-metadata", AUDITOR, _custom_meta(f"{PREFIX}/keys/billing"), False),
    ("auditor-write-ack", AUDITOR, _cas_update(f"{PREFIX}/acks/billing"), False),
    ("auditor-read-metadata-outside-prefix", AUDITOR, _meta("other-app/keys/x"), False),
]


def _assert_custom_metadata(resp):
    assert resp["data"]["custom_metadata"]["current"] == "1"  # the label summary is visible
    assert "current_version" in resp["data"]
    return resp


RESULTS: list[tuple[str, str, str]] = []


@pytest.mark.parametrize("policy,op,allowed", [(p, o, a) for _, p, o, a in ROWS],
                         ids=[f"{i}-{'allowed' if a else 'denied'}" for i, _, _, a in ROWS])
def test_vault_acl_table(vault_stack, token_for, request, policy, op, allowed):
    if not _ROOT:
        _ROOT.append(vault_stack.root_client())
    client = token_for(policy)
    if allowed:
        op(client)
    else:
        with pytest.raises(hvac.exceptions.Forbidden):
            op(client)
    RESULTS.append((request.node.callspec.id, policy, "ok"))


def test_each_policy_has_allowed_and_denied_rows():
    for policy in (ROTATOR, BILLING, AUDITOR):
        kinds = {a for _, p, _, a in ROWS if p == policy}
        assert kinds == {True, False}, policy
