"""Rules for caller text that ends up in a MIME header: decode first, then check. Pure, stdlib only.

Why decode first: Python's ``email`` package (and mail clients) decode RFC 2047 encoded words
(``=?utf-8?q?...?=``, ``=?UTF-8?B?...?=``) in unstructured headers, display names, quoted strings
and MIME parameters (RFC 2047 s. 5, 6.1). On Python 3.11 ``EmailMessage(policy=SMTP)`` parses a
header value it is given, so a subject ``=?utf-8?q?hi=0D=0ABcc:_x@evil.example?=`` becomes
``hi<CR><LF>Bcc: x@evil.example`` and is written out as a real ``Bcc:`` header. A check on the raw
text sees no line break; only a check on the decoded text does.

So every value goes through :func:`decoded_layers` (the raw text, then each layer of encoded-word
decoding, at most :data:`MAX_ENCODED_WORD_LAYERS`) and every layer is checked by one of three
validators, one per kind of value:

- :func:`check_header_text`: subjects, display names, custom header values, content types.
- :func:`check_filename`: attachment file names (also percent-decoded and NFKC-normalized).
- :func:`check_address_text`: addr-specs, where RFC 2047 s. 5 forbids encoded words outright.

Each raises :class:`HeaderTextError` with a reason code of ``validation.REASONS``.

Characters refused (after decoding):

- line breaks (``header_injection``): CR, LF, VT, FF, FS, GS, RS, NEL (U+0085), U+2028, U+2029
  — RFC 5322 s. 2.2 (a header field is one line) and Unicode UAX #14 mandatory breaks;
- control characters (``control_character``): Unicode category Cc — C0 (U+0000..U+001F, TAB is
  allowed outside file names), DEL and C1 (U+0080..U+009F);
- invisible format characters (``invisible_character``): Unicode category Cf — zero-width
  U+200B..U+200F, bidi embeddings/overrides U+202A..U+202E, isolates U+2066..U+2069, U+FEFF,
  U+2060..U+2064, U+061C, tag characters U+E0000.. (Unicode TR #36 "Unicode Security
  Considerations" s. 2.2, TR #9 bidi controls);
- lone surrogates (``invalid_unicode``): Unicode category Cs; not characters at all (Unicode s. 3.8).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from urllib.parse import unquote

__all__ = [
    "ENCODED_WORD",
    "MAX_ENCODED_WORD_LAYERS",
    "HeaderTextError",
    "check_address_text",
    "check_filename",
    "check_header_text",
    "decode_encoded_words",
    "decoded_layers",
]

MAX_ENCODED_WORD_LAYERS = 3
"""Most layers of encoded words decoded (an encoded word may decode to another one); a value that
still holds one after that many layers is refused (``invalid_encoded_word``)."""

ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?.*?\?=", re.DOTALL)
"""Anything shaped like an RFC 2047 encoded word, ``=?charset?encoding?text?=``. Deliberately
loose (any charset, any encoding letter, any text): a look-alike that does not decode strictly is
refused rather than passed to a decoder that may be more lenient than this one."""

_STRICT_WORD = re.compile(r"=\?([^?*]+)(?:\*[^?]*)?\?([qQbB])\?([\x21-\x3e\x40-\x7e]*)\?=")
_Q_ESCAPE = re.compile(r"=([0-9A-Fa-f]{2})")
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


class HeaderTextError(ValueError):
    """A header text rule failed. ``reason`` is a ``validation.REASONS`` code; ``message`` is
    human text that never contains the value."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def _decode_word(match: re.Match[str]) -> str:
    """Decode one encoded word strictly (RFC 2047 s. 4); raise :class:`HeaderTextError` otherwise."""
    strict = _STRICT_WORD.fullmatch(match.group(0))
    if strict is None:
        raise HeaderTextError("invalid_encoded_word", "An RFC 2047 encoded word is malformed.")
    charset, encoding, text = strict.groups()
    try:
        if encoding in "qQ":
            if re.search(r"=(?![0-9A-Fa-f]{2})", text):
                raise ValueError("stray '=' in Q encoding")
            data = _Q_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text.replace("_", " "))
            raw = data.encode("latin-1")
        else:
            raw = base64.b64decode(text, validate=True)
        codecs.lookup(charset)
        return raw.decode(charset, "strict")
    except (LookupError, ValueError, binascii.Error, UnicodeError, TypeError):
        raise HeaderTextError(
            "invalid_encoded_word",
            "An RFC 2047 encoded word does not decode (unknown charset or bad Q/B encoding).",
        ) from None


