"""``make bench``: rotation throughput on the embedded stack (OpenBao dev + moto on loopback).

Rotates N consumers (default 200, ``--consumers N``) with the real :class:`rotation.engine.runner.Engine`
and prints, as a table and as JSON in ``bench/results/latest.json``:

* **unlimited** (the API Gateway limiter set effectively off): the wall time of the first rotation
  of every consumer (bootstrap), of a forced rotation of every consumer, and of a revoke pass,
  each next to the **bare sequence**: the same Vault and AWS calls made straight with hvac and
  boto3 (no engine), replayed against the same servers. The engine's overhead is the ratio.
* **AWS limits** (the default limiter: 10 calls/s, burst 40; Create/DeleteApiKey 5/s): the wall
  time of a forced rotation of every consumer next to the minimum those limits allow for the
  AWS calls it made.

Consumers: ``c0001`` .. ``cNNNN``, alternating tiers ``standard`` / ``premium``, **no push
targets** (so only Vault and API Gateway are measured), ``grace_period: 1s`` (so a revoke pass can
clear the previous key before the second forced rotation, which would otherwise wait for the
grace period), ``retention: 7d`` (nothing is deleted during the bench).

Calls are counted at the HTTP level: a ``requests`` response hook on hvac's session (one per
Vault request) and botocore's ``before-send`` event (one per AWS attempt, retries included).
The script changes nothing in ``rotation/``; it only observes. Every server it starts is stopped
on exit, including on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3
import hvac

from rotation.audit import REDACTOR, AuditLog
from rotation.backends.apigateway import ApiGatewayKeys
from rotation.backends.ratelimit import ControlPlaneLimiter
from rotation.backends.vault import VaultStore
from rotation.config import ConsumersFile
from rotation.dev.stack import EmbeddedStack, _bin
from rotation.engine.runner import Engine
from rotation.records import KeyState
from rotation.settings import Settings
from rotation.wiring import make_targets

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"

# AWS's published API Gateway control-plane limits (rotation/backends/ratelimit.py)
AWS_RATE, AWS_BURST, AWS_KEY_WRITES = 10.0, 40, 5.0
KEY_WRITE_OPS = ("CreateApiKey", "DeleteApiKey")


# --------------------------------------------------------------------------------------------
# call counting
# --------------------------------------------------------------------------------------------
_KV = re.compile(r"^/v1/(?P<mount>[^/]+)/(?P<kind>data|metadata)/")


def vault_kind(method: str, path: str, status: int) -> str:
    """``GET data``, ``GET data (404)``, ``POST data (CAS)``, ``POST metadata`` or the raw path."""
    path = path.split("?", 1)[0]
    m = _KV.match(path)
    if m:
        if method == "GET" and m["kind"] == "data":
            return "vault GET data" + (" (404)" if status == 404 else "")
        if method in ("POST", "PUT") and m["kind"] == "data":
            return "vault POST data (CAS)"
        if method in ("POST", "PUT") and m["kind"] == "metadata":
            return "vault POST metadata"
    return f"vault {method} {path}"


class Calls:
    """Counts Vault HTTP requests and AWS attempts by kind, for whichever clients it is hooked to."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def hook_vault(self, client: hvac.Client) -> None:
        def on_response(resp, *_a, **_kw):
            self.counts[vault_kind(resp.request.method, resp.request.path_url, resp.status_code)] += 1
        client.adapter.session.hooks["response"].append(on_response)

    def hook_aws(self, client: Any) -> None:
        def before_send(event_name: str = "", request: Any = None, **_kw):
            op = event_name.rsplit(".", 1)[-1]
            if op == "GetApiKeys":
                op += " (name)" if request is not None and "name=" in (request.url or "") else " (all)"
            self.counts[f"aws {op}"] += 1
        client.meta.events.register("before-send.apigateway", before_send)

    def snapshot(self) -> collections.Counter[str]:
        return collections.Counter(self.counts)

    @staticmethod
    def since(now: collections.Counter[str], before: collections.Counter[str]) -> dict[str, int]:
        return {k: now[k] - before.get(k, 0) for k in sorted(now) if now[k] - before.get(k, 0)}


