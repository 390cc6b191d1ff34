"""``rotation vault setup`` against a fresh OpenBao (the worker's embedded stack, reset first).

Each identity logs in the way production does and is checked against allowed and denied paths:
the rotator via JWT (a locally generated RSA key configured as ``jwt_validation_pubkeys``) and via
Kubernetes auth, an app via AppRole and via Kubernetes auth. Kubernetes auth is exercised against
a fake TokenReview endpoint on loopback (OpenBao calls ``POST
/apis/authentication.k8s.io/v1/tokenreviews`` on ``kubernetes_host`` with the reviewer JWT;
https://openbao.org/docs/auth/kubernetes/), which answers for the service-account tokens this
test signs. The AWS auth method is not in OpenBao, so ``--aws-auth`` is only checked for the calls
it plans (tests/unit/rotation/test_vault_setup_plan.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import hvac
import hvac.exceptions
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from rotation.cli import main
from rotation.config import ConsumersFile
from rotation.vault_setup import VaultSetup, VaultSetupError, apply_setup, summarize

MOUNT, PREFIX = "secret", "mail-api"
AUDIENCE = "vault.mail-api.test"
ROTATOR_SUBJECT = "repo:org/mail-api:ref:refs/heads/main"
REVIEWER_JWT = "reviewer-token-not-a-secret-of-any-cluster"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(key: rsa.RSAPrivateKey, claims: dict) -> str:
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(sig)}"


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pubkey_pem(rsa_key) -> str:
    return rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class _TokenReview(BaseHTTPRequestHandler):
    """A Kubernetes API server that implements only TokenReview: a token is authenticated when it
    is a JWT whose claims name a service account (the signature was checked by whoever minted it:
    this test)."""

    seen_bearer: ClassVar[list[str]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen_bearer.append(self.headers.get("Authorization", ""))
        token, audiences = body["spec"]["token"], body["spec"].get("audiences") or []
        try:
            claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))
            k8s = claims["kubernetes.io"]
            status = {"authenticated": True, "audiences": claims.get("aud", []),
                      "user": {"username": f"system:serviceaccount:{k8s['namespace']}:{k8s['serviceaccount']['name']}",
                               "uid": k8s["serviceaccount"]["uid"], "groups": ["system:serviceaccounts"]}}
            if audiences and not set(audiences) & set(claims.get("aud", [])):
                status = {"authenticated": False, "error": "token audiences do not match"}
        except (KeyError, ValueError, IndexError):
            status = {"authenticated": False, "error": "invalid token"}
        out = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                          "status": status}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def kube_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenReview)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sa_token(key, namespace: str, name: str, aud: str = AUDIENCE) -> str:
    now = int(time.time())
    return sign_jwt(key, {
        "iss": "https://kubernetes.default.svc", "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": [aud], "iat": now, "nbf": now, "exp": now + 600,
        "kubernetes.io": {"namespace": namespace,
                          "serviceaccount": {"name": name, "uid": f"uid-{namespace}-{name}"}}})


@pytest.fixture
def consumers() -> ConsumersFile:
    return ConsumersFile.model_validate({
        "version": 1, "usage_plans": {"standard": "p"},
        "consumers": [{"name": "billing", "tier": "standard"}, {"name": "crm", "tier": "standard"}]})


@pytest.fixture
def setup_dict(tmp_path, rsa_key, pubkey_pem, kube_api) -> dict:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-kube-ca")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(rsa_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(rsa_key, hashes.SHA256()))
    (tmp_path / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "reviewer.jwt").write_text(REVIEWER_JWT)
    return {
        "version": 1, "mount": MOUNT, "prefix": PREFIX, "max_versions": 7,
        "rotator": {
            "jwt": {"bound_audiences": [AUDIENCE], "bound_subject": ROTATOR_SUBJECT,
                    "bound_claims": {"repository": "org/mail-api"}, "jwt_validation_pubkeys": [pubkey_pem],
                    "token_ttl": "15m", "token_max_ttl": "1h"},
            "kubernetes": {"namespace": "mail-api", "service_account": "mail-api-rotator", "audience": AUDIENCE},
        },
        "apps": {
            "approle": {"secret_id_ttl": "1h", "token_ttl": "10m", "token_max_ttl": "1h", "secret_id_num_uses": 5,
                        "token_bound_cidrs": ["127.0.0.0/8"]},
            "kubernetes": {"namespace": "apps", "service_account": "{consumer}", "audience": AUDIENCE},
        },
        "kubernetes": {"kubernetes_host": kube_api, "kubernetes_ca_cert_file": str(tmp_path / "ca.crt"),
                       "token_reviewer_jwt_file": str(tmp_path / "reviewer.jwt"), "disable_local_ca_jwt": True},
    }


@pytest.fixture
def fresh(worker_stack):
    worker_stack.reset()
    return worker_stack


def client_for(stack, token: str) -> hvac.Client:
    return hvac.Client(url=stack.vault_addr, token=token, timeout=10)


def login_jwt(stack, jwt: str) -> hvac.Client:
    c = hvac.Client(url=stack.vault_addr, timeout=10)
    c.auth.jwt.jwt_login(role="mail-api-rotator", jwt=jwt, path="jwt")
    return c


def rotator_jwt(key, **over) -> str:
    now = int(time.time())
    return sign_jwt(key, {"iss": "https://ci.example", "sub": ROTATOR_SUBJECT, "aud": AUDIENCE,
                          "repository": "org/mail-api", "iat": now, "nbf": now, "exp": now + 600, **over})


def assert_rotator_scope(c: hvac.Client) -> None:
    kv = c.secrets.kv.v2
    kv.create_or_update_secret(path=f"{PREFIX}/keys/billing", secret={"current": {"serial": 1}}, cas=0,
                               mount_point=MOUNT)
    assert kv.read_secret_version(path=f"{PREFIX}/keys/billing", mount_point=MOUNT,
                                  raise_on_deleted_version=True)["data"]["data"]["current"]["serial"] == 1
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret(path="other-app/keys/x", secret={"v": "x"}, cas=0, mount_point=MOUNT)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.destroy_secret_versions(path=f"{PREFIX}/keys/billing", versions=[1], mount_point=MOUNT)
    with pytest.raises(hvac.exceptions.Forbidden):
        c.sys.list_policies()


def assert_billing_app_scope(c: hvac.Client, ack_cas: int) -> None:
    kv = c.secrets.kv.v2
    kv.read_secret_version(path=f"{PREFIX}/keys/billing", mount_point=MOUNT, raise_on_deleted_version=True)
    kv.create_or_update_secret(path=f"{PREFIX}/acks/billing", secret={"serial": 1}, cas=ack_cas,
                               mount_point=MOUNT)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_version(path=f"{PREFIX}/keys/crm", mount_point=MOUNT, raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret(path=f"{PREFIX}/keys/billing", secret={"x": 1}, cas=1, mount_point=MOUNT)


def test_setup_on_fresh_openbao_gives_each_identity_exactly_its_paths(fresh, consumers, setup_dict, rsa_key):
    root = fresh.root_client()
    root.sys.disable_secrets_engine(MOUNT)  # truly fresh: the dev server's own secret/ goes too
    changes = apply_setup(root, VaultSetup.model_validate(setup_dict), consumers)
    assert summarize(changes)["update"] == 0 and summarize(changes)["create"] == len(changes)
    config = root.adapter.request("GET", f"/v1/{MOUNT}/config")["data"]
    assert config["cas_required"] is True and config["max_versions"] == 7
    root.secrets.kv.v2.create_or_update_secret(path=f"{PREFIX}/keys/crm", secret={"v": 1}, cas=0, mount_point=MOUNT)

    # the rotator, via JWT: its prefix, nothing else
    assert_rotator_scope(login_jwt(fresh, rotator_jwt(rsa_key)))
    # ... and JWTs with the wrong audience, subject or claim, or signed by another key, are refused
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (rotator_jwt(rsa_key, aud="someone-else"), rotator_jwt(rsa_key, sub="repo:org/fork:ref:main"),
                rotator_jwt(rsa_key, repository="org/fork"), rotator_jwt(other_key)):
        with pytest.raises(hvac.exceptions.VaultError):
            login_jwt(fresh, bad)

    # an app, via AppRole: its own key and ack only
    role_id = root.auth.approle.read_role_id("mail-api-consumer-billing")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("mail-api-consumer-billing")["data"]["secret_id"]
    app = hvac.Client(url=fresh.vault_addr, timeout=10)
    app.auth.approle.login(role_id=role_id, secret_id=secret_id)
    assert_billing_app_scope(app, ack_cas=0)
    assert app.auth.token.lookup_self()["data"]["policies"] == ["default", "mail-api-consumer-billing"]

    # Kubernetes auth: the rotator's and the app's service accounts, each bound to its namespace
    k8s = hvac.Client(url=fresh.vault_addr, timeout=10)
    k8s.auth.kubernetes.login(role="mail-api-rotator", jwt=sa_token(rsa_key, "mail-api", "mail-api-rotator"))
    assert k8s.auth.token.lookup_self()["data"]["policies"] == ["default", "mail-api-rotator"]
    k8s_app = hvac.Client(url=fresh.vault_addr, timeout=10)
    k8s_app.auth.kubernetes.login(role="mail-api-consumer-billing", jwt=sa_token(rsa_key, "apps", "billing"))
    assert_billing_app_scope(k8s_app, ack_cas=1)
    assert _TokenReview.seen_bearer[-1] == f"Bearer {REVIEWER_JWT}"
    for role, token in (("mail-api-consumer-billing", sa_token(rsa_key, "apps", "crm")),      # another app's SA
                        ("mail-api-consumer-billing", sa_token(rsa_key, "default", "billing")),  # another namespace
                        ("mail-api-rotator", sa_token(rsa_key, "apps", "billing"))):
        with pytest.raises(hvac.exceptions.VaultError):
            hvac.Client(url=fresh.vault_addr, timeout=10).auth.kubernetes.login(role=role, jwt=token)


def test_reapplying_the_setup_changes_nothing(fresh, consumers, setup_dict):
    root = fresh.root_client()
    setup = VaultSetup.model_validate(setup_dict)
    apply_setup(root, setup, consumers)
    role_id = root.auth.approle.read_role_id("mail-api-consumer-crm")["data"]["role_id"]
    again = apply_setup(root, setup, consumers)
    assert [c.action for c in again] == ["unchanged"] * len(again)
    assert root.auth.approle.read_role_id("mail-api-consumer-crm")["data"]["role_id"] == role_id
    # a changed definition updates just what changed
    setup_dict["apps"]["approle"]["token_ttl"] = "20m"
    changed = apply_setup(root, VaultSetup.model_validate(setup_dict), consumers)
    assert sorted(c.step.name for c in changed if c.action == "update") == [
        "approle/mail-api-consumer-billing", "approle/mail-api-consumer-crm"]


def test_dry_run_cli_prints_the_calls_and_changes_nothing(fresh, setup_dict, tmp_path, monkeypatch):
    (tmp_path / "consumers.yaml").write_text(
        "version: 1\nusage_plans: {standard: p}\nconsumers:\n"
        "  - {name: billing, tier: standard}\n  - {name: crm, tier: standard}\n")
    (tmp_path / "setup.yaml").write_text(yaml.safe_dump(setup_dict))
    monkeypatch.setenv("VAULT_ADDR", fresh.vault_addr)
    monkeypatch.setenv("VAULT_TOKEN", fresh.root_token)
    root = fresh.root_client()
    before = (set(root.sys.list_auth_methods()["data"]), root.sys.list_policies()["data"]["policies"])
    args = ["--consumers", str(tmp_path / "consumers.yaml"), "vault", "setup", "--setup", str(tmp_path / "setup.yaml")]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would create    role     jwt/mail-api-rotator: POST auth/jwt/role/mail-api-rotator" in dry.output
    assert "would create    config   kubernetes/config" in dry.output and "<redacted>" in dry.output
    assert REVIEWER_JWT not in dry.output and "BEGIN PUBLIC KEY" not in dry.output
    assert (set(root.sys.list_auth_methods()["data"]), root.sys.list_policies()["data"]["policies"]) == before
    real = CliRunner().invoke(main, args)
    assert real.exit_code == 0, real.output
    assert "jwt/" in root.sys.list_auth_methods()["data"]
    again = CliRunner().invoke(main, [*args, "--dry-run"])
    assert again.exit_code == 0 and "0 create, 0 update" in again.output


def test_an_audit_device_openbao_refuses_over_the_api_is_reported_with_its_config_stanza_before_any_change(
        fresh, consumers, setup_dict, tmp_path):
    root = fresh.root_client()
    setup_dict["audit"] = {"path": "mail-api", "file_path": str(tmp_path / "audit.log")}
    with pytest.raises(VaultSetupError, match=r'audit "file" "mail-api"') as err:
        apply_setup(root, VaultSetup.model_validate(setup_dict), consumers)
    assert "file_path" in str(err.value)
    assert "jwt/" not in root.sys.list_auth_methods()["data"]  # the audit device goes first: nothing changed
    # the device the dev server declares in its configuration is recognized as present
    setup_dict["audit"] = {"path": "main", "file_path": str(fresh.audit_log)}
    changes = apply_setup(root, VaultSetup.model_validate(setup_dict), consumers)
    assert changes[0].step.kind == "audit" and changes[0].action == "unchanged"


def test_a_kv_v1_mount_in_the_way_is_an_error_naming_it_and_nothing_is_written(fresh, consumers, setup_dict):
    root = fresh.root_client()
    root.sys.disable_secrets_engine(MOUNT)
    root.sys.enable_secrets_engine("kv", path=MOUNT, options={"version": "1"})
    with pytest.raises(VaultSetupError, match="not a KV version 2 mount"):
        apply_setup(root, VaultSetup.model_validate(setup_dict), consumers)
    assert root.sys.list_policies()["data"]["policies"] == ["default", "root"]
