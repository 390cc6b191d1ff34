"""Issue 12, item 17: configuration checks, each class tested with several variants (the review
holds more): the error names the field, the value is decoded before it is validated, and one
validator serves each kind of value. The CLI side (exit code 2, nothing changed on a live stack) is
in tests/integration/rotation/test_bad_input.py."""

from __future__ import annotations

import copy
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from rotation.client.receiver import WebhookReceiver
from rotation.config import load_consumers_file
from rotation.errors import ConfigError
from rotation.settings import Settings, load_settings
from rotation.targets import Delivery
from rotation.targets.file import AtomicFileTarget, write_private_file
from rotation.targets.webhook import SignedWebhookTarget

GOOD = {
    "version": 1,
    "usage_plans": {"standard": "secure-mail-api-dev-standard"},
    "consumers": [{"name": "billing", "tier": "standard",
                   "targets": [{"type": "file", "path": "/run/mail-api/billing.key"}]}],
}


def settings(**kw) -> Settings:
    return Settings(vault_token="t" * 20, **kw)


def variant(path: str, value) -> dict:
    d = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    cur = d
    for p in parents:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    if last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value
    return d


def problems(tmp_path: Path, data, *, text: str | None = None, **settings_kw) -> dict[str, str]:
    """``{field: message}`` of loading ``data`` (or raw ``text``); ``{}`` when it loads."""
    f = tmp_path / "consumers.yaml"
    f.write_text(text if text is not None else yaml.safe_dump(data, allow_unicode=True))
    try:
        load_consumers_file(f, settings=settings(**settings_kw))
    except ConfigError as exc:
        return dict(exc.problems)
    return {}


def setting_problems(**env) -> dict[str, str]:
    try:
        load_settings(**{"vault_token": "t" * 20, **env})
    except ConfigError as exc:
        return dict(exc.problems)
    return {}


# -- patterns match whole values: "$" would let a trailing newline through ------------------------

@pytest.mark.parametrize("path,value,field", [
    ("consumers.0.name", "billing\n", "consumers.0.name"),
    ("consumers.0.max_age", "30d\n\n x", "consumers.0.max_age"),
    ("consumers.0.targets.0", {"type": "ssm", "name": "/mail-api/billing\n"}, "consumers.0.targets.0.name"),
    ("consumers.0.targets.0", {"type": "secretsmanager", "secret_id": "mail-api/billing\n"},
     "consumers.0.targets.0.secret_id"),
    ("consumers.0.targets.0", {"type": "file", "path": "/run/mail-api/billing.key\n"}, "consumers.0.targets.0.path"),
])
def test_a_trailing_newline_is_refused_in_every_patterned_field(tmp_path, path, value, field):
    assert field in problems(tmp_path, variant(path, value))


def test_a_tier_with_a_trailing_newline_is_refused(tmp_path):
    data = {**GOOD, "usage_plans": {"standard\n": "secure-mail-api-dev-standard"}}
    assert "usage_plans" in problems(tmp_path, data)


@pytest.mark.parametrize("var,value", [("vault_kv_mount", "secret\n"), ("vault_kv_prefix", "mail-api\n"),
                                       ("stack", "dev\n"), ("aws_region", "eu-west-1\n")])
def test_a_trailing_newline_is_refused_in_every_patterned_setting(var, value):
    env_name = {"vault_kv_mount": "VAULT_KV_MOUNT", "vault_kv_prefix": "VAULT_KV_PREFIX", "stack": "ROTATION_STACK",
                "aws_region": "AWS_REGION"}[var]
    assert env_name in setting_problems(**{var: value})


# -- duplicate keys, at any depth -----------------------------------------------------------------

@pytest.mark.parametrize("text,field", [
    ("version: 1\nversion: 1\nusage_plans: {standard: p}\nconsumers: [{name: billing, tier: standard}]\n",
     "version"),
    ("version: 1\nusage_plans:\n  standard: p\n  standard: q\nconsumers: [{name: billing, tier: standard}]\n",
     "usage_plans.standard"),
    (("version: 1\nusage_plans: {standard: p}\nconsumers:\n  - name: billing\n    tier: standard\n"
     "    name: crm\n"), "consumers.0.name"),
    (("version: 1\nusage_plans: {standard: p}\nconsumers:\n  - name: billing\n    tier: standard\n    targets:\n"
     "      - type: file\n        path: /run/mail-api/a.key\n        path: /run/mail-api/b.key\n"),
     "consumers.0.targets.0.path"),
    (("version: 1\nusage_plans: {standard: p}\ndefaults: {max_age: 30d, max_age: 1d}\n"
     "consumers: [{name: billing, tier: standard}]\n"), "defaults.max_age"),
])
def test_duplicate_keys_are_refused_at_any_depth_naming_the_field(tmp_path, text, field):
    found = problems(tmp_path, None, text=text)
    assert field in found and "twice" in found[field]


