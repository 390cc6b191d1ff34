"""Issue 23: the shipped ``py.typed`` holds for the app-side client. A small app that uses
``rotation.client`` (key client, every auth method, the webhook receiver, the errors) is
type-checked with ``mypy --strict`` from a temporary directory, with the repository on its module
path (``MYPYPATH``) so that mypy reads ``rotation/client`` as source and reports any error in it.

hvac ships neither inline types nor stubs, so the app's configuration ignores that one import, as
mypy does by itself for a package installed in site-packages. A second app misuses the API on
purpose: mypy must report it with our types, which proves the check reads them (an app that saw
``Any`` everywhere would pass the first check without proving anything).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

APP = '''
from __future__ import annotations

import logging
from collections.abc import Mapping
from http.server import ThreadingHTTPServer

from rotation.client import (
    ApiKey,
    AppRoleAuth,
    JwtAuth,
    KeyClient,
    KeyClientError,
    KubernetesAuth,
    ReceiveResult,
    TamperSuspected,
    TokenAuth,
    TokenFileAuth,
    VaultUnavailable,
    WebhookReceiver,
    serve_webhook,
    sign,
    verify,
)
from rotation.client.auth import Auth

log = logging.getLogger("app")


def auth_for(kind: str) -> Auth:
    if kind == "approle":
        return AppRoleAuth(role_id="role", secret_id_file="/run/secrets/secret-id", wrapped=True)
    if kind == "jwt":
        return JwtAuth(role="mail-app", jwt_path="/run/secrets/jwt")
    if kind == "kubernetes":
        return KubernetesAuth(role="mail-app")
    if kind == "file":
        return TokenFileAuth(path="/run/vault/token")
    return TokenAuth(token="s.token")


def make_client() -> KeyClient:
    client = KeyClient("https://vault.example:8200", "billing", auth=auth_for("approle"),
                       refresh_interval=30.0, max_stale=600.0)
    return client if client.consumer else KeyClient.from_env({"VAULT_ADDR": "https://vault.example:8200"})


def request_headers(client: KeyClient) -> dict[str, str]:
    try:
        key: ApiKey = client.current_key()
    except VaultUnavailable:
        key = client.refresh()
    log.info("using key %s serial %d (%s)", key.fingerprint, key.serial, key.key_id)
    return {"x-api-key": key.value}


def on_forbidden(client: KeyClient, key: ApiKey) -> bool:
    client.report_forbidden(key)
    return client.notify_push(key)


def receiver(client: KeyClient) -> ThreadingHTTPServer:
    def on_key(key: ApiKey) -> None:
        log.info("new key serial %d", key.serial)

    webhook = WebhookReceiver(client.webhook_signing_secret(), client, window_seconds=300, on_key=on_key)
    return serve_webhook(webhook, "127.0.0.1", 0, path="/keys", background=True)


def handle(webhook: WebhookReceiver, headers: Mapping[str, str], body: bytes) -> int:
    try:
        result: ReceiveResult = webhook.handle(headers, body)
    except TamperSuspected:
        return 409
    except KeyClientError:
        return 503
    return result.status if result.processed or result.serial is None else 200


def signed(secret: str, body: bytes, now: int) -> int:
    return verify(secret, {"X-Signature": sign(secret, now, body), "X-Timestamp": str(now)}, body, now=now)
'''

MISUSE = '''
from rotation.client import KeyClient, TokenAuth

client = KeyClient("https://vault.example:8200", "billing", auth=TokenAuth(token="t"))
serial: str = client.current_key().serial
client.notify_push("not a key")
'''

# hvac (a dependency of the client) has no types: what mypy silences for an installed package
CONFIG = """\
[mypy]
strict = True

[mypy-hvac,hvac.*]
ignore_missing_imports = True
"""


def run_mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
    (tmp_path / "mypy.ini").write_text(CONFIG)
    env = {**os.environ, "MYPYPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--strict", "--cache-dir", ".mypy_cache",
         "--no-error-summary", "--hide-error-context", "--show-absolute-path", "app.py"],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_an_app_using_the_client_type_checks_in_strict_mode_without_an_error_from_our_package(tmp_path):
    result = run_mypy(tmp_path, APP)
    ours = [line for line in result.stdout.splitlines() if str(REPO / "rotation") in line]
    assert ours == [], "\n".join(ours)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_strict_check_reads_the_clients_types_and_reports_a_misuse(tmp_path):
    result = run_mypy(tmp_path, MISUSE)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line.split(": error: ", 1)[1] for line in result.stdout.splitlines() if ": error: " in line]
    assert errors == [
        'Incompatible types in assignment (expression has type "int", variable has type "str")  [assignment]',
        ('Argument 1 to "notify_push" of "KeyClient" has incompatible type "str"; expected "ApiKey | None"'
         "  [arg-type]"),
    ], result.stdout


def test_the_client_override_sets_every_flag_that_mypy_strict_sets():
    """``strict = true`` in a per-module override would make the whole run strict (mypy applies it
    globally), so ``[tool.mypy]`` lists the flags; a mypy release that adds one to ``--strict``
    fails here until it is listed."""
    import tomllib

    from mypy.main import define_options

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    client = [o for o in config["overrides"] if "rotation.client.*" in o["module"]]
    assert len(client) == 1 and "strict" not in client[0]
    effective = {**{k: v for k, v in config.items() if k != "overrides"}, **client[0]}
    _, _, strict_flags = define_options()
    missing = {dest: value for dest, value in strict_flags if effective.get(dest) != value}
    assert missing == {}
