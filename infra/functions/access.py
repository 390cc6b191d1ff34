"""Per-caller access levels of ``POST /v1/messages``: who may send what (issue 13 part 1).

Where a level comes from (docs/architecture.md "Access levels"):

- The levels themselves, the consumer -> level map and the OAuth scope -> level map are stack
  config (``accessLevels``, ``consumerAccessLevels``, ``oauthScopes``), rendered into the function's
  environment as compact JSON (``ACCESS_LEVELS``, ``ACCESS_CONSUMERS``, ``ACCESS_SCOPES``) and
  parsed once per cold start: no Vault or DynamoDB read per request.
- The caller's consumer is the ``secure-mail-api:consumer`` tag of the API key API Gateway
  validated (``requestContext.identity.apiKeyId``), read with ``apigateway:GetApiKey``
  (``includeValue=false``) and cached per key id for :data:`KEY_CACHE_TTL_SECONDS`: one control-plane
  read per key per cold start and TTL, never per request. A key of another stack (its
  ``secure-mail-api:stack`` tag differs from ``ACCESS_STACK``) has no consumer here.
- On the OAuth path (Cognito authorizer), the token's scopes (``requestContext.authorizer.claims.scope``)
  name further levels: the request must pass its key's level AND the level of at least one of its
  scopes.

:func:`check_level` is pure. Refusals raise :class:`AccessRefused` (HTTP 403, a reason of
:data:`REASONS` and the JSON path of the field at fault); they never echo a value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KEY_CACHE_TTL_SECONDS",
    "REASONS",
    "TAG_CONSUMER",
    "TAG_STACK",
    "AccessConfig",
    "AccessConfigError",
    "AccessLevel",
    "AccessRefused",
    "KeyConsumers",
    "check_level",
    "load_access_config",
]

#: How long a key id -> consumer answer is reused, seconds (a disabled key fails at the gateway
#: first, so a stale entry can only name the consumer the key was minted for).
KEY_CACHE_TTL_SECONDS = 300.0
#: Most key ids remembered per container (bounded memory).
KEY_CACHE_MAX_ENTRIES = 1024

#: Tags the rotation engine sets on every key it mints (rotation/backends/apigateway.py).
TAG_CONSUMER = "secure-mail-api:consumer"
TAG_STACK = "secure-mail-api:stack"

REASONS: dict[str, str] = {
    "caller_not_allowed": "This API key or token is not mapped to an access level.",
    "sender_not_allowed": "Your access level does not allow this sender address or display name.",
    "too_many_recipients": "Your access level allows fewer recipients per message.",
    "attachments_not_allowed": "Your access level does not allow attachments.",
    "message_too_large": "Your access level allows smaller messages.",
    "recipient_domain_not_allowed": "Your access level does not allow this recipient domain.",
}
"""Every 403 reason code, with its human description."""


class AccessRefused(Exception):
    """The caller may not send this message: HTTP 403, nothing sent or recorded.

    Attributes: ``reason`` (a key of :data:`REASONS`), ``field`` (JSON path), ``message``.
    """

    def __init__(self, reason: str, field: str = "$") -> None:
        self.reason = reason
        self.field = field
        self.message = REASONS[reason]
        super().__init__(f"{reason} at {field}")

    def to_dict(self) -> dict[str, dict[str, str]]:
        """``{"error": {"reason", "field", "message"}}``."""
        return {"error": {"reason": self.reason, "field": self.field, "message": self.message}}


class AccessConfigError(ValueError):
    """The access environment is malformed (a deployment defect: HTTP 500 server_misconfigured)."""


@dataclass(frozen=True)
class AccessLevel:
    """One level: ``senders`` (lower-case addresses), ``display_name`` (None: none allowed),
    ``max_recipients``, ``attachments``, ``max_message_bytes``, ``recipient_domains`` (None: any)."""

    name: str
    senders: frozenset[str]
    display_name: str | None
    max_recipients: int
    attachments: bool
    max_message_bytes: int
    recipient_domains: frozenset[str] | None


@dataclass(frozen=True)
class AccessConfig:
    """``levels`` by name, ``consumers`` (consumer -> level), ``scopes`` (full scope -> level),
    ``stack`` (the stack whose keys count)."""

    levels: Mapping[str, AccessLevel]
    consumers: Mapping[str, str]
    scopes: Mapping[str, str]
    stack: str | None

    def level_of_consumer(self, consumer: str | None) -> AccessLevel | None:
        name = self.consumers.get(consumer) if consumer else None
        return self.levels.get(name) if name else None

    def levels_of_scopes(self, scopes: Sequence[str]) -> list[AccessLevel]:
        return [self.levels[self.scopes[s]] for s in scopes if s in self.scopes and self.scopes[s] in self.levels]


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    try:
        value = json.loads(env.get(name) or "{}")
    except json.JSONDecodeError:
        raise AccessConfigError(f"{name} is not JSON") from None
    if not isinstance(value, dict):
        raise AccessConfigError(f"{name} must be a JSON object")
    return value


def _level(name: str, raw: Any) -> AccessLevel:
    try:
        domains = raw.get("recipientDomains")
        level = AccessLevel(
            name=name,
            senders=frozenset(str(s).lower() for s in raw["senders"]),
            display_name=raw.get("displayName") or None,
            max_recipients=int(raw["maxRecipients"]),
            attachments=bool(raw["attachments"]),
            max_message_bytes=int(raw["maxMessageBytes"]),
            recipient_domains=frozenset(str(d).lower() for d in domains) if domains else None,
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        raise AccessConfigError(f"ACCESS_LEVELS.{name} is malformed") from None
    if not level.senders or level.max_recipients < 1 or level.max_message_bytes < 1:
        raise AccessConfigError(f"ACCESS_LEVELS.{name} is malformed")
    return level


def load_access_config(env: Mapping[str, str]) -> AccessConfig | None:
    """Parse ``ACCESS_LEVELS`` / ``ACCESS_CONSUMERS`` / ``ACCESS_SCOPES`` / ``ACCESS_STACK``.

    Returns None when ``ACCESS_LEVELS`` is unset (no per-caller levels: only the local dev gateway
    runs so; the stack always sets it, checked by tests/unit/infra and the CrossGuard pack).

    Raises:
        AccessConfigError: malformed JSON, a level missing a field, or a map naming an unknown level.
    """
    if not (env.get("ACCESS_LEVELS") or "").strip():
        return None
    levels = {name: _level(name, raw) for name, raw in _json_object(env, "ACCESS_LEVELS").items()}
    consumers = _json_object(env, "ACCESS_CONSUMERS")
    scopes = _json_object(env, "ACCESS_SCOPES")
    for var, mapping in (("ACCESS_CONSUMERS", consumers), ("ACCESS_SCOPES", scopes)):
        for key, level in mapping.items():
            if level not in levels:
                raise AccessConfigError(f"{var}.{key} names an undefined level")
    return AccessConfig(levels=levels, consumers=consumers, scopes=scopes,
                        stack=(env.get("ACCESS_STACK") or "").strip() or None)


def check_level(level: AccessLevel, message: Any, *, message_bytes: int) -> None:
    """Check a validated ``MessageRequest`` against one level, in a fixed order.

    Args:
        level: the level to apply.
        message: the validated request (``sender``, ``to``/``cc``/``bcc``, ``attachments``).
        message_bytes: the size of the encoded message, bytes.

    Raises:
        AccessRefused: ``sender_not_allowed`` ($.from / $.from.name), ``too_many_recipients`` ($.to),
        ``recipient_domain_not_allowed`` ($.to[i] / $.cc[i] / $.bcc[i]), ``attachments_not_allowed``
        ($.attachments), ``message_too_large`` ($).
    """
    local, _, domain = message.sender.address.rpartition("@")
    if f"{local}@{domain.lower()}" not in level.senders:
        raise AccessRefused("sender_not_allowed", "$.from")
    if message.sender.name is not None and message.sender.name != level.display_name:
        raise AccessRefused("sender_not_allowed", "$.from.name")
    if len(message.recipients) > level.max_recipients:
        raise AccessRefused("too_many_recipients", "$.to")
    if level.recipient_domains is not None:
        for key in ("to", "cc", "bcc"):
            for index, address in enumerate(getattr(message, key)):
                if address.domain not in level.recipient_domains:
                    raise AccessRefused("recipient_domain_not_allowed", f"$.{key}[{index}]")
    if message.attachments and not level.attachments:
        raise AccessRefused("attachments_not_allowed", "$.attachments")
    if message_bytes > level.max_message_bytes:
        raise AccessRefused("message_too_large", "$")


class KeyConsumers:
    """API key id -> consumer name, from the key's tags, cached per key id.

    ``lookup(key_id)`` returns the tags of the key (``GetApiKey`` with ``includeValue=false``) or
    None when the key does not exist; it may raise the caller's own exceptions (the handler maps
    AWS errors to 502/503 in one place). ``clock`` returns monotonic seconds (tests pass a fake).
    """

    def __init__(self, lookup: Callable[[str], Mapping[str, str] | None], *,
                 ttl_seconds: float = KEY_CACHE_TTL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = KEY_CACHE_MAX_ENTRIES) -> None:
        self._lookup = lookup
        self._ttl = ttl_seconds
        self._clock = clock
        self._max = max_entries
        self._cache: dict[str, tuple[float, Mapping[str, str] | None]] = {}
        self.lookups = 0

    def tags(self, key_id: str) -> Mapping[str, str] | None:
        now = self._clock()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        tags = self._lookup(key_id)
        self.lookups += 1
        if len(self._cache) >= self._max:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self._max:
                self._cache.pop(next(iter(self._cache)))
        self._cache[key_id] = (now + self._ttl, tags)
        return tags

    def consumer(self, key_id: str | None, stack: str | None) -> str | None:
        """The consumer the key was minted for, or None (no key id, unknown key, another stack)."""
        if not key_id:
            return None
        tags = self.tags(key_id)
        if not tags:
            return None
        if stack is not None and tags.get(TAG_STACK) != stack:
            return None
        return tags.get(TAG_CONSUMER) or None
