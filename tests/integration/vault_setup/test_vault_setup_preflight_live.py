"""``rotation vault setup`` checks what it can before its first write, against the worker's real
OpenBao: the server's kind and version, the audit device OpenBao refuses through the API (also in
a dry run), the Kubernetes config that needs a cluster; and a write that fails after others is
reported as half applied, then resumed by running the same command again."""

from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner

from rotation.cli import main
from rotation.config import ConsumersFile, load_consumers_file
from rotation.vault_server import detect_server
from rotation.vault_setup import PartialSetupError, VaultSetup, VaultSetupError, _Http, apply_setup, summarize

CONSUMERS = {"version": 1, "usage_plans": {"standard": "p"},
             "consumers": [{"name": "billing", "tier": "standard"}, {"name": "crm", "tier": "standard"}]}
APPROLE_ONLY = {"version": 1, "mount": "secret", "prefix": "mail-api",
                "rotator": {"approle": {"token_ttl": "15m", "token_max_ttl": "1h"}},
                "apps": {"approle": {"token_ttl": "1h", "token_max_ttl": "4h"}}}


@pytest.fixture
def fresh(worker_stack):
    worker_stack.reset()
    return worker_stack


@pytest.fixture
def consumers() -> ConsumersFile:
    return ConsumersFile.model_validate(CONSUMERS)


def _state(root) -> tuple[set[str], list[str], set[str]]:
    return (set(root.sys.list_auth_methods()["data"]), sorted(root.sys.list_policies()["data"]["policies"]),
            set(root.sys.list_mounted_secrets_engines()["data"]))


def _cli(tmp_path, stack, setup: dict, *extra: str, token: str | None = None):
    (tmp_path / "consumers.yaml").write_text(yaml.safe_dump(CONSUMERS))
    (tmp_path / "setup.yaml").write_text(yaml.safe_dump(setup))
    env = {"VAULT_ADDR": stack.vault_addr, "VAULT_TOKEN": token or stack.root_token}
    return CliRunner().invoke(main, ["--consumers", str(tmp_path / "consumers.yaml"), "vault", "setup",
                                     "--setup", str(tmp_path / "setup.yaml"), *extra], env=env)


def test_the_server_is_identified_as_openbao_with_its_version_before_anything_else(fresh):
    server = detect_server(_Http(fresh.root_client()).call)
    assert server.kind == "openbao" and not server.sealed
    assert re.fullmatch(r"2\.\d+\.\d+.*", server.version) and server.name.startswith("OpenBao 2.")
    assert server.refuses_api_audit_devices and not server.has_aws_auth


def test_a_dry_run_predicts_the_audit_device_openbao_refuses_names_the_server_and_changes_nothing(fresh, tmp_path):
    root = fresh.root_client()
    before = _state(root)
    setup = {**APPROLE_ONLY, "audit": {"path": "mail-api", "file_path": "/var/log/openbao/mail-api-audit.log"}}
    r = _cli(tmp_path, fresh, setup, "--dry-run")
    assert r.exit_code == 2, r.output
    assert "OpenBao 2." in r.output and "would refuse" in r.output
    assert 'audit "file" "mail-api"' in r.output and "remove audit:" in r.output   # the stanza and the fix
    assert "would create    role     approle/mail-api-rotator" in r.output        # the plan is still shown
    r = _cli(tmp_path, fresh, setup)                                              # and a real run refuses alike
    assert r.exit_code == 2 and "nothing was changed" in r.output
    assert _state(root) == before


def test_the_aws_auth_method_on_openbao_is_refused_before_any_write(fresh, tmp_path):
    root = fresh.root_client()
    before = _state(root)
    setup = {**APPROLE_ONLY, "rotator": {**APPROLE_ONLY["rotator"], "aws": {
        "bound_iam_principal_arn": ["arn:aws:iam::123456789012:role/secure-mail-api-prod-rotator-lambda"]}}}
    r = _cli(tmp_path, fresh, setup, "--aws-auth")
    assert r.exit_code == 2 and "rotator.aws" in r.output and "rotator.jwt" in r.output, r.output
    assert _state(root) == before


def test_a_kubernetes_config_that_needs_a_cluster_is_refused_with_the_fix_and_leaves_nothing_changed(
        fresh, consumers):
    root = fresh.root_client()
    before = _state(root)
    setup = VaultSetup.model_validate({
        **APPROLE_ONLY, "kubernetes": {"kubernetes_host": "https://kubernetes.default.svc"},
        "rotator": {"kubernetes": {"namespace": "mail-api-rotation", "service_account": "rotator"}}})
    with pytest.raises(VaultSetupError, match="kubernetes_ca_cert_file") as err:
        apply_setup(root, setup, consumers)
    assert not isinstance(err.value, PartialSetupError)
    assert _state(root) == before          # its auth method was disabled again; nothing else was written


