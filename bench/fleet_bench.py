"""``make bench``: rotation at fleet scale on the embedded stack, every figure beside its target.

The engine is built exactly as the CLI builds it (:func:`rotation.wiring.build_engine`: traffic
signal and quota carry-over included, ``ROTATION_WORKERS`` workers, the limiter at AWS's
published limits). Sections (issue 14, "Rotation at fleet scale"):

1. **calls**: Vault and AWS calls per forced rotation, per revoke, and per ``rotation rotate``
   (a fresh engine: login and mount check included), by kind, beside the minimum.
2. **fleet rate**: ``--consumers`` forced rotations at AWS's limits; the rate beside the
   limit-bound rate (the least time AWS's buckets allow for the AWS calls made).
3. **propagation**: the same with the dev gateway refusing a new key for
   ``--propagation`` seconds and the canary on: wall time beside propagation + limit-bound time.
4. **status / plan** for each of ``--status-sizes`` consumers: time and calls (linear).
5. **client**: cached ``current_key()`` median, Vault reads per refresh interval, push to serve.
6. **client during a Vault hang** (``--hang`` s, OpenBao stopped with SIGSTOP): each app's sending
   rate during the hang over its rate before, per refresh interval (``bench/client_hang.py``).

7.-9. **the CLI's real path** (``bench/cli_path.py``): ``rotation rotate X``, ``rotation run``
   over ``--cli-fleet`` due consumers and ``status``/``plan`` over ``--cli-status``, each the real
   CLI in its own process, every Vault and AWS call (API Gateway, CloudWatch) counted by proxies
   at the transport, ``UpdateUsage`` modelled for quota plans.

Setup phases (first keys, revoke passes) run with the limiter off so only the measured phases
are paced. Counting: a ``requests`` response hook on hvac's session (one per Vault request) and
botocore's ``before-send`` event (one per AWS attempt, retries included). Sizes are flags, so a
quick run fits a shared machine: ``bench/fleet_bench.py --consumers 40 --propagation 5
--status-sizes 100,500``. Every server started is stopped on exit.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rotation.backends.ratelimit import ControlPlaneLimiter
from rotation.backends.vault import VaultStore
from rotation.config import ConsumersFile
from rotation.dev.gateway import DevGateway
from rotation.dev.stack import EmbeddedStack
from rotation.records import KeyRecord, RotationRecord, to_iso, utcnow
from rotation.settings import Settings
from rotation.wiring import build_engine

RESULTS = Path(__file__).resolve().parent / "results" / "fleet.json"
AWS_RATE, AWS_BURST, AWS_KEY_WRITES = 10.0, 40, 5.0
#: per forced rotation: the calls a rotation cannot avoid (CreateApiKey, CreateUsagePlanKey) and
#: the quota carry-over's read (GetUsage; on AWS UpdateUsage follows, which moto does not answer)
MIN_FORCED = {"CreateApiKey": 1, "CreateUsagePlanKey": 1, "GetUsage": 1}
MIN_REVOKE = {"UpdateApiKey": 1, "DeleteUsagePlanKey": 1}
VAULT_BEFORE = {"forced": 17, "revoke": 8, "rotate": 21}      # measured before this work (issue 14)
AWS_BEFORE = {"forced": 6, "revoke": 4, "rotate": 9}


class Calls:
    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def hook_every_vault_client(self) -> None:
        """Count every hvac client's requests from its creation on (logins and mount checks too)."""
        import hvac
        real_init = hvac.Client.__init__
        calls = self

        def init(client, *a, **kw):
            real_init(client, *a, **kw)
            client.adapter.session.hooks.setdefault("response", []).append(calls._on_vault)
        hvac.Client.__init__ = init

    def _on_vault(self, resp, *_a, **_kw) -> None:
        method = resp.request.method
        path = resp.request.path_url.split("?", 1)[0]
        kind = "data" if "/data/" in path else "metadata" if "/metadata/" in path else path
        if method == "LIST" or "list=true" in resp.request.path_url:
            kind = "LIST"
        with self._lock:
            self.counts[f"vault {method} {kind}"] += 1

    def hook(self, engine) -> None:
        self.hook_aws(engine)

    def hook_aws(self, engine) -> None:
        def before_send(event_name: str = "", **_kw):
            with self._lock:
                self.counts[f"aws {event_name.rsplit('.', 1)[-1]}"] += 1
        engine.apigw.client.meta.events.register("before-send.apigateway", before_send)

    def take(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.counts)
            self.counts.clear()
        return out


