"""Text for a person at a terminal: every string from outside (AWS, Vault, files) made inert
(failure case H2, docs/failure-cases.md).

A terminal acts on what it is sent. An escape sequence (ECMA-48 CSI/OSC: ``ESC [ 2K`` erases a
line, ``ESC [ 1A`` moves up, OSC sets the title or a hyperlink), a carriage return or a backspace
overwrites what was printed, and the Unicode bidirectional formatting characters (U+202A-U+202E,
U+2066-U+2069, U+200E/U+200F, U+061C) reorder what is shown ("Trojan Source", CVE-2021-42574).
An API key name from AWS holding ``\\x1b[2K\\r\\x1b[1A...findings: 0 high`` could make
``rotation audit`` *show* a clean report while the real one has a high finding.

:func:`for_terminal` is the one neutraliser of the CLI's human-facing output: every character
Python does not call printable (``str.isprintable``: Unicode categories Cc, Cf, Cs, Co, Cn, Zl,
Zp and Zs other than the ASCII space; https://docs.python.org/3/library/stdtypes.html#str.isprintable)
is replaced by its visible escape (``\\x1b``, ``\\r``, ``\\u202e``), so it is shown, not acted
on. A field from outside is neutralised on its own, newlines included (no forged line);
:func:`echo` neutralises a whole block of output line by line, keeping its own line breaks, as a
last line of defence for any field a caller did not neutralise. JSON output does not go through
here: JSON escapes control characters itself and must stay exact.
"""

from __future__ import annotations

import click

__all__ = ["echo", "for_terminal"]


def for_terminal(text: object, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with each non-printable character replaced by its escape (``"\\x1b"``,
    ``"\\u202e"``); with ``keep_newlines``, ``"\\n"`` stays a line break."""
    s = str(text)
    if s.isprintable():
        return s
    if keep_newlines:
        return "\n".join(for_terminal(line) for line in s.split("\n"))
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)


def echo(message: object, *, err: bool = False) -> None:
    """``click.echo`` for a person: secrets scrubbed (:data:`rotation.audit.REDACTOR`), then
    neutralised line by line (:func:`for_terminal` with ``keep_newlines``)."""
    from rotation.audit import REDACTOR

    click.echo(for_terminal(REDACTOR.scrub(str(message)), keep_newlines=True), err=err)