POLICIES_BUT_NOT_CRM = """
path "*" { capabilities = ["read", "list"] }
path "sys/mounts/*" { capabilities = ["create", "update", "read", "sudo"] }
path "sys/auth/*" { capabilities = ["create", "update", "read", "sudo"] }
path "sys/auth" { capabilities = ["read", "sudo"] }
path "sys/policies/acl/*" { capabilities = ["create", "update", "read"] }
path "secret/config" { capabilities = ["create", "update", "read"] }
path "auth/approle/role/mail-api-rotator" { capabilities = ["create", "update", "read"] }
path "auth/approle/role/mail-api-consumer-billing" { capabilities = ["create", "update", "read"] }
"""


def test_a_write_refused_midway_is_reported_half_applied_and_the_same_command_resumes(fresh, tmp_path):
    root = fresh.root_client()
    root.sys.create_or_update_acl_policy("setup-but-not-crm", POLICIES_BUT_NOT_CRM)
    token = root.auth.token.create(policies=["setup-but-not-crm"], ttl="10m")["auth"]["client_token"]
    r = _cli(tmp_path, fresh, APPROLE_ONLY, token=token)
    assert r.exit_code == 1, r.output
    assert "HALF APPLIED" in r.output and "role approle/mail-api-consumer-crm" in r.output
    assert "create    role     approle/mail-api-consumer-billing" in r.output     # what took effect, listed
    assert token not in r.output
    assert "mail-api-consumer-crm" in root.sys.list_policies()["data"]["policies"]   # indeed half applied
    again = _cli(tmp_path, fresh, APPROLE_ONLY)                                      # resumed with a full token
    assert again.exit_code == 0, again.output
    assert "create    role     approle/mail-api-consumer-crm" in again.output
    assert "unchanged role     approle/mail-api-consumer-billing" in again.output
    changes = apply_setup(root, VaultSetup.model_validate(APPROLE_ONLY), ConsumersFile.model_validate(CONSUMERS))
    assert summarize(changes)["create"] == summarize(changes)["update"] == 0


def test_the_shipped_example_applies_to_the_dev_openbao_as_shipped_and_production_differences_are_named(
        fresh, tmp_path):
    from pathlib import Path

    from rotation.dev.workspace import write_dev_consumers

    root_dir = Path(__file__).resolve().parents[3]
    dev_consumers = write_dev_consumers(tmp_path / "dev")
    fresh.bootstrap(load_consumers_file(dev_consumers))
    env = {"VAULT_ADDR": fresh.vault_addr, "VAULT_TOKEN": fresh.root_token}
    args = ["--consumers", str(dev_consumers), "vault", "setup", "--setup", str(root_dir / "examples/vault-setup.yaml")]
    r = CliRunner().invoke(main, args, env=env)
    assert r.exit_code == 0, r.output
    assert "0 create, 0 update" in r.output            # the dev stack was set up from this very definition
    prod = ["--consumers", str(dev_consumers), "vault", "setup", "--setup",
            str(root_dir / "examples/vault-setup.production.yaml"), "--dry-run"]
    r = CliRunner().invoke(main, prod, env=env)
    assert r.exit_code == 2 and 'audit "file" "mail-api"' in r.output, r.output   # predicted, not discovered


def test_a_dry_run_says_when_the_kubernetes_config_needs_a_server_inside_the_cluster(fresh, tmp_path):
    setup = {**APPROLE_ONLY, "kubernetes": {"kubernetes_host": "https://kubernetes.default.svc"},
             "rotator": {"kubernetes": {"namespace": "mail-api-rotation", "service_account": "rotator"}}}
    r = _cli(tmp_path, fresh, setup, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "note: kubernetes:" in r.output and "token_reviewer_jwt_file" in r.output
    with_files = {**setup, "kubernetes": {**setup["kubernetes"], "token_reviewer_jwt_file": str(tmp_path / "jwt"),
                                          "kubernetes_ca_cert_file": str(tmp_path / "ca.crt")}}
    (tmp_path / "jwt").write_text("reviewer")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    r = _cli(tmp_path, fresh, with_files, "--dry-run")
    assert r.exit_code == 0 and "note: kubernetes:" not in r.output, r.output
