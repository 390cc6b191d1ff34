"""The sample app as a separate process on the embedded stack (--dry-run, then real requests to a
local HTTP server that answers 403 for the old key)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .conftest import MOUNT, PREFIX, record

APP = Path(__file__).resolve().parents[3] / "examples" / "sample_app" / "app.py"


def _env(consumer) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_"))}
    return {**keep, "PYTHONPATH": str(APP.parents[2]), "VAULT_ADDR": consumer.stack.vault_addr,
            "VAULT_AUTH_METHOD": "approle", "VAULT_ROLE_ID": consumer.role_id,
            "VAULT_SECRET_ID": consumer.secret_id, "VAULT_KV_MOUNT": MOUNT, "VAULT_KV_PREFIX": PREFIX,
            "MAIL_API_CONSUMER": consumer.name}


def test_dry_run_prints_serial_never_the_key(consumer):
    consumer.write_keys(current=record(3))
    r = subprocess.run([sys.executable, str(APP), "--dry-run", "--iterations", "3", "--interval-ms", "10"],
                       check=False, env=_env(consumer), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 3 and all("serial=3 key_id=kid3 fingerprint=sha256:" in ln for ln in lines)
    assert record(3)["value"] not in r.stdout + r.stderr
    assert consumer.ack()[0]["serial"] == 3


def test_403_makes_the_app_switch_to_the_new_key(consumer):
    consumer.write_keys(current=record(1))
    good = record(2)["value"]
    seen = []

    class Api(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            key = self.headers.get("x-api-key")
            seen.append(key)
            if len(seen) == 1:          # the key rotates (old one revoked) while the app runs
                consumer.write_keys(current=record(2), previous=record(1, disabled=True))
            self.send_response(200 if key == good else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    api = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        r = subprocess.run([sys.executable, str(APP), "--url", f"http://127.0.0.1:{api.server_address[1]}/v1/messages",
                            "--iterations", "5", "--interval-ms", "10", "--refresh-seconds", "3600"],
                           check=False, env=_env(consumer), capture_output=True, text=True, timeout=60)
    finally:
        api.shutdown()
        api.server_close()
    assert r.returncode == 0, r.stderr
    assert "serial=1" in r.stdout and "-> HTTP 403" in r.stdout
    assert r.stdout.strip().splitlines()[-1].endswith("-> HTTP 200") and "serial=2" in r.stdout
    assert seen[-1] == good
    assert good not in r.stdout + r.stderr
