"""Vault/OpenBao ACL policies for the rotation jobs and their consumers.

The HCL templates and their renderer live in the ``rotation`` package
(:mod:`rotation.vault_policies`, shipped in the wheel as package data, applied by
``rotation vault setup``); this module re-exports them so the repository's policy tooling and
tests read the very same files. Layout and grants: docs/vault-layout.md.
"""

from __future__ import annotations

from rotation.vault_policies import POLICY_TEMPLATES, consumer_policy_name, render_vault_policy, template_path

__all__ = ["POLICY_TEMPLATES", "consumer_policy_name", "render_vault_policy", "template_path"]
