"""The rotator logs in to a real OpenBao without a stored Vault credential (issue 11 item 2).

Every method OpenBao has is exercised through :class:`rotation.backends.vault.VaultStore`, the way
a run does it: JWT (a locally generated RSA key as ``jwt_validation_pubkeys``; the token file is
re-read at every login), Kubernetes (the fake TokenReview server of test_vault_setup_live),
AppRole with the secret id in a file, plain or response-wrapped, re-read before each login, and a
Vault Agent token file. The setup is ``rotation.vault_setup`` (what ``rotation vault setup``
applies). AWS IAM auth is not in OpenBao: its signed request is checked in
tests/unit/rotation/test_vault_identity.py, and replayed here against moto's STS.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time

import boto3
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from rotation.backends.vault import VaultStore
from rotation.backends.vault_auth import aws_iam_login_payload
from rotation.config import ConsumersFile
from rotation.dev.stack import _bin, free_port
from rotation.errors import VaultError
from rotation.settings import load_settings
from rotation.vault_setup import ROTATOR_ROLE, VaultSetup, apply_setup
from tests.integration.vault_setup.test_vault_setup_live import rotator_jwt, sa_token

MOUNT, PREFIX = "secret", "mail-api"


@pytest.fixture
def consumers() -> ConsumersFile:
    return ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                         "consumers": [{"name": "billing", "tier": "standard"}]})


@pytest.fixture
def vault(worker_stack, consumers, setup_dict):
    """A fresh OpenBao set up (as test_vault_setup_live does) plus an AppRole for the rotator."""
    worker_stack.reset()
    setup_dict["rotator"]["approle"] = {"secret_id_ttl": "1h", "token_ttl": "10m"}
    apply_setup(worker_stack.root_client(), VaultSetup.model_validate(setup_dict), consumers)
    return worker_stack


def settings_for(stack, **env):
    base = {"vault_addr": stack.vault_addr, "vault_kv_mount": MOUNT, "vault_kv_prefix": PREFIX}
    return load_settings(**base, **env)


def policies(store: VaultStore) -> list[str]:
    return store.client.auth.token.lookup_self()["data"]["policies"]


def revoke_current_token(stack, store: VaultStore) -> None:
    accessor = store.client.auth.token.lookup_self()["data"]["accessor"]
    stack.root_client().auth.token.revoke_accessor(accessor)


def test_jwt_login_reads_the_token_file_at_every_login(vault, rsa_key, tmp_path):
    jwt_file = tmp_path / "token.jwt"
    jwt_file.write_text(rotator_jwt(rsa_key) + "\n")
    store = VaultStore(settings_for(vault, vault_auth_method="jwt", vault_jwt_role=ROTATOR_ROLE,
                                    vault_jwt_path=str(jwt_file)))
    assert policies(store) == ["default", "mail-api-rotator"]
    assert store.check_mount() == []

    # a token signed by another key is refused: the file is what is presented, not a cached copy
    jwt_file.write_text(rotator_jwt(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(VaultError, match="login jwt"):
        store.login()
    # the platform writes a fresh token: the next 403 logs in with it
    jwt_file.write_text(rotator_jwt(rsa_key))
    revoke_current_token(vault, store)
    assert store.check_mount() == []
    store.close()
    assert store.client.token is None


def test_kubernetes_login_as_the_rotator_service_account(vault, rsa_key, tmp_path):
    sa = tmp_path / "sa-token"
    sa.write_text(sa_token(rsa_key, "mail-api", "mail-api-rotator"))
    store = VaultStore(settings_for(vault, vault_auth_method="kubernetes", vault_kubernetes_role=ROTATOR_ROLE,
                                    vault_kubernetes_jwt_path=str(sa)))
    assert policies(store) == ["default", "mail-api-rotator"]
    sa.write_text(sa_token(rsa_key, "apps", "billing"))     # another service account: refused
    with pytest.raises(VaultError):
        store.login()


def test_wrapped_secret_id_is_unwrapped_once_and_a_new_file_is_picked_up_at_the_next_login(vault, tmp_path):
    root = vault.root_client()
    role_id = root.auth.approle.read_role_id(ROTATOR_ROLE)["data"]["role_id"]

    def wrapped_secret_id() -> str:
        answer = root.adapter.post(f"/v1/auth/approle/role/{ROTATOR_ROLE}/secret-id",
                                   headers={"X-Vault-Wrap-TTL": "120s"})
        return answer["wrap_info"]["token"]

    secret_file = tmp_path / "secret-id"
    secret_file.write_text(wrapped_secret_id())
    store = VaultStore(settings_for(vault, vault_auth_method="approle", vault_role_id=role_id,
                                    vault_secret_id_file=str(secret_file), vault_secret_id_wrapped=True))
    assert policies(store) == ["default", "mail-api-rotator"]

    # token gone, file unchanged: the wrapping token is spent, the unwrapped secret id is reused
    revoke_current_token(vault, store)
    assert store.check_mount() == []

    # the secret id is revoked and a new wrapped one delivered: the next login uses the new file
    for accessor in root.auth.approle.list_secret_id_accessors(ROTATOR_ROLE)["data"]["keys"]:
        root.auth.approle.destroy_secret_id_accessor(ROTATOR_ROLE, accessor)
    secret_file.write_text(wrapped_secret_id())
    revoke_current_token(vault, store)
    assert store.check_mount() == []

    # a spent wrapping token in a fresh process cannot be unwrapped again: a clear login error
    with pytest.raises(VaultError, match="login approle"):
        VaultStore(settings_for(vault, vault_auth_method="approle", vault_role_id=role_id,
                                vault_secret_id_file=str(secret_file), vault_secret_id_wrapped=True))


def test_plain_secret_id_file_is_re_read_before_each_login(vault, tmp_path):
    root = vault.root_client()
    role_id = root.auth.approle.read_role_id(ROTATOR_ROLE)["data"]["role_id"]
    secret_file = tmp_path / "secret-id"
    first = root.auth.approle.generate_secret_id(ROTATOR_ROLE)["data"]
    secret_file.write_text(first["secret_id"])
    store = VaultStore(settings_for(vault, vault_auth_method="approle", vault_role_id=role_id,
                                    vault_secret_id_file=str(secret_file)))
    root.auth.approle.destroy_secret_id_accessor(ROTATOR_ROLE, first["secret_id_accessor"])
    secret_file.write_text(root.auth.approle.generate_secret_id(ROTATOR_ROLE)["data"]["secret_id"])
    revoke_current_token(vault, store)
    assert store.check_mount() == []
    assert first["secret_id"] not in repr(store.settings) + repr(store._secret_ids)


def test_vault_agent_token_file_is_re_read_after_a_403_and_never_revoked(vault, tmp_path):
    root = vault.root_client()

    def token() -> str:
        return root.auth.token.create(policies=["mail-api-rotator"], ttl="10m")["auth"]["client_token"]

    sink = tmp_path / "agent-token"
    sink.write_text(token())
    store = VaultStore(settings_for(vault, vault_auth_method="token", vault_token_file=str(sink)))
    assert policies(store) == ["default", "mail-api-rotator"]
    revoke_current_token(vault, store)
    sink.write_text(token())            # the agent re-authenticated and wrote its new token
    assert store.check_mount() == []
    agent_token = sink.read_text()
    store.close()                       # the agent owns the token: it stays valid
    assert root.auth.token.lookup(agent_token)["data"]["policies"] == ["default", "mail-api-rotator"]


def test_aws_iam_login_request_is_a_get_caller_identity_sts_answers(worker_stack):
    """What Vault does with the login body: replay the decoded request to STS (here moto's)."""
    creds = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="testing",
                          aws_session_token="session-token").get_credentials()
    payload = aws_iam_login_payload(creds, "mail-api-rotator", server_id="vault.example.com")
    headers = {k: v[0] for k, v in json.loads(base64.b64decode(payload["iam_request_headers"])).items()}
    answer = requests.post(worker_stack.aws_endpoint, data=base64.b64decode(payload["iam_request_body"]),
                           headers={k: v for k, v in headers.items() if k.lower() != "host"}, timeout=10)
    assert answer.status_code == 200 and "GetCallerIdentityResult" in answer.text


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory):
    """OpenBao in ``-dev-tls`` mode: it writes its own CA, certificate and key to a directory."""
    certs = tmp_path_factory.mktemp("dev-tls")
    port = free_port()
    try:
        proc = subprocess.Popen([_bin("bao"), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={certs}",
                                 f"-dev-listen-address=127.0.0.1:{port}", "-dev-root-token-id=tls-root"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"bao cannot start in -dev-tls mode here: {exc}")
    addr = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip("bao server -dev-tls exited at start (this OpenBao build lacks -dev-tls?)")
            try:
                if requests.get(f"{addr}/v1/sys/health", verify=str(certs / "vault-ca.pem"), timeout=2).ok:
                    break
            except OSError:     # the CA file is not written yet, or the port not open (requests' errors too)
                pass
            if time.monotonic() > deadline:
                pytest.fail("bao -dev-tls did not answer within 60 s")
            time.sleep(0.2)
        yield addr, certs
    finally:
        proc.terminate()
        proc.wait(30)


def test_vault_cacert_verifies_a_private_ca_and_a_wrong_ca_fails(tls_vault, tmp_path, monkeypatch):
    addr, certs = tls_vault
    monkeypatch.setenv("BAO_ADDR", addr)              # OpenBao's names are honoured too
    monkeypatch.setenv("BAO_CACERT", str(certs / "vault-ca.pem"))
    monkeypatch.setenv("BAO_TOKEN", "tls-root")
    store = VaultStore(load_settings())
    assert store.client.auth.token.lookup_self()["data"]["policies"] == ["root"]

    other_ca = tmp_path / "other-ca.pem"
    with open(requests.certs.where(), "rb") as public_cas:
        other_ca.write_bytes(public_cas.read())

    monkeypatch.setenv("VAULT_CACERT", str(other_ca))   # VAULT_* wins over BAO_*
    with pytest.raises(VaultError, match="cannot reach Vault"):
        VaultStore(load_settings())


def test_vault_capath_accepts_a_rehashed_ca_directory(tls_vault, tmp_path, monkeypatch):
    addr, certs = tls_vault
    ca_dir = tmp_path / "cas"
    ca_dir.mkdir()
    (ca_dir / "vault-ca.pem").write_bytes((certs / "vault-ca.pem").read_bytes())
    try:
        subprocess.run(["openssl", "rehash", str(ca_dir)], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl rehash is not available: {exc}")
    store = VaultStore(load_settings(vault_addr=addr, vault_capath=str(ca_dir), vault_token="tls-root"))
    assert store.client.auth.token.lookup_self()["data"]["policies"] == ["root"]
