"""Issue 19: fencing at the resource. A runner that stalls after its lease check and before its push,
or whose Vault answer is held in transit past its lease, never hands an app a revoked key, for every
target type (file, Secrets Manager and SSM on the moto server, a signed webhook to a real receiver);
each run reads the targets back and restores the current key where one was set back.

Stalls are injected with events the test controls; lease expiry is driven by the shared FakeClock
(and, for the delayed answer, by the stalled runner's own monotonic clock); nothing sleeps."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from rotation.backends.vault import VaultClock, VaultStore
from rotation.client.receiver import WebhookReceiver, serve_webhook
from rotation.config import FileTarget, WebhookTarget
from rotation.targets import Delivery, PushResult, PushTarget
from rotation.targets.file import AtomicFileTarget
from rotation.targets.secretsmanager import SecretsManagerTarget
from rotation.targets.ssm import SsmParameterTarget
from rotation.targets.webhook import SignedWebhookTarget

from .conftest import Env, assert_invariants

KINDS = ["file", "secretsmanager", "ssm", "webhook"]


@dataclass
class Site:
    """One consumer-side target of a given type: ``make(vault)`` builds the rotator's view of it,
    ``served()`` is the serial an app reading it gets now, ``history`` every serial it served."""

    kind: str
    make: Callable[[VaultStore], PushTarget]
    served: Callable[[], int | None]
    by_hand: Callable[[dict], None] = lambda doc: None    # an operator writes ``doc`` into it directly
    history: list[int] = field(default_factory=list)
    close: Callable[[], None] = lambda: None


@pytest.fixture
def site(request, env: Env):
    kind = request.param
    name = f"billing-{secrets.token_hex(3)}"
    aws = lambda svc: env.stack.aws_session().client(svc, endpoint_url=env.stack.aws_endpoint)
    if kind == "file":
        path = env.tmp / f"{name}.key"
        s = Site(kind, lambda v: AtomicFileTarget(FileTarget(type="file", path=path)),
                 lambda: json.loads(path.read_text())["serial"] if path.exists() else None,
                 lambda doc: path.write_text(json.dumps(doc)))
    elif kind == "secretsmanager":
        sm, sid = aws("secretsmanager"), f"mail-api/{name}"
        s = Site(kind, lambda v: SecretsManagerTarget(sm, sid),
                 lambda: json.loads(sm.get_secret_value(SecretId=sid)["SecretString"])["serial"],
                 lambda doc: sm.put_secret_value(SecretId=sid, SecretString=json.dumps(doc)))
    elif kind == "ssm":
        ssm, pname = aws("ssm"), f"/mail-api/{name}"
        s = Site(kind, lambda v: SsmParameterTarget(ssm, pname),
                 lambda: json.loads(ssm.get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"])["serial"],
                 lambda doc: ssm.put_parameter(Name=pname, Type="SecureString", Overwrite=True, Value=json.dumps(doc)))
    else:
        signing = secrets.token_urlsafe(32)
        env.root().secrets.kv.v2.create_or_update_secret(path="mail-api/webhooks/billing",
                                                           secret={"signing_secret": signing}, cas=0)
        root = env.root()
        served: list[int] = []
        receiver = WebhookReceiver(signing, lambda token: root.sys.unwrap(token)["data"], consumer="billing",
                                   on_key=lambda k: served.append(k.serial))
        server = serve_webhook(receiver, "127.0.0.1", 0)
        spec = WebhookTarget(type="webhook", url=f"http://127.0.0.1:{server.server_address[1]}/")
        s = Site(kind, lambda v: SignedWebhookTarget(spec, v, allow_loopback=True),
                 lambda: served[-1] if served else None, history=served, close=server.shutdown)
    yield s
    s.close()


class Stalling:
    """Runner A's view of a target: its first push of ``serial`` waits for the test (a pause after
    the lease check, right before the write lands: a GC pause, a stopped process, a slow disk)."""

    def __init__(self, inner: PushTarget, serial: int):
        self.inner, self.serial = inner, serial
        self.target_id, self.required = inner.target_id, inner.required
        self.stalled, self.release = threading.Event(), threading.Event()
        self.results: list[PushResult] = []

    def push(self, d: Delivery) -> PushResult:
        if d.serial == self.serial and not self.stalled.is_set():
            self.stalled.set()
            assert self.release.wait(60), "the test never released the stalled runner"
        result = self.inner.push(d)
        self.results.append(result)
        return result

    def read_back(self, consumer: str):
        return self.inner.read_back(consumer) if hasattr(self.inner, "read_back") else None


def _b_rotates_and_revokes(env: Env, site: Site) -> None:
    """Runner B, once A's lease ran out: finishes A's rotation (serial 2), then an emergency
    rotation (serial 3) revokes serial 2 at once."""
    vb = VaultStore(env.settings)
    first = env.engine(targets_for=lambda c: [site.make(vb)]).run(only=["billing"])
    assert first.outcomes[0].outcome == "ok", first.outcomes[0]
    second = env.engine(targets_for=lambda c: [site.make(vb)]).run(only=["billing"], emergency=["billing"])
    assert second.outcomes[0].outcome == "ok", second.outcomes[0]
    st = env.state("billing")
    assert st.current.serial == 3 and any(r.serial == 2 and r.disabled_at for r in st.retired)


def _assert_app_ends_on_the_newest_key(env: Env, site: Site) -> None:
    assert site.served() == 3, f"the target serves serial {site.served()}, not the newest (3)"
    if site.history:                                   # the webhook receiver: never back after 3
        assert site.history[site.history.index(3):] == [3], site.history
    assert_invariants(env)


@pytest.mark.parametrize("site", KINDS, indirect=True)
def test_runner_stalled_between_its_lease_check_and_its_push_never_hands_the_app_a_revoked_key(env, site):
    va = VaultStore(env.settings)
    env.engine(targets_for=lambda c: [site.make(va)]).run(only=["billing"])
    assert site.served() == 1
    stalling = Stalling(site.make(va), serial=2)
    a = env.engine(targets_for=lambda c: [stalling])
    res: dict = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["billing"], force=["billing"])))
    th.start()
    assert stalling.stalled.wait(60), "runner A never reached its push"
    env.expire_leases()
    _b_rotates_and_revokes(env, site)
    stalling.release.set()                             # A wakes up and its push of serial 2 goes out
    th.join(60)
    assert not th.is_alive()
    out = res["a"].outcomes[0]
    assert out.outcome == "lost_lease" and res["a"].exit_code == 1, out
    assert stalling.results and stalling.results[-1].ok is False, "the target took the stale runner's key"
    _assert_app_ends_on_the_newest_key(env, site)


@pytest.mark.parametrize("site", KINDS, indirect=True)
def test_runner_whose_vault_answer_is_held_past_its_lease_never_hands_the_app_a_revoked_key(env, site):
    """A's last Vault answer before its push (the "tested" journal write) is held in transit while
    A's own monotonic clock runs past its lease; B takes over, rotates and revokes; then the answer
    arrives, its ``Date`` header from before the hold. Runner A judges time on Vault's clock."""
    va = VaultStore(env.settings)
    env.engine(targets_for=lambda c: [site.make(va)]).run(only=["billing"])
    a = env.engine(clock=None, targets_for=lambda c: [site.make(a_vault)])
    a_vault = a.vault
    offset = [0.0]
    hooks = a_vault.client.adapter.session.hooks["response"]
    hooks.remove(a_vault.vault_clock.observe)
    a_vault.vault_clock = VaultClock(monotonic=lambda: time.monotonic() + offset[0])
    held, release = threading.Event(), threading.Event()

    def hold_in_transit(response, *args, **kwargs):
        body = response.request.body or b""
        body = body.encode() if isinstance(body, str) else body
        if "/rotations/billing" in response.request.url and b'"tested"' in body and not held.is_set():
            offset[0] += a.lease_ttl + 60               # A's time runs on while the answer is away
            held.set()
            assert release.wait(60), "the test never released the held answer"

    hooks[:] = [hold_in_transit, a_vault.vault_clock.observe, *hooks]
    res: dict = {}
    th = threading.Thread(target=lambda: res.setdefault("a", a.run(only=["billing"], force=["billing"])))
    th.start()
    assert held.wait(60), "runner A never wrote its tested step"
    env.clock.advance(seconds=a.lease_ttl + 120)       # B, too, sees A's lease (on Vault's time) run out
    _b_rotates_and_revokes(env, site)
    release.set()
    th.join(60)
    assert not th.is_alive()
    out = res["a"].outcomes[0]
    assert out.outcome == "lost_lease" and res["a"].exit_code == 1, out
    _assert_app_ends_on_the_newest_key(env, site)


