"""``make demo``: the rotation jobs end to end on the embedded stack.

Starts OpenBao and the AWS emulator, sets them up like production, then runs the real
``rotation`` CLI as a separate process for each scenario, printing ``rotation status`` after
each: first rotation, a normal rotation, an emergency rotation, and a revoke pass once the
(shortened) grace period has passed. Stops every server it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .config import load_consumers_file
from .dev import EmbeddedStack

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
  - name: billing
    tier: premium
    targets:
      - {{type: file, path: {workdir}/billing.key}}
  - name: crm
    tier: standard
    targets:
      - {{type: file, path: {workdir}/crm.key}}
  - name: newsletter
    tier: standard
"""


def _banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run_demo(grace_seconds: int = 4) -> int:
    """Run the scenario; return 0 when every step behaved as expected, 1 otherwise."""
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
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "AWS_"))},
               **stack.env(creds), "ROTATION_CONSUMERS_FILE": str(cfile),
               "ROTATION_AUDIT_LOG": str(stack.workdir / "audit.jsonl"), "ROTATION_VERIFY_TIMEOUT": "10"}

        def cli(*args: str, expect: int = 0) -> None:
            nonlocal failures
            print(f"$ rotation {' '.join(args)}", flush=True)
            r = subprocess.run([sys.executable, "-m", "rotation.cli", *args], env=env, text=True,
                               capture_output=True, timeout=120)
            out = (r.stdout + r.stderr).rstrip()
            if out:
                print("  " + out.replace("\n", "\n  "), flush=True)
            if r.returncode != expect:
                failures += 1
                print(f"  !! exit code {r.returncode}, expected {expect}", flush=True)

        _banner("before anything: no keys yet")
        cli("status")
        _banner("plan: what the first run would do (changes nothing)")
        cli("plan")
        _banner("first rotation: every consumer gets its first key")
        cli("run")
        cli("status")
        _banner("normal rotation of billing (old key stays enabled for its grace period)")
        cli("rotate", "billing")
        cli("status")
        _banner("emergency rotation of crm (leaked key: old key revoked at once)")
        cli("rotate", "crm", "--emergency")
        cli("status")
        _banner(f"wait {grace_seconds}s for billing's grace period, then a revoke pass")
        time.sleep(grace_seconds + 0.5)
        cli("run")
        cli("status")
        _banner(f"wait {grace_seconds}s for the retention period: disabled keys are deleted")
        time.sleep(grace_seconds + 0.5)
        cli("run")
        cli("status")
        key = Path(workdir / "billing.key")
        mode = oct(key.stat().st_mode & 0o777)
        print(f"\nbilling's sidecar file {key.name}: mode {mode}; audit events: "
              f"{sum(1 for _ in open(stack.workdir / 'audit.jsonl'))} lines in audit.jsonl (no key values)")
        apigw = stack.aws_session().client("apigateway", endpoint_url=stack.aws_endpoint)
        keys = apigw.get_api_keys(includeValues=False)["items"]
        print(f"API Gateway now holds {len(keys)} keys, {sum(k['enabled'] for k in keys)} enabled "
              f"(one per consumer)")
    print(f"\nservers stopped; demo took {time.monotonic() - t0:.1f}s; "
          f"{'all steps as expected' if not failures else f'{failures} step(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_demo())
