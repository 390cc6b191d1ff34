"""Offline policy check: run the Pulumi program under mocks and apply every rule of the pack.

    python -m policies.check [--config FILE] [--program MODULE:FUNCTION] [--stack-config FILE] [--list] [--json]

No Pulumi CLI, cloud or credentials. It records the program with ``infra.mocks`` (every resource
awaited), applies every resource rule (``policy.validate(ResourceValidationArgs, report)``) and every
stack rule (``StackValidationArgs``) of :mod:`policies.pack.rules`, prints the violations grouped by
control id, and exits

* 0 when no mandatory rule is violated (advisory findings are printed, not counted),
* 1 when any mandatory rule is violated,
* 2 on usage errors (bad arguments, unreadable or invalid config, a program that cannot be recorded).

``--config`` takes a policy-config JSON file in the format of ``pulumi preview --policy-pack-config``:
``{"<rule>": "advisory" | {"enforcementLevel": ..., "suppressions": {"<resource>": "<reason>"}, ...}}``.
``--program`` names any ``record_program``-shaped function (``() -> list`` of objects with ``typ``,
``name``, ``inputs``); by default the infra program is recorded through ``infra.mocks.run_program``
with mocks that also keep each resource's outputs (id, ARN, URL), so companions link to their targets.
``--json`` prints one JSON object instead of the text report (:func:`report_json`; read by
``rotation audit --policy-findings FILE``); the exit codes are the same.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.pack.evaluate import Violation, enforcement_levels, evaluate
from policies.pack.rules import RULES

__all__ = ["RecordedWithOutputs", "format_report", "main", "record_infra_program", "report_json", "run_check"]


@dataclass(frozen=True)
class RecordedWithOutputs:
    """A recorded resource plus the outputs the mocks returned for it (used only for linking)."""

    typ: str
    name: str
    inputs: dict[str, Any]
    urn: str | None
    id: str | None
    outputs: dict[str, Any]


def record_infra_program(config: dict[str, str] | None = None,
                         secret_keys: list[str] | None = None) -> list[RecordedWithOutputs]:
    """Record ``infra/`` under mocks (``Pulumi.dev.yaml`` by default), keeping each resource's outputs."""
    from infra.mocks import RecordingMocks, run_program

    class OutputRecordingMocks(RecordingMocks):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.outputs: dict[tuple[str, str], tuple[str, dict]] = {}

        def new_resource(self, args):
            rid, outs = super().new_resource(args)
            self.outputs[(args.typ, args.name)] = (rid, dict(outs))
            return rid, outs

    region = (config or {}).get("aws:region")
    mocks = OutputRecordingMocks(region=region) if region else OutputRecordingMocks()
    run = run_program(config, secret_keys, mocks=mocks)
    out = []
    for r in run.resources:
        rid, outs = mocks.outputs.get((r.typ, r.name), (None, {}))
        keep = {k: v for k, v in outs.items() if k in ("arn", "url", "bucket", "name", "keyId", "executionArn")}
        out.append(RecordedWithOutputs(r.typ, r.name, dict(r.inputs), r.urn, rid, keep))
    return out


def _load_program(spec: str) -> Callable[[], list[Any]]:
    module, _, func = spec.partition(":")
    if not module or not func:
        raise ValueError(f"--program {spec!r}: expected MODULE:FUNCTION")
    return getattr(importlib.import_module(module), func)


def run_check(record: Callable[[], list[Any]] | None = None,
              config: dict[str, Any] | None = None) -> tuple[list[Any], list[Violation]]:
    """Record the program (``record`` or the infra program) and evaluate the pack. Returns
    ``(resources, violations)``. Raises ``ValueError`` when the recording is empty: a check that saw
    no resource proves nothing."""
    resources = (record or record_infra_program)()
    aws = [r for r in resources if not str(getattr(r, "typ", r[0] if isinstance(r, tuple) else "")).startswith(
        "secure-mail-api:")]
    if not aws:
        raise ValueError("the program recorded no resources; nothing was checked")
    return resources, evaluate(aws, config)


def format_report(resources: Sequence[Any], violations: Sequence[Violation]) -> str:
    """Violations grouped by control id (a violation appears under each control its rule covers)."""
    lines = []
    mandatory = [v for v in violations if v.level == "mandatory"]
    advisory = [v for v in violations if v.level != "mandatory"]
    for title, group in (("MANDATORY", mandatory), ("ADVISORY", advisory)):
        if not group:
            continue
        by_control: dict[str, list[Violation]] = {}
        for v in group:
            for c in v.controls:
                by_control.setdefault(c, []).append(v)
        lines.append(f"== {title}: {len(group)} violation(s) ==")
        for control in sorted(by_control):
            lines.append(f"[{control}]")
            lines.extend(f"  {v.message}" for v in by_control[control])
    lines.append(f"checked {len(resources)} resources against {len(RULES)} rules: "
                 f"{len(mandatory)} mandatory, {len(advisory)} advisory violation(s)")
    return "\n".join(lines)


def report_json(resources: Sequence[Any], violations: Sequence[Violation]) -> dict[str, Any]:
    """The check's result as JSON-ready data, version 1::

        {"format": "policies.check/v1", "resources": int, "rules": int, "mandatory": int, "advisory": int,
         "violations": [{"rule", "controls": [str], "resource", "urn", "level", "message"}]}
    """
    return {
        "format": "policies.check/v1",
        "resources": len(resources), "rules": len(RULES),
        "mandatory": sum(1 for v in violations if v.level == "mandatory"),
        "advisory": sum(1 for v in violations if v.level != "mandatory"),
        "violations": [{"rule": v.rule, "controls": list(v.controls), "resource": v.resource, "urn": v.urn,
                        "level": v.level, "message": v.message} for v in violations],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="policy-config JSON (pulumi --policy-pack-config format)")
    parser.add_argument("--program", help="MODULE:FUNCTION returning recorded resources (default: infra program)")
    parser.add_argument("--list", action="store_true", help="list the rules and their control ids, then exit")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (report_json)")
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.list:
        for r in RULES.values():
            print(f"{r.name:48} {r.kind:8} {', '.join(r.controls)}")
        return 0
    config: dict[str, Any] = {}
    try:
        if args.config:
            config = json.loads(args.config.read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("top level must be an object")
            enforcement_levels(config)
        record = _load_program(args.program) if args.program else None
    except (OSError, ValueError, ImportError, AttributeError) as exc:
        print(f"policy-check: {exc}", file=sys.stderr)
        return 2
    try:
        resources, violations = run_check(record, config)
    except Exception as exc:  # noqa: BLE001 - any failure to record the program is a usage error (exit 2)
        print(f"policy-check: could not record the program: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report_json(resources, violations), indent=2) if args.json
          else format_report(resources, violations))
    return 1 if any(v.level == "mandatory" for v in violations) else 0


if __name__ == "__main__":
    sys.exit(main())
