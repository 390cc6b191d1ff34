"""``make demo``: the rotation jobs end to end on the embedded stack.

Starts OpenBao and the AWS emulator, sets them up like production, serves the real mail API
handler behind the dev gateway (API-key checks as API Gateway does them), and keeps a sample
consuming app sending mail through it. Then runs the real ``rotation`` CLI as a separate process
for each scenario, printing ``rotation status`` and the keys the app switched to after each: first
rotation, a normal rotation, an emergency rotation, a revoke pass once the (shortened) grace
period has passed, and a ``rotation audit`` (HTML report in ``.dev-stack/audit-report.html``).
The test step of every rotation makes a canary call through the gateway.
Finally the zero-downtime proof runs traffic at 50 requests/s while keys rotate and a rotator is
killed, and prints its figures. Stops every server and process it started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rotation.config import load_consumers_file
from rotation.dev.stack import EmbeddedStack
from rotation.dev.workspace import DEV_DIR

REPO = Path(__file__).resolve().parents[2]
# what `rotation audit --expected-policies` needs to read the ACL policies in place
POLICY_READER = ('path "sys/policies/acl" { capabilities = ["list"] }\n'
                 'path "sys/policies/acl/mail-api-*" { capabilities = ["read"] }\n')

DEMO_CONSUMERS = """\
version: 1
usage_plans:
  standard: secure-mail-api-dev-standard
  premium: secure-mail-api-dev-premium
defaults:
  max_age: 30d
  grace_period: {grace}s
  retention: {grace}s
consumers:
  - name: billing              # pulls its key from Vault (the sample app below)
    tier: premium
  - name: crm                  # a sidecar reads the key from a file
    tier: standard
    targets:
      - {{type: file, path: {workdir}/crm.key}}
  - name: newsletter
    tier: standard
    targets:
      - {{type: file, path: {workdir}/newsletter.key}}
"""


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


class _AppLog:
    """Follows the sample app's output; reports key switches and answers since the last look."""

    def __init__(self, path: Path):
        self.path, self.pos = path, 0

    def wait_for(self, pattern: str, deadline_seconds: float = 90.0) -> bool:
        """Wait until a line written since the last :meth:`report` matches ``pattern`` (checked
        every 0.1 s, at most ``deadline_seconds``: a generous bound, not a speed claim)."""
        end = time.monotonic() + deadline_seconds
        while time.monotonic() < end:
            text = self.path.read_text() if self.path.exists() else ""
            if re.search(pattern, text[self.pos:]):
                return True
            time.sleep(0.1)
        return False

    def report(self) -> None:
        text = self.path.read_text() if self.path.exists() else ""
        new, self.pos = text[self.pos:], len(text)
        statuses: dict[str, int] = {}
        for line in new.splitlines():
            if "now using serial" in line:
                print(f"  app (billing): {line.split('] ', 1)[-1]}", flush=True)
            m = re.search(r"-> HTTP (\d+)", line)
            if m:
                statuses[m.group(1)] = statuses.get(m.group(1), 0) + 1
        if statuses:
            summary = ", ".join(f"{n} x HTTP {s}" for s, n in sorted(statuses.items()))
            print(f"  app (billing): {summary} since the last step (202 = accepted by the mail API)", flush=True)


class _Trail:
    """Reads the audit trail (JSON lines) and says what the last step actually did."""

    def __init__(self, path: Path):
        self.path = path
        self.pos = len(path.read_text()) if path.exists() else 0

    def report(self, label: str) -> tuple[int, int]:
        """Print and return the revoked and deleted keys recorded since the last call."""
        text = self.path.read_text() if self.path.exists() else ""
        new, self.pos = text[self.pos:], len(text)
        events = [json.loads(line) for line in new.splitlines() if line.startswith("{")]
        revoked = sum(1 for e in events if e.get("event") == "revoke" and e.get("outcome") in ("ok", "early"))
        deleted = sum(1 for e in events if e.get("event") == "delete" and e.get("outcome") == "ok")
        print(f"  => {label}: {revoked} old key(s) revoked (disabled and detached), {deleted} deleted "
              "(from the audit trail)", flush=True)
        return revoked, deleted


