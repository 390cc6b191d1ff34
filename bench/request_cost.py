"""Cost of crafted request bodies to the mail handler's parser: CPU time and peak memory.

    .venv/bin/python bench/request_cost.py              # every body below
    .venv/bin/python bench/request_cost.py --values 200000 --only lists

Each body goes through ``parse_request_body`` and ``validate_message`` (infra/functions/validation.py),
the work the Lambda handler does before anything else, twice: once for CPU time
(``time.process_time``, no tracing) and once for the peak of Python allocations (``tracemalloc``,
which slows the run, so its time is not reported). The figures answer "does the work per request
fit the function's 256 MB and its timeout"; they are not asserted anywhere (the machine is shared).
No server is started.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.functions.validation import RequestRejected, parse_request_body, validate_message

BODIES: dict[str, Callable[[int], str]] = {
    "lists": lambda n: '{"to":[' + ",".join(["[]"] * n) + "]}",           # 1.4 M values in 4.2 MB
    "zeros": lambda n: '{"to":[' + ",".join(["0"] * n) + "]}",
    "objects": lambda n: '{"to":[' + ",".join(["{}"] * n) + "]}",
    "strings": lambda n: '{"subject":[' + ",".join(['""'] * n) + "]}",
    "deep": lambda n: "[" * min(n, 5_000_000) + "]" * min(n, 5_000_000),
    "valid-5mb": lambda n: json.dumps({
        "from": "alerts@example.com", "to": ["a@example.org"], "subject": "s", "text": "t",
        "attachments": [{"filename": "a.pdf", "content_type": "application/pdf",
                         "content": base64.b64encode(b"%PDF-" + b"0" * 3_900_000).decode()}]}),
}


def run(body: str) -> str:
    try:
        value = parse_request_body(body, content_type="application/json")
        validate_message(value, sender_identity="example.com")
    except RequestRejected as exc:
        return exc.reason
    return "accepted"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=1_400_000, help="tiny values per crafted body")
    parser.add_argument("--only", choices=sorted(BODIES), action="append", help="run only these bodies")
    args = parser.parse_args()
    print(f"{'body':<10} {'bytes':>10} {'outcome':<20} {'cpu s':>7} {'peak MB':>8}")
    for name in args.only or list(BODIES):
        body = BODIES[name](args.values)
        started = time.process_time()
        outcome = run(body)
        cpu = time.process_time() - started
        tracemalloc.start()
        run(body)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{name:<10} {len(body):>10} {outcome:<20} {cpu:>7.3f} {peak / 1e6:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