def test_duplicate_keys_that_differ_only_in_spelling_are_refused(tmp_path):
    text = ("version: 1\nusage_plans: {standard: p}\nconsumers: [{name: billing, tier: standard}]\n"
            "defaults: {? max_age : 30d, \"max_age\": 1d}\n")
    assert problems(tmp_path, None, text=text)


def test_a_consumers_file_over_one_mebibyte_is_refused(tmp_path):
    text = yaml.safe_dump(GOOD) + "# " + "x" * (1024 * 1024) + "\n"
    assert "larger than" in problems(tmp_path, None, text=text)["(file)"]


def test_yaml_alias_bombs_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 7)]
    assert "(file)" in problems(tmp_path, None, text="\n".join(lines) + "\n")


# -- durations ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["99999999999d", "1e400", 1e300, float("inf"), float("nan"), "3651d",
                                   "\uff13\uff10d", "\u0663\u0660d", "30 d x", 10**400, "9" * 400 + "d"])
def test_durations_too_large_not_finite_or_not_ascii_are_field_errors(tmp_path, value):
    assert "consumers.0.max_age" in problems(tmp_path, variant("consumers.0.max_age", value))


# -- AWS names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("secret_id", ["mail api/billing", "mail-api/billing#1", "x" * 513, "", "caf\u00e9",
                                       "arn:aws:secretsmanager:eu-west-1:12345:secret:x",
                                       "arn:aws:s3:::bucket"])
def test_secrets_manager_names_aws_would_refuse_are_field_errors(tmp_path, secret_id):
    data = variant("consumers.0.targets.0", {"type": "secretsmanager", "secret_id": secret_id})
    assert "consumers.0.targets.0.secret_id" in problems(tmp_path, data)


@pytest.mark.parametrize("secret_id", ["mail-api/billing", "a/b_c+d=e.f@g-h", "x" * 512,
                                       "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-api/billing-AbCdEf"])
def test_secrets_manager_names_aws_accepts_are_accepted(tmp_path, secret_id):
    data = variant("consumers.0.targets.0", {"type": "secretsmanager", "secret_id": secret_id})
    assert problems(tmp_path, data) == {}


@pytest.mark.parametrize("name", ["/aws/mail-api", "/AWSfoo/x", "/ssm/x", "/Ssmfoo", "/a//b", "/a/b/",
                                  "mail-api/billing", "/" + "/".join("l" * 16), "/a b", "/" + "x" * 1011,
                                  "/caf\u00e9"])
def test_ssm_names_aws_would_refuse_are_field_errors(tmp_path, name):
    data = variant("consumers.0.targets.0", {"type": "ssm", "name": name})
    assert "consumers.0.targets.0.name" in problems(tmp_path, data)


@pytest.mark.parametrize("name", ["/mail-api/billing/api-key", "/" + "/".join("l" * 15), "/A.b_c-d",
                                  "/" + "x" * 1010])
def test_ssm_names_aws_accepts_are_accepted(tmp_path, name):
    assert problems(tmp_path, variant("consumers.0.targets.0", {"type": "ssm", "name": name})) == {}


# -- webhook destinations -------------------------------------------------------------------------

METADATA_URLS = ["https://169.254.169.254/latest/meta-data", "https://[fd00:ec2::254]/", "https://[fe80::1]/",
                 "https://[::ffff:169.254.169.254]/", "https://2852039166/", "https://0xa9.0xfe.0xa9.0xfe/",
                 "https://%31%36%39.254.169.254/", "https://metadata.google.internal/", "https://169.254.1.1./",
                 "https://0.0.0.0/", "https://[::]/"]


@pytest.mark.parametrize("url", METADATA_URLS)
def test_a_webhook_to_a_metadata_or_link_local_address_is_refused_in_any_spelling(tmp_path, url):
    data = variant("consumers.0.targets.0", {"type": "webhook", "url": url})
    for allow in ({}, {"webhook_allow_private": True, "webhook_allow_loopback": True}):
        assert "consumers.0.targets.0.url" in problems(tmp_path, data, **allow), url


LOOPBACK_URLS = ["https://127.0.0.1/h", "https://localhost/h", "https://LOCALHOST./h", "https://0x7f.1/h",
                 "https://2130706433/h", "https://[::1]/h", "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/h",
                 "https://app.localhost/h", "http://127.0.0.1:8080/h"]


@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_a_loopback_webhook_needs_the_explicit_dev_setting(tmp_path, url):
    data = variant("consumers.0.targets.0", {"type": "webhook", "url": url})
    assert "consumers.0.targets.0.url" in problems(tmp_path, data)
    assert problems(tmp_path, data, webhook_allow_loopback=True) == {}