def split(counts: dict[str, int]) -> tuple[int, int]:
    return (sum(v for k, v in counts.items() if k.startswith("vault")),
            sum(v for k, v in counts.items() if k.startswith("aws")))


def limit_bound_seconds(counts: dict[str, int]) -> float:
    """Least wall time AWS's buckets allow for these AWS calls, starting with full buckets."""
    aws = split(counts)[1]
    key_writes = counts.get("aws CreateApiKey", 0) + counts.get("aws DeleteApiKey", 0)
    return max(max(0.0, (aws - AWS_BURST) / AWS_RATE), max(0.0, (key_writes - AWS_KEY_WRITES) / AWS_KEY_WRITES))


def fleet_file(prefix: str, n: int, grace: str = "1s", *more: tuple[str, int]) -> ConsumersFile:
    """Consumers ``<prefix>0000``... without push targets, tiers taking turns (plus ``more`` sets)."""
    return ConsumersFile.model_validate({
        "version": 1,
        "usage_plans": {"standard": "secure-mail-api-dev-standard", "premium": "secure-mail-api-dev-premium"},
        "defaults": {"max_age": "30d", "grace_period": grace, "retention": "7d"},
        "consumers": [{"name": f"{p}{i:04d}", "tier": "standard" if i % 2 else "premium"}
                      for p, k in ((prefix, n), *more) for i in range(k)],
    })


