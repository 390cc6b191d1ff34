"""The rules of the ``secure-mail-api-baseline`` CrossGuard pack, importable without side effects.

One mandatory rule per control of ``docs/security-baseline.md``; :data:`RULES` maps each finding id (the
rule name) to its control ids, description and policy; :data:`ALL_POLICIES` is what
``policies/pack/__main__.py`` hands to ``PolicyPack``. See ``policies/README.md`` for the rule table
and for overriding enforcement per rule.
"""

from __future__ import annotations

from pulumi_policy import Policy

from . import apigateway, compute, data, identity, kms_iam, logging, s3, waf  # noqa: F401  (registers rules)
from ._base import RULES, Finding, Rule, format_message

__all__ = [
    "ALL_POLICIES",
    "RESOURCE_POLICIES",
    "RULES",
    "STACK_POLICIES",
    "Finding",
    "Rule",
    "controls_index",
    "format_message",
]

ALL_POLICIES: list[Policy] = [r.policy for r in RULES.values()]
RESOURCE_POLICIES = [r.policy for r in RULES.values() if r.kind == "resource"]
STACK_POLICIES = [r.policy for r in RULES.values() if r.kind == "stack"]


def controls_index() -> dict[str, list[str]]:
    """control id -> rule names enforcing it."""
    out: dict[str, list[str]] = {}
    for r in RULES.values():
        for c in r.controls:
            out.setdefault(c, []).append(r.name)
    return out
