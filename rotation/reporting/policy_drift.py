"""Policy drift: the Vault ACL policies and the IAM role policy in place versus the expected texts.

Vault side. The policies in place are read with ``GET sys/policies/acl/<name>`` and listed with
``LIST sys/policies/acl`` (https://openbao.org/api-docs/system/policies/). The token needs
``read`` on ``sys/policies/acl/mail-api-*`` and ``list`` on ``sys/policies/acl``; the repository's
``mail-api-auditor`` and ``mail-api-rotator`` policies grant neither, so pass a token that has them
(``--policy-token-env``), or the items are reported ``unreadable``. The expected texts come from a
directory of HCL files (or ``pkg:<package>`` for templates shipped as package data), so the
rotation package never imports the repository's ``policies/`` (the wheel does not ship it):

* ``rotator.hcl`` / ``auditor.hcl`` -> policies ``mail-api-rotator`` / ``mail-api-auditor``;
* ``consumer.hcl`` -> ``mail-api-consumer-<name>`` for every consumer of the consumers file;
* any other ``<name>.hcl`` -> policy ``<name>``.

``${mount}``, ``${prefix}`` and ``${consumer}`` are filled in (``string.Template``), so the
repository's templates (``policies/vault``) and rendered files both work. Texts are compared
without comments, blank lines and indentation.

IAM side. ``iam:GetRolePolicy`` for a role and inline policy name, compared with an expected
policy document (JSON) after canonicalisation (key order, single strings vs. one-element lists,
statement order). https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html

Each compared policy is an item ``{"kind": "vault_acl" | "iam_role_policy", "name", "state":
"match" | "drift" | "missing" | "unexpected" | "unreadable", "detail", "diff": [line]}``. Policy
texts are not secrets; a diff holds policy lines only.
"""

from __future__ import annotations

import difflib
import json
import re
import string
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any

from rotation.backends.aws_errors import aws_errors
from rotation.backends.vault_errors import vault_errors
from rotation.errors import AwsError, UsageError, VaultError

__all__ = ["compare_iam", "compare_vault", "expected_vault_policies", "normalize_hcl", "read_vault_policies"]

_NAMES = {"rotator": "mail-api-rotator", "auditor": "mail-api-auditor"}
_MAX_DIFF = 60


def _files(source: str) -> dict[str, str]:
    if source.startswith("pkg:"):
        try:
            root = resources.files(source[4:])
        except ModuleNotFoundError as exc:
            raise UsageError(f"--expected-policies {source!r}: no package {exc.name!r}") from None
        return {p.name[:-4]: p.read_text(encoding="utf-8") for p in root.iterdir() if p.name.endswith(".hcl")}
    d = Path(source)
    if not d.is_dir():
        raise UsageError(f"--expected-policies {source!r}: not a directory of .hcl files "
                         "(e.g. policies/vault in the repository)")
    found = {p.stem: p.read_text(encoding="utf-8") for p in sorted(d.glob("*.hcl"))}
    if not found:
        raise UsageError(f"--expected-policies {source!r}: holds no .hcl file")
    return found


def expected_vault_policies(source: str, *, mount: str, prefix: str, consumers: list[str]) -> dict[str, str]:
    """Policy name -> expected HCL text, from ``source`` (a directory or ``pkg:<package>``).

    Raises :class:`~rotation.errors.UsageError` naming the option when ``source`` is unusable.
    """
    out: dict[str, str] = {}
    for stem, text in _files(source).items():
        tmpl = string.Template(text)
        if stem == "consumer":
            for c in consumers:
                out[f"mail-api-consumer-{c}"] = tmpl.safe_substitute(mount=mount, prefix=prefix, consumer=c)
        else:
            out[_NAMES.get(stem, stem)] = tmpl.safe_substitute(mount=mount, prefix=prefix)
    return out


