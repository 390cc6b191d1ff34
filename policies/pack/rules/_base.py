"""The small framework every rule of the pack is built on.

A rule is a ``pulumi_policy`` policy plus metadata: a stable *finding id* (the rule name, kebab-case),
the *control ids* it enforces (Security Hub, checkov, cdk-nag, AWSGuard/compliance-policies ids, or a
``BASELINE-*`` id for a docs/security-baseline.md row that has no public id) and the source. A check function returns
:class:`Finding` objects (property, bad value, fix); the framework turns each into one violation message::

    <resource name>: <property> is <bad>; set <fix> (<control ids>) [<rule name>]

Config (``pulumi preview --policy-pack-config FILE`` or ``policies.check --config FILE``), per rule::

    {"<rule name>": {"enforcementLevel": "advisory",               # override mandatory
                     "suppressions": {"<resource name>": "why"},  # per-resource, justified
                     "<rule option>": ...}}

Building the ``PolicyPack`` itself starts a gRPC server and blocks, so that only happens in
``policies/pack/__main__.py``; everything here is importable without side effects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

__all__ = [
    "RULES",
    "Finding",
    "Rule",
    "as_list",
    "denies_insecure_transport",
    "format_message",
    "get",
    "is_true",
    "links",
    "of_type",
    "parse_doc",
    "public_allows",
    "refers",
    "resource_rule",
    "stack_rule",
    "statements",
]


@dataclass(frozen=True)
class Finding:
    """One failed expectation: ``prop`` is ``bad``; the fix is ``fix``."""

    prop: str
    bad: str
    fix: str
    resource: PolicyResource | None = None  # stack rules: the resource at fault (None = the stack)


@dataclass
class Rule:
    """Metadata of one rule: finding id, control ids, source, the policy object and its check."""

    name: str
    controls: tuple[str, ...]
    description: str
    kind: str  # "resource" | "stack"
    types: tuple[str, ...]
    policy: ResourceValidationPolicy | StackValidationPolicy
    options: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    @property
    def primary_control(self) -> str:
        return self.controls[0]


#: finding id (rule name) -> Rule, in declaration order
RULES: dict[str, Rule] = {}

_COMMON_SCHEMA = {
    "suppressions": {
        "type": "object",
        "description": "resource name -> justification; that resource is not checked by this rule",
        "additionalProperties": {"type": "string", "minLength": 10},
    },
}


def format_message(name: str, finding: Finding, controls: Iterable[str], rule: str) -> str:
    """``<name>: <property> is <bad>; set <fix> (<control ids>) [<rule>]``."""
    return f"{name}: {finding.prop} is {finding.bad}; set {finding.fix} ({', '.join(controls)}) [{rule}]"


def _schema(options: Mapping[str, tuple[dict[str, Any], Any]]) -> PolicyConfigSchema:
    props = dict(_COMMON_SCHEMA)
    for key, (schema, default) in options.items():
        props[key] = {**schema, "default": default}
    return PolicyConfigSchema(properties=props)


def _config(raw: Mapping[str, Any] | None, options: Mapping[str, tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    cfg = {key: default for key, (_, default) in options.items()}
    cfg["suppressions"] = {}
    cfg.update(dict(raw or {}))
    return cfg


def _suppressed(cfg: Mapping[str, Any], name: str, urn: str | None) -> bool:
    sup = cfg.get("suppressions") or {}
    return name in sup or (urn is not None and urn in sup)


def _register(rule: Rule) -> None:
    if rule.name in RULES:
        raise ValueError(f"duplicate rule name {rule.name!r}")
    RULES[rule.name] = rule


def resource_rule(name: str, controls: Iterable[str], types: str | Iterable[str], description: str,
                  options: Mapping[str, tuple[dict[str, Any], Any]] | None = None):
    """Decorator: turn ``check(props, cfg, resource_type) -> Iterable[Finding]`` into a mandatory
    ``ResourceValidationPolicy`` that only looks at resources of ``types``."""
    types = (types,) if isinstance(types, str) else tuple(types)
    controls = tuple(controls)
    options = dict(options or {})

    def wrap(check: Callable[[Mapping[str, Any], dict[str, Any], str], Iterable[Finding]]):
        def validate(args: ResourceValidationArgs, report_violation) -> None:
            if args.resource_type not in types:
                return
            cfg = _config(args.get_config(), options)
            if _suppressed(cfg, args.name, args.urn):
                return
            for f in check(args.props, cfg, args.resource_type):
                report_violation(format_message(args.name, f, controls, name), args.urn)

        policy = ResourceValidationPolicy(
            name=name, description=f"{description} ({', '.join(controls)})", validate=validate,
            enforcement_level=EnforcementLevel.MANDATORY, config_schema=_schema(options))
        _register(Rule(name, controls, description, "resource", types, policy, options, check.__doc__ or ""))
        return check

    return wrap


def stack_rule(name: str, controls: Iterable[str], description: str,
               options: Mapping[str, tuple[dict[str, Any], Any]] | None = None, types: Iterable[str] = ()):
    """Decorator: turn ``check(resources, cfg) -> Iterable[Finding]`` (findings carry the resource
    at fault) into a mandatory ``StackValidationPolicy``."""
    controls = tuple(controls)
    options = dict(options or {})

    def wrap(check: Callable[[list[PolicyResource], dict[str, Any]], Iterable[Finding]]):
        def validate(args: StackValidationArgs, report_violation) -> None:
            cfg = _config(args.get_config(), options)
            resources = [r for r in args.resources if not _suppressed(cfg, r.name, r.urn)]
            for f in check(resources, cfg):
                res = f.resource
                report_violation(format_message(res.name if res else "stack", f, controls, name),
                                 res.urn if res else None)

        policy = StackValidationPolicy(
            name=name, description=f"{description} ({', '.join(controls)})", validate=validate,
            enforcement_level=EnforcementLevel.MANDATORY, config_schema=_schema(options))
        _register(Rule(name, controls, description, "stack", tuple(types), policy, options, check.__doc__ or ""))
        return check

    return wrap


# -- property helpers ---------------------------------------------------------------------------
_MISSING = object()


def get(props: Any, path: str, default: Any = None) -> Any:
    """``get(props, "settings.loggingLevel")``; list indexes as ``rules.0.name``."""
    cur = props
    for part in path.split("."):
        if isinstance(cur, Mapping):
            cur = cur.get(part, _MISSING)
        elif isinstance(cur, (list, tuple)) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            cur = _MISSING
        if cur is _MISSING or cur is None:
            return default
    return cur


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def parse_doc(value: Any) -> dict[str, Any] | None:
    """A policy document from a JSON string or a dict; ``None`` when absent or unparsable."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.strip():
        try:
            doc = json.loads(value)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
    return None


