"""The sample consuming app (a separate process) against the dev gateway: every request is
accepted while the real engine, with the canary, rotates its key; the app prints the switch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rotation.backends.vault import VaultStore

from .conftest import canary_engine

ROOT = Path(__file__).resolve().parents[3]
APP = ROOT / "examples" / "sample_app" / "app.py"


def test_sample_app_follows_a_rotation_through_the_gateway_without_a_403(stack, gateway, engine_env):
    settings, tmp = engine_env
    engine = canary_engine(settings, tmp, gateway.url)
    assert engine.run(only=["billing"]).outcomes[0].outcome == "ok"
    role_id, secret_id = stack.creds.consumer_roles["billing"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), VAULT_ADDR=stack.vault_addr, VAULT_AUTH_METHOD="approle",
               VAULT_ROLE_ID=role_id, VAULT_SECRET_ID=secret_id, MAIL_API_CONSUMER="billing",
               MAIL_API_URL=gateway.url)
    app = subprocess.Popen([sys.executable, str(APP), "--iterations", "50", "--interval-ms", "100",
                            "--refresh-seconds", "0.5"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        outcome = canary_engine(settings, tmp, gateway.url).run(only=["billing"], force=["billing"]).outcomes[0]
        assert outcome.outcome == "ok", outcome.detail
        out, err = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode == 0, err
    requests_ = [ln for ln in out.splitlines() if "-> HTTP" in ln]
    assert len(requests_) == 50
    assert all(ln.endswith("-> HTTP 202") for ln in requests_), out
    assert "now using serial 2 (was 1)" in out
    assert requests_[-1].startswith("[50] serial=2")
    state = VaultStore(settings).read_key_state("billing")
    assert state.current.value not in out + err and state.previous.value not in out + err
