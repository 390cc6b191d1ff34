"""The DynamoDB audit item for one sent message: metadata only, never the body or subject text.

Pure function, no AWS calls. Recipients are stored as a count and a SHA-256 over the sorted,
lower-cased addresses (enough to match a known list later, not to read the addresses back;
note that an unkeyed hash of a guessable address can be confirmed by whoever guesses it).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

if __package__:
    from .validation import MessageRequest
else:  # zipped as the Lambda code: modules sit at the top level
    from validation import MessageRequest

__all__ = ["build_audit_record", "recipients_digest"]


def recipients_digest(message: MessageRequest) -> str:
    """Hex SHA-256 of the sorted, lower-cased recipient addresses, one per line."""
    addresses = sorted(a.address.lower() for a in message.recipients)
    return hashlib.sha256("\n".join(addresses).encode("ascii")).hexdigest()


def build_audit_record(
    message: MessageRequest,
    *,
    message_id: str,
    request_id: str | None,
    api_key_id: str | None,
    source_ip: str | None,
    configuration_set: str,
    content_kind: str,
    message_bytes: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The item to put in the table (partition key ``message_id``), as plain Python values.

    Fields: ``message_id`` (SES id), ``created_at`` (ISO 8601 UTC), ``sender`` (our own address),
    ``recipient_count``, ``to_count``/``cc_count``/``bcc_count``, ``recipients_sha256``,
    ``subject_length`` (characters), ``text_bytes``/``html_bytes`` (UTF-8 sizes),
    ``attachment_count``, ``attachment_bytes`` (decoded), ``content_kind`` (simple/raw),
    ``message_bytes`` (raw MIME size, 0 for simple), ``configuration_set``, ``api_key_id``,
    ``source_ip``, ``request_id``. Absent optional values are left out (DynamoDB has no empty keys).
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    item: dict[str, Any] = {
        "message_id": message_id,
        "created_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sender": message.sender.address,
        "recipient_count": len(message.recipients),
        "to_count": len(message.to),
        "cc_count": len(message.cc),
        "bcc_count": len(message.bcc),
        "recipients_sha256": recipients_digest(message),
        "subject_length": len(message.subject),
        "text_bytes": len(message.text.encode("utf-8", "surrogatepass")) if message.text is not None else 0,
        "html_bytes": len(message.html.encode("utf-8", "surrogatepass")) if message.html is not None else 0,
        "attachment_count": len(message.attachments),
        "attachment_bytes": sum(len(a.content) for a in message.attachments),
        "content_kind": content_kind,
        "message_bytes": message_bytes,
        "configuration_set": configuration_set,
    }
    for key, value in (("api_key_id", api_key_id), ("source_ip", source_ip), ("request_id", request_id)):
        if value:
            item[key] = value
    return item
