"""The user lockout policy in the Vault setup definition (rotation.vault_setup.UserLockout):
decided for every AppRole mount, never a lockout the rotator's public role id can trigger, one
policy per mount; without a server (the live behaviour: tests/integration/vault_setup/
test_user_lockout_live.py)."""

from __future__ import annotations

import pytest
import yaml

from rotation.config import ConsumersFile
from rotation.errors import ConfigError
from rotation.vault_setup import VaultSetup, load_setup_file, plan_steps

CONSUMERS = ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                          "consumers": [{"name": "billing", "tier": "standard"}]})


def _lockout_steps(setup: VaultSetup) -> dict[str, dict]:
    return {s.path: s.body for s in plan_steps(setup, CONSUMERS) if s.kind == "lockout"}


def test_every_approle_mount_gets_one_explicit_lockout_policy_disabled_by_default():
    shared = VaultSetup.model_validate({"rotator": {"approle": {}}, "apps": {"approle": {}}})
    assert _lockout_steps(shared) == {"sys/auth/approle/tune": {"user_lockout_config": {
        "lockout_disable": True, "lockout_threshold": "5", "lockout_duration": "900s",
        "lockout_counter_reset_duration": "900s"}}}
    split = VaultSetup.model_validate({"rotator": {"approle": {}}, "apps": {"approle": {"mount": "apps"}}})
    assert set(_lockout_steps(split)) == {"sys/auth/approle/tune", "sys/auth/apps/tune"}


def test_the_lockout_step_follows_its_auth_method_and_precedes_the_roles():
    steps = plan_steps(VaultSetup.model_validate({"rotator": {"approle": {}}}), CONSUMERS)
    kinds = [(s.kind, s.path) for s in steps]
    assert kinds.index(("auth", "sys/auth/approle")) < kinds.index(("lockout", "sys/auth/approle/tune")) \
        < kinds.index(("role", "auth/approle/role/mail-api-rotator"))


def test_no_lockout_step_without_an_approle_mount():
    setup = VaultSetup.model_validate({"rotator": {"jwt": {"bound_audiences": ["a"], "jwks_url": "https://x/jwks"}}})
    assert _lockout_steps(setup) == {}


def test_an_apps_mount_may_enable_lockout_with_its_numbers_as_the_tune_api_takes_them():
    setup = VaultSetup.model_validate({"apps": {"approle": {"user_lockout": {
        "lockout_disable": False, "lockout_threshold": 10, "lockout_duration": "1h",
        "lockout_counter_reset_duration": "5m"}}}})
    assert _lockout_steps(setup)["sys/auth/approle/tune"]["user_lockout_config"] == {
        "lockout_disable": False, "lockout_threshold": "10", "lockout_duration": "3600s",
        "lockout_counter_reset_duration": "300s"}


@pytest.mark.parametrize(("data", "field"), [
    ({"rotator": {"approle": {"user_lockout": {"lockout_disable": False}}}},
     "rotator.approle.user_lockout.lockout_disable"),
    ({"rotator": {"approle": {}}, "apps": {"approle": {"user_lockout": {"lockout_disable": True,
                                                                        "lockout_threshold": 9}}}},
     "apps.approle.user_lockout"),
    ({"apps": {"approle": {"user_lockout": {"lockout_threshold": 0}}}}, "apps.approle.user_lockout.lockout_threshold"),
    ({"apps": {"approle": {"user_lockout": {"lockout_duration": "soon"}}}}, "apps.approle.user_lockout.lockout_duration"),
    ({"apps": {"approle": {"user_lockout": {"disable": True}}}}, "apps.approle.user_lockout.disable"),
    ({"rotator": {"approle": {"secret_id_bound_cidrs": ["10.0.0.0/33"]}}}, "rotator.approle.secret_id_bound_cidrs"),
])
def test_a_lockout_the_setup_refuses_is_a_usage_error_naming_the_field(tmp_path, data, field):
    p = tmp_path / "setup.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_setup_file(p)
    assert field in [f for f, _ in err.value.problems], err.value.problems
