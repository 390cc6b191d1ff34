"""The DynamoDB audit item for one sent message: metadata only, never the body or subject text.

Pure functions, no AWS calls. Recipients and the caller's source IP are never stored in clear,
and never as an unkeyed hash (a SHA-256 of a known address or of an IPv4 address can be confirmed
by whoever guesses it). They are stored as keyed MACs, HMAC-SHA-256 under a KMS HMAC key of the
stack (``kms:GenerateMac``, the key never leaves KMS), computed by the handler over the messages
built here: :func:`recipients_mac_message` and :func:`source_ip_mac_message`. Without a key the
handler stores neither (no fallback to an unkeyed hash).

Sources: KMS HMAC keys, https://docs.aws.amazon.com/kms/latest/developerguide/hmac.html ;
``GenerateMac`` takes at most 4096 bytes of message, hence the SHA-256 pre-hash of the list.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:   # the type checker reads the package form
    from .validation import MessageRequest
else:  # zipped as the Lambda code: modules sit at the top level
    from validation import MessageRequest

__all__ = ["build_audit_record", "recipients_mac_message", "source_ip_mac_message"]

_RECIPIENTS_CONTEXT = b"secure-mail-api/audit/recipients/v1\n"
_SOURCE_IP_CONTEXT = b"secure-mail-api/audit/source-ip/v1\n"


def recipients_mac_message(message: MessageRequest) -> bytes:
    """The bytes to MAC for the recipients (69 bytes): a context label, then the SHA-256 of the
    sorted, lower-cased, de-duplicated recipient addresses, one per line (ASCII)."""
    addresses = sorted({a.address.lower() for a in message.recipients})
    return _RECIPIENTS_CONTEXT + hashlib.sha256("\n".join(addresses).encode("ascii")).digest()


def source_ip_mac_message(source_ip: str) -> bytes:
    """The bytes to MAC for the caller's source IP: a context label, then the IP text (UTF-8)."""
    return _SOURCE_IP_CONTEXT + source_ip.encode("utf-8")


def build_audit_record(
    message: MessageRequest,
    *,
    request_id: str | None,
    api_key_id: str | None,
    recipients_mac: str | None,
    source_ip_mac: str | None,
    configuration_set: str,
    content_kind: str,
    message_bytes: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The item to put in the table, as plain Python values, WITHOUT ``message_id``.

    It is built before the message is sent (nothing may fail after the send but the put itself);
    the handler adds the partition key ``message_id`` (the SES id) once SES answered.

    Fields: ``created_at`` (ISO 8601 UTC), ``sender`` (our own address), ``recipient_count``,
    ``to_count``/``cc_count``/``bcc_count``, ``recipients_hmac_sha256`` (hex, see
    :func:`recipients_mac_message`), ``source_ip_hmac_sha256`` (hex, see
    :func:`source_ip_mac_message`), ``subject_length`` (characters), ``text_bytes``/``html_bytes``
    (UTF-8 sizes), ``attachment_count``, ``attachment_bytes`` (decoded), ``content_kind``
    (simple/raw), ``message_bytes`` (raw MIME size, 0 for simple), ``configuration_set``,
    ``api_key_id``, ``request_id``. Absent optional values are left out (DynamoDB has no empty keys).
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    item: dict[str, Any] = {
        "created_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sender": message.sender.address,
        "recipient_count": len(message.recipients),
        "to_count": len(message.to),
        "cc_count": len(message.cc),
        "bcc_count": len(message.bcc),
        "subject_length": len(message.subject),
        "text_bytes": len(message.text.encode("utf-8")) if message.text is not None else 0,
        "html_bytes": len(message.html.encode("utf-8")) if message.html is not None else 0,
        "attachment_count": len(message.attachments),
        "attachment_bytes": sum(len(a.content) for a in message.attachments),
        "content_kind": content_kind,
        "message_bytes": message_bytes,
        "configuration_set": configuration_set,
    }
    for key, value in (
        ("recipients_hmac_sha256", recipients_mac),
        ("source_ip_hmac_sha256", source_ip_mac),
        ("api_key_id", api_key_id),
        ("request_id", request_id),
    ):
        if value:
            item[key] = value
    return item
