"""Attacks tried against the delivery side that the code withstands (kept as regression tests),
plus the baselines for the scenarios in test_breaks.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from rotation.client.receiver import WebhookReceiver
from rotation.client.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from rotation.errors import CanaryMisconfigured
from rotation.verifiers.canary import CanaryVerifier

from .test_breaks import _consumers, _write_own_ack


def test_baseline_emergency_rotation_works_without_crafted_ack(env):
    cf = _consumers(env.tmp)
    env.engine(consumers=cf).run()
    leaked = env.state("crm").current
    out = env.engine(consumers=cf).run(only=["crm"], emergency=["crm"]).outcomes[0]
    assert (out.action, out.outcome) == ("emergency", "ok"), out
    assert env.apigw().get_api_key(apiKey=leaked.key_id)["enabled"] is False


def test_reported_token_the_rotator_never_sent_is_ignored_not_consumed(env):
    cf = _consumers(env.tmp)
    env.engine(consumers=cf).run()
    root = env.root()
    tok = root.adapter.post("/v1/sys/wrapping/wrap", json={"x": "y"}, wrap_ttl="300s")["wrap_info"]["token"]
    _write_own_ack(env, "crm", {"serial": 1, "unwrap_failures": [{"token": tok, "serial": 1}]})
    eng = env.engine(consumers=cf)
    eng.run(only=["crm"])
    assert [e["outcome"] for e in eng.audit.events if e["event"] == "tamper_check"] == ["unknown_token"]
    assert root.adapter.post("/v1/sys/wrapping/lookup", json={"token": tok})["data"]   # not consumed
    assert env.state("crm").current.serial == 1                                        # no emergency


def test_huge_future_ack_serial_does_not_touch_other_consumers(env):
    cf = _consumers(env.tmp)
    env.engine(consumers=cf).run()
    _write_own_ack(env, "crm", {"serial": 10**18, "key_id": "x"})
    before = {n: env.state(n).current.serial for n in ("billing", "newsletter")}
    out = env.engine(consumers=cf).run()
    assert all(o.outcome in ("skipped", "ok") for o in out.outcomes), out
    assert {n: env.state(n).current.serial for n in ("billing", "newsletter")} == before


def _signed(secret, body, ts=None, idem="rot:2"):
    ts = int(time.time()) if ts is None else ts
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body), IDEMPOTENCY_HEADER: idem}


def test_receiver_same_delivery_concurrently_unwraps_once():
    secret, calls = "s" * 32, []

    def unwrap(tok):
        calls.append(tok)
        time.sleep(0.3)
        return {"api_key": "v" * 40, "serial": 2, "key_id": "k2"}

    r = WebhookReceiver(secret, unwrap, consumer="crm")
    body = json.dumps({"consumer": "crm", "serial": 2, "rotation_id": "rot", "key_id": "k2",
                       "wrap_token": "hvs.t"}).encode()
    out = []
    ts = [threading.Thread(target=lambda: out.append(r.handle(_signed(secret, body), body))) for _ in range(5)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len(calls) == 1 and sorted(o.outcome for o in out).count("accepted") == 1


@pytest.mark.parametrize("mutate", ["whitespace", "future_ts", "lowercase_headers", "non_utf8"])
def test_receiver_rejects_mutations(mutate):
    secret = "s" * 32
    r = WebhookReceiver(secret, lambda t: pytest.fail("must not unwrap"), consumer="crm")
    body = json.dumps({"consumer": "crm", "serial": 2, "rotation_id": "rot", "key_id": "k2",
                       "wrap_token": "hvs.t"}).encode()
    h = _signed(secret, body)
    if mutate == "whitespace":
        res = r.handle(h, body.replace(b",", b", "))
        assert res.outcome == "bad_signature"
    elif mutate == "future_ts":
        res = r.handle(_signed(secret, body, ts=int(time.time()) + 301), body)
        assert res.outcome == "replay"
    elif mutate == "lowercase_headers":
        # lower-cased header names are still parsed; a signature with the wrong secret is refused
        res = r.handle({k.lower(): v for k, v in _signed("wrong" * 8, body).items()}, body)
        assert res.outcome == "bad_signature"
    else:
        res = r.handle(_signed(secret, b"\xff\xfe"), b"\xff\xfe")
        assert res.outcome == "bad_request"


class _Redirect(BaseHTTPRequestHandler):
    seen: ClassVar[list] = []

    def do_POST(self):
        _Redirect.seen.append(dict(self.headers))
        self.send_response(307)
        self.send_header("Location", f"http://127.0.0.1:{self.server.other}/steal")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_canary_never_follows_a_redirect_with_the_key():
    thief = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    srv.other = thief.server_address[1]
    thief.other = thief.server_address[1]
    _Redirect.seen = []
    for s in (thief, srv):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        class K:
            value, serial, key_id = "K" * 40, 2, "kid"
        with pytest.raises(CanaryMisconfigured):
            CanaryVerifier(f"http://127.0.0.1:{srv.server_address[1]}/v1/messages")("crm", K())
        assert len(_Redirect.seen) == 1
    finally:
        thief.shutdown()
        srv.shutdown()
