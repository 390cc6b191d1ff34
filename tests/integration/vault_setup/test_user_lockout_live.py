"""The user lockout policy ``rotation vault setup`` writes on the AppRole mount, against a real
OpenBao (the worker's embedded stack, reset first): role ids are not secret, so wrong secret ids
sent with the rotator's role id must not lock the rotator out; the policy is read back, a re-run
changes nothing, and drift is repaired."""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest

from rotation.config import ConsumersFile
from rotation.vault_setup import ROTATOR_ROLE, Step, VaultSetup, VaultSetupError, apply_setup, plan_steps

#: More wrong secret ids than the server's default lockout threshold (5, Vault and OpenBao).
WRONG_LOGINS = 8


@pytest.fixture
def fresh(worker_stack):
    worker_stack.reset()
    return worker_stack


@pytest.fixture
def consumers() -> ConsumersFile:
    return ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                         "consumers": [{"name": "billing", "tier": "standard"}]})


def _setup(**approle) -> VaultSetup:
    return VaultSetup.model_validate({"rotator": {"approle": {"secret_id_ttl": "1h", **approle}},
                                      "apps": {"approle": {"secret_id_ttl": "1h"}}})


def _rotator_credentials(root: hvac.Client) -> tuple[str, str]:
    role_id = root.auth.approle.read_role_id(ROTATOR_ROLE)["data"]["role_id"]
    return role_id, root.auth.approle.generate_secret_id(ROTATOR_ROLE)["data"]["secret_id"]


def _tune(root: hvac.Client, mount: str = "approle") -> dict:
    return root.adapter.get(f"/v1/sys/auth/{mount}/tune")["data"]


def test_wrong_secret_ids_sent_with_the_rotators_role_id_do_not_lock_the_rotator_out(fresh, consumers):
    root = fresh.root_client()
    apply_setup(root, _setup(), consumers)
    role_id, secret_id = _rotator_credentials(root)
    anon = hvac.Client(url=fresh.vault_addr, timeout=10)
    for i in range(WRONG_LOGINS):
        with pytest.raises(hvac.exceptions.InvalidRequest):      # 400: wrong secret id, never 403 (locked)
            anon.auth.approle.login(role_id=role_id, secret_id=f"wrong-{i}", use_token=False)
    answer = anon.auth.approle.login(role_id=role_id, secret_id=secret_id, use_token=False)
    assert answer["auth"]["metadata"]["role_name"] == ROTATOR_ROLE
    accessor = root.sys.list_auth_methods()["data"]["approle/"]["accessor"]
    locked = root.adapter.get("/v1/sys/locked-users", params={"mount_accessor": accessor})["data"]
    assert not [m for ns in locked["by_namespace"] for m in ns["mount_accessors"]
                if role_id in (m.get("alias_identifiers") or [])]


def test_the_lockout_policy_is_written_read_back_unchanged_on_rerun_and_drift_is_repaired(fresh, consumers):
    root = fresh.root_client()
    changes = apply_setup(root, _setup(), consumers)
    lockout = [c for c in changes if c.step.kind == "lockout"]
    assert [(c.step.path, c.action) for c in lockout] == [("sys/auth/approle/tune", "create")]
    assert _tune(root)["user_lockout_disable"] is True

    again = [c for c in apply_setup(root, _setup(), consumers) if c.step.kind == "lockout"]
    assert [c.action for c in again] == ["unchanged"]

    # someone turns lockout back on by hand: the next run sees it and turns it off again
    root.adapter.post("/v1/sys/auth/approle/tune", json={"user_lockout_config": {"lockout_disable": False}})
    assert _tune(root)["user_lockout_disable"] is False
    repaired = [c for c in apply_setup(root, _setup(), consumers) if c.step.kind == "lockout"]
    assert [c.action for c in repaired] == ["update"]
    assert _tune(root)["user_lockout_disable"] is True


def test_an_apps_only_mount_may_keep_a_lockout_with_explicit_numbers(fresh, consumers):
    root = fresh.root_client()
    setup = VaultSetup.model_validate({
        "rotator": {"approle": {"secret_id_ttl": "1h"}},
        "apps": {"approle": {"mount": "apps-approle", "secret_id_ttl": "1h", "user_lockout": {
            "lockout_disable": False, "lockout_threshold": 20, "lockout_duration": "2m",
            "lockout_counter_reset_duration": "1m"}}}})
    apply_setup(root, setup, consumers)
    tune = _tune(root, "apps-approle")
    assert (tune["user_lockout_disable"], tune["user_lockout_threshold"], tune["user_lockout_duration"],
            tune["user_lockout_counter_reset_duration"]) == (False, 20, 120, 60)
    assert _tune(root)["user_lockout_disable"] is True
    assert all(c.action == "unchanged" for c in apply_setup(root, setup, consumers))


def test_a_write_the_server_does_not_apply_is_an_error_after_the_read_back(fresh, consumers):
    """The read-back is what proves the policy: here the write goes to another mount (standing in
    for a server that accepts ``user_lockout_config`` and ignores it), so the read-back differs."""
    root = fresh.root_client()
    apply_setup(root, _setup(), consumers)
    root.sys.enable_auth_method("approle", path="elsewhere")
    root.adapter.post("/v1/sys/auth/approle/tune", json={"user_lockout_config": {"lockout_disable": False}})
    body = {"user_lockout_config": {"lockout_disable": True, "lockout_threshold": "5", "lockout_duration": "900s",
                                    "lockout_counter_reset_duration": "900s"}}
    (planned,) = [s for s in plan_steps(_setup(), consumers) if s.kind == "lockout"]
    ignored = Step("lockout", planned.name, "POST", "sys/auth/elsewhere/tune", body, read=planned.read,
                   same=planned.same, verify=True)
    with pytest.raises(VaultSetupError, match="reads back something else"):
        apply_setup(root, _setup(), consumers, steps=[ignored])
    assert _tune(root)["user_lockout_disable"] is False