@pytest.mark.parametrize("site", ["file", "secretsmanager", "ssm"], indirect=True)
def test_a_run_after_a_target_was_set_back_to_a_revoked_key_restores_the_current_key_and_raises_an_alarm(env, site):
    v = VaultStore(env.settings)
    engine = lambda: env.engine(targets_for=lambda c: [site.make(v)])
    engine().run(only=["billing"])
    assert engine().run(only=["billing"], emergency=["billing"]).outcomes[0].outcome == "ok"   # 1 revoked
    st = env.state("billing")
    revoked = next(r for r in st.retired if r.serial == 1)
    # set back by hand: serial 1's key written into the target directly (no fence)
    site.by_hand({"api_key": revoked.value, "serial": 1, "key_id": revoked.key_id})
    assert site.served() == 1
    out = engine().run(only=["billing"]).outcomes[0]
    assert out.outcome == "ok" and "gave the current key back" in out.detail, out
    assert site.served() == 2
    events = [json.loads(line) for line in env.audit_text().splitlines()]
    # a file is read back in full; Secrets Manager and SSM without decrypting: a key put there by
    # hand is known only as not written by the rotator
    found, serial = ("revoked_key_found", 1) if site.kind == "file" else ("unknown_key_found", 0)
    alarm = [e for e in events if (e["event"], e["outcome"]) == ("reconcile", found)]
    assert alarm and alarm[-1]["alarm"] is True and alarm[-1]["held_serial"] == serial, alarm
    assert revoked.value not in env.audit_text()
    again = engine().run(only=["billing"]).outcomes[0]
    assert (again.outcome, again.action) == ("skipped", "none"), again    # nothing left to repair