def ratio_line(label: str, value: float, target: float, unit: str, *, lower_is_better: bool = True) -> dict:
    ratio = value / target if target else float("inf")
    ok = ratio <= 1.0 if lower_is_better else ratio >= 1.0
    print(f"  {label:<58} {value:>10.3f} {unit:<5} target {'<=' if lower_is_better else '>='} "
          f"{target:<8.3g} ratio {ratio:6.2f}  {'OK' if ok else 'MISSED'}", flush=True)
    return {"value": value, "target": target, "ratio": ratio, "ok": ok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--consumers", type=int, default=200, help="fleet size for the rate and propagation runs")
    ap.add_argument("--calls-consumers", type=int, default=10, help="consumers for the call counts")
    ap.add_argument("--propagation", type=float, default=30.0, help="dev gateway propagation delay (s)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--status-sizes", default="100,500,1000")
    ap.add_argument("--cli-fleet", type=int, default=100, help="due consumers for the CLI's fleet run")
    ap.add_argument("--cli-status", type=int, default=1000, help="consumers for the CLI's status/plan")
    ap.add_argument("--hang", type=float, default=60.0, help="seconds Vault is stopped for the client's hang figure")
    ap.add_argument("--hang-refresh", default="1,10,60", help="the client's refresh intervals (s) during the hang")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: calls,rate,propagation,status,client,"
                    "hang,cli")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count()}
    off = ControlPlaneLimiter(rate=1e9, burst=10**9, key_writes_per_second=1e9)

    fleet = fleet_file("f", args.consumers)
    small = fleet_file("c", args.calls_consumers)
    with EmbeddedStack() as stack:
        both = fleet_file("f", args.consumers, "1s", ("c", args.calls_consumers), ("d", args.cli_fleet))
        creds = stack.bootstrap(both)
        env = stack.env(creds)
        os.environ.update(env)
        os.environ["ROTATION_WORKERS"] = str(args.workers)
        settings = Settings(_env_file=None, verify_timeout_seconds=max(120.0, 3 * args.propagation),
                            audit_log=stack.workdir / "fleet-audit.jsonl")
        calls = Calls()
        calls.hook_every_vault_client()

        def engine(cf: ConsumersFile, **kw):
            e = build_engine(settings, cf, **kw)
            calls.hook(e)
            return e

        # -- 1. calls per rotation --------------------------------------------------------------
        if "calls" not in skip:
            print(f"== 1. calls per rotation (build_engine, traffic + quota; {args.calls_consumers} consumers)")
            n = args.calls_consumers
            names = [c.name for c in small.consumers]
            with engine(small) as e:
                e.apigw.limiter = off
                e.run()                                   # first keys
                calls.take()
                e.run(force=names)
                forced = calls.take()
                time.sleep(2.1)                           # past the 1 s grace (Vault's clock has 1 s resolution)
                calls.take()
                e.run()                                   # revoke pass: the previous keys
                revoke = calls.take()
            time.sleep(2.1)
            with engine(small) as e:
                e.apigw.limiter = off
                e.run()                                   # revoke the previous keys
            calls.take()
            t0 = time.perf_counter()
            with engine(small) as e:                      # `rotation rotate c0000`, as the CLI does it
                e.run(only=[names[0]], force=[names[0]])
            rotate = calls.take()
            rotate_s = time.perf_counter() - t0
            out["engine_rotate"] = split(rotate)
            sec: dict[str, Any] = {}
            for kind, counts, per, minimum in (("forced", forced, n, MIN_FORCED), ("revoke", revoke, n, MIN_REVOKE),
                                               ("rotate", rotate, 1, MIN_FORCED)):
                v, a = split(counts)
                print(f" {kind}: {v / per:.2f} Vault + {a / per:.2f} AWS calls per rotation "
                      f"(before: {VAULT_BEFORE[kind]} Vault + {AWS_BEFORE[kind]} AWS)")
                for k in sorted(counts):
                    op = k.split(" ", 1)[1]
                    floor = minimum.get(op)
                    print(f"    {k:<40} {counts[k] / per:6.2f}/rot   min {floor if floor is not None else '-'}")
                sec[kind] = {"counts": counts, "per": per, "vault_per_rotation": v / per, "aws_per_rotation": a / per}
                if kind == "forced":      # the target: at most half of the 17 calls of before
                    sec[kind]["vault_vs_half_before"] = ratio_line(
                        f"{kind}: Vault calls per rotation vs half of before", v / per, VAULT_BEFORE[kind] / 2,
                        "calls")
                aws_min = sum(minimum.values())
                per_run = sum(c for k, c in counts.items()
                              if k in ("aws GetApiKeys", "aws GetUsagePlans")) / per   # one listing per run
                sec[kind]["aws_vs_min"] = ratio_line(
                    f"{kind}: AWS calls per rotation (per-run listing apart) vs min", a / per - per_run, aws_min,
                    "calls")
            print(f" rotation rotate: {rotate_s:.2f} s wall")
            out["calls"] = sec

        # -- 2. fleet rate at AWS's limits --------------------------------------------------------
        names = [c.name for c in fleet.consumers]
        if "rate" not in skip or "propagation" not in skip:
            with engine(fleet) as e:
                e.apigw.limiter = off
                e.run()
            time.sleep(2.1)
            with engine(fleet) as e:
                e.apigw.limiter = off
                e.run()
            calls.take()
        if "rate" not in skip:
            print(f"== 2. fleet rate: {args.consumers} forced rotations, AWS limits, {args.workers} workers")
            with engine(fleet) as e:
                t0 = time.perf_counter()
                summary = e.run(force=names)
                wall = time.perf_counter() - t0
                waited = e.apigw.limiter.waited_seconds
            counts = calls.take()
            failed = len(summary.failed)
            bound = limit_bound_seconds(counts)
            print(f"  {args.consumers} rotations in {wall:.1f} s ({failed} failed); AWS calls {split(counts)[1]}, "
                  f"Vault calls {split(counts)[0]}; limiter slept {waited:.1f} s; limit-bound time {bound:.1f} s")
            out["rate"] = {"wall_s": wall, "bound_s": bound, "counts": counts, "failed": failed,
                           "vs_target": ratio_line("fleet rate / limit-bound rate", (bound / wall) if wall else 0,
                                                   0.9, "", lower_is_better=False)}
            time.sleep(2.1)
            with engine(fleet) as e:
                e.apigw.limiter = off
                e.run()
            calls.take()

        # -- 3. propagation -----------------------------------------------------------------------
        if "propagation" not in skip:
            print(f"== 3. propagation: {args.consumers} forced rotations, new keys honoured "
                  f"{args.propagation:g} s after the gateway sees them, canary on")
            with DevGateway(stack.aws_endpoint, key_cache_seconds=0.5, quiet=True,
                            propagation_seconds=args.propagation, concurrency=4) as gw:
                psettings = settings.model_copy(update={"canary_url": gw.url})
                e = build_engine(psettings, fleet)
                calls.hook(e)
                with e:
                    t0 = time.perf_counter()
                    summary = e.run(force=names)
                    wall = time.perf_counter() - t0
            counts = calls.take()
            bound = limit_bound_seconds(counts)
            failed = len(summary.failed)
            print(f"  {args.consumers} rotations in {wall:.1f} s ({failed} failed); sequential would be >= "
                  f"{args.consumers * args.propagation:.0f} s")
            out["propagation"] = {"wall_s": wall, "bound_s": bound, "failed": failed,
                                  "vs_target": ratio_line("wall / 1.1 x (propagation + limit-bound time)", wall,
                                                          1.1 * (args.propagation + bound), "s")}

        # -- 4. status / plan ---------------------------------------------------------------------
        if "status" not in skip:
            sizes = [int(x) for x in args.status_sizes.split(",") if x]
            print(f"== 4. status / plan for {sizes} consumers (records written for all)")
            big = fleet_file("s", max(sizes), grace="1h")
            _seed(settings, big)
            rows = {}
            for size in sizes:
                cf = fleet_file("s", size, grace="1h")
                for what, bulk in (("status", None), ("plan", None), ("status", False)):
                    label = what if bulk is None else f"{what} (reads, as on HashiCorp Vault)"
                    calls.take()
                    t0 = time.perf_counter()
                    with engine(cf) as e:           # login + mount check included, as the CLI does
                        e.vault.bulk_metadata = bulk
                        if what == "status":
                            e.decisions(digests=True)
                        else:
                            e.decisions(force=[cf.consumers[0].name], digests=True)
                    took = time.perf_counter() - t0
                    v, _ = split(calls.take())
                    rows[f"{label} {size}"] = {"seconds": took, "vault_calls": v, "per_consumer": v / size}
                    print(f"  {label:<40} {size:>5} consumers: {took:6.2f} s, {v:>5} Vault calls "
                          f"({v / size:.2f} per consumer)")
            last = rows[f"status {max(sizes)}"]
            out["status"] = rows
            if max(sizes) >= 1000:
                out["status_target"] = ratio_line("status, 1,000 consumers (s)", last["seconds"], 3.0, "s")

        # -- 7-9. the CLI as a user runs it, calls counted at the transport ----------------------
        if "cli" not in skip:
            print(f"== 7-9. the rotation CLI (a separate process; counting proxies in front of OpenBao and the "
                  f"AWS emulator): rotate X, run over {args.cli_fleet} due consumers, status/plan over "
                  f"{args.cli_status}")
            from cli_path import cli_figures
            out["cli"] = cli_figures(stack, creds, settings, stack.workdir, ratio_line, fleet=args.cli_fleet,
                                     status_size=args.cli_status, engine_rotate=out.get("engine_rotate"),
                                     seed=lambda cf: _seed(settings, cf))

    # -- 5. client ------------------------------------------------------------------------------
    if "client" not in skip:
        print("== 5. client (rotation.client.keys.KeyClient)")
        out["client"] = client_figures()
    if "hang" not in skip:
        print(f"== 6. client during a {args.hang:g} s Vault hang (OpenBao stopped with SIGSTOP; bench/client_hang.py)")
        from client_hang import vault_hang_figures
        out["client_hang"] = vault_hang_figures(
            args.hang, refresh=tuple(float(x) for x in args.hang_refresh.split(",") if x), line=ratio_line)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str))
    print(f"figures written to {RESULTS.relative_to(ROOT)}")
    return 0


