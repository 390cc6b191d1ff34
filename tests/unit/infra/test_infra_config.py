"""Stack config: Pulumi.yaml / Pulumi.dev.yaml contracts, and bad values refused before any
resource is declared, naming the key and (for enumerations) the allowed values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from infra.config import (
    DEV_STACK_FILE,
    LOG_RETENTION_DAYS,
    TLS_POLICIES,
    ConfigError,
    dev_stack_config,
    parse_stack_config,
)
from infra.mocks import RecordingMocks, run_program

ROOT = Path(__file__).resolve().parents[3]


def _with(key: str, value: object) -> dict[str, str]:
    cfg = dev_stack_config()
    cfg[key] = value if isinstance(value, str) else json.dumps(value)
    return cfg


def _merge(key: str, patch: dict) -> dict[str, str]:
    cfg = dev_stack_config()
    cfg[key] = json.dumps({**json.loads(cfg[key]), **patch})
    return cfg


def test_pulumi_project_file_contract():
    """Pulumi.yaml: project secure-mail-api, python with pip toolchain in .venv, main infra/."""
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert doc["name"] == "secure-mail-api" and doc["main"] == "infra/"
    assert doc["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert (ROOT / "infra" / "__main__.py").exists()


def test_dev_stack_file_is_valid_and_realistic():
    """Pulumi.dev.yaml parses into StackConfig; every key is namespaced and no secret is in clear."""
    doc = yaml.safe_load(DEV_STACK_FILE.read_text())
    assert all(k == "aws:region" or k.startswith("secure-mail-api:") for k in doc["config"])
    cfg = parse_stack_config(dev_stack_config())
    assert cfg.region == "eu-west-1" and cfg.tls_policy in TLS_POLICIES
    assert len(cfg.usage_plans) >= 2 and cfg.cognito.enabled is True
    assert cfg.log_retention_days in LOG_RETENTION_DAYS


BAD_VALUES = [
    # (config, key named in the error, text that must appear)
    (_merge("secure-mail-api:waf", {"ipRateLimit": 50}), "secure-mail-api:waf.ipRateLimit", "greater than or equal to 100"),
    (_merge("secure-mail-api:waf", {"apiKeyRateLimit": 3_000_000_000}), "secure-mail-api:waf.apiKeyRateLimit", "less than"),
    (_merge("secure-mail-api:waf", {"ipEvaluationWindowSec": 90}), "secure-mail-api:waf.ipEvaluationWindowSec",
     "60, 120, 300, 600"),
    (_merge("secure-mail-api:waf", {"rateLimit": 100}), "secure-mail-api:waf.rateLimit", "unknown config key"),
    (_with("secure-mail-api:tlsPolicy", "TLS_1_2"), "secure-mail-api:tlsPolicy", ", ".join(TLS_POLICIES)),
    (_with("secure-mail-api:tlsPolicy", "SecurityPolicy_TLS13_2025_EDGE"), "secure-mail-api:tlsPolicy", "must be one of"),
    (_with("secure-mail-api:logRetentionDays", "14"), "secure-mail-api:logRetentionDays",
     ", ".join(map(str, LOG_RETENTION_DAYS))),
    (_with("secure-mail-api:logRetentionDays", "366"), "secure-mail-api:logRetentionDays", "must be one of"),
    (_with("secure-mail-api:alarmEmail", "platform-alerts.example.com"), "secure-mail-api:alarmEmail", "email"),
    (_with("secure-mail-api:certificateArn", "arn:aws:acm:eu-west-1:123:certificate/nope"),
     "secure-mail-api:certificateArn", "ACM certificate ARN"),
    (_with("secure-mail-api:certificateArn",
           "arn:aws:acm:us-east-1:123456789012:certificate/6f1d3c2a-8b4e-4f0a-9c5d-2e7b1a0f9d34"),
     "secure-mail-api:certificateArn", "aws:region eu-west-1"),
    (_with("secure-mail-api:apiDomain", "mail_api.example.com"), "secure-mail-api:apiDomain", "DNS domain"),
    (_with("secure-mail-api:senderDomain", "localhost"), "secure-mail-api:senderDomain", "DNS domain"),
    (_with("aws:region", "europe"), "aws:region", "AWS region"),
    (_with("secure-mail-api:usagePlans", {}), "secure-mail-api:usagePlans", "at least one"),
    (_merge("secure-mail-api:usagePlans", {"gold": {"rateLimit": 10, "burstLimit": 5, "quotaLimit": 1}}),
     "secure-mail-api:usagePlans.gold", "burstLimit must be >= rateLimit"),
    (_merge("secure-mail-api:usagePlans", {"gold": {"rateLimit": 1, "burstLimit": 5, "quotaLimit": 1,
                                                    "quotaPeriod": "YEAR"}}),
     "secure-mail-api:usagePlans.gold.quotaPeriod", "DAY, WEEK, MONTH"),
    (_merge("secure-mail-api:usagePlans", {"Gold Tier": {"rateLimit": 1, "burstLimit": 5, "quotaLimit": 1}}),
     "secure-mail-api:usagePlans", "tier name"),
    (_with("secure-mail-api:cognito", {"enabled": True}), "secure-mail-api:cognito", "domainPrefix is required"),
    (_with("secure-mail-api:cognito", {"enabled": True, "domainPrefix": "my-aws-auth"}),
     "secure-mail-api:cognito.domainPrefix", "must not contain"),
    (_with("secure-mail-api:lambdaReservedConcurrency", "0"), "secure-mail-api:lambdaReservedConcurrency",
     "greater than or equal to 1"),
    (_with("secure-mail-api:rotatorTrustedPrincipals", ["*"]), "secure-mail-api:rotatorTrustedPrincipals",
     "not an IAM role"),
    (_with("secure-mail-api:waf", "ipRateLimit=300"), "secure-mail-api:waf", "structured config"),
    (_with("secure-mail-api:wafLimits", {"ip": 300}), "secure-mail-api:wafLimits", "unknown config key"),
]


@pytest.mark.parametrize(("config", "key", "text"), BAD_VALUES, ids=[f"{k}:{t[:20]}" for _, k, t in BAD_VALUES])
def test_bad_config_value_is_refused_naming_key_and_allowed_values(config, key, text):
    """A bad value raises ConfigError naming the full key and the rule / allowed values."""
    with pytest.raises(ConfigError) as err:
        parse_stack_config(config)
    line = next((e for e in err.value.errors if e.startswith(f"{key}:")), None)
    assert line is not None, err.value.errors
    assert text in line, line


def test_every_problem_is_reported_at_once():
    """All bad keys are reported together, not one per run."""
    cfg = _with("secure-mail-api:tlsPolicy", "TLS_1_0")
    cfg["secure-mail-api:logRetentionDays"] = "7"
    with pytest.raises(ConfigError) as err:
        parse_stack_config(cfg)
    keys = {e.split(":")[1] for e in err.value.errors}
    assert {"tlsPolicy", "logRetentionDays"} <= keys


def test_bad_config_fails_before_any_resource_is_declared():
    """The program validates config first: on a bad value the mocks record no resource at all."""
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match="secure-mail-api:waf.ipRateLimit"):
        run_program(_merge("secure-mail-api:waf", {"ipRateLimit": 10}), mocks=mocks)
    assert mocks.resources == []


def test_errors_never_echo_the_rejected_value():
    """C1: a ValidationError can echo its input; ours name the key and the rule, never the value."""
    with pytest.raises(ConfigError) as err:
        parse_stack_config(_with("secure-mail-api:alarmEmail", "leaky-value-1234"))
    assert "leaky-value-1234" not in str(err.value)
