"""The real path (issue 21): the ``rotation`` CLI run as a user runs it (a separate process, a
user's defaults: traffic check and quota carry-over on), with every Vault and AWS call counted at
the transport by counting proxies in front of OpenBao and the AWS emulator (so every client is
counted: API Gateway, CloudWatch, Vault, whichever library made the call).

Figures, each beside its target (``make bench`` runs this as sections 7-9 of ``fleet_bench.py``):

7. ``rotation rotate X``: Vault and AWS calls by operation, beside the minimum (the engine's calls
   for one forced rotation, measured in-process the same way, plus what the CLI cannot avoid:
   one LIST of the acks and one PutMetricData). ``UpdateUsage`` is modelled: the emulator keeps no
   usage, so the quota carry-over stops after ``GetUsage``; on AWS a usage plan with a quota
   answers ``UpdateUsage`` too, so one is added per ``GetUsage``.
8. ``rotation run`` over ``--fleet`` due consumers: wall time from process start to exit beside
   the limit-bound time (the least time AWS's control-plane buckets allow for the API Gateway
   calls made, modelled UpdateUsage included: 10/s with a burst of 40, CreateApiKey and
   DeleteApiKey 5/s); target: rate >= 0.9 of the limit-bound rate.
9. ``rotation status`` and ``rotation plan`` over ``--status-size`` consumers: wall time per
   command (process start to exit), target < 3 s.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AWS_RATE, AWS_BURST, AWS_KEY_WRITES = 10.0, 40, 5.0

_APIGW = [  # (method, path regex) -> API Gateway operation
    ("GET", r"/apikeys$", "GetApiKeys"), ("POST", r"/apikeys$", "CreateApiKey"),
    ("GET", r"/apikeys/[^/]+$", "GetApiKey"), ("PATCH", r"/apikeys/[^/]+$", "UpdateApiKey"),
    ("DELETE", r"/apikeys/[^/]+$", "DeleteApiKey"), ("GET", r"/usageplans$", "GetUsagePlans"),
    ("GET", r"/usageplans/[^/]+$", "GetUsagePlan"), ("GET", r"/usageplans/[^/]+/keys$", "GetUsagePlanKeys"),
    ("POST", r"/usageplans/[^/]+/keys$", "CreateUsagePlanKey"),
    ("GET", r"/usageplans/[^/]+/keys/[^/]+$", "GetUsagePlanKey"),
    ("DELETE", r"/usageplans/[^/]+/keys/[^/]+$", "DeleteUsagePlanKey"),
    ("GET", r"/usageplans/[^/]+/usage$", "GetUsage"),
    ("PATCH", r"/usageplans/[^/]+/keys/[^/]+/usage$", "UpdateUsage"),
    ("GET", r"/restapis.*", "GetRestApi*"), ("GET", r"/tags/.*", "GetTags"), ("PUT", r"/tags/.*", "TagResource"),
]


def _aws_operation(method: str, path: str, headers: Any, body: bytes) -> str:
    auth = headers.get("Authorization", "")
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = m.group(1) if m else "?"
    target = headers.get("X-Amz-Target")
    if target:
        return f"{service} {target.rsplit('.', 1)[-1]}"
    if service == "apigateway":
        for verb, rx, op in _APIGW:
            if verb == method and re.match(rx, path):
                return f"apigateway {op}"
        return f"apigateway {method} {path}"
    if method == "POST" and body:
        action = parse_qs(body.decode(errors="replace")).get("Action")
        if action:
            return f"{service} {action[0]}"
    return f"{service} {method} {path}"


def _vault_operation(method: str, path: str) -> str:
    p = urlsplit(path).path
    for marker in ("/detailed-metadata/", "/metadata/", "/data/"):
        if marker in p:
            kind = p.split(marker, 1)[1].split("/")
            what = kind[1] if len(kind) > 1 else kind[0]
            return f"vault {method} {marker.strip('/')} {what}"
    return f"vault {method} {p.removeprefix('/v1/')}"


class CountingProxy:
    """A loopback HTTP proxy that forwards every request to ``upstream`` and counts it."""

    def __init__(self, upstream: str, kind: str) -> None:
        u = urlsplit(upstream)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.kind = kind
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = urlsplit(self.path).path
                op = (_aws_operation(self.command, path, self.headers, body) if proxy.kind == "aws"
                      else _vault_operation(self.command, self.path))
                with proxy._lock:
                    proxy.counts[op] += 1
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_LIST = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> dict[str, int]:
        with self._lock:
            out = dict(self.counts)
            self.counts.clear()
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def with_modelled_update_usage(counts: dict[str, int]) -> dict[str, int]:
    """On AWS, a usage plan with a quota answers GetUsage with the key's usage, and the carry-over
    then calls UpdateUsage; the emulator keeps no usage, so add the UpdateUsage it would make."""
    out = dict(counts)
    missing = out.get("apigateway GetUsage", 0) - out.get("apigateway UpdateUsage", 0)
    if missing > 0:
        out["apigateway UpdateUsage (modelled)"] = missing
    return out


def limit_bound_seconds(counts: dict[str, int]) -> float:
    """Least wall time API Gateway's control-plane buckets allow for these calls, from full buckets."""
    apigw = sum(v for k, v in counts.items() if k.startswith("apigateway "))
    writes = counts.get("apigateway CreateApiKey", 0) + counts.get("apigateway DeleteApiKey", 0)
    return max(max(0.0, (apigw - AWS_BURST) / AWS_RATE), max(0.0, (writes - AWS_KEY_WRITES) / AWS_KEY_WRITES))


