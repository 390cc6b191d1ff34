"""An app's sending rate while Vault hangs (issue 21): the real OpenBao process is stopped with
SIGSTOP for ``--hang`` seconds (it accepts connections and answers nothing, like a hung server),
then continued with SIGCONT.

One app per refresh interval (``--refresh``, default ``1,10,60``), all at once, each sending
``--rate`` mails/s from two threads: every send is ``current_key()`` followed by the rest of the
send's time slot (the mail API call itself is not made: only the client's share of a send is
measured). The figure is the rate during the hang over the rate in the ``--before`` seconds before
it, beside the target 0.95. Failed sends (exceptions) are counted.

Run alone: ``.venv/bin/python bench/client_hang.py --hang 60``; ``make bench`` runs it as part of
section 5 of ``bench/fleet_bench.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 0.95


class App:
    """Two sender threads at ``rate`` mails/s in total, each send = current_key() + the rest of its slot."""

    def __init__(self, client: Any, rate: float, threads: int = 2) -> None:
        self.client = client
        self.period = threads / rate
        self.threads = threads
        self.sent: list[float] = []
        self.failed = 0
        self.longest_call = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ts: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._loop, args=(i * self.period / self.threads,), daemon=True)
            t.start()
            self._ts.append(t)

    def _loop(self, offset: float) -> None:
        nxt = time.monotonic() + offset
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.client.current_key()
                ok = True
            except Exception:  # noqa: BLE001 - a failed send is counted, the app goes on
                ok = False
            took = time.monotonic() - t0
            with self._lock:
                self.longest_call = max(self.longest_call, took)
                if ok:
                    self.sent.append(t0)
                else:
                    self.failed += 1
            nxt = max(nxt + self.period, time.monotonic())
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        for t in self._ts:
            t.join(30)

    def rate(self, start: float, end: float) -> float:
        with self._lock:
            return sum(1 for t in self.sent if start <= t < end) / (end - start)


def vault_hang_figures(hang: float = 60.0, before: float = 10.0, rate: float = 20.0,
                       refresh: tuple[float, ...] = (1.0, 10.0, 60.0),
                       line: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Start an embedded stack, run one app per refresh interval, hang Vault, return the figures."""
    from policies.vault import consumer_policy_name, render_vault_policy
    from rotation.client.keys import AppRoleAuth, KeyClient
    from rotation.config import ConsumersFile
    from rotation.dev.stack import EmbeddedStack

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from client_bench import CONSUMER, _write

    consumers = ConsumersFile.model_validate({"version": 1, "usage_plans": {"standard": "p"},
                                              "consumers": [{"name": CONSUMER, "tier": "standard"}]})
    out: dict[str, Any] = {"hang_s": hang, "before_s": before, "rate": rate, "apps": {}}
    with EmbeddedStack() as stack:
        creds = stack.bootstrap(consumers)
        root = stack.root_client()
        root.sys.create_or_update_policy(consumer_policy_name(CONSUMER), render_vault_policy(
            "consumer", mount="secret", prefix="mail-api", consumer=CONSUMER))
        role_id, secret_id = creds.consumer_roles[CONSUMER]
        _write(root, 1)
        apps = {}
        for r in refresh:
            client = KeyClient(stack.vault_addr, CONSUMER, auth=AppRoleAuth(role_id, secret_id),
                               refresh_interval=r)
            client.current_key()
            apps[r] = App(client, rate)
        for app in apps.values():
            app.start()
        time.sleep(before)
        bao = stack._procs[0]           # the OpenBao server (rotation.dev.stack starts it first)
        t_hang = time.monotonic()
        os.kill(bao.pid, signal.SIGSTOP)
        try:
            time.sleep(hang)
        finally:
            os.kill(bao.pid, signal.SIGCONT)
        t_end = time.monotonic()
        for app in apps.values():
            app.stop()
        for r, app in apps.items():
            pre, during = app.rate(t_hang - before, t_hang), app.rate(t_hang, t_end)
            ratio = during / pre if pre else 0.0
            row: dict[str, Any] = {"before_per_s": pre, "during_per_s": during, "failed": app.failed,
                                   "longest_current_key_s": app.longest_call,
                                   "refresh_failures": app.client.stats["refresh_failures"],
                                   "stale_seconds_at_last_failure": app.client.stats["stale_seconds"]}
            print(f"  refresh {r:>4g} s: {pre:5.1f} mails/s before, {during:5.1f} during a {hang:g} s Vault hang; "
                  f"{app.failed} failed sends; longest current_key() {app.longest_call * 1000:.1f} ms; "
                  f"{row['refresh_failures']} failed refreshes", flush=True)
            if line is not None:
                row["vs_target"] = line(f"client rate during Vault hang / before (refresh {r:g} s)", ratio, TARGET, "",
                                        lower_is_better=False)
            else:
                row["ratio"] = ratio
                row["ok"] = ratio >= TARGET and app.failed == 0
            out["apps"][f"{r:g}"] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hang", type=float, default=60.0, help="seconds OpenBao stays stopped")
    ap.add_argument("--before", type=float, default=10.0, help="seconds measured before the hang")
    ap.add_argument("--rate", type=float, default=20.0, help="mails/s per app")
    ap.add_argument("--refresh", default="1,10,60", help="refresh intervals (s), one app each")
    args = ap.parse_args()
    line: Callable[..., dict[str, Any]] | None = None
    with contextlib.suppress(ImportError):
        from fleet_bench import ratio_line
        line = ratio_line
    res = vault_hang_figures(args.hang, args.before, args.rate,
                             tuple(float(x) for x in args.refresh.split(",") if x), line=line)
    print(json.dumps(res, indent=2, default=str))
    return 0 if all((row.get("vs_target") or row).get("ok") for row in res["apps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