def current_serial(stack: EmbeddedStack, consumer: str) -> int | None:
    """The consumer's current serial, read from Vault (``None`` when it has no key)."""
    record = stack.root_client().secrets.kv.v2.read_secret_version(
        path=f"mail-api/keys/{consumer}", mount_point="secret", raise_on_deleted_version=True)
    current = (record["data"]["data"] or {}).get("current") or {}
    return current.get("serial")


def _wait_for_switch(follow: _AppLog, serial: int | None) -> int:
    """Wait until the sample app says it uses ``serial``, then report; 1 if it did not within 90 s."""
    if serial is None or not follow.wait_for(rf"now using serial {serial}\b"):
        print(f"  !! the sample app did not switch to serial {serial} within 90 s", flush=True)
        follow.report()
        return 1
    follow.report()
    return 0


def run_demo(grace_seconds: int = 4, proof_seconds: float = 20.0) -> int:
    """Run the scenario; return 0 when every step behaved as expected, 1 otherwise."""
    from rotation.dev.gateway import DevGateway

    t0 = time.monotonic()
    failures = 0
    with EmbeddedStack() as stack:
        workdir = stack.workdir / "consumers"
        workdir.mkdir()
        cfile = stack.workdir / "consumers.yaml"
        cfile.write_text(DEMO_CONSUMERS.format(grace=grace_seconds, workdir=workdir))
        consumers = load_consumers_file(cfile)
        creds = stack.bootstrap(consumers)
        print(f"OpenBao dev server {stack.vault_addr} (KV v2 'secret/' with cas_required, ACL policies, "
              f"AppRoles: rotator + {len(consumers.consumers)} consumers)")
        print(f"AWS emulator {stack.aws_endpoint} (REST API {creds.rest_api_id}, stage {creds.stage}, "
              f"usage plans {creds.usage_plan_ids})")
        with DevGateway(stack.aws_endpoint, rest_api_id=creds.rest_api_id, stage=creds.stage, quiet=True) as gw:
            print(f"local mail API (dev gateway + the real Lambda handler) at {gw.url}")
            base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_", "ROTATION_"))}
            env = {**base, **stack.env(creds), "ROTATION_CONSUMERS_FILE": str(cfile),
                   "ROTATION_AUDIT_LOG": str(stack.workdir / "audit.jsonl"), "ROTATION_VERIFY_TIMEOUT": "15",
                   "ROTATION_CANARY_URL": gw.url, "ROTATION_FILE_TARGET_DIRS": str(workdir)}
            role_id, secret_id = creds.consumer_roles["billing"]
            app_env = {**base, "VAULT_ADDR": stack.vault_addr, "VAULT_AUTH_METHOD": "approle",
                       "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id, "MAIL_API_CONSUMER": "billing"}
            app_log = stack.workdir / "sample-app.log"
            app = None
            app_out = open(app_log, "w")  # noqa: SIM115 - the app's stdout while it runs; closed below

            def cli(*args: str, expect: int = 0) -> None:
                nonlocal failures
                print(f"$ rotation {' '.join(args)}", flush=True)
                r = subprocess.run([sys.executable, "-m", "rotation.cli", *args], env=env, text=True,
                                   capture_output=True, timeout=120, check=False)
                out = (r.stdout + r.stderr).rstrip()
                if out:
                    print("  " + out.replace("\n", "\n  "), flush=True)
                if r.returncode != expect:
                    failures += 1
                    print(f"  !! exit code {r.returncode}, expected {expect}", flush=True)

            def cli_json(*args: str) -> None:
                """``rotation ARGS --json``: parsed as JSON (as ``jq`` would) and summarized."""
                nonlocal failures
                print(f"$ rotation {' '.join(args)} --json | jq -c .summary", flush=True)
                r = subprocess.run([sys.executable, "-m", "rotation.cli", *args, "--json"], env=env, text=True,
                                   capture_output=True, timeout=120, check=False)
                try:
                    doc = json.loads(r.stdout)
                    print(f"  {json.dumps(doc.get('summary'), separators=(',', ':'))}", flush=True)
                except ValueError:
                    failures += 1
                    print(f"  !! not one JSON document (exit {r.returncode}): {r.stdout[:200]!r}", flush=True)

            try:
                _banner("before anything: no keys yet")
                cli("status")
                _banner("plan: what the first run would do (changes nothing)")
                cli("plan")
                _banner("first rotation: every consumer gets its first key (the test step calls the mail API)")
                cli("run")
                cli("status")
                app = subprocess.Popen(
                    [sys.executable, str(REPO / "examples" / "sample_app" / "app.py"), "--url", gw.url,
                     "--interval-ms", "200", "--refresh-seconds", "1"],
                    env=app_env, stdout=app_out, stderr=subprocess.STDOUT, start_new_session=True)
                follow = _AppLog(app_log)
                if not follow.wait_for(r"-> HTTP \d+"):
                    failures += 1
                    print("  !! the sample app sent nothing within 90 s", flush=True)
                _banner("the sample app (billing) pulls its key from Vault and sends mail every 200 ms")
                follow.report()
                _banner("normal rotation of billing: the old key stays enabled for its grace period")
                cli("rotate", "billing")
                cli("status")
                failures += _wait_for_switch(follow, current_serial(stack, "billing"))
                _banner("emergency rotation of billing (a leaked key): the old key is revoked at once")
                cli("rotate", "billing", "--emergency")
                cli("status")
                failures += _wait_for_switch(follow, current_serial(stack, "billing"))
                _banner("emergency rotation of crm: its sidecar file gets the new key")
                cli("rotate", "crm", "--emergency")
                trail = _Trail(stack.workdir / "audit.jsonl")
                grace_over = time.monotonic() + grace_seconds + 0.5
                _banner(f"once the {grace_seconds}s grace period has passed: a revoke pass")
                time.sleep(max(0.0, grace_over - time.monotonic()))   # a deadline on the clock, not a race
                cli("run")
                _, deleted = trail.report("this pass")
                cli("status")
                _banner(f"once the {grace_seconds}s retention has passed too: a deletion pass")
                time.sleep(max(0.0, grace_over + grace_seconds - time.monotonic()))
                cli("run")
                _, deleted_now = trail.report("this pass")
                if not deleted_now and deleted:
                    print(f"  (nothing left to delete: the revoke pass above already deleted {deleted} key(s), "
                          "because it ran after their retention had passed too)", flush=True)
                cli("status")
                follow.report()
                report = DEV_DIR / "audit-report.html"
                report.parent.mkdir(exist_ok=True, mode=0o700)
                root = stack.root_client()   # a token that may read the ACL policies in place (drift check)
                root.sys.create_or_update_acl_policy("audit-policy-reader", POLICY_READER)
                env["AUDIT_VAULT_TOKEN"] = root.auth.token.create(
                    policies=["audit-policy-reader"], ttl="10m")["auth"]["client_token"]
                _banner(f"regular audit: key ages, last rotations, acks, key inventory, policy drift, the Vault "
                        f"audit log; HTML report with charts in {report}")
                cli("audit", "--html", str(report), "--expected-policies", "pkg:rotation.vault_policies",
                    "--policy-token-env", "AUDIT_VAULT_TOKEN", "--vault-audit-log", str(stack.audit_log))
                _banner("for scripts: every command prints one JSON document on stdout (schemas in "
                        "rotation/reporting/schemas/), e.g. `rotation status --json | jq`")
                for args in (("status",), ("plan",), ("run",), ("rotate", "crm"), ("audit",)):
                    cli_json(*args)
            finally:
                if app is not None:
                    app.terminate()
                    app.wait(10)
                app_out.close()
            failures += _access_levels(stack, creds)
            text = app_log.read_text() if app_log.exists() else ""
            forbidden = text.count("HTTP 403")
            accepted = text.count("HTTP 202")
            print(f"\nsample app: {accepted} messages accepted, {forbidden} rejected with 403 "
                  f"(a 403 is possible only in the emergency window, when the leaked key dies at once)")
            mode = oct((workdir / "crm.key").stat().st_mode & 0o777)
            events = len((stack.workdir / "audit.jsonl").read_text().splitlines())
            print(f"crm's sidecar file crm.key: mode {mode}; audit events: {events} lines in audit.jsonl "
                  "(no key values)")
            apigw = stack.aws_session().client("apigateway", endpoint_url=stack.aws_endpoint)
            keys = apigw.get_api_keys(includeValues=False)["items"]
            root = stack.root_client()
            in_grace = 0
            for c in consumers.consumers:
                record = root.secrets.kv.v2.read_secret_version(
                    path=f"mail-api/keys/{c.name}", mount_point="secret", raise_on_deleted_version=True)
                previous = (record["data"]["data"] or {}).get("previous")
                in_grace += previous is not None and not previous.get("disabled_at")
            print(f"API Gateway now holds {len(keys)} keys, {sum(k['enabled'] for k in keys)} enabled: one current "
                  f"key per consumer ({len(consumers.consumers)}) plus {in_grace} previous key(s) still in "
                  "their grace period")
    failures += _proof(proof_seconds)
    print(f"\nservers stopped; demo took {time.monotonic() - t0:.1f}s; "
          f"{'all steps as expected' if not failures else f'{failures} step(s) failed'}")
    return 1 if failures else 0


def _access_levels(stack: EmbeddedStack, creds) -> int:
    """The access levels of the dev stack config (Pulumi.dev.yaml, rendered by the Pulumi program's
    own code: ``python -m infra.handler_environment``) enforced by the real handler: billing's key
    may send as billing, not as crm. Returns the number of unexpected answers."""
    import requests

    from rotation.dev.gateway import DevGateway

    _banner("access levels per caller: billing's key sends as billing, and is refused as crm (403)")
    rendered = subprocess.run([sys.executable, "-m", "infra.handler_environment", str(REPO / "Pulumi.dev.yaml")],
                              cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    if rendered.returncode != 0:
        print(f"  !! cannot render the access levels: {rendered.stderr.strip()[:300]}", flush=True)
        return 1
    value = stack.root_client().secrets.kv.v2.read_secret_version(
        path="mail-api/keys/billing", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]["current"]["value"]
    failures = 0
    with DevGateway(stack.aws_endpoint, rest_api_id=creds.rest_api_id, stage=creds.stage, quiet=True,
                    key_cache_seconds=0, sender_identity="mail.dev.example.com",
                    environment=json.loads(rendered.stdout)) as gw:
        for sender, name, expect in (("billing@mail.dev.example.com", "Example Billing", 202),
                                     ("crm@mail.dev.example.com", "Example CRM", 403)):
            body = {"from": {"email": sender, "name": name}, "to": ["ops@example.org"],
                    "subject": "access level check", "text": "hello"}
            r = requests.post(gw.url, json=body, headers={"x-api-key": value}, timeout=60)
            reason = (r.json().get("error") or {}).get("reason", "") if r.status_code >= 400 else ""
            print(f"  POST /v1/messages from {sender} with billing's key -> HTTP {r.status_code} {reason}".rstrip(),
                  flush=True)
            if r.status_code != expect:
                print(f"  !! expected HTTP {expect}", flush=True)
                failures += 1
    return failures


def _proof(seconds: float) -> int:
    """The zero-downtime proof (bench/zero_downtime.py), at demo size."""
    script = REPO / "bench" / "zero_downtime.py"
    if not script.exists():
        print("\n(zero-downtime proof skipped: bench/zero_downtime.py is not in this checkout)")
        return 0
    _banner(f"zero-downtime proof: {seconds:.0f}s of mail from 3 apps aiming at 50 requests/s in total while keys "
            "rotate (normal and emergency) and one rotator is killed with SIGKILL")
    spec = importlib.util.spec_from_file_location("zero_downtime", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"{script}: not loadable as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    figures = mod.run_proof(seconds=seconds, rate=50, consumers=3, kills=1, out=lambda s: print("  " + s, flush=True))
    ok = figures.get("auth_rejected_normal", 1) == 0
    print(f"  => rate: {figures.get('rate_achieved')} requests/s achieved of the {figures.get('rate_target')} "
          f"aimed at ({figures.get('requests_sent')} requests; a busy machine sends fewer, the proof holds "
          "for what was sent)", flush=True)
    print(f"  => {'zero' if ok else 'SOME'} authentication failures across normal rotations", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo())
