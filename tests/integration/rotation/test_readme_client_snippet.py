"""The README's client snippet runs as written (imports, url, message and sender included) against
a real OpenBao: through the local mail API (dev gateway + the real handler) it gets 202, and a 403
makes it report the key forbidden."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(\s*import os\n.*?from rotation\.client import KeyClient.*?)```", text, re.DOTALL)
    assert block, "the README's client snippet is missing"
    lines = block.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


def test_the_readme_client_snippet_sends_the_current_key_and_reports_a_403(env, monkeypatch):
    env.engine().run()
    current = env.state("billing").current
    seen: list[str] = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["x-api-key"])
            self.send_response(403)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    role_id, secret_id = env.creds.consumer_roles["billing"]
    for name, value in {"VAULT_ADDR": env.stack.vault_addr, "VAULT_AUTH_METHOD": "approle",
                        "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id,
                        "MAIL_API_CONSUMER": "billing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAIL_API_URL", f"http://127.0.0.1:{server.server_address[1]}/v1/messages")
    scope: dict = {}
    try:
        exec(readme_snippet(), scope)  # noqa: S102 - the README's own code, run as a user would
    finally:
        server.shutdown()
    assert seen == [current.value]
    assert scope["key"].serial == current.serial and scope["resp"].status_code == 403


def test_the_readme_client_snippet_as_written_sends_mail_through_the_local_mail_api(env, monkeypatch, capsys):
    from rotation.dev.gateway import DevGateway

    env.engine().run()
    role_id, secret_id = env.creds.consumer_roles["billing"]
    for name, value in {"VAULT_ADDR": env.stack.vault_addr, "VAULT_AUTH_METHOD": "approle",
                        "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id,
                        "MAIL_API_CONSUMER": "billing"}.items():
        monkeypatch.setenv(name, value)
    with DevGateway(env.stack.aws_endpoint, rest_api_id=env.creds.rest_api_id, stage=env.creds.stage,
                    quiet=True, key_cache_seconds=0) as gw:
        monkeypatch.setenv("MAIL_API_URL", gw.url)      # what make dev's .dev-stack/billing.env sets
        scope: dict = {}
        exec(readme_snippet(), scope)  # noqa: S102 - the README's own code, nothing supplied by the test
    assert scope["resp"].status_code == 202, scope["resp"].text   # the sender is one the gateway accepts
    assert scope["resp"].json()["message_id"] and capsys.readouterr().out.startswith("202 ")
