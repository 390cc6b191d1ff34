"""An app that runs OpenBao/Vault Agent instead of our client: the agent logs in with the consumer's
AppRole, renders the consumer's current key to a file from `keys/<consumer>` with a template, and
the rendered file follows each rotation. The app acknowledges the key it now uses by writing
`acks/<consumer>` through the agent's API proxy (auto-auth token), which the engine reads.
(docs/vault-layout.md, "Apps that use Vault Agent".)"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rotation.backends.vault import VaultStore

BAO = shutil.which("bao") or str(Path(sys.executable).with_name("bao"))
TEMPLATE = ('{{ with secret "secret/data/mail-api/keys/billing" }}{"serial": {{ .Data.data.current.serial }}, '
            '"key_id": "{{ .Data.data.current.key_id }}", "api_key": "{{ .Data.data.current.value }}"}{{ end }}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(pred, deadline_seconds: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _rendered(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def agent(env):
    role_id, secret_id = env.creds.consumer_roles["billing"]
    d = env.tmp / "agent"
    d.mkdir()
    (d / "role_id").write_text(role_id)
    (d / "secret_id").write_text(secret_id)
    (d / "secret_id").chmod(0o600)
    port = _free_port()
    rendered = d / "billing.key.json"
    (d / "agent.hcl").write_text(f"""
vault {{ address = "{env.stack.vault_addr}" }}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{d / 'role_id'}"
      secret_id_file_path = "{d / 'secret_id'}"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
template_config {{
  static_secret_render_interval = "1s"
}}
template {{
  destination = "{rendered}"
  perms = "0600"
  contents = <<EOT
{TEMPLATE}
EOT
}}
api_proxy {{ use_auto_auth_token = true }}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  tls_disable = true
}}
""")
    log = open(d / "agent.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([BAO, "agent", f"-config={d / 'agent.hcl'}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield rendered, f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_agent_rendered_key_file_follows_every_rotation_and_the_app_acks_through_the_agent(env, agent):
    rendered, proxy, proc = agent
    engine = env.engine()
    assert engine.run().exit_code == 0                             # first keys
    for _ in range(2):                                             # then two rotations
        state = env.state("billing")
        _wait_for(lambda s=state: (_rendered(rendered) or {}).get("serial") == s.current.serial,
                  what=f"the agent to render serial {state.current.serial} (log: {rendered.parent / 'agent.log'})")
        assert proc.poll() is None
        doc = _rendered(rendered)
        assert doc == {"serial": state.current.serial, "key_id": state.current.key_id, "api_key": state.current.value}
        assert oct(rendered.stat().st_mode & 0o777) == "0o600"
        env.clock.advance(hours=2)                                 # past the previous key's grace period
        summary = env.engine().run(only=["billing"], force=["billing"])
        assert [o.outcome for o in summary.outcomes] == ["ok"], summary.outcomes
    state = env.state("billing")
    _wait_for(lambda: (_rendered(rendered) or {}).get("serial") == state.current.serial, what="the last rotation")
    assert _rendered(rendered)["api_key"] == state.current.value

    # the ack: the app writes the serial it now uses through the agent's API proxy (no token in the app)
    doc = _rendered(rendered)
    url = f"{proxy}/v1/secret/data/mail-api/acks/billing"
    read = requests.get(url, timeout=10)
    version = read.json()["data"]["metadata"]["version"] if read.status_code == 200 else 0
    r = requests.post(url, timeout=10, json={"options": {"cas": version}, "data": {
        "serial": doc["serial"], "key_id": doc["key_id"], "at": "2026-01-01T00:00:00.000+00:00", "host": "agent-app"}})
    assert r.status_code == 200, r.text
    ack = VaultStore(env.settings).read_ack("billing")
    assert ack["serial"] == state.current.serial and ack["key_id"] == state.current.key_id
    # and the agent's token may not touch another consumer's key
    assert requests.get(f"{proxy}/v1/secret/data/mail-api/keys/crm", timeout=10).status_code == 403
