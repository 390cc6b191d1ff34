"""The dev stack's own workspace (``python -m rotation.dev up`` / ``make dev``): a new stack is a
new Vault, so what an earlier stack left in ``.dev-stack/`` must not meet the new one's first run."""

from __future__ import annotations

import json
import stat

from rotation.dev.workspace import write_dev_consumers


def test_a_restart_clears_what_the_previous_stack_left_so_its_first_run_is_not_refused(tmp_path):
    """An earlier stack's key file holds a higher serial and fence than the new stack's first
    rotation: left in place, fencing at the target refuses the new key and `rotation run` exits 1."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "crm.key").write_text(json.dumps({"serial": 2, "fence": 12, "api_key": "x" * 40}))
    for stale in ("newsletter.key.json", "newsletter.role_id", "newsletter.secret_id"):
        (tmp_path / stale).write_text("old")
    (tmp_path / "audit.jsonl").write_text('{"old": true}\n')
    (tmp_path / "newsletter.agent.hcl").write_text("# rewritten by the new stack")

    path = write_dev_consumers(tmp_path)

    assert list(keys.iterdir()) == []
    assert not any((tmp_path / s).exists() for s in ("newsletter.key.json", "newsletter.role_id",
                                                     "newsletter.secret_id"))
    assert (tmp_path / "audit.jsonl").read_text() == ""
    for f in (path, tmp_path / "audit.jsonl"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert f"{keys}/crm.key" in path.read_text()
