"""Malformed consumers files and settings: each answered with a message naming the field, exit
code 2, and nothing changed in Vault or API Gateway (checked against a live stack)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from rotation.dev.stack import EmbeddedStack

from .conftest import consumers_file

GOOD = {
    "version": 1,
    "usage_plans": {"standard": "secure-mail-api-dev-standard"},
    "consumers": [{"name": "billing", "tier": "standard", "targets": [{"type": "file", "path": "/tmp/x.key"}]}],
}


def variant(path, value):
    """GOOD with the dotted ``path`` set to ``value`` (``DELETE`` removes it)."""
    import copy
    d = copy.deepcopy(GOOD)
    parts = path.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    last = parts[-1]
    if value == "DELETE":
        del cur[last]
    elif last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value
    return yaml.safe_dump(d)


BAD_FILES = [
    ("version-2", variant("version", 2), "version"),
    ("missing-consumers", variant("consumers", "DELETE"), "consumers"),
    ("empty-consumers", variant("consumers", []), "consumers"),
    ("bad-name", variant("consumers.0.name", "Billing_App"), "consumers.0.name"),
    ("unknown-tier", variant("consumers.0.tier", "gold"), "consumers.0.tier"),
    ("typo-field", variant("consumers.0.max_agee", "30d"), "consumers.0.max_agee"),
    ("bad-duration", variant("consumers.0.max_age", "thirty days"), "consumers.0.max_age"),
    ("negative-duration", variant("consumers.0.grace_period", -5), "consumers.0.grace_period"),
    ("max-age-too-short", variant("consumers.0.max_age", "10m"), "consumers.0.max_age"),
    ("grace-longer-than-max-age", variant("consumers.0.grace_period", "60d"), "consumers.0.grace_period"),
    ("relative-file-path", variant("consumers.0.targets.0.path", "keys/billing.key"), "consumers.0.targets.0.path"),
    ("unknown-target-type", variant("consumers.0.targets.0", {"type": "carrier-pigeon"}), "consumers.0.targets.0"),
    ("webhook-plain-http", variant("consumers.0.targets.0", {"type": "webhook", "url": "http://crm.example.com/h"}),
     "consumers.0.targets.0.url"),
    ("webhook-credentials-in-url", variant("consumers.0.targets.0",
                                           {"type": "webhook", "url": "https://u:p@crm.example.com/h"}),
     "consumers.0.targets.0.url"),
    ("webhook-wrap-ttl-too-long", variant("consumers.0.targets.0",
                                          {"type": "webhook", "url": "https://crm.example.com/h", "wrap_ttl": "2d"}),
     "consumers.0.targets.0.wrap_ttl"),
    ("duplicate-consumers", yaml.safe_dump({**GOOD, "consumers": GOOD["consumers"] * 2}), "consumers"),
    ("no-usage-plans", variant("usage_plans", {}), "usage_plans"),
    ("not-yaml", "version: 1\nconsumers: [unclosed\n", "(file)"),
    ("yaml-list", "- a\n- b\n", "(file)"),
    ("bool-as-duration", variant("consumers.0.retention", True), "consumers.0.retention"),
    # issue 12, item 17: one representative per class (the variants are in tests/unit/rotation/test_config_validation.py)
    ("name-trailing-newline", variant("consumers.0.name", "billing\n"), "consumers.0.name"),
    ("duplicate-key-hides-a-consumer",
     ("version: 1\nusage_plans: {standard: secure-mail-api-dev-standard}\nconsumers:\n"
     "  - name: billing\n    tier: standard\n    name: crm\n"), "consumers.0.name"),
    ("duration-too-large", variant("consumers.0.max_age", "99999999999d"), "consumers.0.max_age"),
    ("secrets-manager-name-aws-refuses", variant("consumers.0.targets.0",
                                                 {"type": "secretsmanager", "secret_id": "mail api/billing"}),
     "consumers.0.targets.0.secret_id"),
    ("ssm-name-reserved-prefix", variant("consumers.0.targets.0", {"type": "ssm", "name": "/aws/mail-api"}),
     "consumers.0.targets.0.name"),
    ("usage-plan-does-not-exist", variant("usage_plans.standard", "secure-mail-api-dev-standrd"),
     "usage_plans.standard"),
    ("file-target-outside-allowed-dirs", variant("consumers.0.targets.0.path", "/etc/cron.d/mail-api"),
     "consumers.0.targets.0.path"),
    ("webhook-to-metadata", variant("consumers.0.targets.0",
                                    {"type": "webhook", "url": "https://[::ffff:169.254.169.254]/latest"}),
     "consumers.0.targets.0.url"),
    ("webhook-to-private-address", variant("consumers.0.targets.0", {"type": "webhook", "url": "https://10.1.2.3/h"}),
     "consumers.0.targets.0.url"),
    ("webhook-to-localhost", variant("consumers.0.targets.0", {"type": "webhook", "url": "https://localhost./h"}),
     "consumers.0.targets.0.url"),
    ("file-too-large", yaml.safe_dump(GOOD) + "#" + "x" * (1024 * 1024) + "\n", "(file)"),
    # issue 20, item 5: nesting is refused on the parser's event stream, before the recursive composer
    ("deeply-nested", "version: 1\nconsumers: " + "[" * 5000 + "]" * 5000 + "\n", "(file)"),
]

BAD_SETTINGS = [
    ("vault-plain-http-remote", {"VAULT_ADDR": "http://vault.example.com:8200"}, "VAULT_ADDR"),
    ("vault-addr-not-url", {"VAULT_ADDR": "vault:8200"}, "VAULT_ADDR"),
    ("mount-with-path", {"VAULT_KV_MOUNT": "secret/data"}, "VAULT_KV_MOUNT"),
    ("prefix-starting-with-data", {"VAULT_KV_PREFIX": "data/mail-api"}, "VAULT_KV_PREFIX"),
    ("unknown-auth-method", {"VAULT_AUTH_METHOD": "ldap"}, "VAULT_AUTH_METHOD"),
    ("approle-without-secret-id", {"VAULT_AUTH_METHOD": "approle", "VAULT_SECRET_ID": ""}, "VAULT_SECRET_ID"),
    ("bad-region", {"AWS_REGION": "europe"}, "AWS_REGION"),
    ("lease-ttl-too-short", {"ROTATION_LEASE_TTL": "1"}, "ROTATION_LEASE_TTL"),
    ("rate-above-aws-limit", {"ROTATION_APIGW_RATE": "50"}, "ROTATION_APIGW_RATE"),
    ("stack-with-spaces", {"ROTATION_STACK": "my stack"}, "ROTATION_STACK"),
    ("mount-trailing-newline", {"VAULT_KV_MOUNT": "secret\n"}, "VAULT_KV_MOUNT"),
    ("prefix-repeats-the-mount", {"VAULT_KV_PREFIX": "secret/mail-api"}, "VAULT_KV_PREFIX"),
    ("file-target-dirs-relative", {"ROTATION_FILE_TARGET_DIRS": "keys"}, "ROTATION_FILE_TARGET_DIRS"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    with EmbeddedStack(tmp / "stack") as stack:
        creds = stack.bootstrap(consumers_file(tmp, names=("billing",)))
        yield stack, {**stack.env(creds), "ROTATION_FILE_TARGET_DIRS": "/tmp"}, tmp


def _assert_nothing_changed(stack):
    root = stack.root_client()
    import hvac
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.list_secrets(path="mail-api/keys", mount_point="secret")
    api = stack.aws_session().client("apigateway", endpoint_url=stack.aws_endpoint)
    assert api.get_api_keys()["items"] == []


def _run(env_vars, tmp, text, *args):
    f = tmp / "consumers.yaml"
    f.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_", "ROTATION_"))}
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "rotation.cli", "--consumers", str(f), *args],
                          env=env, text=True, capture_output=True, timeout=60, check=False)


@pytest.mark.parametrize("text,field", [(t, f) for _, t, f in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
def test_bad_consumers_file_exits_2_names_the_field_changes_nothing(live, text, field):
    stack, env_vars, tmp = live
    r = _run(env_vars, tmp, text, "run")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"  {field}:" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    _assert_nothing_changed(stack)


@pytest.mark.parametrize("command", ["plan", "status"])
def test_unknown_usage_plan_stops_plan_and_status_with_exit_2(live, command):
    stack, env_vars, tmp = live
    r = _run(env_vars, tmp, variant("usage_plans.standard", "no-such-plan"), command)
    assert r.returncode == 2 and "  usage_plans.standard:" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    _assert_nothing_changed(stack)


def test_the_good_file_runs_under_the_same_settings(live):
    """The control for the cases above: GOOD itself is accepted by `plan`."""
    stack, env_vars, tmp = live
    r = _run(env_vars, tmp, yaml.safe_dump(GOOD), "plan")
    assert r.returncode == 0, r.stdout + r.stderr
    _assert_nothing_changed(stack)


@pytest.mark.parametrize("overrides,field", [(o, f) for _, o, f in BAD_SETTINGS], ids=[i for i, _, _ in BAD_SETTINGS])
def test_bad_setting_exits_2_names_the_variable_changes_nothing(live, overrides, field):
    stack, env_vars, tmp = live
    r = _run({**env_vars, **overrides}, tmp, variant("consumers.0.targets", []), "run")
    assert r.returncode == 2, r.stdout + r.stderr
    assert field in r.stderr and "Traceback" not in r.stderr
    for value in overrides.values():
        if len(value) > 8:
            assert value not in r.stderr or field == "VAULT_ADDR"
    _assert_nothing_changed(stack)


def test_missing_consumers_file_is_a_usage_error(live, tmp_path):
    _, env_vars, _ = live
    r = subprocess.run([sys.executable, "-m", "rotation.cli", "--consumers", str(tmp_path / "nope.yaml"), "run"],
                       env={**os.environ, **env_vars}, text=True, capture_output=True, timeout=60, check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr
