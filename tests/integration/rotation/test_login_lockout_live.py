"""A rotator or app whose AppRole role id is locked out (Vault/OpenBao user lockout) is told so,
with the fix, against a real OpenBao: the backend's error, the CLI's message and the app-side
client's error name the lockout and the unlock, never "check the token's policies", and the
runbook's unlock really lets the rotator in again.

The stack's setup disables lockout on its AppRole mount (tests/integration/vault_setup/
test_user_lockout_live.py); these tests turn it on by hand with a threshold of 1, as on a server
the setup was never applied to."""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest
import yaml
from click.testing import CliRunner

from rotation.backends.vault import VaultStore
from rotation.cli import main
from rotation.client.auth import AppRoleAuth
from rotation.client.errors import VaultAuthError
from rotation.client.keys import KeyClient
from rotation.errors import VaultLoginLockedOut, VaultPermissionDenied


def _lock_out(env, role_id: str) -> None:
    root = env.root()
    root.adapter.post("/v1/sys/auth/approle/tune", json={"user_lockout_config": {
        "lockout_disable": False, "lockout_threshold": "1", "lockout_duration": "10m",
        "lockout_counter_reset_duration": "10m"}})
    with pytest.raises(hvac.exceptions.InvalidRequest):
        hvac.Client(url=env.stack.vault_addr).auth.approle.login(role_id=role_id, secret_id="wrong", use_token=False)


def test_a_locked_out_rotator_login_names_the_lockout_and_the_unlock_and_the_unlock_works(env):
    _lock_out(env, env.creds.rotator_role_id)
    with pytest.raises(VaultLoginLockedOut) as err:
        VaultStore(env.settings)
    msg = str(err.value)
    assert "locked out" in msg and "sys/locked-users" in msg and "unlock" in msg
    assert "token's policies" not in msg and env.creds.rotator_secret_id not in msg

    # the runbook: find the locked role id under its mount accessor, unlock it
    root = env.root()
    locked = root.adapter.get("/v1/sys/locked-users")["data"]["by_namespace"]
    (entry,) = [m for ns in locked for m in ns["mount_accessors"]
                if env.creds.rotator_role_id in (m.get("alias_identifiers") or [])]
    root.adapter.post(f"/v1/sys/locked-users/{entry['mount_accessor']}/unlock/{env.creds.rotator_role_id}")
    assert VaultStore(env.settings).read_key_state("billing") is not None


def test_a_403_after_a_successful_login_is_not_reported_as_a_lockout(env):
    """The token is refused, not the login: the rotator's tokens are bound to a network it is not
    on (token_bound_cidrs), so the login answers 200 and the token's first use 403."""
    root = env.root()
    root.adapter.post("/v1/auth/approle/role/mail-api-rotator", json={"token_bound_cidrs": ["10.0.0.0/8"]})
    with pytest.raises(VaultPermissionDenied) as err:
        VaultStore(env.settings)
    assert not isinstance(err.value, VaultLoginLockedOut) and "locked out" not in str(err.value)


def test_the_cli_reports_a_locked_out_rotator_with_the_fix_and_exits_1(env, tmp_path):
    data = {"version": 1, "usage_plans": dict(env.consumers.usage_plans),
            "consumers": [{"name": c.name, "tier": c.tier} for c in env.consumers.consumers]}
    (tmp_path / "consumers.yaml").write_text(yaml.safe_dump(data))
    _lock_out(env, env.creds.rotator_role_id)
    result = CliRunner().invoke(main, ["--consumers", str(tmp_path / "consumers.yaml"), "status"])
    assert result.exit_code == 1, result.output
    assert "locked out" in result.output and "sys/locked-users" in result.output
    assert "token's policies" not in result.output and env.creds.rotator_secret_id not in result.output


def test_a_locked_out_app_client_login_names_the_lockout(env):
    role_id, secret_id = env.creds.consumer_roles["billing"]
    _lock_out(env, role_id)
    client = KeyClient(env.stack.vault_addr, "billing", auth=AppRoleAuth(role_id, secret_id))
    with pytest.raises(VaultAuthError) as err:
        client.login()
    assert "locked out" in str(err.value) and "unlock" in str(err.value) and secret_id not in str(err.value)


def test_an_app_client_whose_token_is_refused_after_login_is_not_told_it_is_locked_out(env):
    role_id, secret_id = env.creds.consumer_roles["billing"]
    env.root().adapter.post("/v1/auth/approle/role/mail-api-consumer-billing",
                            json={"token_bound_cidrs": ["10.0.0.0/8"]})
    client = KeyClient(env.stack.vault_addr, "billing", auth=AppRoleAuth(role_id, secret_id))
    with pytest.raises(VaultAuthError) as err:
        client.login()
    assert "locked out" not in str(err.value)
