"""Issue 13 part 1 on the infrastructure side: the access levels are stack config, validated before
any resource, rendered into the sender's environment (no per-request lookup), mirrored by the OAuth
scopes of the resource server and the method, and backed by the sender role's SES condition keys.
Each Pulumi test returns the Output it checks (P5)."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.config import ConfigError, access_environment, dev_stack_config, parse_stack_config
from infra.functions.access import load_access_config

LEVELS = "secure-mail-api:accessLevels"


def _with(key: str, value) -> dict[str, str]:
    cfg = dev_stack_config()
    cfg[key] = json.dumps(value)
    return cfg


def _levels_patch(name: str, **fields) -> dict[str, str]:
    levels = json.loads(dev_stack_config()[LEVELS])
    levels[name] = {**levels[name], **fields}
    return _with(LEVELS, levels)


def test_dev_levels_render_to_an_environment_the_handler_parses():
    cfg = parse_stack_config(dev_stack_config())
    env = access_environment(cfg)
    parsed = load_access_config({**env, "ACCESS_STACK": "dev"})
    assert set(parsed.levels) == set(cfg.access_levels)
    assert parsed.consumers == dict(cfg.consumer_access_levels)
    assert set(parsed.scopes) == {"mail-api/send", "mail-api/send:attachments", "mail-api/send:bulk"}
    assert parsed.levels["transactional"].senders == {"billing@mail.dev.example.com", "no-reply@mail.dev.example.com"}
    assert parsed.levels["notifications"].attachments is False


@pytest.mark.parametrize("config, key, words", [
    (_with("secure-mail-api:consumerAccessLevels", {"billing": "platinum"}),
     "secure-mail-api:consumerAccessLevels.billing", "platinum"),
    (_with("secure-mail-api:oauthScopes", {"send": "nope"}), "secure-mail-api:oauthScopes.send", "nope"),
    (_with("secure-mail-api:oauthScopes", {}), "secure-mail-api:oauthScopes", "required when cognito"),
    (_with("secure-mail-api:oauthScopes", {"Send Mail": "bulk"}), "secure-mail-api:oauthScopes", "must match"),
    (_with("secure-mail-api:consumerAccessLevels", {}), "secure-mail-api:consumerAccessLevels", "at least one"),
    (_with(LEVELS, {}), LEVELS, "at least one"),
    (_levels_patch("bulk", senders=["news@other.example.com"]), f"{LEVELS}.bulk.senders", "not at senderDomain"),
    (_levels_patch("bulk", senders=["News Letter"]), f"{LEVELS}.bulk.senders", "local part"),
    (_levels_patch("bulk", senders=[]), f"{LEVELS}.bulk.senders", "at least 1"),
    (_levels_patch("bulk", displayName="Bank*"), f"{LEVELS}.bulk.displayName", "printable text without"),
    (_levels_patch("bulk", maxRecipients=51), f"{LEVELS}.bulk.maxRecipients", "less than or equal to 50"),
    (_levels_patch("bulk", maxMessageBytes=50_000_000), f"{LEVELS}.bulk.maxMessageBytes", "40000000"),
    (_levels_patch("bulk", recipientDomains=["not a domain"]), f"{LEVELS}.bulk.recipientDomains.0", "DNS domain"),
    (_levels_patch("bulk", colour="blue"), f"{LEVELS}.bulk.colour", "unknown config key"),
])
def test_bad_access_config_is_refused_naming_the_key(config, key, words):
    with pytest.raises(ConfigError) as exc:
        parse_stack_config(config)
    assert any(e.startswith(f"{key}:") and words in e for e in exc.value.errors), exc.value.errors


def test_access_environment_must_fit_the_lambda_environment_cap():
    levels = {f"level-{i}": {"senders": [f"sender-{j}" for j in range(20)], "maxRecipients": 5}
              for i in range(6)}
    cfg = _with(LEVELS, levels)
    cfg["secure-mail-api:consumerAccessLevels"] = json.dumps({"billing": "level-0"})
    cfg["secure-mail-api:oauthScopes"] = json.dumps({"send": "level-1"})
    with pytest.raises(ConfigError) as exc:
        parse_stack_config(cfg)
    assert any("4 KB" in e for e in exc.value.errors)


@pulumi.runtime.test
def test_sender_environment_carries_the_levels_of_the_stack_config(dev_run):
    fn = dev_run.stack.sender.function
    expected = access_environment(dev_run.stack.config)

    def check(env):
        variables = env["variables"]
        for name, value in expected.items():
            assert json.loads(variables[name]) == json.loads(value), name
        assert variables["ACCESS_STACK"] == "dev"

    return fn.environment.apply(check)


@pulumi.runtime.test
def test_sender_role_limits_from_address_and_display_name_to_the_levels(dev_run, h):
    cfg = dev_run.stack.config

    def check(resources):
        roles = {r.name: r.inputs for r in h.of_type(resources, "aws:iam/rolePolicy:RolePolicy")}
        statements = h.statements(roles["sender-send-policy"]["policy"])
        (ses,) = [s for s in statements if s["Action"] == ["ses:SendEmail"]]
        assert ses["Condition"]["StringEquals"]["ses:FromAddress"] == cfg.allowed_from_addresses
        assert ses["Condition"]["StringLikeIfExists"]["ses:FromDisplayName"] == cfg.allowed_display_names
        assert "billing@mail.dev.example.com" in cfg.allowed_from_addresses
        assert all(a.endswith("@mail.dev.example.com") for a in cfg.allowed_from_addresses)
        (read,) = [s for s in statements if s["Sid"] == "ReadCallerKeyTags"]
        assert read["Action"] == ["apigateway:GET"]
        assert read["Resource"] == ["arn:aws:apigateway:eu-west-1::/apikeys/*"]

    return h.check_recorded(dev_run, check)


@pulumi.runtime.test
def test_resource_server_declares_one_scope_per_oauth_level(dev_run, h):
    def check(resources):
        (server,) = h.of_type(resources, "aws:cognito/resourceServer:ResourceServer")
        assert server.inputs["identifier"] == "mail-api"
        assert sorted(s["scopeName"] for s in server.inputs["scopes"]) == ["send", "send:attachments", "send:bulk"]

    return h.check_recorded(dev_run, check)