def _seed(settings: Settings, cf: ConsumersFile) -> None:
    """Write a key record (one current key) and a released rotation record for every consumer."""
    store = VaultStore(settings)

    def one(name: str) -> None:
        state = store.read_key_state(name)
        if state.current is not None:
            return
        rec = KeyRecord(serial=1, value="s" * 40, rotation_id="seed", created_at=to_iso(utcnow()),
                        key_id=f"seed-{name}", promoted_at=to_iso(utcnow()))
        state = store.write_key_state(name, state.evolve(current=rec), mirror_labels=False)
        journal = store.write_rotation(name, RotationRecord(step="promoted", rotation_id="seed"))
        store._mirror(name, state, journal)     # the label mirror + status digest a release writes
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [c.name for c in cf.consumers]))
    store.close()


def client_figures(calls: int = 100_000, period: float = 8.0, refresh: float = 1.0, rotate_every: float = 1.0,
                   threads: int = 4) -> dict:
    from policies.vault import consumer_policy_name, render_vault_policy
    from rotation.client.keys import AppRoleAuth, KeyClient

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from client_bench import CONSUMER, _audit_reads, _write

    consumers = ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                              "consumers": [{"name": CONSUMER, "tier": "standard"}]})
    res: dict[str, Any] = {}
    with EmbeddedStack() as stack:
        creds = stack.bootstrap(consumers)
        root = stack.root_client()
        root.sys.create_or_update_policy(consumer_policy_name(CONSUMER), render_vault_policy(
            "consumer", mount="secret", prefix="mail-api", consumer=CONSUMER))
        role_id, secret_id = creds.consumer_roles[CONSUMER]
        _write(root, 1)
        client = KeyClient(stack.vault_addr, CONSUMER, auth=AppRoleAuth(role_id, secret_id), refresh_interval=3600)
        client.current_key()
        ck, clock, samples = client.current_key, time.perf_counter_ns, []
        for _ in range(calls):
            t0 = clock()
            ck()
            samples.append(clock() - t0)
        median_us = statistics.median(samples) / 1000
        res["cached_median"] = ratio_line("cached current_key() median (us)", median_us, 5.0, "us")

        before = _audit_reads(stack)
        client = KeyClient(stack.vault_addr, CONSUMER, auth=AppRoleAuth(role_id, secret_id), refresh_interval=refresh)
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                client.current_key()
        ts = [threading.Thread(target=worker) for _ in range(threads)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        serial, nxt = 1, t0 + rotate_every
        while time.monotonic() - t0 < period:
            time.sleep(0.02)
            if time.monotonic() >= nxt:
                serial += 1
                _write(root, serial)
                nxt += rotate_every
        stop.set()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
        after = _audit_reads(stack)
        meta = after["metadata"] - before["metadata"]
        # the first current_key() loads the key (one read) before any interval has passed
        res["reads_per_interval"] = ratio_line("Vault reads per refresh interval after the first load",
                                               max(0, meta - 1) / (elapsed / refresh), 1.0, "reads")
        res["data_reads"] = after["data"] - before["data"]

        # push to serve: a new version is written, the push arrives (notify_push, as the webhook
        # receiver calls it), and the client serves the new key
        slow = KeyClient(stack.vault_addr, CONSUMER, auth=AppRoleAuth(role_id, secret_id), refresh_interval=3600,
                         min_forced_interval=0)
        base = slow.current_key().serial
        lat = []
        for i in range(5):
            _write(root, base + 1 + i)
            t0 = time.perf_counter()
            slow.notify_push()
            while slow.current_key().serial != base + 1 + i:
                time.sleep(0.001)
            lat.append(time.perf_counter() - t0)
        res["push_to_serve"] = ratio_line("push -> client serves the new key (s, max of 5)", max(lat), 1.0, "s")
    return res


if __name__ == "__main__":
    sys.exit(main())
