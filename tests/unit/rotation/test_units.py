"""Pure units: the planner, the rate limiter, settings precedence, webhook signing, the daemon."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from rotation.backends.ratelimit import ControlPlaneLimiter, TokenBucket
from rotation.client.signing import SignatureError, sign, verify
from rotation.config import Consumer, parse_duration
from rotation.engine.planner import calls_for, decide
from rotation.engine.runner import generate_key_value
from rotation.records import KeyRecord, KeyState, RotationRecord, to_iso
from rotation.scheduler import Daemon
from rotation.settings import Settings, load_settings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
C = Consumer(name="billing", tier="standard", max_age=timedelta(days=30), grace_period=timedelta(hours=1),
             retention=timedelta(days=1))


def rec(serial, promoted_ago=None, disabled_ago=None):
    return KeyRecord(serial=serial, value="v" * 40, rotation_id=f"r{serial}", created_at=to_iso(NOW),
                     key_id=f"k{serial}",
                     promoted_at=to_iso(NOW - promoted_ago) if promoted_ago is not None else None,
                     disabled_at=to_iso(NOW - disabled_ago) if disabled_ago is not None else None)


@pytest.mark.parametrize("state,kw,rotate,revoke,delete", [
    (KeyState(), {}, "bootstrap", (), ()),
    (KeyState(current=rec(1, timedelta(days=1))), {}, "none", (), ()),
    (KeyState(current=rec(1, timedelta(days=31))), {}, "rotate", (), ()),
    (KeyState(current=rec(1, timedelta(days=1))), {"force": True}, "rotate", (), ()),
    (KeyState(current=rec(2, timedelta(minutes=10)), previous=rec(1)), {"force": True}, "none", (), ()),
    (KeyState(current=rec(2, timedelta(minutes=10)), previous=rec(1)), {"emergency": True}, "emergency", (1,), ()),
    (KeyState(current=rec(2, timedelta(hours=2)), previous=rec(1)), {}, "none", (1,), ()),
    (KeyState(current=rec(3, timedelta(days=2)), retired=(rec(1, None, timedelta(days=2)), rec(2, None, timedelta(hours=1)))),
     {}, "none", (), (1,)),
    (KeyState(current=rec(1, timedelta(days=1)), pending=rec(2)), {}, "resume", (), ()),
], ids=["bootstrap", "fresh", "due", "forced", "forced-but-in-grace", "emergency-in-grace", "grace-over",
        "retention-over", "in-flight"])
def test_decide(state, kw, rotate, revoke, delete):
    d = decide(C, state, RotationRecord(), NOW, **kw)
    assert (d.rotate, d.revoke, d.delete) == (rotate, revoke, delete)


def test_decide_reports_a_live_lease_of_another_owner_and_ignores_a_stale_one():
    live = RotationRecord(owner="other", lease_expires_at=NOW.timestamp() + 60)
    stale = RotationRecord(owner="other", lease_expires_at=NOW.timestamp() - 1)
    assert decide(C, KeyState(), live, NOW, owner="me").locked_by == "other"
    assert decide(C, KeyState(), stale, NOW, owner="me").locked_by is None
    assert calls_for(decide(C, KeyState(), live, NOW, owner="me"), C) == ["(skip: lease held by other)"]


def test_plan_lists_every_call_of_a_rotation():
    calls = calls_for(decide(C, KeyState(), RotationRecord(), NOW), C)
    assert calls[0].startswith("vault: CAS write rotations/billing") and calls[-1].endswith("(release lease)")
    assert any("CreateApiKey" in c for c in calls) and any("promote" in c for c in calls)


def test_token_bucket_allows_the_burst_then_paces_at_the_rate():
    t = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        t[0] += s

    b = TokenBucket(10, 40, clock=lambda: t[0], sleep=sleep)
    waits = [b.acquire() for _ in range(60)]
    assert waits[:40] == [0.0] * 40 and all(w > 0 for w in waits[40:])
    assert t[0] == pytest.approx(2.0)          # 20 calls past the burst at 10/s


def test_limiter_paces_key_writes_at_five_per_second():
    lim = ControlPlaneLimiter(rate=10, burst=40, key_writes_per_second=5)
    t = [0.0]
    for b in (lim.all_calls, lim.key_writes):
        b._clock = lambda: t[0]
        b._sleep = lambda s: t.__setitem__(0, t[0] + s)
        b._last = 0.0
    for _ in range(15):
        lim.before_call("CreateApiKey")
    assert t[0] == pytest.approx(2.0)          # 5 at once, then 10 more at 5/s
    assert lim.calls == 15


def test_key_values_are_unique_alphanumeric_and_long():
    vals = {generate_key_value() for _ in range(1000)}
    assert len(vals) == 1000 and all(len(v) == 40 and v.isalnum() for v in vals)
    with pytest.raises(ValueError):
        generate_key_value(20)


def test_settings_precedence_kwargs_over_env_over_dotenv_over_default(monkeypatch, tmp_path):
    dotenv = tmp_path / "rotation.env"
    dotenv.write_text("ROTATION_STACK=from-dotenv\nVAULT_KV_PREFIX=dotenv-prefix\nAWS_REGION=eu-central-1\n")
    monkeypatch.setenv("ROTATION_ENV_FILE", str(dotenv))
    monkeypatch.setenv("VAULT_TOKEN", "t" * 20)
    monkeypatch.setenv("ROTATION_STACK", "from-env")
    monkeypatch.setenv("VAULT_KV_PREFIX", "env-prefix")
    s = load_settings(stack="from-kwargs")
    assert s.stack == "from-kwargs"                       # kwargs beat env
    assert s.vault_kv_prefix == "env-prefix"              # env beats dotenv
    assert s.aws_region == "eu-central-1"                 # dotenv beats default
    assert s.vault_kv_mount == "secret"                   # default


def test_duration_parsing():
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration(45) == timedelta(seconds=45)
    for bad in ("-1d", "1y", True, None, "d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_webhook_signature_roundtrip_tamper_and_replay_window():
    body = b'{"serial":2}'
    headers = {"X-Mail-Api-Timestamp": "1000", "X-Mail-Api-Signature": sign("s3cret", 1000, body)}
    assert verify("s3cret", headers, body, now=1100) == 1000
    with pytest.raises(SignatureError, match="does not match"):
        verify("s3cret", headers, body + b" ", now=1100)
    with pytest.raises(SignatureError, match="does not match"):
        verify("other", headers, body, now=1100)
    with pytest.raises(SignatureError, match="replay window"):
        verify("s3cret", headers, body, now=1000 + 301)
    with pytest.raises(SignatureError, match="missing"):
        verify("s3cret", {}, body)


def test_daemon_survives_a_failing_run_and_keeps_the_next_scheduled(tmp_path):
    calls = []

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("vault down")
        if len(calls) >= 3:
            daemon.request_stop()
        return 0

    daemon = Daemon(job, every_seconds=1, heartbeat_file=tmp_path / "hb.json", tick_seconds=0.05)
    t = threading.Timer(15, daemon.request_stop)
    t.start()
    stats = daemon.serve(install_signals=False)
    t.cancel()
    assert stats.runs >= 3 and stats.failures == 1
    beat = json.loads((tmp_path / "hb.json").read_text())
    assert beat["runs"] == stats.runs and beat["failures"] == 1


def test_settings_error_never_echoes_a_secret():
    canary = "hvs.CANARY-settings-0123456789"
    with pytest.raises(Exception) as info:
        load_settings(vault_token=canary, vault_addr="ftp://x")
    assert canary not in str(info.value) and "VAULT_ADDR" in str(info.value)
    assert canary not in repr(Settings(vault_token=canary, vault_addr="http://127.0.0.1:1"))


# -- issue 23: Optional values handled where they arise ------------------------------------------
def test_an_empty_retired_entry_is_skipped_so_the_key_state_round_trips():
    state = KeyState.from_dict({"current": rec(2).to_dict(), "retired": [{}, rec(1).to_dict(), None]}, 7)
    assert [r.serial for r in state.retired] == [1]
    assert KeyState.from_dict(state.to_dict(), 7) == state


def test_require_pending_returns_the_pending_key_or_raises_a_rotation_error_without_a_value():
    from rotation.errors import RotationError

    assert KeyState(pending=rec(3)).require_pending() == rec(3)
    with pytest.raises(RotationError, match="no pending key") as info:
        KeyState(current=rec(2)).require_pending()
    assert "v" * 40 not in str(info.value)


@pytest.mark.parametrize("value", [123, {"dir": "/run/mail-api"}])
def test_file_target_dirs_of_another_type_are_a_usage_error_naming_the_variable(value):
    from rotation.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_settings(vault_token="t" * 20, file_target_dirs=value)
    assert [field for field, _ in info.value.problems] == ["ROTATION_FILE_TARGET_DIRS"]
    assert "separated by ':'" in info.value.problems[0][1]


@pytest.mark.parametrize(("method", "missing"), [("token", "VAULT_TOKEN"), ("aws", "VAULT_AWS_ROLE")])
def test_a_login_of_settings_built_without_validation_names_the_missing_setting(method, missing):
    """``Settings`` itself refuses these (tested above); a caller that builds one with
    ``model_construct`` gets our error naming the variable, before any request to Vault."""
    from rotation.backends.vault import VaultStore
    from rotation.errors import VaultError

    settings = Settings.model_construct(vault_addr="https://vault.invalid:8200", vault_auth_method=method,
                                        aws_region="eu-west-1")
    with pytest.raises(VaultError, match=f"^{missing} is required for VAULT_AUTH_METHOD={method}$"):
        VaultStore(settings).login()