def normalize_hcl(text: str) -> list[str]:
    """Policy lines without comments (``#``, ``//``), indentation and blank lines."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s*(#|//).*$", "", line).strip()
        if line:
            lines.append(re.sub(r"\s+", " ", line))
    return lines


def _diff(expected: list[str], actual: list[str], a: str, b: str) -> list[str]:
    d = list(difflib.unified_diff(expected, actual, fromfile=a, tofile=b, lineterm="", n=1))
    return d[:_MAX_DIFF] + (["... (diff truncated)"] if len(d) > _MAX_DIFF else [])


def read_vault_policies(client: Any, names: list[str]) -> tuple[dict[str, str | None], list[str] | None, str | None]:
    """Read ACL policies with ``client`` (an hvac client): ``(name -> text or None if absent,
    the listed policy names or None if listing was denied, an error naming what was denied)``.

    Status codes decide (403 denied, 404 absent); raises :class:`~rotation.errors.VaultError`
    for anything else.
    """
    texts: dict[str, str | None] = {}
    denied: list[str] = []
    listed: list[str] | None = None
    with vault_errors("list", "sys/policies/acl"):
        r = client.adapter.request("LIST", "/v1/sys/policies/acl", raise_exception=False)
    if isinstance(r, dict):
        listed = list((r.get("data") or {}).get("keys") or [])
    elif r.status_code == 403:
        denied.append("list sys/policies/acl")
    elif r.status_code != 404:
        raise VaultError(f"list sys/policies/acl: HTTP {r.status_code}")
    for name in names:
        with vault_errors("read", f"sys/policies/acl/{name}"):
            r = client.adapter.get(f"/v1/sys/policies/acl/{name}", raise_exception=False)
        if isinstance(r, dict):
            texts[name] = (r.get("data") or {}).get("policy") or ""
        elif r.status_code == 404:
            texts[name] = None
        elif r.status_code == 403:
            denied.append(f"read sys/policies/acl/{name}")
        else:
            raise VaultError(f"read sys/policies/acl/{name}: HTTP {r.status_code}")
    error = None
    if denied:
        error = (f"permission denied ({len(denied)} call(s), e.g. {denied[0]}): the token needs read on "
                 "sys/policies/acl/mail-api-* and list on sys/policies/acl")
    return texts, listed, error


def compare_vault(expected: dict[str, str], actual: dict[str, str | None], listed: list[str] | None,
                  error: str | None) -> list[dict[str, Any]]:
    """Drift items for the Vault ACL policies (pure). ``actual`` lacks the names that could not be
    read; ``listed`` (all policy names in Vault, or ``None``) finds ``mail-api-*`` policies the
    repository does not define."""
    items = []
    for name in sorted(expected):
        if name not in actual:
            items.append({"kind": "vault_acl", "name": name, "state": "unreadable", "detail": error or "not read",
                          "diff": []})
            continue
        text = actual[name]
        if text is None:
            items.append({"kind": "vault_acl", "name": name, "state": "missing",
                          "detail": "not in Vault (write it with the repository's template)", "diff": []})
            continue
        exp, act = normalize_hcl(expected[name]), normalize_hcl(text)
        same = exp == act
        items.append({"kind": "vault_acl", "name": name, "state": "match" if same else "drift",
                      "detail": "same rules as the repository" if same else
                      "the policy in Vault differs from the repository's",
                      "diff": [] if same else _diff(exp, act, f"expected/{name}", f"vault/{name}")})
    for name in sorted(set(listed or ()) - set(expected)):
        if name.startswith("mail-api-"):
            items.append({"kind": "vault_acl", "name": name, "state": "unexpected",
                          "detail": "in Vault but not defined by the repository", "diff": []})
    return items


def _canon(obj: Any, key: str = "") -> Any:
    if isinstance(obj, dict):
        return {k: _canon(v, k) for k, v in sorted(obj.items())}
    if isinstance(obj, list):
        items = [_canon(v) for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, str) and key in ("Action", "NotAction", "Resource", "NotResource", "Principal"):
        return [obj]
    return obj


def read_iam_role_policy(iam_client: Any, role: str, policy_name: str) -> dict[str, Any] | None:
    """The inline policy document of ``role`` (``iam:GetRolePolicy``); ``None`` when the role or
    policy does not exist (``NoSuchEntity``). Raises :class:`~rotation.errors.AwsError` otherwise."""
    try:
        with aws_errors("GetRolePolicy", f"{role}/{policy_name}"):
            doc = iam_client.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    except AwsError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    if isinstance(doc, str):   # the API returns it URL-encoded; boto3 usually decodes it already
        doc = json.loads(urllib.parse.unquote(doc))
    return doc


def compare_iam(expected: dict[str, Any], actual: dict[str, Any] | None, name: str,
                error: str | None = None) -> dict[str, Any]:
    """One drift item for an IAM role policy (pure). ``actual`` ``None``: missing, unless ``error``."""
    if error:
        return {"kind": "iam_role_policy", "name": name, "state": "unreadable", "detail": error, "diff": []}
    if actual is None:
        return {"kind": "iam_role_policy", "name": name, "state": "missing",
                "detail": "no such role or inline policy", "diff": []}
    exp = json.dumps(_canon(expected), indent=1, sort_keys=True).splitlines()
    act = json.dumps(_canon(actual), indent=1, sort_keys=True).splitlines()
    same = exp == act
    return {"kind": "iam_role_policy", "name": name, "state": "match" if same else "drift",
            "detail": "same document as expected" if same else "the document in IAM differs from the expected one",
            "diff": [] if same else _diff(exp, act, f"expected/{name}", f"iam/{name}")}