def test_a_run_after_a_target_was_set_back_to_an_older_serial_restores_it_without_an_alarm(env):
    env.engine().run(only=["billing"])
    env.engine().run(only=["billing"], force=["billing"])                  # serial 2; 1 in its grace
    path = env.tmp / "billing.key"
    held = json.loads(path.read_text())
    st = env.state("billing")
    path.write_text(json.dumps({**held, "serial": 1, "key_id": st.previous.key_id, "api_key": st.previous.value}))
    out = env.engine().run(only=["billing"]).outcomes[0]
    assert out.outcome == "ok", out
    assert json.loads(path.read_text())["serial"] == 2
    assert '"revoked_key_found"' not in env.audit_text()
    assert '"restored"' in env.audit_text()


def test_an_optional_target_that_cannot_be_repaired_is_audited_and_never_fails_the_run(env):
    class Unwritable:
        """An optional target that holds nothing and refuses every write (a sidecar volume gone)."""
        target_id, required = "file:/gone/billing.key", False

        def push(self, d: Delivery) -> PushResult:
            return PushResult(self.target_id, False, "OSError: read-only file system")

        def read_back(self, consumer: str):
            return None

    engine = lambda: env.engine(targets_for=lambda c: [Unwritable()])
    assert engine().run(only=["billing"]).outcomes[0].outcome == "ok"      # the push failed: optional
    summary = engine().run(only=["billing"])
    assert (summary.outcomes[0].outcome, summary.exit_code) == ("ok", 0), summary.outcomes[0]
    events = [json.loads(line) for line in env.audit_text().splitlines()]
    assert [e for e in events if (e["event"], e["outcome"]) == ("reconcile", "failed")], "repair not audited"


class _RefusesNewKeys:
    """A required target that takes only serial 1: a rotation to serial 2 fails and rolls back."""

    target_id, required = "refuses-new-keys", True

    def push(self, d: Delivery) -> PushResult:
        return PushResult(self.target_id, d.serial == 1, "ok" if d.serial == 1 else "HTTP 500")


class _AppReadsVault:
    """Not a target: the app's periodic read of Vault, landing after the pending key was written
    and before the push (an optional target pushed first, so the timing is the test's)."""

    target_id, required = "app-reads-vault", False

    def __init__(self, client):
        self.client = client

    def push(self, d: Delivery) -> PushResult:
        self.client.refresh()
        return PushResult(self.target_id, True, "ok")


def test_rollback_restores_a_webhook_app_that_installed_the_pending_key_and_clears_pending(env):
    """A rotation pushes serial 2 to the app's webhook receiver (a real KeyClient installs it), then a
    required target fails: the rollback pushes serial 1 back with a higher fence while Vault still
    lists serial 2 as pending (at the version the app last read). The receiver and the KeyClient take it (the fence is the authority),
    so the rollback finishes (pending cleared, no ``rolling_back`` left for later runs to repeat)."""
    from rotation.client.auth import TokenAuth
    from rotation.client.keys import KeyClient

    signing = secrets.token_urlsafe(32)
    env.root().secrets.kv.v2.create_or_update_secret(path="mail-api/webhooks/billing",
                                                       secret={"signing_secret": signing}, cas=0)
    client = KeyClient(env.stack.vault_addr, "billing", auth=TokenAuth(env.root().token), refresh_interval=3600)
    receiver = WebhookReceiver(signing, client)
    server = serve_webhook(receiver, "127.0.0.1", 0)
    try:
        spec = WebhookTarget(type="webhook", url=f"http://127.0.0.1:{server.server_address[1]}/")
        v = VaultStore(env.settings)
        fail = {"on": False}
        targets = lambda c: [_AppReadsVault(client), SignedWebhookTarget(spec, v, allow_loopback=True)] + (
            [_RefusesNewKeys()] if fail["on"] else [])
        assert env.engine(targets_for=targets).run(only=["billing"]).outcomes[0].outcome == "ok"
        old = env.state("billing").current
        assert client.current_key().serial == old.serial == 1
        fail["on"] = True
        out = env.engine(targets_for=targets).run(only=["billing"], force=["billing"]).outcomes[0]
        assert out.outcome == "rolled_back", out
        st = env.state("billing")
        assert st.pending is None and st.current.serial == 1, st
        key = client.current_key()
        assert (key.serial, key.value) == (1, old.value)             # the app is back on serial 1
        fail["on"] = False
        again = env.engine(targets_for=targets).run(only=["billing"]).outcomes[0]
        assert again.outcome != "rolled_back" and "roll" not in (again.action or ""), again
    finally:
        server.shutdown()
        server.server_close()