def statements(doc: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return [s for s in as_list((doc or {}).get("Statement")) if isinstance(s, Mapping)]


def public_allows(doc: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """Allow statements whose principal is ``*`` (or ``{"AWS": "*"}``) without any Condition."""
    out: list[Mapping[str, Any]] = []
    for s in statements(doc):
        if s.get("Effect") != "Allow" or s.get("Condition"):
            continue
        p = s.get("Principal")
        aws = p.get("AWS") if isinstance(p, Mapping) else p
        if p == "*" or "*" in as_list(aws):
            out.append(s)
    return out


def denies_insecure_transport(doc: Mapping[str, Any] | None) -> bool:
    """True when a Deny statement for every principal fires on ``aws:SecureTransport`` = false."""
    for s in statements(doc):
        if s.get("Effect") != "Deny":
            continue
        p = s.get("Principal")
        if not (p == "*" or (isinstance(p, Mapping) and "*" in as_list(p.get("AWS")))):
            continue
        cond = s.get("Condition") or {}
        for op in ("Bool", "BoolIfExists"):
            v = (cond.get(op) or {}).get("aws:SecureTransport")
            if v is not None and str(as_list(v)[0]).lower() == "false":
                return True
    return False


# -- stack helpers ------------------------------------------------------------------------------
def of_type(resources: Iterable[PolicyResource], typ: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type == typ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def identifiers(target: PolicyResource) -> set[str]:
    """Strings by which another resource's input can refer to ``target``: its id, ARN, name-like
    outputs, URL, URN and logical name."""
    ids = {target.urn, target.name}
    for key in ("id", "arn", "name", "bucket", "url", "keyId", "stageName"):
        v = target.props.get(key) if isinstance(target.props, Mapping) else None
        if isinstance(v, str) and v:
            ids.add(v)
    return ids


def links(src: PolicyResource, prop: str, target: PolicyResource) -> bool:
    """Does ``src``'s input ``prop`` refer to ``target``?

    Uses the engine's property dependencies when it provides them (``pulumi preview``), else compares
    the value with ``target``'s identifiers (offline recordings), also as an ARN prefix (``arn/*``).
    """
    deps = (src.property_dependencies or {}).get(prop) or []
    if any(d is target or d.urn == target.urn for d in deps):
        return True
    return refers(get(src.props, prop), target)


def refers(value: Any, target: PolicyResource) -> bool:
    """Does any string in ``value`` name ``target`` (an identifier, or an ARN below the target's ARN)?"""
    ids = identifiers(target)
    for v in _strings(value):
        if v in ids or any(v.startswith((i + "/", i + ":")) for i in ids if i.startswith("arn:")):
            return True
    return False