def decode_encoded_words(value: str) -> str:
    """``value`` with every RFC 2047 encoded word replaced by its decoded text (one layer).

    Raises:
        HeaderTextError: ``invalid_encoded_word`` for a look-alike that does not decode strictly.
    """
    return ENCODED_WORD.sub(_decode_word, value)


def decoded_layers(value: str) -> list[str]:
    """``[value, decoded once, decoded twice, ...]`` until no encoded word is left.

    Raises:
        HeaderTextError: ``invalid_encoded_word`` when a word does not decode, or when encoded
        words remain after :data:`MAX_ENCODED_WORD_LAYERS` layers.
    """
    layers = [value]
    while ENCODED_WORD.search(layers[-1]):
        if len(layers) > MAX_ENCODED_WORD_LAYERS:
            raise HeaderTextError("invalid_encoded_word", "RFC 2047 encoded words are nested too deeply.")
        layers.append(decode_encoded_words(layers[-1]))
    return layers


def _check_characters(text: str, *, allow_tab: bool) -> None:
    for char in text:
        if char in _LINE_BREAKS:
            raise HeaderTextError(
                "header_injection",
                "A header value contains a line break (CR, LF or a Unicode line separator), "
                "also when RFC 2047-decoded.",
            )
        category = unicodedata.category(char)
        if category == "Cc" and not (allow_tab and char == "\t"):
            raise HeaderTextError("control_character", "The value contains a control character (C0, DEL or C1).")
        if category == "Cf":
            raise HeaderTextError(
                "invisible_character",
                "The value contains an invisible or bidirectional formatting character "
                "(zero-width, bidi override/isolate, BOM...).",
            )
        if category == "Cs":
            raise HeaderTextError("invalid_unicode", "The value contains a lone UTF-16 surrogate.")


def check_header_text(value: str) -> list[str]:
    """Check a subject, display name, custom header value or content type; return its layers.

    Raises:
        HeaderTextError: ``invalid_encoded_word``, ``header_injection``, ``control_character``,
        ``invisible_character`` or ``invalid_unicode`` (rules in the module docstring).
    """
    _check_characters(value, allow_tab=True)  # the raw text first: no decoding of bad input
    layers = decoded_layers(value)
    for layer in layers[1:]:
        _check_characters(layer, allow_tab=True)
    return layers


def check_filename(value: str) -> list[str]:
    """Check an attachment file name in every form a receiver may see; return its RFC 2047 layers.

    Forms checked: the raw text, each RFC 2047-decoded layer, and of each layer its
    percent-decoded (RFC 3986 s. 2.1, as in RFC 2231 ``filename*``) and NFKC-normalized forms
    (fullwidth solidus U+FF0F -> ``/``). Refused in any form: the header text rules (TAB
    included), ``/``, ``\\``, a leading ``.`` (so ``.`` and ``..``) and ``"``.

    Raises:
        HeaderTextError: as :func:`check_header_text`, or ``invalid_filename``.
    """
    _check_characters(value, allow_tab=False)
    layers = decoded_layers(value)
    forms: list[str] = []
    for layer in layers:
        try:
            percent_decoded = unquote(layer, errors="strict")
        except UnicodeDecodeError:
            raise HeaderTextError(
                "invalid_filename", "The filename holds percent-escapes that are not UTF-8."
            ) from None
        for form in (layer, percent_decoded, unicodedata.normalize("NFKC", layer)):
            if form not in forms:
                forms.append(form)
    for form in forms:
        _check_characters(form, allow_tab=False)
        if "/" in form or "\\" in form or form.startswith("."):
            raise HeaderTextError(
                "invalid_filename",
                "The filename must not contain path separators or start with '.' "
                "(also when RFC 2047-, percent- or NFKC-decoded).",
            )
        if '"' in form:
            raise HeaderTextError("invalid_filename", "The filename must not contain a double quote.")
    return layers


def check_address_text(value: str) -> None:
    """Check the text of an addr-spec before address parsing.

    Raises:
        HeaderTextError: the header text rules, or ``invalid_address`` for an encoded word
        (RFC 2047 s. 5 (3): an encoded-word MUST NOT appear in any portion of an addr-spec).
    """
    _check_characters(value, allow_tab=False)
    if "=?" in value and ENCODED_WORD.search(value):
        raise HeaderTextError(
            "invalid_address", "An address must not contain an RFC 2047 encoded word (RFC 2047 s. 5)."
        )
