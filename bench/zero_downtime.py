"""The zero-downtime proof: real traffic through the dev gateway while keys rotate.

Starts the embedded stack (OpenBao dev + moto on loopback) and the dev gateway
(:mod:`rotation.dev.gateway`: API-key checks from the emulator with a 2 s cache, usage-plan
throttle, the real Lambda handler behind it), bootstraps ``--consumers`` consumers, gives each its
first key with the real engine and the canary (:class:`rotation.verifiers.canary.CanaryVerifier`) in its
test step, then runs a fixed scenario while traffic flows (for at least ``--seconds``, and until
the scenario is done, however long a busy machine takes):

* **the app**: one sample consuming app per consumer (two sender threads sharing one
  :class:`rotation.client.keys.KeyClient`, AppRole login, ``refresh_interval`` 1 s, forced re-read
  on 403 at most every 0.5 s) sends valid ``POST /v1/messages`` at a steady total ``--rate``
  (requests/s), recording every answer (status, ``x-amzn-ErrorType``, key serial, time);
* **the rotator**: the real ``rotation`` CLI as **subprocesses**: ``rotate <consumer>`` (normal) for
  every consumer, then ``rotate <last consumer> --emergency``, then ``run`` past the grace period
  (revokes the old keys); ``--kills`` of these rotations are SIGKILLed a random moment (0-0.2 s)
  after the rotation is journaled in Vault, then ``rotation run`` resumes them once the lease
  (``ROTATION_LEASE_TTL=5`` s) has gone stale.

Consumers have ``grace_period`` = ``retention`` = ``--grace`` seconds (default 6) and no push
targets: the apps pull. The dev usage plans' throttle is raised to twice the per-consumer rate,
so 429s would point at a burst, not at the plan.

Figures (printed, and as JSON in ``bench/results/zero_downtime.json``):

* ``requests_sent`` and the answers by status;
* ``auth_rejected_normal``: 403 ``ForbiddenException`` outside emergency windows — **must be 0**;
* ``auth_rejected_emergency``: 403 ``ForbiddenException`` sent with a key that an emergency
  rotation (started before the request) had replaced: the expected cost of revoking a leaked key
  at once;
* ``throttled`` (429), ``other_errors`` (5xx, connection errors);
* ``max_promotion_to_use_seconds``: the longest gap between a key's promotion (the audit log's
  ``promote`` event) and the app's first request with that key (or a newer one);
* ``rotations`` (by kind, and how many promoted), ``kills``, and the rotator subprocesses' exit
  codes.

The canary in the subprocesses: ``ROTATION_CANARY_URL`` names the gateway, and the CLI adds the
CanaryVerifier to the test step. Without the canary (``--no-canary``, the control experiment), an
app can pick up a key the gateway does not accept yet.

Run: ``.venv/bin/python bench/zero_downtime.py --seconds 60 --rate 60 --kills 3``.
From code (the demo): :func:`run_proof`. Every process and server it starts is stopped at the
end, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONSUMER_NAMES = ("billing", "crm", "newsletter", "reports", "alerts", "support", "marketing", "ops")
MESSAGE = {"from": {"email": "alerts@example.com", "name": "Zero downtime"}, "to": ["ops@example.org"],
           "subject": "rotation load test", "text": "hello from the zero-downtime proof"}


# -- records ----------------------------------------------------------------------------------------
@dataclass
class Sample:
    t: float            # epoch seconds when sent
    consumer: str
    serial: int | None
    status: int         # 0: no answer (connection error / timeout), -1: no key
    error_type: str


@dataclass
class Rotation:
    kind: str           # normal | emergency | run | resume
    consumer: str | None
    started: float      # epoch seconds
    ended: float = 0.0
    code: int | None = None
    killed: bool = False
    output: str = ""


@dataclass
class Proof:
    samples: list[Sample] = field(default_factory=list)
    rotations: list[Rotation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    first_use: dict[tuple[str, int], float] = field(default_factory=dict)

    def add(self, s: Sample) -> None:
        with self.lock:
            self.samples.append(s)
            if s.serial is not None and (s.consumer, s.serial) not in self.first_use:
                self.first_use[(s.consumer, s.serial)] = s.t


def _consumers_yaml(names: list[str], grace: float) -> str:
    lines = ["version: 1", "usage_plans:", "  standard: secure-mail-api-dev-standard",
             "  premium: secure-mail-api-dev-premium", "defaults:", "  max_age: 30d",
             f"  grace_period: {grace:g}s", f"  retention: {grace:g}s", "consumers:"]
    for i, n in enumerate(names):
        lines += [f"  - name: {n}", f"    tier: {'premium' if i == 0 else 'standard'}"]
    return "\n".join(lines) + "\n"


def _promotions(audit_path: Path) -> list[dict[str, Any]]:
    out = []
    if not audit_path.exists():
        return out
    for line in audit_path.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "promote" and ev.get("outcome") == "ok":
            ev["at"] = datetime.fromisoformat(ev["ts"]).timestamp()
            out.append(ev)
    return out


def _app(proof: Proof, client: Any, consumer: str, url: str, rate: float, t_end: float, stop: threading.Event,
         phase: float) -> None:
    """One sender thread: a steady ``rate`` requests/s until ``t_end`` (epoch) or ``stop``."""
    import requests

    session = requests.Session()
    body = json.dumps(MESSAGE).encode()
    interval = 1.0 / rate
    next_t = time.time() + phase * interval
    while not stop.is_set():
        now = time.time()
        if now >= t_end:
            return
        if next_t > now:
            time.sleep(next_t - now)
        next_t += interval
        sent_at = time.time()
        try:
            key = client.current_key()
        except Exception as exc:  # noqa: BLE001 - KeyClientError: no usable key, recorded as such
            proof.add(Sample(sent_at, consumer, None, -1, type(exc).__name__))
            continue
        try:
            r = session.post(url, data=body, timeout=30,
                             headers={"x-api-key": key.value, "Content-Type": "application/json"})
            status, etype = r.status_code, r.headers.get("x-amzn-ErrorType", "")
        except requests.RequestException as exc:
            status, etype = 0, type(exc).__name__
        proof.add(Sample(sent_at, consumer, key.serial, status, etype))
        if status == 403:
            client.report_forbidden(key)


def run_proof(seconds: float = 30.0, rate: float = 60.0, consumers: int = 3, kills: int = 2,
              out: Callable[[str], None] = print, *, grace: float = 6.0, seed: int | None = None,
              key_cache_seconds: float = 2.0, results_file: Path | None = RESULTS / "zero_downtime.json",
              canary: bool = True) -> dict:
    """Run the proof; return the figures (see the module docstring) and print progress through
    ``out``. ``seconds`` of traffic at ``rate`` requests/s in total over ``consumers`` consumers
    (1..8), ``kills`` SIGKILLed rotations. ``canary=False`` runs the rotations without the canary
    (the control experiment: apps may then get a key the gateway does not accept yet).
    Raises ``RuntimeError`` when a server cannot start or the first keys fail."""
    if not 1 <= consumers <= len(CONSUMER_NAMES):
        raise ValueError(f"consumers must be 1..{len(CONSUMER_NAMES)}")
    from rotation.audit import AuditLog
    from rotation.client.keys import AppRoleAuth, KeyClient
    from rotation.config import load_consumers_file
    from rotation.dev.gateway import DevGateway
    from rotation.dev.stack import EmbeddedStack
    from rotation.settings import Settings
    from rotation.verifiers.canary import CanaryVerifier
    from rotation.wiring import build_engine

    rnd = random.Random(seed)
    names = list(CONSUMER_NAMES[:consumers])
    proof = Proof()
    stop = threading.Event()
    procs: list[subprocess.Popen] = []
    threads: list[threading.Thread] = []
    t0 = time.time()

    printed: list[str] = []
    user_out = out

    def out(text: str) -> None:
        printed.append(text)
        user_out(text)

    def say(text: str) -> None:
        out(f"t={time.time() - t0:5.1f}s {text}")

    with contextlib.ExitStack() as exits:
        stack = exits.enter_context(EmbeddedStack())
        cfile = stack.workdir / "consumers.yaml"
        cfile.write_text(_consumers_yaml(names, grace))
        cf = load_consumers_file(cfile)
        creds = stack.bootstrap(cf)
        audit_path = stack.workdir / "audit.jsonl"
        per_consumer = rate / consumers
        apigw = stack.aws_session().client("apigateway", endpoint_url=stack.aws_endpoint)
        for plan_id in creds.usage_plan_ids.values():
            limit = max(50.0, 2 * per_consumer)
            apigw.update_usage_plan(usagePlanId=plan_id, patchOperations=[
                {"op": "replace", "path": "/throttle/rateLimit", "value": f"{limit:g}"},
                {"op": "replace", "path": "/throttle/burstLimit", "value": str(int(2 * limit))}])
        gw = exits.enter_context(DevGateway(stack.aws_endpoint, key_cache_seconds=key_cache_seconds, quiet=True,
                                            concurrency=8))
        say(f"stack up: OpenBao {stack.vault_addr}, AWS emulator {stack.aws_endpoint}; "
            f"dev gateway {gw.url} (key cache {key_cache_seconds:g}s)")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_", "ROTATION_"))},
               **stack.env(creds), "ROTATION_CONSUMERS_FILE": str(cfile), "ROTATION_AUDIT_LOG": str(audit_path),
               "ROTATION_LEASE_TTL": "5", "ROTATION_VERIFY_TIMEOUT": "20", 
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}

        if canary:
            env["ROTATION_CANARY_URL"] = gw.url

        def _cleanup() -> None:
            stop.set()
            for p in procs:
                if p.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout=5)
            for th in threads:
                th.join(timeout=10)
        exits.callback(_cleanup)

        # first keys: the real engine in process, canary in its test step
        settings = Settings(**{k: v for k, v in env.items() if k.startswith(("VAULT_", "AWS_", "ROTATION_"))
                               and k not in ("ROTATION_CONSUMERS_FILE", "ROTATION_CANARY_URL")})
        engine = build_engine(settings, cf, audit=AuditLog(audit_path), verifiers=[CanaryVerifier(gw.url)])
        first = engine.run()
        bad = [o for o in first.outcomes if o.outcome != "ok"]
        if bad:
            raise RuntimeError(f"first keys failed: {[(o.consumer, o.outcome, o.detail) for o in bad]}")
        say(f"first keys for {', '.join(names)} (canary-verified through the gateway)")

        # the apps: they send until the scenario below is done and at least ``seconds`` have passed
        t_start = time.time()
        t_end = float("inf")
        for name in names:
            role_id, secret_id = creds.consumer_roles[name]
            client = KeyClient(stack.vault_addr, name, auth=AppRoleAuth(role_id, secret_id), refresh_interval=1.0,
                               min_forced_interval=0.5, timeout=5)
            client.current_key()
            for i in range(2):
                th = threading.Thread(target=_app, args=(proof, client, name, gw.url, per_consumer / 2, t_end, stop,
                                                         i / 2 + rnd.random() / 4), daemon=True)
                threads.append(th)
                th.start()
        say(f"apps sending {rate:g} requests/s in total ({per_consumer:.1f}/s per consumer) for at least "
            f"{seconds:g}s, until every rotation below is done")

        # progress: each promotion and when the app first used the new key
        reported: set[tuple[str, int]] = set()

        def report_promotions() -> None:
            for ev in _promotions(audit_path):
                k = (ev["consumer"], int(ev["serial"]))
                if k in reported or ev["at"] < t_start:
                    continue
                with proof.lock:
                    uses = [t for (c, s), t in proof.first_use.items() if c == k[0] and s >= k[1]]
                if uses:
                    reported.add(k)
                    kind = "emergency " if ev.get("emergency") else ""
                    out(f"t={ev['at'] - t0:5.1f}s promote {kind}{k[0]} serial={k[1]}; app uses serial "
                        f"{k[1]} after {max(0.0, min(uses) - ev['at']):.2f}s")

        def monitor() -> None:
            while not stop.wait(0.25):
                report_promotions()
        mon = threading.Thread(target=monitor, daemon=True)
        threads.append(mon)
        mon.start()

        # the rotator: real CLI subprocesses
        root = stack.root_client()

        def mid_rotation(consumer: str) -> bool:
            """The consumer's key record holds a pending key: the rotator is past its first step."""
            try:
                r = root.secrets.kv.v2.read_secret_version(path=f"mail-api/keys/{consumer}", mount_point="secret",
                                                          raise_on_deleted_version=False)
            except Exception:  # noqa: BLE001 - not written yet
                return False
            return bool((r["data"].get("data") or {}).get("pending"))

        def cli(kind: str, consumer: str | None, args: list[str], kill_after: float | None = None) -> Rotation:
            """Run the CLI; with ``kill_after``, SIGKILL it ``kill_after`` seconds after the rotation
            is journaled in Vault (an event, not a guess at how fast this machine starts Python)."""
            rot = Rotation(kind, consumer, time.time())
            proc = subprocess.Popen([sys.executable, "-m", "rotation.cli", *args], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True, cwd=stack.workdir)
            procs.append(proc)
            try:
                if kill_after is not None:
                    deadline = time.time() + 90
                    while proc.poll() is None and time.time() < deadline and not mid_rotation(consumer):
                        time.sleep(0.05)
                rot.output, _ = proc.communicate(timeout=kill_after if kill_after is not None else 90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rot.output, _ = proc.communicate()
                rot.killed = True
            rot.code, rot.ended = proc.returncode, time.time()
            proof.rotations.append(rot)
            return rot

        # A fixed scenario, whatever the machine's speed: a normal rotation of every consumer, then an
        # emergency rotation, ``kills`` of them SIGKILLed mid-rotation (after the rotation is
        # journaled) and resumed; then a run past the grace period revokes the old keys.
        scenario = [("normal", n) for n in names] + [("emergency", names[-1])]
        killed_steps = set(rnd.sample(range(len(scenario)), min(kills, len(scenario))))
        kills_done = 0

        def rotate(kind: str, name: str, kill: bool) -> None:
            nonlocal kills_done
            args = ["rotate", name] + (["--emergency"] if kind == "emergency" else [])
            rot = cli(kind, name, args, kill_after=rnd.uniform(0.0, 0.2) if kill else None)
            if rot.killed:
                kills_done += 1
                say(f"SIGKILL rotator ({kind} rotation of {name}) after {rot.ended - rot.started:.2f}s")
                time.sleep(5.2)       # ROTATION_LEASE_TTL: let the lease go stale
                res = cli("resume", name, ["run"])
                say(f"rotation run (resume) -> exit {res.code}: {_summary(res.output)}")
            else:
                say(f"rotation {' '.join(args)} -> exit {rot.code}: {_summary(rot.output)}")

        for step, (kind, name) in enumerate(scenario):
            rotate(kind, name, step in killed_steps)
        for attempt in range(3 * kills):       # a rotation that finished before its kill: kill another
            if kills_done >= kills:
                break
            rotate("normal", names[attempt % len(names)], True)
        time.sleep(grace + 0.5)
        res = cli("run", None, ["run"])     # revokes what is past its grace
        say(f"rotation run -> exit {res.code}: {_summary(res.output)}")
        while time.time() < t_start + seconds:    # let the apps run for at least ``seconds``
            time.sleep(0.1)
        stop.set()
        for th in threads:
            th.join(timeout=10)
        final = cli("run", None, ["run"])         # finish anything still in flight
        time.sleep(0.3)
        report_promotions()
        end_state = _end_state(settings, cf, apigw, proof, printed)

        # figures
        promos = [p for p in _promotions(audit_path) if p["at"] >= t_start]
        emergency_starts = [(r.consumer, r.started) for r in proof.rotations if r.kind == "emergency"]
        emergency_serials: dict[str, list[tuple[int, float]]] = {}
        for p in promos:
            if p.get("emergency"):
                start = max((s for c, s in emergency_starts if c == p["consumer"] and s <= p["at"]), default=p["at"])
                emergency_serials.setdefault(p["consumer"], []).append((int(p["serial"]), start))

        def in_emergency_window(s: Sample) -> bool:
            return any(s.serial is not None and s.serial < serial and s.t >= started
                       for serial, started in emergency_serials.get(s.consumer, []))

        forbidden = [s for s in proof.samples if s.status == 403 and s.error_type == "ForbiddenException"]
        gaps = []
        for p in promos:
            uses = [t for (c, s), t in proof.first_use.items() if c == p["consumer"] and s >= int(p["serial"])]
            if uses:
                gaps.append(max(0.0, min(uses) - p["at"]))
        statuses: dict[str, int] = {}
        for s in proof.samples:
            statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
        sent = [s for s in proof.samples if s.status != -1]
        span = (max(s.t for s in sent) - min(s.t for s in sent)) if len(sent) > 1 else 0.0
        kinds: dict[str, int] = {}
        for r in proof.rotations:
            if r.kind in ("normal", "emergency"):
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
        figures = {
            "seconds": seconds, "rate_target": rate, "consumers": consumers,
            "requests_sent": len(sent),
            "rate_achieved": round(len(sent) / span, 1) if span else 0.0,
            "answers": dict(sorted(statuses.items())),
            "auth_rejected_normal": sum(1 for s in forbidden if not in_emergency_window(s)),
            "auth_rejected_emergency": sum(1 for s in forbidden if in_emergency_window(s)),
            "routing_errors": sum(1 for s in proof.samples if s.error_type == "MissingAuthenticationTokenException"),
            "throttled": statuses.get("429", 0),
            "other_errors": sum(v for k, v in statuses.items() if k == "0" or k.startswith("5")),
            "no_key": statuses.get("-1", 0),
            "max_promotion_to_use_seconds": round(max(gaps), 3) if gaps else None,
            "promotions": len(promos),
            "promotions_emergency": sum(1 for p in promos if p.get("emergency")),
            "consumers_rotated": len({p["consumer"] for p in promos}),
            "rotations": kinds,
            "kills": sum(1 for r in proof.rotations if r.killed),
            "rotator_exit_codes": [r.code for r in proof.rotations],
            "final_run_exit_code": final.code,
            "gateway_answers": {str(k): v for k, v in sorted(gw.status_counts().items())},
            **end_state,
        }
    out("")
    out("zero-downtime proof: figures")
    for k in ("requests_sent", "rate_achieved", "auth_rejected_normal", "auth_rejected_emergency", "throttled",
              "other_errors", "max_promotion_to_use_seconds", "promotions", "promotions_emergency", "rotations",
              "kills", "in_flight_at_end", "enabled_keys_unknown_to_vault", "key_values_in_output", "answers"):
        out(f"  {k:32s} {figures[k]}")
    verdict = "OK: no authentication failure across normal rotations" if figures["auth_rejected_normal"] == 0 \
        else "FAILED: authentication failures outside emergency windows"
    out(f"  {verdict}")
    if results_file is not None:
        results_file.parent.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(figures, indent=2) + "\n")
        out(f"  (JSON in {results_file})")
    return figures


