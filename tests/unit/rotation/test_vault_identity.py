"""How the rotator proves who it is (issue 11 items 2 and 3), the parts that need no server.

* The AWS IAM login body (HashiCorp Vault only, so no OpenBao test can log in with it): the
  base64 fields decode to an ``sts:GetCallerIdentity`` POST whose SigV4 ``Authorization`` header
  signs ``X-Vault-AWS-IAM-Server-ID`` when configured, and whose signature recomputes
  (https://developer.hashicorp.com/vault/api-docs/auth/aws#login).
* Bad settings fail at start, naming the setting and the fix, and the CLI exits 2.
* ``BAO_*`` variables are twins of ``VAULT_*``; ``VAULT_*`` wins.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from click.testing import CliRunner

from rotation.backends.vault_auth import GET_CALLER_IDENTITY_BODY, AppRoleSecretSource, aws_iam_login_payload
from rotation.cli import main
from rotation.errors import ConfigError, VaultError
from rotation.settings import load_settings

CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example")


def decoded(payload: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    url = base64.b64decode(payload["iam_request_url"]).decode()
    body = base64.b64decode(payload["iam_request_body"]).decode()
    headers = json.loads(base64.b64decode(payload["iam_request_headers"]))
    assert all(isinstance(v, list) and len(v) == 1 for v in headers.values())
    return url, body, {k: v[0] for k, v in headers.items()}


def test_aws_login_body_is_a_sigv4_signed_get_caller_identity_with_the_server_id_signed():
    payload = aws_iam_login_payload(CREDS, "mail-api-rotator", server_id="vault.example.com")
    assert payload["role"] == "mail-api-rotator" and payload["iam_http_request_method"] == "POST"
    url, body, headers = decoded(payload)
    assert url == "https://sts.amazonaws.com/" and body == GET_CALLER_IDENTITY_BODY
    auth = headers["Authorization"]
    assert re.match(r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-east-1/sts/aws4_request, ", auth)
    signed = re.search(r"SignedHeaders=([^,]+)", auth).group(1).split(";")
    assert "x-vault-aws-iam-server-id" in signed and "x-amz-date" in signed
    assert headers["X-Vault-AWS-IAM-Server-ID"] == "vault.example.com"
    assert headers["X-Amz-Security-Token"] == "session-token-example"
    assert CREDS.secret_key not in json.dumps(payload)

    # the signature is the one STS recomputes from the same request (botocore's SigV4 steps)
    check = AWSRequest(method="POST", url=url, data=body,
                       headers={k: v for k, v in headers.items() if k != "Authorization"})
    check.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(CREDS, "sts", "us-east-1")
    expected = signer.signature(signer.string_to_sign(check, signer.canonical_request(check)), check)
    assert auth.endswith(f"Signature={expected}")


def test_aws_login_body_without_server_id_and_for_a_regional_sts_endpoint():
    url, _, headers = decoded(aws_iam_login_payload(CREDS, "r", sts_region="eu-west-1"))
    assert url == "https://sts.eu-west-1.amazonaws.com/"
    assert "/eu-west-1/sts/aws4_request" in headers["Authorization"]
    assert "X-Vault-AWS-IAM-Server-ID" not in headers


def test_aws_login_without_credentials_is_a_vault_error_naming_where_they_come_from():
    with pytest.raises(VaultError, match="no AWS credentials"):
        aws_iam_login_payload(None, "r")


def test_wrapped_secret_id_is_unwrapped_once_per_file_content_and_hidden_from_repr(tmp_path):
    f = tmp_path / "secret-id"
    f.write_text("wrapping-token-1\n")
    calls = []

    def unwrap(token):
        calls.append(token)
        return {"data": {"secret_id": f"secret-for-{token}"}}

    source = AppRoleSecretSource(file=f, wrapped=True)
    assert source.secret_id(unwrap) == "secret-for-wrapping-token-1"
    assert source.secret_id(unwrap) == "secret-for-wrapping-token-1"
    f.write_text("wrapping-token-2")
    assert source.secret_id(unwrap) == "secret-for-wrapping-token-2"
    assert calls == ["wrapping-token-1", "wrapping-token-2"]
    assert "secret-for" not in repr(source)
    f.write_text("")
    with pytest.raises(VaultError, match="VAULT_SECRET_ID_FILE.*empty"):
        source.secret_id(unwrap)


@pytest.mark.parametrize(("env", "setting", "fix"), [
    ({"VAULT_AUTH_METHOD": "ldap", "VAULT_TOKEN": "t"}, "VAULT_AUTH_METHOD", "must be one of aws, jwt"),
    ({"VAULT_TOKEN": "t", "VAULT_CACERT": "/nonexistent/ca.pem"}, "VAULT_CACERT", "point it at a PEM file"),
    ({"VAULT_TOKEN": "t", "VAULT_CAPATH": "/nonexistent/cas"}, "VAULT_CAPATH", "openssl rehash"),
    ({"VAULT_TOKEN": "t", "VAULT_CLIENT_CERT": "__FILE__"}, "VAULT_CLIENT_KEY", "set both or neither"),
    ({"VAULT_AUTH_METHOD": "aws"}, "VAULT_AWS_ROLE", "bound to this runner's IAM role ARN"),
    ({"VAULT_AUTH_METHOD": "jwt", "VAULT_JWT_ROLE": "r"}, "VAULT_JWT_PATH", "exactly one JWT source"),
    ({"VAULT_AUTH_METHOD": "jwt", "VAULT_JWT_ROLE": "r", "VAULT_JWT_PATH": "/nonexistent/jwt"},
     "VAULT_JWT_PATH", "names no readable file"),
    ({"VAULT_AUTH_METHOD": "approle", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID_FILE": "/nonexistent/s"},
     "VAULT_SECRET_ID_FILE", "names no readable file"),
    ({"VAULT_AUTH_METHOD": "approle", "VAULT_ROLE_ID": "r"}, "VAULT_SECRET_ID_FILE", "are required"),
    ({"VAULT_TOKEN": "t", "VAULT_SECRET_ID_WRAPPED": "true"}, "VAULT_SECRET_ID_FILE", "response-wrapping token"),
    ({"VAULT_AUTH_METHOD": "token"}, "VAULT_TOKEN_FILE", "Vault Agent"),
    ({"VAULT_TOKEN": "t", "VAULT_AWS_STS_REGION": "europe"}, "VAULT_AWS_STS_REGION", "eu-west-1"),
])
def test_bad_identity_settings_fail_at_start_naming_the_setting_and_the_fix(monkeypatch, tmp_path, env, setting, fix):
    pem = tmp_path / "client.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in env.items():
        monkeypatch.setenv(name, str(pem) if value == "__FILE__" else value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert setting in str(err.value) and fix in str(err.value)

    consumers = tmp_path / "consumers.yaml"
    consumers.write_text("version: 1\nusage_plans: {standard: p}\nconsumers: [{name: billing, tier: standard}]\n")
    result = CliRunner().invoke(main, ["--consumers", str(consumers), "status"])
    assert result.exit_code == 2 and setting in result.output


def test_bao_variables_are_twins_and_vault_variables_win(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("BAO_ADDR", "https://bao.example.com:8200")
    monkeypatch.setenv("BAO_TOKEN", "bao-token")
    monkeypatch.setenv("BAO_NAMESPACE", "team")
    monkeypatch.setenv("BAO_CACERT", str(ca))
    s = load_settings()
    assert (s.vault_addr, s.vault_token.get_secret_value(), s.vault_namespace, s.vault_verify) == (
        "https://bao.example.com:8200", "bao-token", "team", str(ca))
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example.com:8200")
    monkeypatch.setenv("VAULT_TOKEN", "vault-token")
    s = load_settings()
    assert (s.vault_addr, s.vault_token.get_secret_value()) == ("https://vault.example.com:8200", "vault-token")


def test_tls_settings_reach_the_http_client(monkeypatch, tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
    cas = tmp_path / "cas"
    cas.mkdir()
    s = load_settings(vault_token="t", vault_capath=str(cas), vault_client_cert=str(tmp_path / "client.pem"),
                      vault_client_key=str(tmp_path / "client.key"))
    assert s.vault_verify == str(cas) and s.vault_cert == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    assert load_settings(vault_token="t", vault_capath=str(cas),
                         vault_cacert=str(tmp_path / "ca.pem")).vault_verify == str(tmp_path / "ca.pem")
