"""Issue 19, fencing at the target: every push target (file, Secrets Manager and SSM against the
moto server, the webhook receiver) decides by ``(fence, serial)`` where the write lands, and can be
read back for reconciliation; a writer killed mid-write leaves no file holding the key."""

from __future__ import annotations

import json
import secrets
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.client.receiver import WebhookReceiver
from rotation.client.signing import standard_headers
from rotation.config import FileTarget
from rotation.targets import SUPERSEDED, Delivery
from rotation.targets.file import AtomicFileTarget
from rotation.targets.secretsmanager import SecretsManagerTarget
from rotation.targets.ssm import SsmParameterTarget

CANARY = "CANARY-fence-" + "z" * 28


def d(serial: int, fence: int, consumer: str = "billing") -> Delivery:
    return Delivery(consumer=consumer, serial=serial, rotation_id=f"rot-{serial}", key_id=f"kid{serial}",
                    value=f"{CANARY}{serial}", fence=fence)


class Kind:
    """One target type: the target, and what an app reading it would get (serial)."""

    def __init__(self, target, served: Callable[[], int], set_back_by_hand: Callable[[int], None]):
        self.target, self.served, self.set_back_by_hand = target, served, set_back_by_hand


@pytest.fixture(scope="module")
def aws(stack):
    session = stack.aws_session()
    mk = lambda svc: session.client(svc, endpoint_url=stack.aws_endpoint)
    return mk("secretsmanager"), mk("ssm")


