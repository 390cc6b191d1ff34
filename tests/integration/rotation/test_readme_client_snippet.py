"""The README's client snippet runs as written against a real OpenBao: the app reads its current
key, sends it, and a 403 makes it report the key forbidden."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[3]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(\s*from rotation\.client import KeyClient.*?)```", text, re.DOTALL)
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
    scope = {"requests": requests, "url": f"http://127.0.0.1:{server.server_address[1]}/v1/messages",
             "message": json.loads('{"from": "billing@example.com", "to": ["ops@example.org"], "text": "hi"}')}
    try:
        exec(readme_snippet(), scope)  # noqa: S102 - the README's own code, run as a user would
    finally:
        server.shutdown()
    assert seen == [current.value]
    assert scope["key"].serial == current.serial and scope["resp"].status_code == 403