def totals(counts: dict[str, int]) -> tuple[int, int]:
    return (sum(v for k, v in counts.items() if k.startswith("vault ")),
            sum(v for k, v in counts.items() if k.startswith("aws ")))


# --------------------------------------------------------------------------------------------
# the bare sequence: the engine's calls, straight through hvac and boto3
# --------------------------------------------------------------------------------------------
class Bare:
    """Replays, per consumer, the Vault and AWS calls one engine rotation (or revoke) makes,
    with plain hvac/boto3 clients and no engine, on scratch paths (``<prefix>/bench-bare/...``)
    and scratch API keys (``bench-bare-<name>-<serial>``, not tagged as managed)."""

    def __init__(self, stack: EmbeddedStack, settings: Settings, plan_ids: dict[str, str], calls: Calls):
        self.mount, self.prefix = settings.vault_kv_mount, settings.vault_kv_prefix
        self.v = hvac.Client(url=stack.vault_addr, timeout=10)
        self.v.auth.approle.login(role_id=settings.vault_role_id,
                                  secret_id=settings.vault_secret_id.get_secret_value(), use_token=True)
        self.aws = stack.aws_session().client("apigateway", endpoint_url=stack.aws_endpoint)
        self.plan_ids = plan_ids
        calls.hook_vault(self.v)
        calls.hook_aws(self.aws)
        self.lat: dict[str, list[float]] = collections.defaultdict(list)
        self.version: dict[str, int] = {}
        self.key_ids: dict[str, str] = {}

    def _t(self, kind: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            self.lat[kind].append(time.perf_counter() - t0)

    def _read(self, path: str) -> None:
        self._t("vault GET data", self.v.secrets.kv.v2.read_secret_version,
                path=path, mount_point=self.mount, raise_on_deleted_version=False)

    def _write(self, path: str, data: dict) -> None:
        r = self._t("vault POST data (CAS)", self.v.secrets.kv.v2.create_or_update_secret,
                    path=path, secret=data, cas=self.version.get(path, 0), mount_point=self.mount)
        self.version[path] = int(r["data"]["version"])

    def _meta(self, path: str, summary: dict) -> None:
        self._t("vault POST metadata", self.v.secrets.kv.v2.update_metadata,
                path=path, mount_point=self.mount, custom_metadata=summary)

    def paths(self, name: str) -> tuple[str, str]:
        return f"{self.prefix}/bench-bare/keys/{name}", f"{self.prefix}/bench-bare/rotations/{name}"

    def snapshot_serial(self, name: str) -> None:
        """Once per forced consumer at the start of run(): read the current serial, so a rotation
        completed meanwhile by another runner satisfies the request (Engine.run)."""
        self._read(self.paths(name)[0])

    def list_all(self) -> None:
        """Once per run: the engine's orphan-sweep listing (GetApiKeys, every key)."""
        self._t("aws GetApiKeys (all)", self.aws.get_api_keys, includeValues=False)

    def rotate(self, name: str, tier: str, serial: int, keys_doc: dict, rot_doc: dict, summary: dict) -> None:
        """Engine.process() for a forced rotation with no push targets, call for call."""
        k, r = self.paths(name)
        key_name = f"bench-bare-{name}-{serial}"
        self._read(k)                       # process(): read_key_state
        self._read(r)                       #            read_rotation (reused by acquire_lease)
        self._write(r, rot_doc)             # acquire_lease: CAS write
        self._read(k)                       # _process_locked: fresh read under the lease
        self._write(k, keys_doc)            # record pending
        self._meta(k, summary)
        self._write(r, rot_doc)             # journal pending_recorded
        self._t("aws GetApiKeys (name)", self.aws.get_api_keys, nameQuery=key_name, includeValues=False)
        kid = self._t("aws CreateApiKey", self.aws.create_api_key, name=key_name, value=secrets.token_hex(20),
                      enabled=True, description=f"{name} key {serial}, bench",
                      tags={"bench": "bare", "secure-mail-api:stack": "bench-bare", "c": name,
                            "s": str(serial), "r": secrets.token_hex(16)})["id"]
        self.key_ids[name] = kid
        self._write(k, keys_doc)            # record key id
        self._meta(k, summary)
        self._t("aws CreateUsagePlanKey", self.aws.create_usage_plan_key,
                usagePlanId=self.plan_ids[tier], keyId=kid, keyType="API_KEY")
        self._write(r, rot_doc)             # journal key_created
        self._t("aws GetApiKey", self.aws.get_api_key, apiKey=kid, includeValue=True)   # test
        self._t("aws GetUsagePlans", self.aws.get_usage_plans, keyId=kid)
        self._write(r, rot_doc)             # journal tested
        self._write(r, rot_doc)             # journal distributed (no targets)
        self._write(k, keys_doc)            # promote
        self._meta(k, summary)
        self._write(r, rot_doc)             # journal promoted
        self._write(r, rot_doc)             # release lease

    def revoke(self, name: str, tier: str, keys_doc: dict, rot_doc: dict, summary: dict) -> None:
        """Engine.process() for a revoke pass (previous key past its grace period), call for call."""
        k, r = self.paths(name)
        kid = self.key_ids[name]
        self._read(k)
        self._read(r)
        self._write(r, rot_doc)             # acquire lease
        self._read(k)
        self._t("aws GetApiKey", self.aws.get_api_key, apiKey=kid, includeValue=False)
        self._t("aws UpdateApiKey", self.aws.update_api_key, apiKey=kid,
                patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
        self._t("aws DeleteUsagePlanKey", self.aws.delete_usage_plan_key, usagePlanId=self.plan_ids[tier], keyId=kid)
        self._write(k, keys_doc)            # previous -> retired
        self._meta(k, summary)
        self._write(r, rot_doc)             # renew lease
        self._write(r, rot_doc)             # release lease

    def latency_table(self) -> dict[str, dict[str, float]]:
        out = {}
        for kind, xs in sorted(self.lat.items()):
            out[kind] = {"n": len(xs), "mean_ms": 1000 * statistics.fmean(xs),
                         "p50_ms": 1000 * statistics.median(xs),
                         "p95_ms": 1000 * sorted(xs)[max(0, int(0.95 * len(xs)) - 1)]}
        return out


def bare_estimate(counts: dict[str, int], lat: dict[str, dict[str, float]]) -> tuple[float, list[str]]:
    """Sum over call kinds of count x mean bare latency; kinds never timed bare are listed."""
    fallback = {"vault GET data (404)": "vault GET data"}
    total, missing = 0.0, []
    for kind, n in counts.items():
        k = kind if kind in lat else fallback.get(kind)
        if k in lat:
            total += n * lat[k]["mean_ms"] / 1000
        else:
            missing.append(kind)
    return total, missing


def aws_limit_minimum(counts: dict[str, int], rate: float = AWS_RATE, burst: int = AWS_BURST,
                      key_rate: float = AWS_KEY_WRITES) -> dict[str, float]:
    """The least wall time AWS's token buckets allow for these calls, starting with full buckets."""
    aws_total = totals(counts)[1]
    key_writes = sum(v for k, v in counts.items() if k.split(" ")[-1] in KEY_WRITE_OPS)
    all_calls = max(0.0, (aws_total - burst) / rate)
    writes = max(0.0, (key_writes - max(1.0, key_rate)) / key_rate)
    return {"aws_calls": aws_total, "key_writes": key_writes, "all_calls_bucket_s": all_calls,
            "key_writes_bucket_s": writes, "minimum_s": max(all_calls, writes)}


# --------------------------------------------------------------------------------------------
# the engine, built by hand like rotation.wiring.build_engine (so the limiter can be swapped)
# --------------------------------------------------------------------------------------------
def build(settings: Settings, consumers: ConsumersFile, stack: EmbeddedStack, calls: Calls,
          limiter: ControlPlaneLimiter | None, audit_path: Path) -> Engine:
    vault = VaultStore(settings)
    for w in vault.check_mount():
        print(f"  vault warning: {w}")
    apigw = ApiGatewayKeys(settings, session=stack.aws_session(), limiter=limiter)
    calls.hook_vault(vault.client)
    calls.hook_aws(apigw.client)
    return Engine(consumers, vault, apigw, AuditLog(audit_path), lease_ttl_seconds=settings.lease_ttl_seconds,
                  verify_timeout_seconds=settings.verify_timeout_seconds,
                  targets_for=lambda c: make_targets(c, vault, settings))


class ScrubTimer:
    """Times the process-wide audit redactor (REDACTOR.scrub) from the outside."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0
        inner = REDACTOR.scrub

        def timed(text: str) -> str:
            t0 = time.perf_counter()
            try:
                return inner(text)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
        REDACTOR.scrub = timed  # instance attribute: scrub_obj() goes through it too

    def mark(self) -> tuple[float, int, int]:
        return self.seconds, self.calls, len(REDACTOR._secrets)


def run_phase(name: str, engine: Engine, calls: Calls, scrub: ScrubTimer, n: int, *, force: bool = False,
              blocks: list[list[str]] | None = None,
              bare_block: Callable[[int, list[str]], float] | None = None) -> dict:
    """``engine.run()`` over every consumer, timed, with its calls counted.

    With ``blocks``, one ``run(only=block)`` per block, each paired with ``bare_block(i, block)``
    (the bare sequence for as many scratch consumers), the two taking turns to go first: engine and
    bare then see the same server state and the same background load (the machine may be shared).
    """
    before, s0 = calls.snapshot(), scrub.mark()
    wall = bare_s = 0.0
    outcomes: collections.Counter[str] = collections.Counter()
    failed = []

    def engine_block(block: list[str] | None) -> None:
        nonlocal wall
        t0 = time.perf_counter()
        summary = engine.run(only=block, force=(block or [c.name for c in engine.consumers.consumers])
                             if force else ())
        wall += time.perf_counter() - t0
        outcomes.update(f"{o.action}:{o.outcome}" for o in summary.outcomes)
        failed.extend(summary.failed)

    for i, block in enumerate(blocks or [None]):
        if bare_block is not None and i % 2 == 1:
            bare_s += bare_block(i, block)
            engine_block(block)
        else:
            engine_block(block)
            if bare_block is not None:
                bare_s += bare_block(i, block)
    s1 = scrub.mark()
    counts = Calls.since(calls.snapshot(), before)
    v, a = totals(counts)
    res = {"phase": name, "wall_s": wall, "consumers": n, "engine_runs": len(blocks or [None]),
           "outcomes": dict(outcomes), "failed": len(failed), "vault_calls": v, "aws_calls": a,
           "vault_calls_per_consumer": v / n, "aws_calls_per_consumer": a / n,
           "consumers_per_s": n / wall, "calls": counts,
           "audit_redaction_s": s1[0] - s0[0], "audit_redaction_calls": s1[1] - s0[1],
           "redactor_secrets_at_end": s1[2]}
    if bare_block is not None:
        res["bare_replay_s"] = bare_s
        res["overhead_ratio"] = wall / bare_s
    limiter = engine.apigw.limiter
    res["limiter_waited_s"] = limiter.waited_seconds
    limiter.waited_seconds = 0.0
    if failed:
        res["failures"] = [f"{o.consumer}: {o.detail}" for o in failed[:5]]
    extra = f"   bare {bare_s:6.2f} s" if bare_block is not None else ""
    print(f"  {name:<24} {wall:7.2f} s{extra}  {dict(outcomes)}", flush=True)
    return res


# --------------------------------------------------------------------------------------------
def machine() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    bao = subprocess.run([_bin("bao"), "version"], capture_output=True, text=True, check=False).stdout.split(" (")[0].strip()
    import moto
    return {"cpu_count": os.cpu_count(), "cpus_usable": affinity, "machine": platform.machine(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "openbao": bao, "moto": moto.__version__, "hvac": getattr(hvac, "__version__", "?"),
            "boto3": boto3.__version__}


def consumers_file(n: int) -> ConsumersFile:
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": "1s", "retention": "7d"},
        "consumers": [{"name": f"c{i:04d}", "tier": "premium" if i % 2 == 0 else "standard"}
                      for i in range(1, n + 1)],
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--consumers", type=int, default=200, help="how many consumers to rotate (default 200)")
    ap.add_argument("--block", type=int, default=25,
                    help="consumers per engine run when timing against the bare sequence (default 25)")
    ap.add_argument("--skip-limits", action="store_true", help="skip the run under AWS's limits (~100 s)")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    n = args.consumers
    t_start = time.perf_counter()
    mach = machine()
    print(f"machine: {mach['cpu_count']} CPUs ({mach['cpus_usable']} usable), {mach['machine']}, {mach['system']}, "
          f"Python {mach['python']}, {mach['openbao']}, moto {mach['moto']}", flush=True)
    consumers = consumers_file(n)
    names = [c.name for c in consumers.consumers]
    scrub = ScrubTimer()
    result: dict[str, Any] = {"machine": mach, "consumers": n, "targets": "none",
                              "consumers_file": {"tiers": 2, "grace_period": "1s", "retention": "7d"},
                              "phases": {}}

    with EmbeddedStack() as stack:
        t0 = time.perf_counter()
        creds = stack.bootstrap(consumers)
        result["stack_bootstrap_s"] = time.perf_counter() - t0
        print(f"stack: OpenBao {stack.vault_addr}, moto {stack.aws_endpoint}; "
              f"{n} consumers bootstrapped in {result['stack_bootstrap_s']:.1f} s", flush=True)
        env = stack.env(creds)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})  # this process only
        settings = Settings(_env_file=None, vault_addr=env["VAULT_ADDR"], vault_auth_method="approle",
                            vault_role_id=env["VAULT_ROLE_ID"], vault_secret_id=env["VAULT_SECRET_ID"],
                            vault_kv_mount=env["VAULT_KV_MOUNT"], vault_kv_prefix=env["VAULT_KV_PREFIX"],
                            aws_region=env["AWS_REGION"], aws_endpoint_url=env["AWS_ENDPOINT_URL"],
                            stack=env["ROTATION_STACK"], verify_timeout_seconds=30, lease_ttl_seconds=300,
                            apigw_rate_per_second=AWS_RATE, apigw_burst=AWS_BURST,
                            apigw_key_writes_per_second=AWS_KEY_WRITES, audit_log=None)
        calls = Calls()
        phases = result["phases"]

        # -- phase A: limiter effectively off ----------------------------------------------------
        print("phase A: limiter off", flush=True)
        off = ControlPlaneLimiter(rate=1e9, burst=10**9, key_writes_per_second=1e9)
        eng = build(settings, consumers, stack, calls, off, stack.workdir / "audit-unlimited.jsonl")
        phases["bootstrap_unlimited"] = run_phase("bootstrap (first key)", eng, calls, scrub, n)

        # forced rotation and revoke pass: engine runs over blocks of consumers, each paired with the
        # bare sequence for as many scratch consumers (Bare), taking turns to go first.
        blocks = [names[i:i + args.block] for i in range(0, n, args.block)]
        bare_calls = Calls()
        bare = Bare(stack, settings, creds.usage_plan_ids, bare_calls)
        docs: dict[str, Any] = {}
        tier = {c.name: c.tier for c in consumers.consumers}

        def seed_once() -> None:
            # Payloads: the real records of a consumer the engine has just rotated (block 0, engine
            # first). Read and seeded through the root client, so none of it is counted or timed.
            root = stack.root_client()
            kv, mp, pre = root.secrets.kv.v2, settings.vault_kv_mount, settings.vault_kv_prefix

            def read(path: str) -> dict:
                return kv.read_secret_version(path=path, mount_point=mp, raise_on_deleted_version=False)["data"]["data"]
            docs["keys"] = read(f"{pre}/keys/{blocks[0][0]}")
            docs["rot"] = read(f"{pre}/rotations/{blocks[0][0]}")
            assert docs["keys"].get("previous"), "block 0 should hold a rotated consumer"
            docs["summary"] = KeyState.from_dict(docs["keys"], 0).labels_summary()
            for nm in names:
                for path, doc in zip(bare.paths(nm), (docs["keys"], docs["rot"])):
                    r = kv.create_or_update_secret(path=path, secret=doc, cas=0, mount_point=mp)
                    bare.version[path] = int(r["data"]["version"])

        def bare_rotate(i: int, block: list[str]) -> float:
            if not docs:  # the first block: the engine went first, so a rotated record exists
                seed_once()
            t0 = time.perf_counter()
            for nm in block:
                bare.snapshot_serial(nm)
            bare.list_all()
            for nm in block:
                bare.rotate(nm, tier[nm], 2, docs["keys"], docs["rot"], docs["summary"])
            return time.perf_counter() - t0

        def bare_revoke(i: int, block: list[str]) -> float:
            t0 = time.perf_counter()
            bare.list_all()
            for nm in block:
                bare.revoke(nm, tier[nm], docs["keys"], docs["rot"], docs["summary"])
            return time.perf_counter() - t0

        for key, label, force, fn in (("rotate_unlimited", "forced rotation", True, bare_rotate),
                                      ("revoke_unlimited", "revoke pass", False, bare_revoke)):
            if key == "revoke_unlimited":
                time.sleep(1.2)  # let the 1 s grace period of every previous key pass
            b0 = bare_calls.snapshot()
            ph = phases[key] = run_phase(label, eng, calls, scrub, n, force=force, blocks=blocks, bare_block=fn)
            ph["bare_replay_calls"] = Calls.since(bare_calls.snapshot(), b0)
            ph["bare_calls_match"] = ph["bare_replay_calls"] == ph["calls"]
        lat = bare.latency_table()
        result["bare_latency_ms"] = lat
        for ph in phases.values():
            est, missing = bare_estimate(ph["calls"], lat)
            ph["bare_estimate_s"] = est
            ph["bare_estimate_untimed_kinds"] = missing
            ph["overhead_ratio_vs_estimate"] = ph["wall_s"] / est if est else None

        # -- phase B: AWS's limits ---------------------------------------------------------------
        if not args.skip_limits:
            print(f"phase B: limiter at AWS's limits ({AWS_RATE:g}/s, burst {AWS_BURST}; "
                  f"Create/DeleteApiKey {AWS_KEY_WRITES:g}/s)", flush=True)
            plain = stack.aws_session().client("apigateway", endpoint_url=stack.aws_endpoint)  # not counted
            keys_at_start = len(plain.get_api_keys(includeValues=False, limit=500)["items"])
            eng_b = build(settings, consumers, stack, calls, None, stack.workdir / "audit-limited.jsonl")
            lim = eng_b.apigw.limiter
            assert (lim.all_calls.rate, lim.all_calls.capacity, lim.key_writes.rate) == (AWS_RATE, AWS_BURST, AWS_KEY_WRITES)
            ph = run_phase("forced rotation", eng_b, calls, scrub, n, force=names)
            ph.update(aws_limit_minimum(ph["calls"]))
            ph["wall_over_minimum"] = ph["wall_s"] / ph["minimum_s"] if ph["minimum_s"] else None
            ph["work_s"] = ph["wall_s"] - ph["limiter_waited_s"]
            # moto answers GetApiKeys with every key on one page; AWS pages it (25 a page unless a
            # limit is passed, and the engine's paginator passes none).
            ph["api_keys_in_account_at_start"] = keys_at_start
            ph["real_aws_listing_calls"] = max(1, -(-keys_at_start // 25))
            est, missing = bare_estimate(ph["calls"], lat)
            ph["bare_estimate_s"], ph["bare_estimate_untimed_kinds"] = est, missing
            phases["rotate_aws_limits"] = ph
    result["total_s"] = time.perf_counter() - t_start

    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    print(f"\nJSON: {args.out}  (total {result['total_s']:.0f} s; servers stopped)")
    return 1 if any(p["failed"] for p in result["phases"].values()) else 0


def report(r: dict) -> None:
    n, ph = r["consumers"], r["phases"]
    print(f"\n== {n} consumers, no push targets; calls counted per HTTP request (Vault) / attempt (AWS)")
    hdr = (f"{'phase':<30}{'wall s':>8}  {'vs':<5}{'ref s':>8}{'ratio':>8}{'rot/s':>8}{'vault':>7}{'aws':>6}"
           f"{'V/rot':>7}{'A/rot':>7}")
    print(hdr)
    print("-" * len(hdr))
    rows = [("bootstrap_unlimited", "first key, limiter off", "bare~", "bare_estimate_s"),
            ("rotate_unlimited", "forced rotation, limiter off", "bare", "bare_replay_s"),
            ("revoke_unlimited", "revoke pass, limiter off", "bare", "bare_replay_s"),
            ("rotate_aws_limits", "forced rotation, AWS limits", "min", "minimum_s")]
    for key, label, vs, ref_key in rows:
        p = ph.get(key)
        if not p:
            continue
        ref = p.get(ref_key) or 0
        ratio = f"{p['wall_s'] / ref:7.2f}x" if ref else "       -"
        print(f"{label:<30}{p['wall_s']:8.2f}  {vs:<5}{ref:8.2f}{ratio:>8}{p['consumers_per_s']:8.1f}"
              f"{p['vault_calls']:7d}{p['aws_calls']:6d}{p['vault_calls_per_consumer']:7.2f}"
              f"{p['aws_calls_per_consumer']:7.2f}")
    print("bare: the same calls straight through hvac/boto3, no engine (replayed call for call; bare~ = "
          "count x mean bare latency)\nmin: the least time AWS's limits allow for the AWS calls made "
          "(10/s burst 40, Create/DeleteApiKey 5/s)")
    for key in ("rotate_unlimited", "revoke_unlimited"):
        p = ph[key]
        if not p["bare_calls_match"]:
            print(f"  !! {key}: the bare replay's calls differ from the engine's: "
                  f"engine {p['calls']} bare {p['bare_replay_calls']}")
    p = ph["rotate_unlimited"]
    print(f"\none forced rotation (no targets) = {p['vault_calls_per_consumer']:.2f} Vault + "
          f"{p['aws_calls_per_consumer']:.2f} AWS calls (per-run listing included):")
    for kind, cnt in p["calls"].items():
        lat = r["bare_latency_ms"].get(kind)
        print(f"  {kind:<28}{cnt / n:6.2f}/rot   bare {lat['mean_ms']:6.2f} ms mean, {lat['p50_ms']:6.2f} p50"
              if lat else f"  {kind:<28}{cnt / n:6.2f}/rot")
    red = [(k, ph[k]) for k in ("bootstrap_unlimited", "rotate_unlimited", "revoke_unlimited", "rotate_aws_limits") if k in ph]
    print("audit redaction (REDACTOR.scrub) time inside the engine: " + ", ".join(
        f"{k} {v['audit_redaction_s']:.2f} s ({v['redactor_secrets_at_end']} secrets)" for k, v in red))
    b = ph.get("rotate_aws_limits")
    if b:
        print(f"\nunder AWS's limits: {b['aws_calls']} AWS calls ({b['key_writes']} Create/DeleteApiKey)")
        print(f"  minimum the limits allow: {b['minimum_s']:.1f} s  (10/s burst 40: {b['all_calls_bucket_s']:.1f} s; "
              f"key writes 5/s: {b['key_writes_bucket_s']:.1f} s)")
        print(f"  measured wall time:       {b['wall_s']:.1f} s  ({b['wall_over_minimum']:.3f}x the minimum; "
              f"limiter slept {b['limiter_waited_s']:.1f} s, work {b['work_s']:.1f} s; "
              f"{b['consumers_per_s']:.2f} rotations/s)")
        extra = b["real_aws_listing_calls"] - b["calls"].get("aws GetApiKeys (all)", 0)
        print(f"  on real AWS the run's GetApiKeys listing of {b['api_keys_in_account_at_start']} keys takes "
              f"{b['real_aws_listing_calls']} pages of 25 (moto: 1): +{extra} calls, +{extra / AWS_RATE:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