def _end_state(settings: Any, cf: Any, apigw: Any, proof: Proof, printed: list[str]) -> dict[str, Any]:
    """After the last run: rotations still in flight, enabled API keys Vault does not know, and
    how many key values (every one Vault holds) appear in anything printed or logged."""
    from rotation.backends.vault import VaultStore

    store = VaultStore(settings)
    known: set[str] = set()
    values: set[str] = set()
    in_flight = 0
    for c in cf.consumers:
        st = store.read_key_state(c.name)
        known |= st.known_key_ids()
        in_flight += st.pending is not None
        for rec in (st.current, st.previous, st.pending, *st.retired):
            if rec is not None and rec.value:
                values.add(rec.value)
    keys = apigw.get_api_keys(includeValues=True, limit=500)["items"]
    values |= {k["value"] for k in keys if k.get("value")}
    text = "\n".join(printed) + "\n".join(r.output for r in proof.rotations)
    return {
        "in_flight_at_end": in_flight,
        "enabled_keys_unknown_to_vault": sum(1 for k in keys if k.get("enabled") and k["id"] not in known),
        "key_values_in_output": sum(1 for v in values if v in text),
    }


def _summary(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln and not ln.startswith((" ", "\t"))]
    interesting = [ln for ln in lines if ":" in ln and not ln.startswith(("Traceback", "{"))]
    return "; ".join(interesting[-4:])[:300] or "(no output)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description="Zero-downtime proof: traffic through the dev gateway while keys rotate.")
    p.add_argument("--seconds", type=float, default=60.0, help="traffic duration (s)")
    p.add_argument("--rate", type=float, default=60.0, help="total requests per second (>= 50 for the proof)")
    p.add_argument("--consumers", type=int, default=3)
    p.add_argument("--kills", type=int, default=3, help="rotator processes to SIGKILL at random moments")
    p.add_argument("--grace", type=float, default=6.0, help="grace period and retention (s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-canary", action="store_true", help="control experiment: rotate without the canary")
    a = p.parse_args(argv)
    figures = run_proof(a.seconds, a.rate, a.consumers, a.kills, grace=a.grace, seed=a.seed, canary=not a.no_canary,
                        results_file=RESULTS / ("zero_downtime_no_canary.json" if a.no_canary
                                                else "zero_downtime.json"))
    return 0 if figures["auth_rejected_normal"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
