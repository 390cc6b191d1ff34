"""Fixtures for the delivery tests: one embedded stack (OpenBao dev + moto) per module, and a fresh
consumer (policy, AppRole, webhook secret) per test, so tests never share Vault state."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass, field

import hvac
import pytest

from rotation.client.keys import AppRoleAuth, KeyClient
from rotation.config import ConsumersFile
from rotation.dev.stack import EmbeddedStack
from rotation.records import KeyRecord, to_iso, utcnow
from rotation.vault_policies import consumer_policy_name, render_vault_policy

MOUNT, PREFIX = "secret", "mail-api"
_names = itertools.count(1)

CONSUMERS = ConsumersFile.model_validate({
    "version": 1,
    "usage_plans": {"standard": "secure-mail-api-dev-standard"},
    "consumers": [{"name": "seed", "tier": "standard"}],
})


@pytest.fixture(scope="module")
def stack():
    with EmbeddedStack() as st:
        st.creds = st.bootstrap(CONSUMERS)
        yield st


@dataclass
class Consumer:
    name: str
    role_id: str
    secret_id: str = field(repr=False)
    stack: EmbeddedStack = field(repr=False)

    @property
    def root(self) -> hvac.Client:
        return self.stack.root_client()

    def client(self, **kw) -> KeyClient:
        kw.setdefault("refresh_interval", 60.0)
        return KeyClient(self.stack.vault_addr, self.name, auth=AppRoleAuth(self.role_id, self.secret_id),
                         mount=MOUNT, prefix=PREFIX, **kw)

    # -- key state in the shape of rotation/records.py (written with the root token, CAS) --------
    def write_keys(self, current=None, previous=None, pending=None, retired=()) -> int:
        path = f"{PREFIX}/keys/{self.name}"
        version = self.version(path)
        data = {"current": current, "previous": previous, "pending": pending, "retired": list(retired)}
        r = self.root.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=version,
                                                            mount_point=MOUNT)
        return int(r["data"]["version"])

    def version(self, path: str) -> int:
        try:
            meta = self.root.secrets.kv.v2.read_secret_metadata(path=path, mount_point=MOUNT)["data"]
            return int(meta["current_version"])
        except hvac.exceptions.InvalidPath:
            return 0

    def ack(self) -> tuple[dict | None, int]:
        path = f"{PREFIX}/acks/{self.name}"
        try:
            r = self.root.secrets.kv.v2.read_secret_version(path=path, mount_point=MOUNT,
                                                            raise_on_deleted_version=True)["data"]
        except hvac.exceptions.InvalidPath:
            return None, 0
        return r["data"], int(r["metadata"]["version"])

    def audit_count(self, kind: str) -> int:
        """Requests Vault's file audit device logged for this consumer's ``kind`` path
        (``data-keys``, ``metadata-keys``, ``data-acks``), excluding the root token's set-up calls:
        independent of the client's own counters."""
        sub, what = kind.split("-")
        want = f"{MOUNT}/{sub}/{PREFIX}/{what}/{self.name}"
        n = 0
        for ev in self._audit_events():
            if ev.get("type") != "request" or ev.get("request", {}).get("path") != want:
                continue
            if "root" in ((ev.get("auth") or {}).get("policies") or []):
                continue  # the test's own set-up writes/reads
            n += 1
        return n


    def audit_count_path(self, path: str) -> int:
        """Requests to ``path`` logged by Vault under this consumer's own AppRole policy."""
        policy = consumer_policy_name(self.name)
        return sum(1 for ev in self._audit_events()
                   if ev.get("type") == "request" and ev["request"].get("path") == path
                   and policy in ((ev.get("auth") or {}).get("policies") or []))

    def _audit_events(self) -> list[dict]:
        """The audit device's complete entries: the server may be writing the last line while the
        test reads (a busy machine), and a line without its newline is not complete yet."""
        text = self.stack.audit_log.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]


def record(serial: int, value: str | None = None, *, key_id: str | None = "kid", disabled: bool = False,
           rotation_id: str = "rot-1") -> dict:
    return KeyRecord(serial=serial, value=value if value is not None else f"mailapi-key-{serial}-" + "x" * 24,
                     rotation_id=rotation_id, created_at=to_iso(utcnow()),
                     key_id=f"{key_id}{serial}" if key_id else None,
                     disabled_at=to_iso(utcnow()) if disabled else None).to_dict()


def make_consumer(stack: EmbeddedStack, *, token_ttl: str = "1h", token_max_ttl: str = "24h",
                  webhook_secret: bool = True) -> Consumer:
    name = f"app{next(_names)}-{secrets.token_hex(2)}"
    root = stack.root_client()
    pname = consumer_policy_name(name)
    root.sys.create_or_update_policy(pname, render_vault_policy("consumer", mount=MOUNT, prefix=PREFIX,
                                                                consumer=name))
    root.auth.approle.create_or_update_approle(pname, token_policies=[pname], token_ttl=token_ttl,
                                               token_max_ttl=token_max_ttl, secret_id_ttl="0")
    role_id = root.auth.approle.read_role_id(pname)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(pname)["data"]["secret_id"]
    if webhook_secret:
        root.secrets.kv.v2.create_or_update_secret(path=f"{PREFIX}/webhooks/{name}",
                                                   secret={"signing_secret": secrets.token_urlsafe(32)},
                                                   cas=0, mount_point=MOUNT)
    return Consumer(name, role_id, secret_id, stack)


@pytest.fixture
def consumer(stack) -> Consumer:
    return make_consumer(stack)


def wait_until(pred, timeout: float = 5.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()
