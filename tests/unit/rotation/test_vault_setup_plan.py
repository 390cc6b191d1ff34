"""The Vault setup definition (rotation.vault_setup): validation of the setup file and the planned
calls, without a server (the live behaviour: tests/integration/vault_setup)."""

from __future__ import annotations

import pytest

from rotation.config import ConsumersFile
from rotation.errors import ConfigError
from rotation.vault_policies import template_path
from rotation.vault_setup import VaultSetup, load_setup_file, plan_steps

CONSUMERS = ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                          "consumers": [{"name": "billing", "tier": "standard"}]})
AWS = {"bound_iam_principal_arn": ["arn:aws:iam::123456789012:role/secure-mail-api-dev-rotator-lambda"]}


def test_aws_auth_is_planned_only_when_asked_for():
    setup = VaultSetup.model_validate({"rotator": {"aws": AWS}})
    assert not [s for s in plan_steps(setup, CONSUMERS) if "aws" in s.path]
    steps = {s.path: s.body for s in plan_steps(setup, CONSUMERS, aws_auth=True)}
    assert steps["sys/auth/aws"] == {"type": "aws"}
    role = steps["auth/aws/role/mail-api-rotator"]
    assert role["auth_type"] == "iam" and role["bound_iam_principal_arn"] == AWS["bound_iam_principal_arn"]
    assert role["token_policies"] == ["mail-api-rotator"]


def test_app_approle_roles_carry_the_secret_id_and_token_limits():
    setup = VaultSetup.model_validate({"apps": {"approle": {
        "secret_id_ttl": "2h", "token_ttl": "5m", "token_max_ttl": "30m", "secret_id_num_uses": 3,
        "token_bound_cidrs": ["10.0.0.0/8"]}}})
    body = {s.path: s.body for s in plan_steps(setup, CONSUMERS)}["auth/approle/role/mail-api-consumer-billing"]
    assert body == {"token_policies": ["mail-api-consumer-billing"], "token_ttl": 300, "token_max_ttl": 1800,
                    "token_bound_cidrs": ["10.0.0.0/8"], "bind_secret_id": True, "secret_id_ttl": 7200,
                    "secret_id_num_uses": 3, "secret_id_bound_cidrs": []}


def test_the_kv_mount_policies_and_audit_device_come_first_in_order():
    setup = VaultSetup.model_validate({"audit": {"file_path": "/var/log/openbao/audit.log"},
                                       "rotator": {"approle": {}}})
    kinds = [s.kind for s in plan_steps(setup, CONSUMERS)]
    assert kinds[:3] == ["audit", "mount", "kv"] and kinds.index("auth") > kinds.index("policy")


@pytest.mark.parametrize(("data", "field"), [
    ({"rotator": {"aws": {"bound_iam_principal_arn": ["role/x"]}}}, "rotator.aws.bound_iam_principal_arn"),
    ({"rotator": {"jwt": {"bound_audiences": ["a"]}}}, "rotator.jwt"),           # no key source
    ({"rotator": {"jwt": {"bound_audiences": [], "jwks_url": "https://x/jwks"}}}, "rotator.jwt.bound_audiences"),
    ({"apps": {"approle": {"token_bound_cidrs": ["10.0.0.0/33"]}}}, "apps.approle.token_bound_cidrs"),
    ({"apps": {"kubernetes": {"namespace": "apps", "service_account": "shared"}},
      "kubernetes": {"kubernetes_host": "https://k"}}, "apps.kubernetes.service_account"),   # a model rule
    ({"mount": "se*cret"}, "mount"),
    ({"prefix": "mail-api/../x"}, "prefix"),
    ({"audit": {"file_path": "relative.log"}}, "audit.file_path"),
    ({"rotatr": {}}, "rotatr"),
])
def test_a_bad_setup_file_names_the_field_and_never_echoes_the_value(tmp_path, data, field):
    import yaml
    p = tmp_path / "setup.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_setup_file(p)
    fields = [f for f, _ in err.value.problems]
    assert field in fields or any(f.startswith(field) for f in fields)


def test_kubernetes_roles_require_the_auth_config():
    with pytest.raises(ValueError, match="kubernetes: required"):
        VaultSetup.model_validate({"rotator": {"kubernetes": {"namespace": "m", "service_account": "r"}}})


def test_the_policy_templates_ship_inside_the_rotation_package():
    assert template_path("rotator").read_text().startswith("# mail-api-rotator")


def test_the_token_reviewer_jwt_is_read_from_its_file_and_never_printed_or_in_a_repr(tmp_path):
    (tmp_path / "reviewer.jwt").write_text("reviewer-credential-value\n")
    setup = VaultSetup.model_validate({
        "rotator": {"kubernetes": {"namespace": "mail-api-rotation", "service_account": "rotator"}},
        "kubernetes": {"kubernetes_host": "https://kubernetes.default.svc",
                       "token_reviewer_jwt_file": str(tmp_path / "reviewer.jwt")}})
    config = next(s for s in plan_steps(setup, CONSUMERS) if s.path == "auth/kubernetes/config")
    assert config.body["token_reviewer_jwt"] == "reviewer-credential-value"
    assert "reviewer-credential-value" not in config.describe() + repr(config)
    assert '"token_reviewer_jwt": "<redacted>"' in config.describe()