@pytest.fixture(params=["file", "secretsmanager", "ssm"])
def kind(request, aws, tmp_path) -> Kind:
    sm, ssm = aws
    name = f"fence-{secrets.token_hex(4)}"
    if request.param == "file":
        path = tmp_path / "billing.key"

        def by_hand_file(serial: int) -> None:
            path.write_text(json.dumps({"consumer": "billing", "serial": serial, "key_id": f"kid{serial}",
                                        "api_key": f"{CANARY}{serial}"}))
        return Kind(AtomicFileTarget(FileTarget(type="file", path=path)),
                    lambda: json.loads(path.read_text())["serial"], by_hand_file)
    if request.param == "secretsmanager":
        sid = f"mail-api/{name}"

        def by_hand_sm(serial: int) -> None:
            sm.put_secret_value(SecretId=sid, SecretString=json.dumps({"api_key": f"{CANARY}{serial}",
                                                                       "serial": serial, "key_id": f"kid{serial}"}))
        return Kind(SecretsManagerTarget(sm, sid),
                    lambda: json.loads(sm.get_secret_value(SecretId=sid)["SecretString"])["serial"], by_hand_sm)
    pname = f"/mail-api/{name}"

    def by_hand_ssm(serial: int) -> None:
        ssm.put_parameter(Name=pname, Type="SecureString", Overwrite=True, Value=json.dumps(
            {"api_key": f"{CANARY}{serial}", "serial": serial, "key_id": f"kid{serial}"}))
    return Kind(SsmParameterTarget(ssm, pname), lambda: json.loads(
        ssm.get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"])["serial"], by_hand_ssm)


def test_a_write_with_an_older_fence_never_replaces_a_newer_key_at_the_target(kind):
    assert kind.target.push(d(3, fence=10)).ok
    stale = kind.target.push(d(2, fence=9))            # a runner that stalled past its lease
    assert stale.ok is False and stale.extra[SUPERSEDED] is True, stale
    assert "serial 3" in stale.detail and CANARY not in stale.detail
    assert kind.served() == 3
    held = kind.target.read_back("billing")
    assert held is not None and (held.serial, held.fence) == (3, 10), held


def test_within_one_fence_the_serial_never_goes_backwards(kind):
    assert kind.target.push(d(3, fence=5)).ok
    assert kind.target.push(d(2, fence=5)).ok is False
    assert kind.served() == 3
    assert kind.target.push(d(3, fence=5)).ok          # the same delivery again: a retry


def test_a_later_lease_holder_may_give_a_lower_serial_back(kind):
    """A rollback (or a repair) by a later lease holder carries a higher fence: it is accepted."""
    assert kind.target.push(d(3, fence=10)).ok
    back = kind.target.push(d(2, fence=11))
    assert back.ok, back.detail
    assert kind.served() == 2
    assert kind.target.read_back("billing").serial == 2


def test_a_target_set_back_by_hand_reads_back_as_not_current(kind):
    assert kind.target.read_back("billing") is None     # nothing written yet
    assert kind.target.push(d(3, fence=10)).ok
    kind.set_back_by_hand(1)
    held = kind.target.read_back("billing")
    assert held is not None and held.serial != 3
    assert kind.target.push(d(3, fence=12)).ok           # the reconciler's repair is accepted
    assert kind.served() == 3 and kind.target.read_back("billing").serial == 3


# -- the webhook receiver ------------------------------------------------------------------------
def test_webhook_receiver_refuses_a_delivery_older_than_the_key_it_holds_without_unwrapping_it():
    secret = secrets.token_urlsafe(32)
    unwrapped: list[str] = []
    tokens: dict[str, dict] = {}

    def unwrap(token: str) -> dict:
        unwrapped.append(token)
        return tokens.pop(token)

    got: list[int] = []
    receiver = WebhookReceiver(secret, unwrap, consumer="billing", on_key=lambda k: got.append(k.serial))

    def send(serial: int, fence: int):
        token = secrets.token_hex(8)
        tokens[token] = {"api_key": f"{CANARY}{serial}", "serial": serial, "key_id": f"kid{serial}"}
        body = json.dumps({"consumer": "billing", "serial": serial, "fence": fence, "rotation_id": f"rot-{serial}",
                           "key_id": f"kid{serial}", "wrap_token": token, "wrap_ttl": 60}).encode()
        return receiver.handle(standard_headers(secret, f"rot-{serial}:{serial}", int(time.time()), body), body), token

    assert send(3, 10)[0].outcome == "accepted"
    stale, token = send(2, 9)                            # a stalled rotator's delivery arrives late
    assert (stale.outcome, stale.status) == ("stale", 409), stale
    assert token not in unwrapped, "a stale delivery's wrapping token was unwrapped"
    assert send(2, 11)[0].outcome == "accepted"          # a later lease holder's rollback
    assert got == [3, 2]


# -- a writer killed mid-write -------------------------------------------------------------------
_KILLED_WRITER = textwrap.dedent("""
    import os, sys
    from rotation.config import FileTarget
    from rotation.targets import Delivery
    from rotation.targets.file import AtomicFileTarget

    def stalled_fsync(fd):           # the temp file holds the key now: tell the test, then hang
        print("ready", flush=True)
        sys.stdin.readline()

    os.fsync = stalled_fsync
    AtomicFileTarget(FileTarget(type="file", path=sys.argv[1])).push(
        Delivery("billing", 2, "rot-2", "kid2", sys.argv[2], fence=2))
""")


def test_a_writer_killed_mid_write_leaves_no_temp_file_with_the_key_after_the_next_push(tmp_path: Path):
    path = tmp_path / "billing.key"
    target = AtomicFileTarget(FileTarget(type="file", path=path))
    assert target.push(d(1, fence=1)).ok
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), f"{CANARY}killed"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().strip() == "ready", "the writer never reached its fsync"
        proc.kill()                                      # SIGKILL: no cleanup runs in the writer
    finally:
        proc.wait(60)
    holding = [p for p in tmp_path.iterdir() if p.is_file() and p != path and f"{CANARY}killed" in p.read_text()]
    assert holding, "precondition: the killed writer left its temporary file"
    assert target.push(d(3, fence=3)).ok
    left = [p.name for p in tmp_path.iterdir() if p.is_file() and p != path and CANARY in p.read_text()]
    assert left == [], f"files other than the target still hold a key: {left}"
    assert json.loads(path.read_text())["serial"] == 3


# -- SSM: the fence labels never pile up (Parameter Store keeps 100 versions, never a labelled one) --
def _fence_labelled(ssm, pname: str) -> list[int]:
    """The versions carrying a ``fence-F-serial-N`` label."""
    out, token = [], None
    while True:
        page = ssm.get_parameter_history(Name=pname, MaxResults=50, **({"NextToken": token} if token else {}))
        out += [int(v["Version"]) for v in page["Parameters"]
                if any(label.startswith("fence-") for label in v.get("Labels") or [])]
        token = page.get("NextToken")
        if not token:
            return out


def test_ssm_more_than_100_pushes_all_land_and_labels_stay_bounded(aws):
    _, ssm = aws
    pname = f"/mail-api/fence-many-{secrets.token_hex(4)}"
    target = SsmParameterTarget(ssm, pname)
    for i in range(1, 131):                              # fence and serial rising, as runs go by
        result = target.push(d(i, fence=100 + i))
        assert result.ok, (i, result.detail)
        assert len(_fence_labelled(ssm, pname)) <= 3
    assert json.loads(ssm.get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"])["serial"] == 130
    held = target.read_back("billing")
    assert held is not None and (held.serial, held.fence) == (130, 230), held
    assert target.push(d(129, fence=229)).extra[SUPERSEDED] is True    # the fence still holds
    back = target.push(d(129, fence=231))               # a later lease holder's rollback still lands
    assert back.ok, back.detail


def test_ssm_parameter_already_at_100_labelled_versions_is_freed_by_the_next_push(aws):
    """A parameter the former target left with a label on each of its 100 versions."""
    _, ssm = aws
    pname = f"/mail-api/fence-stuck-{secrets.token_hex(4)}"
    for i in range(1, 101):
        v = ssm.put_parameter(Name=pname, Type="SecureString", Overwrite=True, Value=f"{CANARY}{i}")["Version"]
        ssm.label_parameter_version(Name=pname, ParameterVersion=v, Labels=[f"fence-{i}-serial-{i}"])
    ssm.label_parameter_version(Name=pname, ParameterVersion=50, Labels=["operator-pin"])  # not ours: kept
    target = SsmParameterTarget(ssm, pname)
    assert target.push(d(99, fence=99)).extra[SUPERSEDED] is True      # refused: nothing removed
    assert len(_fence_labelled(ssm, pname)) == 100
    result = target.push(d(101, fence=101))
    assert result.ok, result.detail
    assert json.loads(ssm.get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"])["serial"] == 101
    assert len(_fence_labelled(ssm, pname)) <= 3
    history = ssm.get_parameter_history(Name=pname, MaxResults=50)["Parameters"]
    assert any("operator-pin" in (v.get("Labels") or []) for v in history)


def test_ssm_keeps_the_highest_fence_label_when_the_latest_version_holds_a_lower_one(aws):
    """After a race a lower fence's version can be the latest; pruning must not drop the higher
    fence that a later version put by hand (no label) is judged against."""
    _, ssm = aws
    pname = f"/mail-api/fence-race-{secrets.token_hex(4)}"
    target = SsmParameterTarget(ssm, pname)
    assert target.push(d(5, fence=20)).ok
    v = ssm.put_parameter(Name=pname, Type="SecureString", Overwrite=True, Value=f"{CANARY}4")["Version"]
    ssm.label_parameter_version(Name=pname, ParameterVersion=v, Labels=["fence-10-serial-4"])  # stalled runner's
    assert target.push(d(5, fence=10)).ok                # accepted against the latest (fence 10)
    assert target.push(d(6, fence=10)).ok                # prunes the stalled runner's label, not fence 20's
    assert "fence-10-serial-4" not in str(ssm.get_parameter_history(Name=pname)["Parameters"])
    ssm.put_parameter(Name=pname, Type="SecureString", Overwrite=True, Value=f"{CANARY}0")      # by hand
    held = target.read_back("billing")
    assert held is not None and held.fence == 20, held  # the highest fence is still on record
    assert target.push(d(6, fence=15)).extra[SUPERSEDED] is True


def test_ssm_a_label_removal_refused_by_iam_does_not_stop_the_push_and_is_reported(aws):
    from botocore.exceptions import ClientError

    _, ssm = aws

    class NoUnlabel:                                     # a policy without ssm:UnlabelParameterVersion
        def __getattr__(self, name):
            return getattr(ssm, name)

        def unlabel_parameter_version(self, **kw):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "UnlabelParameterVersion")

    pname = f"/mail-api/fence-iam-{secrets.token_hex(4)}"
    target = SsmParameterTarget(NoUnlabel(), pname)
    assert target.push(d(1, fence=1)).ok and target.push(d(2, fence=1)).ok   # nothing to remove yet
    result = target.push(d(3, fence=1))
    assert result.ok and "old fence labels not removed: aws: AccessDeniedException" in result.detail, result.detail
    assert json.loads(ssm.get_parameter(Name=pname, WithDecryption=True)["Parameter"]["Value"])["serial"] == 3
