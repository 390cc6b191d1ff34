"""Apply the pack's rules to a list of recorded resources, without the Pulumi CLI.

Each resource is ``(type, name, props)`` or an object with ``typ``, ``name``, ``inputs`` (and
optionally ``id``, ``outputs``, ``urn``), e.g. a ``RecordedResource`` from ``infra/mocks.py``.
Resource rules run through ``policy.validate(ResourceValidationArgs, report)``, stack rules through
``StackValidationArgs`` (docs/security-baseline.md §2.2), with per-rule config in Pulumi's policy-config format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from .rules import RULES

__all__ = ["Violation", "enforcement_levels", "evaluate", "to_policy_resources"]

LEVELS = ("mandatory", "advisory", "disabled", "remediate")


@dataclass(frozen=True)
class Violation:
    """One reported violation: finding id (rule), control ids, resource name/URN, level, message."""

    rule: str
    controls: tuple[str, ...]
    resource: str
    urn: str | None
    level: str
    message: str


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[])


def _unpack(r: Any) -> tuple[str, str, Mapping[str, Any], Mapping[str, Any]]:
    if isinstance(r, tuple):
        typ, name, props = r[:3]
        return typ, name, props, {}
    extra: dict[str, Any] = {}
    for key in ("outputs",):
        v = getattr(r, key, None)
        if isinstance(v, Mapping):
            extra.update(v)
    if getattr(r, "id", None):
        extra["id"] = r.id
    return r.typ, r.name, dict(getattr(r, "inputs", None) or getattr(r, "props", None) or {}), extra


def to_policy_resources(resources: Iterable[Any], *, project: str = "secure-mail-api",
                        stack: str = "dev") -> list[PolicyResource]:
    """Build ``PolicyResource`` objects; props are the inputs plus known outputs (id, arn) for linking."""
    out = []
    for r in resources:
        typ, name, props, extra = _unpack(r)
        urn = getattr(r, "urn", None) or f"urn:pulumi:{stack}::{project}::{typ}::{name}"
        merged = {**extra, **props} if not isinstance(r, tuple) else dict(props)
        for k in ("id", "arn"):
            if k in extra and k not in props:
                merged[k] = extra[k]
        out.append(PolicyResource(typ, merged, urn, name, _opts(), None, None, [], {}))
    return out


def enforcement_levels(config: Mapping[str, Any] | None) -> dict[str, str]:
    """rule -> level from a policy-config mapping (``{"rule": "advisory"}`` or ``{"rule": {"enforcementLevel": ..}}``;
    ``"all"`` sets the default). Unknown rules or levels raise ``ValueError``."""
    config = dict(config or {})
    default = "mandatory"
    if "all" in config:
        v = config.pop("all")
        default = v if isinstance(v, str) else v.get("enforcementLevel", "mandatory")
    levels = {name: default for name in RULES}
    for name, v in config.items():
        if name not in RULES:
            raise ValueError(f"policy config: unknown rule {name!r}")
        level = v if isinstance(v, str) else v.get("enforcementLevel", levels[name])
        if level not in LEVELS:
            raise ValueError(f"policy config: {name}: enforcementLevel {level!r} not in {LEVELS}")
        levels[name] = level
    return levels


def _rule_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    v = config.get(name)
    return {k: x for k, x in v.items() if k != "enforcementLevel"} if isinstance(v, Mapping) else {}


def evaluate(resources: Iterable[Any], config: Mapping[str, Any] | None = None, *,
             rules: Iterable[str] | None = None, project: str = "secure-mail-api", stack: str = "dev") -> list[Violation]:
    """Run the rules (all, or those named) over ``resources``; return every violation, in rule order.
    Disabled rules are skipped; advisory ones are reported with ``level="advisory"``."""
    config = dict(config or {})
    levels = enforcement_levels(config)
    prs = to_policy_resources(resources, project=project, stack=stack)
    selected = [RULES[n] for n in (rules or RULES)]
    out: list[Violation] = []
    by_urn = {r.urn: r.name for r in prs}
    for rule in selected:
        level = levels[rule.name]
        if level == "disabled":
            continue
        cfg = _rule_config(config, rule.name)

        def report(message: str, urn: str | None = None, _rule=rule, _level=level) -> None:
            out.append(Violation(_rule.name, _rule.controls, by_urn.get(urn, "stack") if urn else "stack", urn,
                                 _level, message))

        if isinstance(rule.policy, ResourceValidationPolicy):   # rule.kind == "resource"
            for r in prs:
                args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, None, config=cfg)
                try:
                    rule.policy.validate(args, report)
                except Exception as exc:  # not_applicable / unknown values
                    if type(exc).__name__ not in ("_NotApplicableError", "UnknownValueError"):
                        raise
        else:
            try:
                rule.policy.validate(StackValidationArgs(prs, config=cfg), report)
            except Exception as exc:
                if type(exc).__name__ not in ("_NotApplicableError", "UnknownValueError"):
                    raise
    return out
