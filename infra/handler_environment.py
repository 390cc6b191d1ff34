"""``python -m infra.handler_environment [STACK_FILE]``: the mail handler's access-level environment
(``ACCESS_LEVELS``, ``ACCESS_CONSUMERS``, ``ACCESS_SCOPES``, ``ACCESS_STACK``) that ``pulumi up``
renders for a stack file (default ``Pulumi.dev.yaml``), printed as one JSON object.

For the local dev gateway: it runs the handler the way Lambda does, and calls this as a tool (the
rotation package never imports the Pulumi program). Exit 2 with the field named when the stack
file does not validate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from infra.config import (
    DEV_SECRET_STANDINS,
    DEV_STACK_FILE,
    ConfigError,
    access_environment,
    dev_stack_config,
    parse_stack_config,
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEV_STACK_FILE
    stack = path.stem.removeprefix("Pulumi.") or "dev"
    try:
        # dev_stack_config already replaces the file's ``secure:`` values with planted stand-ins
        cfg = parse_stack_config(dev_stack_config(path), DEV_SECRET_STANDINS, stack=stack)
    except (ConfigError, OSError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**access_environment(cfg), "ACCESS_STACK": cfg.stack}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
