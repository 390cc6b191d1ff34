"""rotation.client.keys.KeyClient against a real OpenBao dev server (no hvac mocks).

Vault request counts come from OpenBao's file audit log, not only from the client's own counters.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from rotation.client.keys import (
    ApiKey,
    AppRoleAuth,
    KeyClient,
    KeyClientConfigError,
    KeyClientError,
    KeyUnavailable,
    TokenAuth,
    VaultAuthError,
    VaultUnavailable,
)

from .conftest import MOUNT, PREFIX, make_consumer, record


def test_cached_current_key_reads_vault_once(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client()
    keys = {client.current_key() for _ in range(500)}
    assert len(keys) == 1
    (key,) = keys
    assert (key.serial, key.key_id) == (1, "kid1")
    assert key.value.startswith("mailapi-key-1-")
    assert consumer.audit_count("data-keys") == 1
    assert consumer.audit_count("metadata-keys") == 1
    assert client.stats["data_reads"] == 1


def test_refresh_after_interval_only_when_version_changed(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=0.3)
    assert client.current_key().serial == 1
    time.sleep(0.35)
    assert client.current_key().serial == 1          # interval passed: served, revalidated in the background
    assert client.wait_for_refresh(10)
    assert consumer.audit_count("data-keys") == 1    # version unchanged: metadata only
    assert consumer.audit_count("metadata-keys") == 2
    consumer.write_keys(current=record(2), previous=record(1))
    assert client.current_key().serial == 1          # still cached: the interval has not passed
    time.sleep(0.35)
    assert client.current_key().serial == 1          # stale-while-revalidate: the caller never waits
    assert client.wait_for_refresh(10)
    assert client.current_key().serial == 2
    assert consumer.audit_count("data-keys") == 2


def test_report_forbidden_forces_refresh_and_is_rate_limited(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=3600, min_forced_interval=1.0)
    old = client.current_key()
    consumer.write_keys(current=record(2), previous=record(1))
    assert client.current_key().serial == 1          # long interval: no re-read on its own
    client.report_forbidden(old)
    assert client.current_key().serial == 2
    reads = consumer.audit_count("data-keys")
    assert reads == 2
    # a 403 storm right after: at most one more forced read per min_forced_interval
    consumer.write_keys(current=record(3), previous=record(2))
    for _ in range(200):
        client.report_forbidden()
        client.current_key()
    assert consumer.audit_count("data-keys") == reads
    time.sleep(1.05)
    client.report_forbidden()
    assert client.current_key().serial == 3
    assert consumer.audit_count("data-keys") == reads + 1
    # a stale report (for a key that is no longer in use) does not force anything
    client.report_forbidden(old)
    client.current_key()
    assert consumer.audit_count("data-keys") == reads + 1


@pytest.mark.parametrize("current, why", [
    (record(1, disabled=True), "disabled"),
    (record(1, value=""), "empty value"),
    (record(1, value="   "), "empty value"),
    (record(1, key_id=None), "no API Gateway key id"),
    (None, "no current key"),
])
def test_fails_closed_on_unusable_record(consumer, current, why):
    consumer.write_keys(current=current, pending=record(2))
    with pytest.raises(KeyUnavailable, match=why):
        consumer.client().current_key()


def test_missing_path_raises_key_unavailable(consumer):
    with pytest.raises(KeyUnavailable, match="not found"):
        consumer.client().current_key()


def test_drops_cached_key_when_vault_disables_it(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=0.2)
    assert client.current_key().serial == 1
    consumer.write_keys(current=record(1, disabled=True))
    time.sleep(0.25)
    client.current_key()                  # starts the background check that finds it disabled
    assert client.wait_for_refresh(10)
    with pytest.raises(KeyUnavailable, match="disabled"):
        client.current_key()
    with pytest.raises(KeyUnavailable):   # and not the old cached key on the next call either
        client.current_key()


def test_ack_written_with_cas_only_when_serial_changes(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=0.1, host="app-host-1")
    client.current_key()
    assert client.wait_for_refresh(10)         # the ack is written by the refresh, after the key is served
    ack, v1 = consumer.ack()
    assert ack["serial"] == 1 and ack["key_id"] == "kid1" and ack["host"] == "app-host-1"
    assert ack["at"].endswith("+00:00")
    for _ in range(3):                         # refreshes without a serial change: no new ack
        time.sleep(0.12)
        client.current_key()
        assert client.wait_for_refresh(10)
    assert consumer.ack()[1] == v1
    consumer.write_keys(current=record(2), previous=record(1))
    time.sleep(0.12)
    client.current_key()
    assert client.wait_for_refresh(10)
    assert client.current_key().serial == 2
    ack, v2 = consumer.ack()
    assert (ack["serial"], v2) == (2, v1 + 1)


def test_ack_cas_with_an_existing_ack_from_another_instance(consumer):
    consumer.root.secrets.kv.v2.create_or_update_secret(
        path=f"{PREFIX}/acks/{consumer.name}", secret={"serial": 0}, cas=0, mount_point=MOUNT)
    consumer.root.secrets.kv.v2.create_or_update_secret(
        path=f"{PREFIX}/acks/{consumer.name}", secret={"serial": 0}, cas=1, mount_point=MOUNT)
    consumer.write_keys(current=record(4))
    client = consumer.client()
    client.current_key()
    assert client.wait_for_refresh(10)        # the ack is written by the refresh, after the key is served
    ack, version = consumer.ack()
    assert (ack["serial"], version) == (4, 3)


def test_token_renewed_before_expiry(stack):
    c = make_consumer(stack, token_ttl="3s", token_max_ttl="1m")
    c.write_keys(current=record(1))
    client = c.client(refresh_interval=0.25)
    end = time.monotonic() + 4.5                # well past the 3 s TTL
    while time.monotonic() < end:
        assert client.current_key().serial == 1
        time.sleep(0.25)
    assert client.stats["renewals"] >= 1          # renewed at < 1/3 TTL left ...
    assert c.audit_count_path("auth/token/renew-self") >= 1
    assert client.stats["logins"] == 1             # ... so it never had to log in again past the TTL


def test_logs_in_again_when_token_cannot_be_renewed(stack):
    c = make_consumer(stack, token_ttl="2s", token_max_ttl="2s")
    c.write_keys(current=record(1))
    client = c.client(refresh_interval=0.3)
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        assert client.current_key().serial == 1
        time.sleep(0.3)
    assert client.stats["logins"] >= 2


def test_403_logs_in_again_once_then_fails(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=3600, min_forced_interval=0)
    client.current_key()
    root = consumer.root
    root.auth.token.revoke(client._client.token)          # token gone: Vault now answers 403
    assert client.refresh().serial == 1                   # one fresh login, then success
    assert client.stats["logins"] == 2
    # now the secret id is destroyed as well: re-login fails -> VaultAuthError, no loop
    root.auth.token.revoke(client._client.token)
    pname = f"mail-api-consumer-{consumer.name}"
    for acc in root.auth.approle.list_secret_id_accessors(pname)["data"]["keys"]:
        root.auth.approle.destroy_secret_id_accessor(pname, acc)
    with pytest.raises(VaultAuthError):
        client.refresh()
    assert client.stats["logins"] == 2


def test_token_auth_cannot_relogin(consumer):
    consumer.write_keys(current=record(1))
    with pytest.raises(VaultAuthError, match="login refused"):
        KeyClient(consumer.stack.vault_addr, consumer.name, auth=TokenAuth("s.not-a-token")).current_key()
    token = consumer.root.auth.token.create(policies=[f"mail-api-consumer-{consumer.name}"], ttl="1h")
    client = KeyClient(consumer.stack.vault_addr, consumer.name, auth=TokenAuth(token["auth"]["client_token"]),
                       min_forced_interval=0)
    assert client.current_key().serial == 1
    consumer.root.auth.token.revoke(token["auth"]["client_token"])
    with pytest.raises(VaultAuthError, match="cannot log in again"):
        client.refresh()


def test_wrong_approle_secret_is_auth_error(consumer):
    client = KeyClient(consumer.stack.vault_addr, consumer.name, auth=AppRoleAuth(consumer.role_id, "wrong"))
    with pytest.raises(VaultAuthError):
        client.current_key()


def test_vault_unreachable(consumer):
    from rotation.dev.stack import free_port
    client = KeyClient(f"http://127.0.0.1:{free_port()}", consumer.name, auth=AppRoleAuth("r", "s"), timeout=1)
    with pytest.raises(VaultUnavailable):
        client.current_key()


def test_cached_key_served_while_vault_briefly_unreachable(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=0.1, max_stale=30)
    assert client.current_key().serial == 1
    client._client.url = "http://127.0.0.1:9"      # Vault now unreachable (discard port)
    time.sleep(0.12)
    assert client.current_key().serial == 1          # periodic refresh failed: cached key kept
    client.report_forbidden()
    with pytest.raises(VaultUnavailable):            # but a 403 with Vault down fails closed
        client.current_key()


def test_many_threads_one_read(consumer):
    consumer.write_keys(current=record(7))
    client = consumer.client()
    barrier = threading.Barrier(32)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            for _ in range(100):
                results.append(client.current_key().serial)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [7] * 3200
    assert consumer.audit_count("data-keys") == 1
    assert consumer.audit_count("metadata-keys") == 1


def test_push_installs_key_and_survives_refresh_until_promotion(consumer):
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=0.1)
    assert client.current_key().serial == 1
    consumer.write_keys(current=record(1), pending=record(2))
    client.notify_push(ApiKey(record(2)["value"], 2, "kid2"))
    assert client.current_key().serial == 2
    assert consumer.ack()[0]["serial"] == 2
    time.sleep(0.15)                                 # Vault still says current=1, pending=2
    assert client.current_key().serial == 2
    consumer.write_keys(current=record(2), pending=None)          # promoted
    stale = ApiKey(record(1)["value"], 1, "kid1")
    assert client.notify_push(stale) is False                   # older and not Vault's current: ignored
    assert client.current_key().serial == 2


def test_lower_serial_push_is_refused_until_vault_drops_the_key_in_use(consumer):
    """Never a lower serial on a push's word: while Vault still lists the pushed key as pending,
    the rollback's restore of serial 1 is refused; once Vault, at a newer version, no longer lists
    serial 2 (the rollback finished), a refresh goes back to Vault's current key."""
    consumer.write_keys(current=record(1))
    client = consumer.client(refresh_interval=60, min_forced_interval=0)
    client.current_key()
    consumer.write_keys(current=record(1), pending=record(2))
    assert client.notify_push(ApiKey(record(2)["value"], 2, "kid2")) is True
    assert client.current_key().serial == 2
    assert client.notify_push(ApiKey(record(1)["value"], 1, "kid1")) is False   # Vault still lists 2
    assert client.current_key().serial == 2
    assert client.stats["lower_serial_refused"] == 1
    consumer.write_keys(current=record(1), pending=None)                          # rollback finished
    assert client.refresh().serial == 1
    assert client.wait_for_refresh(10)
    assert consumer.ack()[0]["serial"] == 1


