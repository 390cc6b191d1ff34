"""Failed logins in a real OpenBao file audit log (the worker's embedded stack declares an
``audit "file"`` device in its ``-config`` file): every form in which the server records a refused
AppRole login is counted by the scan behind ``rotation audit --vault-audit-log``."""

from __future__ import annotations

import json
from pathlib import Path

import hvac
import hvac.exceptions
import pytest

from rotation.reporting.vault_audit_log import scan_file

MOUNT = "approle-audit-test"
LOCKING_MOUNT = "approle-lockout-test"


@pytest.fixture
def stack(worker_stack):
    worker_stack.reset()
    return worker_stack


def _approle(root: hvac.Client, mount: str, role: str) -> tuple[str, str]:
    root.sys.enable_auth_method("approle", path=mount)
    root.auth.approle.create_or_update_approle(role, token_policies=["default"], token_ttl="5m", mount_point=mount)
    role_id = root.auth.approle.read_role_id(role, mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role, mount_point=mount)["data"]["secret_id"]
    return role_id, secret_id


def _recorded(stack, offset: int, tmp_path: Path) -> Path:
    out = tmp_path / "vault-audit.log"
    with Path(stack.audit_log).open("rb") as f:
        f.seek(offset)
        out.write_bytes(f.read())
    return out


def _login_responses(log: Path) -> list[dict]:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [e for e in entries if e.get("type") == "response" and "/login" in e["request"]["path"]]


def test_every_form_of_failed_approle_login_is_counted_and_a_good_login_is_not(stack, tmp_path):
    root = stack.root_client()
    log = Path(stack.audit_log)
    offset = log.stat().st_size if log.exists() else 0
    role_id, secret_id = _approle(root, MOUNT, "ci-bot")
    anon = hvac.Client(url=stack.vault_addr)

    anon.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=MOUNT, use_token=False)
    with pytest.raises(hvac.exceptions.InvalidRequest):       # known role, wrong secret id
        anon.auth.approle.login(role_id=role_id, secret_id="not-the-secret-id", mount_point=MOUNT, use_token=False)
    with pytest.raises(hvac.exceptions.InvalidRequest):       # unknown role id
        anon.auth.approle.login(role_id="00000000-0000-0000-0000-000000000000", secret_id=secret_id,
                                mount_point=MOUNT, use_token=False)
    missing = anon.adapter.post(f"/v1/auth/{MOUNT}/login", json={"role_id": role_id}, raise_exception=False)
    assert missing.status_code == 400                         # no secret id at all

    # a role locked out after one failure (the mount's user lockout): its good secret id is refused
    lock_rid, lock_sid = _approle(root, LOCKING_MOUNT, "locked")
    root.adapter.post(f"/v1/sys/auth/{LOCKING_MOUNT}/tune", json={"user_lockout_config": {
        "lockout_threshold": "1", "lockout_duration": "10m", "lockout_counter_reset_duration": "10m"}})
    with pytest.raises(hvac.exceptions.InvalidRequest):
        anon.auth.approle.login(role_id=lock_rid, secret_id="wrong", mount_point=LOCKING_MOUNT, use_token=False)
    with pytest.raises(hvac.exceptions.Forbidden):
        anon.auth.approle.login(role_id=lock_rid, secret_id=lock_sid, mount_point=LOCKING_MOUNT, use_token=False)

    recorded = _recorded(stack, offset, tmp_path)
    refused = [e for e in _login_responses(recorded) if not (e.get("response") or {}).get("auth")]
    # the forms this test means to produce are really in the log: some with a top-level error,
    # some (unknown role id, missing field) with the error only inside the response
    assert len(refused) == 5
    assert any(not e.get("error") and "error" in ((e.get("response") or {}).get("data") or {}) for e in refused)
    assert any(e.get("error") for e in refused)

    va = scan_file(recorded, mount="secret", prefix="mail-api", expected_identities={"ci-bot", "locked"})
    assert va["logins"] == 1 and va["unexpected_logins"] == []
    assert len(va["failed_logins"]) == 5
    assert {f["path"] for f in va["failed_logins"]} == {f"auth/{MOUNT}/login", f"auth/{LOCKING_MOUNT}/login"}
    assert all(f["identity"] == "unknown" for f in va["failed_logins"])
    text = json.dumps(va)
    assert secret_id not in text and lock_sid not in text and "hmac-sha256" not in text
