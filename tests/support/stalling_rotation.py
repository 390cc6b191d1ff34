"""``python -m tests.support.stalling_rotation STEP <rotation CLI args>``: the real ``rotation`` CLI,
except that the engine stalls (sleeps 600 s) right after STEP is journaled, so a test can
SIGKILL the process at that point. A fault injected from the test side: the product CLI has no
such switch."""

from __future__ import annotations

import sys
import time

import rotation.wiring
from rotation import cli


def main() -> None:
    step, args = sys.argv[1], sys.argv[2:]
    build = rotation.wiring.build_engine

    def stall(consumer: str, done: str) -> None:
        if done == step:
            print(f"stalled after {consumer}:{done}", file=sys.stderr, flush=True)
            time.sleep(600)

    def build_stalling(settings, consumers, **kw):
        return build(settings, consumers, after_step=stall, **kw)

    rotation.wiring.build_engine = build_stalling
    cli.main(args=args, prog_name="rotation")


if __name__ == "__main__":
    main()