def test_from_env(consumer, monkeypatch):
    consumer.write_keys(current=record(1))
    monkeypatch.setenv("VAULT_ADDR", consumer.stack.vault_addr)
    monkeypatch.setenv("VAULT_AUTH_METHOD", "approle")
    monkeypatch.setenv("VAULT_ROLE_ID", consumer.role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", consumer.secret_id)
    monkeypatch.setenv("VAULT_KV_MOUNT", MOUNT)
    monkeypatch.setenv("VAULT_KV_PREFIX", PREFIX)
    monkeypatch.setenv("MAIL_API_CONSUMER", consumer.name)
    client = KeyClient.from_env()
    assert isinstance(client.auth, AppRoleAuth) and client.current_key().serial == 1
    monkeypatch.delenv("VAULT_SECRET_ID")
    with pytest.raises(KeyClientConfigError, match="VAULT_SECRET_ID"):
        KeyClient.from_env()
    monkeypatch.setenv("VAULT_AUTH_METHOD", "kubernetes")
    monkeypatch.setenv("VAULT_KUBERNETES_ROLE", "billing")
    monkeypatch.setenv("VAULT_KUBERNETES_JWT_PATH", "/nonexistent/jwt")
    k8s = KeyClient.from_env()
    with pytest.raises(VaultAuthError, match="/nonexistent/jwt"):
        k8s.current_key()


def test_canary_value_never_logged_or_in_errors(consumer, caplog, capsys):
    canary = "CANARY-" + "k3y" * 10
    caplog.set_level(logging.DEBUG)
    consumer.write_keys(current=record(1, value=canary))
    client = consumer.client(refresh_interval=0.1)
    key = client.current_key()
    assert key.value == canary
    texts = [repr(key), str(key), repr(client), key.fingerprint]
    client.notify_push(ApiKey(canary + "-2", 2, "kid2"))
    consumer.write_keys(current=record(3, value=canary + "-3", disabled=True))
    time.sleep(0.12)
    client.current_key()
    assert client.wait_for_refresh(10)
    with pytest.raises(KeyClientError) as err:
        client.current_key()
    texts += [str(err.value), repr(err.value)]
    out = capsys.readouterr()
    blob = "\n".join(texts + [caplog.text, out.out, out.err])
    assert "serial" in caplog.text                 # something was logged at all
    assert canary not in blob


# --- no stored credential in the app's environment (issue 11 items 2 and 3) -------------------------

def _revoke_client_token(consumer, client) -> None:
    accessor = client._client.auth.token.lookup_self()["data"]["accessor"]
    consumer.root.auth.token.revoke_accessor(accessor)


def test_from_env_wrapped_secret_id_file_is_re_read_when_the_long_lived_client_logs_in_again(
        consumer, monkeypatch, tmp_path):
    """A long-lived KeyClient keeps working after its secret id is rotated: the file is re-read at
    the next login; a wrapping token already spent is not unwrapped twice (the secret id is cached
    until the file changes). OpenBao's BAO_ADDR stands in for VAULT_ADDR."""
    from rotation.vault_policies import consumer_policy_name

    role = consumer_policy_name(consumer.name)
    approle = consumer.root.auth.approle

    def wrapped_secret_id() -> str:
        return consumer.root.adapter.post(f"/v1/auth/approle/role/{role}/secret-id",
                                          headers={"X-Vault-Wrap-TTL": "120s"})["wrap_info"]["token"]

    consumer.write_keys(current=record(1))
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(wrapped_secret_id())
    for name, value in {"BAO_ADDR": consumer.stack.vault_addr, "VAULT_AUTH_METHOD": "approle",
                        "VAULT_ROLE_ID": consumer.role_id, "VAULT_SECRET_ID_FILE": str(secret_file),
                        "VAULT_SECRET_ID_WRAPPED": "true", "VAULT_KV_MOUNT": MOUNT, "VAULT_KV_PREFIX": PREFIX,
                        "MAIL_API_CONSUMER": consumer.name}.items():
        monkeypatch.setenv(name, value)
    client = KeyClient.from_env()
    assert client.current_key().serial == 1
    _revoke_client_token(consumer, client)              # same (spent) wrapping token in the file
    assert client.refresh().serial == 1
    for accessor in approle.list_secret_id_accessors(role)["data"]["keys"]:
        approle.destroy_secret_id_accessor(role, accessor)
    secret_file.write_text(wrapped_secret_id())        # a new secret id is delivered
    _revoke_client_token(consumer, client)
    consumer.write_keys(current=record(2), previous=record(1))
    assert client.refresh().serial == 2
    assert client.stats["logins"] == 3
    assert "secret_id_file" in repr(client.auth) and secret_file.read_text() not in repr(client.auth)


def test_from_env_vault_agent_token_file_is_re_read_after_a_403(consumer, monkeypatch, tmp_path):
    from rotation.client.keys import TokenFileAuth
    from rotation.vault_policies import consumer_policy_name

    def token() -> str:
        return consumer.root.auth.token.create(policies=[consumer_policy_name(consumer.name)],
                                               ttl="10m")["auth"]["client_token"]

    consumer.write_keys(current=record(1))
    sink = tmp_path / "agent-token"
    sink.write_text(token())
    client = KeyClient.from_env({"VAULT_ADDR": consumer.stack.vault_addr, "VAULT_TOKEN_FILE": str(sink),
                                 "VAULT_KV_MOUNT": MOUNT, "VAULT_KV_PREFIX": PREFIX,
                                 "MAIL_API_CONSUMER": consumer.name})
    assert isinstance(client.auth, TokenFileAuth) and client.current_key().serial == 1
    _revoke_client_token(consumer, client)
    sink.write_text(token())                            # the agent wrote a new token
    assert client.refresh().serial == 1


@pytest.mark.parametrize(("extra", "named"), [
    ({"VAULT_CACERT": "/nonexistent/ca.pem"}, "VAULT_CACERT"),
    ({"BAO_CAPATH": "/nonexistent/cas"}, "VAULT_CAPATH"),
    ({"VAULT_CLIENT_CERT": "__FILE__"}, "VAULT_CLIENT_KEY"),
    ({"VAULT_AUTH_METHOD": "aws"}, "VAULT_AUTH_METHOD"),
    ({"VAULT_TOKEN": "", "VAULT_TOKEN_FILE": "/nonexistent/token"}, "VAULT_TOKEN_FILE"),
    ({"VAULT_AUTH_METHOD": "jwt", "VAULT_JWT_ROLE": "r"}, "VAULT_JWT_PATH"),
])
def test_from_env_bad_tls_or_auth_settings_name_the_variable(tmp_path, extra, named):
    pem = tmp_path / "client.pem"
    pem.write_text("pem")
    env = {"VAULT_ADDR": "https://vault.example.com:8200", "VAULT_TOKEN": "t", "MAIL_API_CONSUMER": "billing",
           **{k: str(pem) if v == "__FILE__" else v for k, v in extra.items()}}
    with pytest.raises(KeyClientConfigError, match=named):
        KeyClient.from_env(env)


def test_from_env_tls_settings_reach_the_http_session(tmp_path):
    cas = tmp_path / "cas"
    cas.mkdir()
    for name in ("client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
    client = KeyClient.from_env({"BAO_ADDR": "https://bao.example.com:8200", "BAO_TOKEN": "t",
                                 "VAULT_ADDR": "https://vault.example.com:8200", "BAO_CAPATH": str(cas),
                                 "VAULT_CLIENT_CERT": str(tmp_path / "client.pem"),
                                 "VAULT_CLIENT_KEY": str(tmp_path / "client.key"), "MAIL_API_CONSUMER": "billing"})
    assert client.vault_addr == "https://vault.example.com:8200"        # VAULT_* wins over BAO_*
    assert client._client.adapter._kwargs["verify"] == str(cas)
    assert client._client.adapter._kwargs["cert"] == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))


@pytest.mark.parametrize("how", ["403", "refresh"])
def test_a_pushed_key_vault_does_not_list_at_the_version_read_is_abandoned(consumer, how):
    """A key pushed after the client read Vault's newest version, which lists it nowhere (not
    current, previous or pending: a rollback dropped it, or it was never kept), is not served
    forever: a 403 (report_forbidden) or a refresh goes back to Vault's current key."""
    consumer.write_keys(current=record(1), pending=None)
    client = consumer.client(refresh_interval=3600, min_forced_interval=0)
    assert client.current_key().serial == 1
    dropped = ApiKey(record(2)["value"], 2, "kid2")
    assert client.notify_push(dropped) is True             # a higher serial: installed on the push's word
    assert client.current_key().serial == 2
    if how == "403":
        client.report_forbidden(dropped)
        key = client.current_key()
    else:
        key = client.refresh()
    assert (key.serial, key.key_id) == (1, "kid1")
    assert client.current_key().serial == 1
    assert client.wait_for_refresh(10)
