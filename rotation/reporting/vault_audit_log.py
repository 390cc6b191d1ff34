"""Anomalies in a Vault/OpenBao file audit device's log: denied requests against the rotation
paths, logins by an identity not on the expected list, and failed logins.

Input: the file audit device's JSON lines (https://openbao.org/docs/audit/ and
https://developer.hashicorp.com/vault/docs/audit). Each request is logged twice, as a ``request``
and a ``response`` entry; only ``response`` entries are read (they carry the outcome). Signals
are structured fields, never error text:

* denied: ``auth.policy_results.allowed == false`` (the ACL check said no) on a path under
  ``<mount>/<data|metadata|delete|undelete|destroy|subkeys>/<prefix>/`` or ``<mount>/config``;
* login: a response on ``auth/<method mount>/login`` carrying ``response.auth`` (a token was
  issued); the identity is the auth method's role (``metadata.role_name`` for AppRole,
  ``metadata.role`` for Kubernetes/JWT), else ``display_name``;
* failed login: a response on a login path that issued no token: no ``response.auth`` and no
  ``response.wrap_info`` (a response-wrapped login). Every form the servers log counts, whatever
  carries the error: a top-level ``error`` (wrong secret id, HTTP 400 ``invalid credentials``; a
  locked-out role, HTTP 403 ``permission denied``), or an error inside the response,
  ``response.data.error`` (OpenBao 2.x for an unknown role id or a missing field: the top-level
  ``error`` is empty and the text is HMAC'd), or no error at all. The error text is never read.

Vault HMACs sensitive fields in the log (tokens, accessors, request and response data), but even
the HMACs are not reported: an :class:`AuditEvent` keeps only time, operation, path, identity,
token policy names, remote address and request id. Nothing from ``request.data``/``response.data``
and no ``client_token``/``accessor`` is ever read into it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["AuditEvent", "default_expected_identities", "scan", "scan_file"]

_ROTATION_SUBPATHS = ("data", "metadata", "delete", "undelete", "destroy", "subkeys")
# Applied with fullmatch (``$`` would let a trailing newline through), digits spelled [0-9].
_FRACTION = re.compile(r"(\.[0-9]{1,6})[0-9]*")


def _is_login_path(path: str) -> bool:
    """``auth/<mount>/login`` or ``auth/<mount>/login/<name>`` (every auth method's login endpoint,
    https://openbao.org/api-docs/auth/), decided in one linear pass: a path from the log is
    attacker-influenced, and a backtracking pattern over it costs time quadratic in its length.
    A path with a control character is no login path."""
    if not path.startswith("auth/") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return False
    i = path.find("/login", 5)
    while i != -1:
        end = i + len("/login")
        if i > len("auth/") and (end == len(path) or path[end] == "/"):
            return True
        i = path.find("/login", i + 1)
    return False


@dataclass(frozen=True)
class AuditEvent:
    """One reported audit entry; no field holds a secret or an HMAC of one."""

    time: str | None            # RFC 3339, UTC, at most microseconds
    operation: str
    path: str
    identity: str               # role name, display name, or "unknown"
    policies: tuple[str, ...]
    remote_address: str | None
    request_id: str | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["policies"] = list(self.policies)
        return d


def default_expected_identities(consumers: Iterable[str]) -> set[str]:
    """The AppRole role names the stack sets up: ``mail-api-rotator``, ``mail-api-auditor`` and
    ``mail-api-consumer-<name>`` per consumer (the names of their ACL policies, docs/vault-layout.md)."""
    return {"mail-api-rotator", "mail-api-auditor", *(f"mail-api-consumer-{c}" for c in consumers)}


def _time(raw: Any) -> str | None:
    if not isinstance(raw, str) or not raw:
        return None
    return _FRACTION.sub(lambda m: m.group(1), raw, count=1)


def _identity(auth: dict[str, Any]) -> str:
    meta = auth.get("metadata") or {}
    for key in ("role_name", "role", "service_account_name"):
        if isinstance(meta.get(key), str) and meta[key]:
            return meta[key]
    return str(auth.get("display_name") or "unknown")


def _event(entry: dict[str, Any], auth: dict[str, Any], identity: str | None = None) -> AuditEvent:
    req = entry.get("request") or {}
    pols = auth.get("token_policies") or auth.get("policies") or []
    return AuditEvent(time=_time(entry.get("time")), operation=str(req.get("operation") or ""),
                      path=str(req.get("path") or ""), identity=identity or _identity(auth),
                      policies=tuple(str(p) for p in pols if isinstance(p, str)),
                      remote_address=req.get("remote_address") if isinstance(req.get("remote_address"), str) else None,
                      request_id=req.get("id") if isinstance(req.get("id"), str) else None)


#: The objects and lists the scan reads, by path from the entry: a field of another JSON type
#: (a torn or forged line) reads as absent, so no ``.get`` meets a string or a number.
_OBJECTS = (("request",), ("auth",), ("auth", "policy_results"), ("auth", "metadata"), ("response",),
            ("response", "auth"), ("response", "auth", "metadata"))
_LISTS = (("auth", "token_policies"), ("auth", "policies"), ("response", "auth", "token_policies"),
          ("response", "auth", "policies"))


def _well_typed(entry: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``entry`` in which each field of :data:`_OBJECTS` is a dict and each of
    :data:`_LISTS` a list (or absent): what the audit device writes; anything else is dropped."""
    entry = dict(entry)
    for path in (*_OBJECTS, *_LISTS):
        kind = dict if path in _OBJECTS else list
        parent: dict[str, Any] = entry
        for key in path[:-1]:
            child = parent.get(key)
            parent = child if isinstance(child, dict) else {}
        if path[-1] in parent and not isinstance(parent[path[-1]], kind):
            del parent[path[-1]]
        elif kind is dict and isinstance(parent.get(path[-1]), dict):
            parent[path[-1]] = dict(parent[path[-1]])       # copied before a child is dropped from it
    return entry


def _is_rotation_path(path: str, mount: str, prefix: str) -> bool:
    if path == f"{mount}/config":
        return True
    return any(path == f"{mount}/{sub}/{prefix}" or path.startswith(f"{mount}/{sub}/{prefix}/")
               for sub in _ROTATION_SUBPATHS)


def scan(lines: Iterable[str], *, mount: str, prefix: str, expected_identities: set[str],
         source: str | None = None) -> dict[str, Any]:
    """Scan audit log ``lines``; return the ``vault_audit`` section of the audit report::

        {"source", "entries": int, "responses": int, "unparsed": int, "logins": int,
         "denied": [event], "unexpected_logins": [event], "failed_logins": [event]}

    ``mount``/``prefix``: the KV v2 mount and the rotation prefix. ``expected_identities``: role
    names allowed to log in. Lines that are not JSON objects are counted in ``unparsed``, never
    echoed (a torn line could hold anything).
    """
    out: dict[str, Any] = {"source": source, "entries": 0, "responses": 0, "unparsed": 0, "logins": 0,
                           "denied": [], "unexpected_logins": [], "failed_logins": []}
    for line in lines:
        if not line.strip():
            continue
        out["entries"] += 1
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):       # RecursionError: nested deeper than the parser goes
            out["unparsed"] += 1
            continue
        if not isinstance(entry, dict) or entry.get("type") != "response":
            if not isinstance(entry, dict):
                out["unparsed"] += 1
            continue
        entry = _well_typed(entry)
        out["responses"] += 1
        req = entry.get("request") or {}
        path = str(req.get("path") or "")
        auth = entry.get("auth") or {}
        allowed = (auth.get("policy_results") or {}).get("allowed")
        if allowed is False and _is_rotation_path(path, mount, prefix):
            out["denied"].append(_event(entry, auth).to_dict())
            continue
        if _is_login_path(path):
            raw_response = entry.get("response")
            response: dict[str, Any] = raw_response if isinstance(raw_response, dict) else {}
            issued = response.get("auth")
            if isinstance(issued, dict) and issued:
                out["logins"] += 1
                ev = _event(entry, issued)
                if ev.identity not in expected_identities:
                    out["unexpected_logins"].append(ev.to_dict())
            elif not response.get("wrap_info"):
                # no token was issued, wherever the error is (top level, inside the response, or
                # none): the caller's identity is unknown (whatever token it sent)
                out["failed_logins"].append(_event(entry, {}, identity="unknown").to_dict())
    return out


def scan_file(path: str | Path, **kw: Any) -> dict[str, Any]:
    """:func:`scan` over the file at ``path`` (read as UTF-8, undecodable bytes replaced).

    Raises ``OSError`` when the file cannot be read.
    """
    p = Path(path)
    with p.open(encoding="utf-8", errors="replace") as f:
        return scan(f, source=str(p), **kw)