@pytest.mark.parametrize("url", ["https://10.0.0.5/h", "https://192.168.1.20/h", "https://172.16.0.1/h",
                                 "https://[fc00::5]/h", "https://100.64.0.1/h", "https://[::ffff:10.0.0.5]/h"])
def test_a_private_address_webhook_needs_the_explicit_setting(tmp_path, url):
    data = variant("consumers.0.targets.0", {"type": "webhook", "url": url})
    assert "consumers.0.targets.0.url" in problems(tmp_path, data)
    assert problems(tmp_path, data, webhook_allow_private=True) == {}


def test_a_webhook_to_a_public_host_name_is_accepted(tmp_path):
    data = variant("consumers.0.targets.0", {"type": "webhook", "url": "https://crm.internal.example.com/h"})
    assert problems(tmp_path, data) == {}


# -- file targets ---------------------------------------------------------------------------------

def test_file_targets_must_lie_inside_the_allowed_directories(tmp_path):
    allowed = tmp_path / "keys"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")
    for path in ["/etc/cron.d/mail", "/run/mail-api-evil/x.key", str(allowed), str(allowed / "escape" / "x")]:
        data = variant("consumers.0.targets.0.path", path)
        assert "consumers.0.targets.0.path" in problems(tmp_path, data, file_target_dirs=str(allowed)), path
    ok = variant("consumers.0.targets.0.path", str(allowed / "sub" / "billing.key"))
    assert problems(tmp_path, ok, file_target_dirs=f"/nowhere:{allowed}") == {}
    assert "consumers.0.targets.0.path" in problems(tmp_path, ok)           # default: /run/mail-api only


def test_the_file_target_directories_setting_must_be_absolute():
    assert "ROTATION_FILE_TARGET_DIRS" in setting_problems(file_target_dirs="keys:/run/mail-api")
    assert "ROTATION_FILE_TARGET_DIRS" in setting_problems(file_target_dirs="/run/../etc")


def test_the_shipped_example_and_the_demo_consumers_files_still_validate(tmp_path):
    from rotation.dev.demo import DEMO_CONSUMERS
    root = Path(__file__).resolve().parents[3]
    load_consumers_file(root / "examples" / "consumers.yaml", settings=settings())
    workdir = tmp_path / "consumers"
    f = tmp_path / "demo.yaml"
    f.write_text(DEMO_CONSUMERS.format(grace=4, workdir=workdir))
    load_consumers_file(f, settings=settings(file_target_dirs=str(workdir)))


# -- Vault settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("mount,prefix", [("secret", "secret/mail-api"), ("secret", "secret"),
                                          ("kv", "kv/mail-api/x")])
def test_a_kv_prefix_that_repeats_the_mount_is_refused(mount, prefix):
    found = setting_problems(vault_kv_mount=mount, vault_kv_prefix=prefix)
    assert any("VAULT_KV_PREFIX" in f or "VAULT_KV_PREFIX" in m for f, m in found.items()), found


# -- webhook signing secrets ----------------------------------------------------------------------

@pytest.mark.parametrize("secret", ["", "s" * 31, "\u00e9" * 15 + "s", None])
def test_the_receiver_refuses_a_signing_secret_shorter_than_32_bytes(secret):
    with pytest.raises(ValueError, match="at least 32 bytes") as err:
        WebhookReceiver(secret, lambda token: {})
    assert not secret or secret not in str(err.value)


def test_the_receiver_accepts_a_32_byte_signing_secret():
    WebhookReceiver("\u00e9" * 16, lambda token: {})     # 16 characters, 32 bytes


class _ShortSecretVault:
    wrapped = False

    def read_webhook_secret(self, consumer):
        return "short-secret-of-24-bytes"

    def wrap(self, data, ttl):
        self.wrapped = True
        raise AssertionError("must not wrap the key for a webhook it cannot sign properly")


def test_the_webhook_target_refuses_to_sign_with_a_short_secret():
    from rotation.config import WebhookTarget
    vault = _ShortSecretVault()
    spec = WebhookTarget(type="webhook", url="https://127.0.0.1:9/hook")
    result = SignedWebhookTarget(spec, vault, allow_loopback=True).push(
        Delivery("crm", 2, "rot-2", "kid2", "v" * 40))
    assert result.ok is False and "at least 32 bytes" in result.detail and not vault.wrapped
    assert "short-secret" not in result.detail


# -- local files holding secrets ------------------------------------------------------------------

