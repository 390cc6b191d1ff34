"""IAM policy documents as JSON templates, shared by ``infra/`` and the tests.

Each ``<name>.json`` in this folder is an IAM policy document whose strings may contain
``${placeholder}`` fields (``string.Template`` syntax), for example ``${region}``,
``${account_id}``, ``${rest_api_id}``. :func:`render_policy` fills every field and refuses a
template with a field left unfilled, so a document never reaches AWS half-rendered.

A placeholder written *without* quotes (``"ses:FromAddress": ${from_addresses}``) takes JSON text,
for a list of condition values: pass ``json.dumps([...])``. ``sender.json`` uses two:
``from_addresses`` (every sender address an access level allows; ``ses:FromAddress``) and
``from_display_names`` (every allowed display name; ``ses:FromDisplayName``, compared only when
the message has one), so that a handler bug cannot send as any other address or name
(SES condition keys: https://docs.aws.amazon.com/ses/latest/dg/control-user-access.html).
"""

from __future__ import annotations

import json
import string
from importlib import resources
from typing import Any

__all__ = ["POLICY_NAMES", "load_template", "placeholders", "render_policy"]

POLICY_NAMES = ("rotator", "sender")


def load_template(name: str) -> str:
    """Return the raw JSON text of the template ``<name>.json``.

    Raises ``ValueError`` for a name not in :data:`POLICY_NAMES`.
    """
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown IAM policy template {name!r}; expected one of {POLICY_NAMES}")
    return resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")


def placeholders(name: str) -> set[str]:
    """Return the set of ``${field}`` names the template ``<name>.json`` needs."""
    tmpl = string.Template(load_template(name))
    return {m.group("named") or m.group("braced") for m in tmpl.pattern.finditer(tmpl.template)
            if m.group("named") or m.group("braced")}


def render_policy(name: str, **values: str) -> dict[str, Any]:
    """Render ``<name>.json`` with ``values`` and return the policy document as a dict.

    Raises ``ValueError`` naming the missing fields when a placeholder has no value, and
    naming the unexpected ones when a value matches no placeholder.
    """
    needed = placeholders(name)
    missing = needed - values.keys()
    extra = values.keys() - needed
    if missing or extra:
        raise ValueError(
            f"IAM template {name!r}: missing values for {sorted(missing)}; unexpected {sorted(extra)}"
        )
    return json.loads(string.Template(load_template(name)).substitute(values))
