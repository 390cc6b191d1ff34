"""Benchmark of the app-side key client (rotation.client.keys.KeyClient) on the embedded stack.

1. Cached ``current_key()`` latency: mean and p99 over ``--calls`` calls (default 100 000), each
   timed with ``perf_counter_ns``. Expected: well under 10 microseconds (a tuple read and a clock
   compare; no lock, no I/O).
2. Vault reads over ``--period`` seconds with ``--refresh`` seconds between checks, from
   ``--threads`` threads calling as fast as they can, while the key's KV version changes every
   ``--rotate-every`` seconds. Counts come from OpenBao's audit log (independent of the client's
   own counters): at most one metadata read per interval, and a data read only after a change.

Run: ``.venv/bin/python bench/client_bench.py`` (about 10 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotation.client.keys import AppRoleAuth, KeyClient
from rotation.config import ConsumersFile
from rotation.dev.stack import EmbeddedStack
from rotation.records import KeyRecord, to_iso, utcnow
from rotation.vault_policies import consumer_policy_name, render_vault_policy

CONSUMER = "bench"


def _record(serial: int) -> dict:
    return KeyRecord(serial=serial, value=f"bench-key-{serial}-" + "x" * 24, rotation_id=f"r{serial}",
                     created_at=to_iso(utcnow()), key_id=f"kid{serial}").to_dict()


def _write(root, serial: int) -> None:
    path = f"mail-api/keys/{CONSUMER}"
    try:
        version = root.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"]["current_version"]
    except Exception:  # noqa: BLE001 - absent
        version = 0
    root.secrets.kv.v2.create_or_update_secret(path=path, secret={"current": _record(serial)}, cas=version,
                                               mount_point="secret")


def _audit_reads(stack: EmbeddedStack) -> dict[str, int]:
    out = {"metadata": 0, "data": 0}
    for line in stack.audit_log.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("type") != "request" or "root" in ((ev.get("auth") or {}).get("policies") or []):
            continue
        path = ev["request"].get("path")
        if path == f"secret/metadata/mail-api/keys/{CONSUMER}":
            out["metadata"] += 1
        elif path == f"secret/data/mail-api/keys/{CONSUMER}":
            out["data"] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--period", type=float, default=6.0, help="seconds of the read-count run")
    ap.add_argument("--refresh", type=float, default=1.0, help="refresh_interval (s)")
    ap.add_argument("--rotate-every", type=float, default=2.0, help="seconds between key changes")
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    consumers = ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                              "consumers": [{"name": CONSUMER, "tier": "standard"}]})
    with EmbeddedStack() as stack:
        creds = stack.bootstrap(consumers)
        root = stack.root_client()
        root.sys.create_or_update_policy(consumer_policy_name(CONSUMER),
                                         render_vault_policy("consumer", mount="secret", prefix="mail-api",
                                                             consumer=CONSUMER))
        role_id, secret_id = creds.consumer_roles[CONSUMER]
        _write(root, 1)

        # 1. cached latency
        client = KeyClient(stack.vault_addr, CONSUMER, auth=AppRoleAuth(role_id, secret_id), refresh_interval=3600)
        client.current_key()
        samples = []
        clock = time.perf_counter_ns
        ck = client.current_key
        for _ in range(args.calls):
            t0 = clock()
            ck()
            samples.append(clock() - t0)
        samples.sort()
        mean_us = statistics.fmean(samples) / 1000
        p99_us = samples[int(len(samples) * 0.99)] / 1000
        print(f"cached current_key(): {args.calls} calls, mean {mean_us:.2f} us, "
              f"p50 {samples[len(samples) // 2] / 1000:.2f} us, p99 {p99_us:.2f} us, "
              f"max {samples[-1] / 1000:.1f} us")

        # 2. Vault reads over a period
        before = _audit_reads(stack)
        client = KeyClient(stack.vault_addr, CONSUMER, auth=AppRoleAuth(role_id, secret_id),
                           refresh_interval=args.refresh)
        stop = threading.Event()
        calls = [0] * args.threads
        serials: set[int] = set()

        def worker(i: int) -> None:
            while not stop.is_set():
                serials.add(client.current_key().serial)
                calls[i] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        serial, changes = 1, 0
        next_rotate = t0 + args.rotate_every
        while time.monotonic() - t0 < args.period:
            time.sleep(0.05)
            if time.monotonic() >= next_rotate:
                serial += 1
                changes += 1
                _write(root, serial)
                next_rotate += args.rotate_every
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        after = _audit_reads(stack)
        meta = after["metadata"] - before["metadata"]
        data = after["data"] - before["data"]
        intervals = elapsed / args.refresh
        print(f"vault reads over {elapsed:.1f}s, refresh_interval {args.refresh}s, {args.threads} threads, "
              f"{sum(calls):,} current_key() calls, {changes} key changes: "
              f"{meta} metadata reads, {data} data reads (limit: <= {int(intervals) + 1} metadata, "
              f"<= {min(changes, int(intervals)) + 1} data); serials seen {sorted(serials)}")
        ok = meta <= int(intervals) + 1 and data <= min(changes, int(intervals)) + 1
        print("OK" if ok else "FAILED: more Vault reads than one per interval")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