def test_secret_files_are_created_owner_only_without_a_later_chmod(tmp_path, monkeypatch):
    def no_chmod(*a, **k):
        raise AssertionError("created open, then chmod-ed")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old = os.umask(0)                                     # the most permissive umask
    try:
        write_private_file(tmp_path / "env", "export VAULT_SECRET_ID=s3cr3t\n")
        from rotation.config import FileTarget
        target = AtomicFileTarget(FileTarget(type="file", path=tmp_path / "keys" / "crm.key"))
        assert target.push(Delivery("crm", 1, "rot-1", "kid1", "v" * 40)).ok
    finally:
        os.umask(old)
    for f in (tmp_path / "env", tmp_path / "keys" / "crm.key"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


@pytest.mark.parametrize("resolved", ["169.254.169.254", "fd00:ec2::254", "0.0.0.0"])
def test_a_webhook_host_that_resolves_to_a_metadata_address_is_not_sent_to(monkeypatch, resolved):
    """The consumers file names a host; DNS (here: a stand-in resolver) points it at the metadata
    service. The push is refused before Vault is even asked for the secret or a wrapping token."""
    import socket

    from rotation.config import WebhookTarget

    family = socket.AF_INET6 if ":" in resolved else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (family, socket.SOCK_STREAM, 6, "", (resolved, port))])
    vault = _ShortSecretVault()
    vault.read_webhook_secret = lambda consumer: pytest.fail("must not read the signing secret")
    spec = WebhookTarget(type="webhook", url="https://hooks.example.com/mail-api-key")
    result = SignedWebhookTarget(spec, vault).push(Delivery("crm", 2, "rot-2", "kid2", "v" * 40))
    assert result.ok is False and "resolves to a" in result.detail


@pytest.mark.parametrize("resolved,kind", [("127.0.0.1", "loopback"), ("::1", "loopback"),
                                           ("10.1.2.3", "private"), ("192.168.0.7", "private"),
                                           ("fd12:3456::1", "private")])
def test_a_webhook_host_name_that_resolves_to_loopback_or_private_needs_the_same_permission_as_a_literal(
        monkeypatch, resolved, kind):
    """A name is no way around ROTATION_WEBHOOK_ALLOW_LOOPBACK / _PRIVATE: refused when it resolves
    there unless allowed, and sent (to the next step) when allowed."""
    import socket

    from rotation.config import WebhookTarget

    family = socket.AF_INET6 if ":" in resolved else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: [
        (family, socket.SOCK_STREAM, 6, "", (resolved, port))])
    spec = WebhookTarget(type="webhook", url="https://hooks.example.com/mail-api-key")
    vault = _ShortSecretVault()
    vault.read_webhook_secret = lambda consumer: pytest.fail("must not read the signing secret")
    refused = SignedWebhookTarget(spec, vault).push(Delivery("crm", 2, "rot-2", "kid2", "v" * 40))
    assert refused.ok is False and f"resolves to a {kind} address" in refused.detail
    allowed = _ShortSecretVault()
    flags = {"allow_loopback": True} if kind == "loopback" else {"allow_private": True}
    result = SignedWebhookTarget(spec, allowed, **flags).push(Delivery("crm", 2, "rot-2", "kid2", "v" * 40))
    assert "resolves to a" not in result.detail      # went on to the signing secret (short here: refused)


def test_an_omitted_duration_is_the_files_default_and_a_given_one_is_kept_even_when_standard(tmp_path):
    """Issue 23: a loaded consumer holds every duration (typed ``timedelta``, never None); an
    omitted one comes from the file's ``defaults``, a given one stays, also when it equals the
    standard default that the file's ``defaults`` overrides."""
    data = copy.deepcopy(GOOD)
    data["defaults"] = {"max_age": "10d", "grace_period": "2h", "retention": "3d", "quiet_period": "5m"}
    data["consumers"].append({"name": "crm", "tier": "standard", "max_age": "30d", "grace_period": "24h"})
    f = tmp_path / "consumers.yaml"
    f.write_text(yaml.safe_dump(data))
    billing, crm = load_consumers_file(f).consumers
    assert (billing.max_age, billing.grace_period, billing.retention, billing.quiet_period) == (
        timedelta(days=10), timedelta(hours=2), timedelta(days=3), timedelta(minutes=5))
    assert (crm.max_age, crm.grace_period, crm.retention, crm.quiet_period) == (
        timedelta(days=30), timedelta(hours=24), timedelta(days=3), timedelta(minutes=5))


@pytest.mark.parametrize("field", ["max_age", "grace_period", "retention", "quiet_period"])
def test_a_null_duration_is_refused_by_name_rather_than_read_as_the_default(tmp_path, field):
    found = problems(tmp_path, variant(f"consumers.0.{field}", None))
    assert list(found) == [f"consumers.0.{field}"]
    assert "must be a duration" in found[f"consumers.0.{field}"]
