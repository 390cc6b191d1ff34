"""Fixtures of the policy tests: one OpenBao dev server for the whole session, bootstrapped the way
production is (``rotation.dev.stack.bootstrap_vault``: KV v2 with cas_required and the ACL policies of
``policies/vault``), and seeded with one secret at every path the ACL tables touch."""

from __future__ import annotations

import hvac
import pytest

MOUNT, PREFIX = "secret", "mail-api"


@pytest.fixture(scope="session")
def vault_stack():
    from rotation.config import ConsumersFile
    from rotation.dev.stack import EmbeddedStack, bootstrap_vault

    stack = EmbeddedStack().start()
    try:
        root = stack.root_client()
        consumers = ConsumersFile.model_validate({
            "version": 1, "usage_plans": {"standard": "p"},
            "consumers": [{"name": "billing", "tier": "standard"}, {"name": "crm", "tier": "standard"}]})
        bootstrap_vault(root, consumers, MOUNT, PREFIX)
        kv = root.secrets.kv.v2
        for path, data in [
            (f"{PREFIX}/keys/billing", {"current": {"value": "billing-secret-value", "serial": 1}}),
            (f"{PREFIX}/keys/crm", {"current": {"value": "crm-secret-value", "serial": 1}}),
            (f"{PREFIX}/rotations/billing", {"owner": None}),
            (f"{PREFIX}/acks/billing", {"serial": 1}),
            (f"{PREFIX}/acks/crm", {"serial": 1}),
            (f"{PREFIX}/webhooks/billing", {"signing_secret": "billing-hmac"}),
            (f"{PREFIX}/webhooks/crm", {"signing_secret": "crm-hmac"}),
            ("other-app/keys/x", {"value": "not-ours"}),
            (f"{PREFIX}-evil/keys/x", {"value": "sibling-prefix"}),
        ]:
            kv.create_or_update_secret(path=path, secret=data, cas=0, mount_point=MOUNT)
        for c in ("billing", "crm"):
            kv.update_metadata(path=f"{PREFIX}/keys/{c}", mount_point=MOUNT,
                               custom_metadata={"current": "1", "previous": "none", "pending": "none"})
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def token_for(vault_stack):
    """``token_for("mail-api-auditor")`` -> an hvac client whose token holds only that policy
    (plus the built-in default policy, as every real login gets)."""
    root = vault_stack.root_client()
    cache: dict[str, hvac.Client] = {}

    def make(policy: str) -> hvac.Client:
        if policy not in cache:
            token = root.auth.token.create(policies=[policy], no_default_policy=False, ttl="1h")["auth"]["client_token"]
            cache[policy] = hvac.Client(url=vault_stack.vault_addr, token=token, timeout=60)
        return cache[policy]

    return make
