"""Issue 12, item 10: a rollback leaves every push target serving the old key, proved by reading
the target back as an app does (GetSecretValue against the moto server), not by the audit log."""

from __future__ import annotations

import json

from rotation.backends.vault import VaultStore
from rotation.targets import PushResult
from rotation.wiring import make_targets

from .conftest import assert_invariants


class RefusesNewKeys:
    """A required target that takes only serial 1: the rotation to serial 2 fails and rolls back."""

    target_id, required = "refuses-new-keys", True

    def push(self, d):
        return PushResult(self.target_id, d.serial == 1, "ok" if d.serial == 1 else "HTTP 500")


def test_rollback_leaves_secrets_manager_serving_the_old_key(env):
    sid = "mail-api/crm/rollback"
    data = env.consumers.model_dump()
    for c in data["consumers"]:
        if c["name"] == "crm":
            c["targets"] = [{"type": "secretsmanager", "secret_id": sid}]
    cf = type(env.consumers).model_validate(data)
    sm = env.stack.aws_session().client("secretsmanager", endpoint_url=env.stack.aws_endpoint)

    def targets(c, fail=False):
        real = make_targets(c, VaultStore(env.settings), env.settings)
        return real + [RefusesNewKeys()] if fail else real

    env.engine(consumers=cf, targets_for=targets).run()
    old = env.state("crm").current
    assert json.loads(sm.get_secret_value(SecretId=sid)["SecretString"])["api_key"] == old.value

    out = env.engine(consumers=cf, targets_for=lambda c: targets(c, fail=True)).run(
        only=["crm"], force=["crm"]).outcomes[0]
    assert out.outcome == "rolled_back", out
    assert env.state("crm").current.serial == old.serial
    for read in ({}, {"VersionStage": "AWSCURRENT"}):
        served = json.loads(sm.get_secret_value(SecretId=sid, **read)["SecretString"])
        assert (served["serial"], served["api_key"]) == (old.serial, old.value)
    assert_invariants(env)
