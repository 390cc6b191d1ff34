"""The example files load with the real loaders, as they would in the Lambda function and in
``rotation vault setup``."""

from __future__ import annotations

from pathlib import Path

from rotation.config import load_consumers_file
from rotation.permissions import required_grants
from rotation.vault_setup import load_setup_file, plan_steps

ROOT = Path(__file__).resolve().parents[3]


def test_the_lambda_consumers_file_loads_and_uses_only_targets_a_lambda_can_reach():
    consumers = load_consumers_file(ROOT / "examples/consumers.lambda.yaml")
    types = {t.type for c in consumers.consumers for t in c.targets}
    assert types == {"secretsmanager", "ssm", "webhook"}  # no file target: /var/task is read-only
    assert all(t.url.startswith("https://") for c in consumers.consumers for t in c.targets if t.type == "webhook")
    assert {g.action for g in required_grants(consumers, "eu-west-1", "123456789012")} >= {
        "secretsmanager:PutSecretValue", "ssm:PutParameter", "kms:Encrypt", "kms:GenerateDataKey"}


def test_the_production_vault_setup_loads_and_plans_the_roles_the_deploy_guide_uses():
    setup = load_setup_file(ROOT / "examples/vault-setup.production.yaml")
    consumers = load_consumers_file(ROOT / "examples/consumers.lambda.yaml")
    paths = {s.path for s in plan_steps(setup, consumers)}
    assert {"auth/approle/role/mail-api-rotator", "auth/kubernetes/role/mail-api-rotator",
            "auth/approle/role/mail-api-consumer-billing", "sys/audit/mail-api",
            "auth/kubernetes/role/mail-api-auditor"} <= paths
    k8s = next(s for s in plan_steps(setup, consumers) if s.path == "auth/kubernetes/role/mail-api-rotator")
    assert k8s.body["bound_service_account_names"] == ["rotator"]
    assert k8s.body["bound_service_account_namespaces"] == ["mail-api-rotation"] and k8s.body["audience"] == "vault"
    auditor = next(s for s in plan_steps(setup, consumers) if s.path == "auth/kubernetes/role/mail-api-auditor")
    assert auditor.body["token_policies"] == ["mail-api-auditor"]


def test_the_shipped_vault_setup_is_the_dev_stacks_definition_so_it_applies_to_the_dev_openbao_as_shipped():
    from rotation.dev.stack import dev_setup

    assert load_setup_file(ROOT / "examples/vault-setup.yaml") == dev_setup()
    consumers = load_consumers_file(ROOT / "examples/consumers.yaml")
    steps = plan_steps(load_setup_file(ROOT / "examples/vault-setup.yaml"), consumers)
    # nothing a local OpenBao refuses or cannot do: no API audit device, no Kubernetes, no AWS auth
    assert not [s for s in steps if s.kind == "audit" or "kubernetes" in s.path or "aws" in s.path]
    auditor = next(s for s in steps if s.path == "auth/approle/role/mail-api-auditor")   # the auditor's identity
    assert auditor.body["token_policies"] == ["mail-api-auditor"]