def split(counts: dict[str, int]) -> tuple[int, int]:
    return (sum(v for k, v in counts.items() if k.startswith("vault ")),
            sum(v for k, v in counts.items() if not k.startswith("vault ")))


def run_cli(env: dict[str, str], consumers: Path, *args: str) -> tuple[float, int, str]:
    """``rotation --consumers FILE ARGS`` as a user runs it; (wall seconds, exit code, stderr tail)."""
    exe = str(Path(sys.executable).with_name("rotation"))
    t0 = time.perf_counter()
    p = subprocess.run([exe, "--consumers", str(consumers), "-q", "--audit-to", os.devnull, *args], check=False, env=env,
                       capture_output=True, text=True, timeout=900)
    return time.perf_counter() - t0, p.returncode, (p.stderr or "")[-400:]


def _consumers_yaml(path: Path, prefix: str, n: int, max_age: str = "30d", grace: str = "1h") -> Path:
    lines = ["version: 1", "usage_plans:", "  standard: secure-mail-api-dev-standard",
             "  premium: secure-mail-api-dev-premium",
             "defaults:", f"  max_age: {max_age}", f"  grace_period: {grace}", "  retention: 7d", "consumers:"]
    lines += [f"  - {{name: {prefix}{i:04d}, tier: {'standard' if i % 2 else 'premium'}}}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _age_keys(settings: Any, names: list[str], days: float) -> None:
    """Make the consumers' current keys ``days`` old in Vault (so they are due), as time would."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from rotation.backends.vault import VaultStore
    from rotation.records import to_iso, utcnow

    store = VaultStore(settings)
    old = to_iso(utcnow() - timedelta(days=days))

    def one(name: str) -> None:
        state = store.read_key_state(name)
        if state.current is not None:
            store.write_key_state(name, state.evolve(current=replace(state.current, promoted_at=old,
                                                                     created_at=old)))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))
    store.close()


def cli_figures(stack: Any, creds: Any, settings: Any, workdir: Path, line: Any, *, fleet: int = 100,
                status_size: int = 1000, engine_rotate: tuple[int, int] | None = None,
                seed: Any = None) -> dict[str, Any]:
    """Sections 7-9 on a started, bootstrapped ``stack``: ``c0000`` for the calls, ``d*`` for the
    due fleet, ``s*`` for status (``seed(ConsumersFile)`` writes their records).
    ``engine_rotate``: (Vault, API Gateway) calls of one ``rotate`` by the engine in-process."""
    from rotation.backends.ratelimit import ControlPlaneLimiter
    from rotation.config import load_consumers_file
    from rotation.wiring import build_engine

    vault = CountingProxy(stack.vault_addr, "vault")
    aws = CountingProxy(stack.aws_endpoint, "aws")
    env = {**os.environ, **stack.env(creds), "VAULT_ADDR": vault.url, "AWS_ENDPOINT_URL": aws.url,
           "ROTATION_WORKERS": os.environ.get("ROTATION_WORKERS", "8")}
    out: dict[str, Any] = {}
    off = ControlPlaneLimiter(rate=1e9, burst=10**9, key_writes_per_second=1e9)
    exe = str(Path(sys.executable).with_name("rotation"))
    t0 = time.perf_counter()
    subprocess.run([exe, "--version"], check=False, capture_output=True, env=env, timeout=120)
    startup = time.perf_counter() - t0
    print(f"  start-up alone (rotation --version, process start to exit, on this machine now): {startup:.2f} s")
    out["startup_s"] = startup
    try:
        # -- 7. rotate X --------------------------------------------------------------------------
        one = _consumers_yaml(workdir / "cli-one.yaml", "e", 1)
        wall, code, err = run_cli(env, one, "run")                 # first key (no previous key in its grace)
        assert code == 0, err
        vault.take(), aws.take()
        wall, code, err = run_cli(env, one, "rotate", "e0000")
        assert code == 0, err
        counts = with_modelled_update_usage({**vault.take(), **aws.take()})
        v, a = split(counts)
        print(f"  rotation rotate e0000: {v} Vault + {a} AWS calls, {wall:.2f} s wall (process start to exit)")
        for k in sorted(counts):
            print(f"    {k:<48} {counts[k]:>4}")
        row: dict[str, Any] = {"counts": counts, "wall_s": wall, "vault": v, "aws": a}
        if engine_rotate is not None:
            ev, ea = engine_rotate
            # the CLI's own: LIST acks (metrics), PutMetricData, and the modelled UpdateUsage
            floor_v, floor_a = ev + 1, ea + 1 + counts.get("apigateway UpdateUsage (modelled)", 0)
            row["floor"] = {"vault": floor_v, "aws": floor_a}
            row["vault_vs_min"] = line("rotate X through the CLI: Vault calls vs the minimum", v, floor_v, "calls")
            row["aws_vs_min"] = line("rotate X through the CLI: AWS calls vs the minimum", a, floor_a, "calls")
        out["rotate"] = row

        # -- 8. rotation run over a due fleet ------------------------------------------------------
        fl = _consumers_yaml(workdir / "cli-fleet.yaml", "d", fleet, max_age="1d")
        cf = load_consumers_file(str(fl), settings=settings)
        with build_engine(settings.model_copy(update={"vault_addr": stack.vault_addr}), cf) as e:
            e.apigw.limiter = off
            e.run()                                                 # first keys, unpaced
        _age_keys(settings, [c.name for c in cf.consumers], 2)
        vault.take(), aws.take()
        wall, code, err = run_cli(env, fl, "run")
        made = {**vault.take(), **aws.take()}
        counts = with_modelled_update_usage(made)
        bound = limit_bound_seconds(made)            # the calls made: the wall time paid for these only
        v, a = split(counts)
        print(f"  rotation run, {fleet} due consumers: {wall:.1f} s wall (exit {code}); limit-bound {bound:.1f} s for "
              f"the calls made ({limit_bound_seconds(counts):.1f} s with the modelled UpdateUsage); "
              f"{v / fleet:.2f} Vault + {a / fleet:.2f} AWS calls per consumer")
        for k in sorted(counts):
            print(f"    {k:<48} {counts[k]:>5}")
        out["run"] = {"wall_s": wall, "bound_s": bound, "bound_with_update_usage_s": limit_bound_seconds(counts),
                      "exit": code, "counts": counts,
                      "vs_target": line("CLI fleet rate / limit-bound rate (process start to exit)",
                                        bound / wall if wall else 0.0, 0.9, "", lower_is_better=False),
                      "beyond_startup": line("CLI fleet rate / limit-bound rate (beyond start-up)",
                                             bound / max(wall - startup, 1e-9), 0.9, "", lower_is_better=False)}

        # -- 9. status / plan ----------------------------------------------------------------------
        st = _consumers_yaml(workdir / "cli-status.yaml", "s", status_size, grace="1h")
        if seed is not None:
            seed(load_consumers_file(str(st), settings=settings))
        wall, code, err = run_cli(env, st, "run")          # a scheduled run: writes missing digests once
        print(f"  (a first rotation run over the {status_size}: {wall:.1f} s, exit {code})")
        rows: dict[str, Any] = {}
        for what, args in (("status", ("status",)), ("plan", ("plan", "--force", "s0000"))):
            vault.take(), aws.take()
            wall, code, err = run_cli(env, st, *args)
            counts = {**vault.take(), **aws.take()}
            v, a = split(counts)
            print(f"  rotation {what}, {status_size} consumers: {wall:.2f} s (exit {code}), {v} Vault + {a} AWS calls")
            rows[what] = {"wall_s": wall, "exit": code, "counts": counts,
                          "vs_target": line(f"{what}, {status_size} consumers, process start to exit (s)", wall, 3.0,
                                            "s"),
                          "work_vs_target": line(f"{what}, {status_size} consumers, beyond start-up (s)",
                                                 max(0.0, wall - startup), 3.0, "s")}
        out["status"] = rows
    finally:
        vault.close()
        aws.close()
    return out
