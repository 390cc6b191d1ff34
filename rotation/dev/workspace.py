"""The dev stack's working directory: what ``python -m rotation.dev up`` and ``make dev`` write,
and the commands they print for the next step.

Self-contained by default: everything goes under ``<checkout>/.dev-stack/`` (:data:`DEV_DIR`),
the consumers file (:func:`write_dev_consumers`) has local targets only (a file target under
``.dev-stack/keys/``, no webhook, so nothing resolves or calls a host off the machine), and the
rotator's environment restricts file targets to that directory (``ROTATION_FILE_TARGET_DIRS``).
Another consumers file or directory is used only when passed explicitly.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from rotation.targets.file import write_private_file

__all__ = ["DEV_CONSUMERS", "DEV_DIR", "REPO", "agent_config", "rotation_command", "shell_path",
           "write_dev_consumers"]

#: The checkout this package runs from (``rotation.dev`` is repository-only).
REPO = Path(__file__).resolve().parents[2]
#: Where the dev stack writes by default: inside the checkout, ignored by git, removed by ``make clean``.
DEV_DIR = REPO / ".dev-stack"

#: The dev stack's own consumers file: the three consumers of the README and the demo, on the
#: tiers the bootstrap creates, with local targets only. ``{keys}`` is the file targets' directory.
DEV_CONSUMERS = """\
# The dev stack's consumers (written by `python -m rotation.dev up` / `make dev`): local targets
# only, so a rotation on the dev stack never reaches a host off this machine. The production
# shape, with a webhook and a file target under /run/mail-api, is examples/consumers.yaml.
version: 1
usage_plans:
  standard: secure-mail-api-dev-standard
  premium: secure-mail-api-dev-premium
defaults:
  max_age: 30d
  grace_period: 24h
  retention: 7d
consumers:
  - name: billing              # pulls its key from Vault (examples/sample_app, the README's client)
    tier: premium
  - name: crm                  # a sidecar reads its key from a file (atomic write, mode 0600)
    tier: standard
    targets:
      - type: file
        path: {keys}/crm.key
  - name: newsletter           # pulls its key from Vault (or through Vault Agent: docs/deploy.md)
    tier: standard
"""


def write_dev_consumers(directory: Path) -> Path:
    """Write ``<directory>/consumers.yaml`` (:data:`DEV_CONSUMERS`, mode 0600; file targets under
    ``<directory>/keys``, made anew with mode 0700) and return its absolute path. Raises ``OSError``.

    A new dev stack is a new Vault: the key files, Vault Agent renderings and audit trail a previous
    stack left behind name keys that no longer exist, and a key file holding a higher serial and
    fence than the new stack's first rotation would refuse it (fencing at the target). So they are
    removed here, before the new stack's first run."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = directory / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir(mode=0o700)
    for stale in (*directory.glob("*.key.json"), *directory.glob("*.role_id"), *directory.glob("*.secret_id"),
                  directory / "audit.jsonl"):
        stale.unlink(missing_ok=True)
    os.close(os.open(directory / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    path = directory / "consumers.yaml"
    write_private_file(path, DEV_CONSUMERS.format(keys=keys))
    return path


def shell_path(path: Path) -> str:
    """``path`` as typed in a shell started in the checkout: relative to :data:`REPO` when inside
    it, absolute otherwise (symbolic links kept: ``.venv/bin/python`` stays itself); quoted when it
    needs to be."""
    path = path.absolute()
    try:
        shown = str(path.relative_to(REPO))
    except ValueError:
        shown = str(path)
    return shlex.quote(shown)


def rotation_command() -> str:
    """How to call the ``rotation`` CLI of this interpreter's environment, as typed in a shell
    started in the checkout (``.venv/bin/rotation`` for ``make install``)."""
    script = Path(sys.executable).parent / "rotation"
    return shell_path(script) if script.exists() else f"{shell_path(Path(sys.executable))} -m rotation.cli"


def agent_config(vault_addr: str, consumer: str, directory: Path, *, mount: str = "secret",
                 prefix: str = "mail-api", render_interval_seconds: int = 2) -> str:
    """An OpenBao/Vault Agent configuration for a non-Python app on the dev stack
    (docs/vault-layout.md, "Apps that use Vault Agent"): AppRole auto-auth from
    ``<directory>/<consumer>.role_id`` / ``.secret_id``, and a template rendering the consumer's
    current key as JSON (``serial``, ``key_id``, ``api_key``) to ``<directory>/<consumer>.key.json``,
    mode 0600, re-read every ``render_interval_seconds`` (agent templates re-read static secrets on
    that interval: https://openbao.org/docs/agent-and-proxy/agent/template/)."""
    d = directory.absolute()
    template = (f'{{{{ with secret "{mount}/data/{prefix}/keys/{consumer}" }}}}{{"serial": '
                '{{ .Data.data.current.serial }}, "key_id": "{{ .Data.data.current.key_id }}", '
                '"api_key": "{{ .Data.data.current.value }}"}{{ end }}')
    return f"""# OpenBao/Vault Agent for consumer {consumer} on the dev stack: `bao agent -config=<this file>`
vault {{ address = "{vault_addr}" }}
auto_auth {{
  method "approle" {{
    config = {{
      role_id_file_path = "{d / f"{consumer}.role_id"}"
      secret_id_file_path = "{d / f"{consumer}.secret_id"}"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
template_config {{
  static_secret_render_interval = "{render_interval_seconds}s"
}}
template {{
  destination = "{d / f"{consumer}.key.json"}"
  perms = "0600"
  contents = <<EOT
{template}
EOT
}}
"""
