"""Vault/OpenBao ACL policies (HCL templates) for the rotation jobs and their consumers.

KV v2 layout (mount and prefix are separate settings, ``VAULT_KV_MOUNT`` / ``VAULT_KV_PREFIX``;
defaults ``secret`` and ``mail-api``), all paths relative to the mount:

====================================  ===============================================  =========
path                                  content                                          secret?
====================================  ===============================================  =========
``<prefix>/keys/<consumer>``          staging labels ``current``/``previous``/``pending`` yes
                                      (value, API key id, serial); custom_metadata
                                      mirrors the non-secret label summary
``<prefix>/rotations/<consumer>``     CAS lease + rotation journal (no secret)         no
``<prefix>/acks/<consumer>``          the serial the consumer app now uses (its ack)   no
``<prefix>/webhooks/<consumer>``      the consumer's webhook HMAC signing secret       yes
====================================  ===============================================  =========

Templates use ``string.Template`` fields: ``${mount}``, ``${prefix}`` and, for the per-consumer
reader, ``${consumer}``. See https://openbao.org/docs/concepts/policies/ for the HCL syntax.

The ``*.hcl`` files ship inside the wheel as package data (``rotation vault setup`` applies them);
``policies.vault`` (the repository's policy tooling) re-exports this module, so there is one copy.
"""

from __future__ import annotations

import re
import string
from importlib import resources

__all__ = ["POLICY_TEMPLATES", "consumer_policy_name", "render_vault_policy", "template_path"]

#: template name -> Vault policy name pattern
POLICY_TEMPLATES = {
    "rotator": "mail-api-rotator",
    "consumer": "mail-api-consumer-${consumer}",
    "auditor": "mail-api-auditor",
}

_SEGMENT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")   # always fullmatch: ``$`` would let "secret\n" into the HCL


def consumer_policy_name(consumer: str) -> str:
    """Vault policy name for one consumer's reader policy: ``mail-api-consumer-<consumer>``."""
    return string.Template(POLICY_TEMPLATES["consumer"]).substitute(consumer=consumer)


def render_vault_policy(template: str, *, mount: str, prefix: str, consumer: str | None = None) -> str:
    """Render ``<template>.hcl`` into policy text.

    ``mount``, ``prefix`` and ``consumer`` must be plain path segments (lower-case letters,
    digits, ``-``; ``prefix`` may hold ``/``), so no value can widen a path with ``*`` or ``+``.
    Raises ``ValueError`` naming the bad field.
    """
    if template not in POLICY_TEMPLATES:
        raise ValueError(f"unknown Vault policy template {template!r}; expected one of {sorted(POLICY_TEMPLATES)}")
    values = {"mount": mount, "prefix": prefix}
    if template == "consumer":
        if consumer is None:
            raise ValueError("consumer: required for the per-consumer reader policy")
        values["consumer"] = consumer
    for field, value in values.items():
        parts = value.split("/") if field == "prefix" else [value]
        if not all(_SEGMENT.fullmatch(p) for p in parts):
            raise ValueError(f"{field}: {value!r} is not a plain path segment (a-z, 0-9, '-')")
    text = resources.files(__package__).joinpath(f"{template}.hcl").read_text(encoding="utf-8")
    return string.Template(text).substitute(values)


def template_path(template: str):
    """The packaged ``<template>.hcl`` as an ``importlib.resources`` Traversable (read-only)."""
    if template not in POLICY_TEMPLATES:
        raise ValueError(f"unknown Vault policy template {template!r}; expected one of {sorted(POLICY_TEMPLATES)}")
    return resources.files(__package__).joinpath(f"{template}.hcl")
