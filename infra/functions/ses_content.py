"""Turn a validated :class:`~validation.MessageRequest` into SES v2 ``SendEmail`` arguments.

Pure functions, no AWS calls. ``Content.Simple`` is used when the message has neither
attachments nor custom headers; otherwise the MIME message is built with the stdlib ``email``
package (policy ``SMTP``: CRLF line ends, RFC 2047 encoded words for non-ASCII headers, which also
refuses CR/LF inside a header value a second time) and sent as ``Content.Raw``.

Bcc recipients are never written into the MIME headers: they only appear in ``Destination``.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, compat32, default
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING or __package__:   # the type checker reads the package form
    from .validation import MessageRequest
else:  # zipped as the Lambda code: modules sit at the top level
    from validation import MessageRequest

__all__ = ["SesRequest", "build_mime_message", "build_ses_request"]

#: ``SMTP`` (CRLF) without refolding the address headers written with ``set_raw`` (their lines stay
#: under RFC 5322's 998 characters: one address per line, a display name of at most 256 characters).
_POLICY = SMTP.clone(refold_source="none")


@dataclass(frozen=True)
class SesRequest:
    """Keyword arguments for ``sesv2.send_email`` and facts for the audit record.

    Attributes:
        kwargs: ``FromEmailAddress``, ``Destination``, ``ReplyToAddresses``, ``Content`` and
            ``ConfigurationSetName`` for ``SESV2.Client.send_email``.
        content_kind: ``"simple"`` or ``"raw"``.
        raw_bytes: size of the MIME message in bytes (0 for ``simple``).
    """

    kwargs: dict[str, Any]
    content_kind: str
    raw_bytes: int


def build_mime_message(message: MessageRequest) -> bytes:
    """The RFC 5322 message, CRLF line ends, ASCII only (non-ASCII is RFC 2047/base64 encoded).

    Raises:
        ValueError: from the ``email`` package if a header value still contained a line break, or
        when a header field would appear twice (names compare case-insensitively, RFC 5322
        s. 1.2.2), when From, To, Cc or Reply-To would not read back as the accepted addresses, or when the written message's top-level header names are not exactly the ones set here
        (validation refuses decoded line breaks first; this is a second line of defence against a
        header smuggled through a decoder, RFC 2047 or otherwise).
    """
    mime = EmailMessage(policy=_POLICY)
    addresses = {"From": [message.sender], "To": message.to, "Cc": message.cc,
                 "Reply-To": [message.reply_to] if message.reply_to is not None else []}
    for name, listed in addresses.items():
        if listed:
            # Written as-is, one address per line: the email package's own refolding (CPython 3.11)
            # can RFC 2047-encode the comma after a non-ASCII display name into the next line
            # ("=?utf-8?q?=2C?= b@x"), and a reader then sees one address fewer.
            mime.set_raw(name, ",\r\n ".join(a.formatted() for a in listed))
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(usegmt=True)
    for name, value in message.headers.items():
        mime[name] = value
    if message.text is not None:
        mime.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
        if message.html is not None:
            mime.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    else:
        mime.set_content(message.html or "", subtype="html", charset="utf-8", cte="quoted-printable")
    for attachment in message.attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        mime.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    raw = mime.as_bytes(policy=_POLICY)
    expected = sorted(name.lower() for name in mime)
    if len(set(expected)) != len(expected):   # validation refuses a repeated custom header first
        raise ValueError("a header field would appear twice in the message")
    _check_addresses_read_back(raw, addresses)
    written = sorted(name.lower() for name in BytesHeaderParser(policy=compat32).parsebytes(raw))
    if written != expected:
        raise ValueError("the written message has other header fields than the ones set")
    return raw


def _check_addresses_read_back(raw: bytes, addresses: dict[str, list[Any]]) -> None:
    """``ValueError`` unless a reader of ``raw`` (the ``email`` package, policy ``default``) finds
    exactly ``addresses`` in From, To, Cc and Reply-To: the same addresses, in order."""
    parsed = BytesHeaderParser(policy=default).parsebytes(raw)
    for name, listed in addresses.items():
        header = parsed[name]
        found = [a.addr_spec for a in header.addresses] if header is not None else []
        if found != [a.address for a in listed]:
            raise ValueError(f"the written {name} header does not read back as the accepted addresses")


def build_ses_request(message: MessageRequest, *, configuration_set: str) -> SesRequest:
    """Arguments for ``SESV2.Client.send_email`` (operation ``SendEmail``, ``POST /v2/email/outbound-emails``).

    Args:
        message: a validated request.
        configuration_set: the SES v2 configuration set name (env ``CONFIGURATION_SET``).
    """
    destination: dict[str, list[str]] = {}
    for key, addresses in (
        ("ToAddresses", message.to),
        ("CcAddresses", message.cc),
        ("BccAddresses", message.bcc),
    ):
        if addresses:
            destination[key] = [a.formatted() for a in addresses]
    kwargs: dict[str, Any] = {
        "FromEmailAddress": message.sender.formatted(),
        "Destination": destination,
        "ConfigurationSetName": configuration_set,
    }
    if message.reply_to is not None:
        kwargs["ReplyToAddresses"] = [message.reply_to.formatted()]
    if message.attachments or message.headers:
        raw = build_mime_message(message)
        kwargs["Content"] = {"Raw": {"Data": raw}}
        return SesRequest(kwargs=kwargs, content_kind="raw", raw_bytes=len(raw))
    body: dict[str, Any] = {}
    if message.text is not None:
        body["Text"] = {"Data": message.text, "Charset": "UTF-8"}
    if message.html is not None:
        body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
    kwargs["Content"] = {"Simple": {"Subject": {"Data": message.subject, "Charset": "UTF-8"}, "Body": body}}
    return SesRequest(kwargs=kwargs, content_kind="simple", raw_bytes=0)
