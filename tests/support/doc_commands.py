"""The commands written in README.md and docs/*.md, and a check of each against the CLI itself.

:func:`documented_commands` finds every command line of ``rotation`` (also ``.venv/bin/rotation``,
``python -m rotation.cli``), ``python -m rotation.dev`` and ``make`` in shell code blocks (comments
and line continuations handled; each segment of a pipeline, ``&&`` list or subshell) and in inline
code spans that start with one. :func:`check_command` walks the command's words through the click
command tree (``rotation.cli.main``, ``rotation.dev.cli.dev``; the dev gateway's argparse parser;
the Makefile's targets) and returns one problem per subcommand or option that does not exist.
Placeholders (``<consumer>``, ``C``, ``FILE``, ``[...]``, ``...``) stand for values and pass.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
SHELL_FENCES = {"", "sh", "bash", "shell", "console", "text"}
_SEGMENT_SPLIT = re.compile(r"\|\||&&|[|;()]|\$\(")
_ROTATION = re.compile(r"^(?:[\w./-]*/)?rotation$")
_PYTHON = re.compile(r"^(?:[\w./-]*/)?python3?(?:\.\d+)?$")


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is written and its words (program first)."""

    file: str
    line: int
    text: str
    words: tuple[str, ...]

    @property
    def program(self) -> str:
        """``rotation`` | ``rotation.dev`` | ``make``."""
        return self.words[0]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def doc_files() -> list[Path]:
    """README.md, every page of docs/ and every other README.md of the checkout."""
    readmes = [p for p in sorted(ROOT.glob("*/**/README.md"))
               if not {".venv", ".dev-stack", "node_modules", "build", "dist"} & set(p.relative_to(ROOT).parts)]
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *readmes]


def _words(segment: str) -> list[str]:
    try:
        return shlex.split(segment)
    except ValueError:
        return segment.split()


def _command_in(segment: str) -> tuple[str, ...] | None:
    """The command a shell segment runs, normalized (program first), if it is one of ours."""
    words = _words(segment.strip())
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):   # VAR=value prefixes
        words.pop(0)
    if words and words[0] in ("env", "exec", "time"):
        words.pop(0)
        while words and (words[0].startswith("-") or "=" in words[0]):
            words.pop(0)
    if not words:
        return None
    if _ROTATION.match(words[0]):
        return ("rotation", *words[1:])
    if _PYTHON.match(words[0]) and len(words) >= 3 and words[1] == "-m":
        if words[2] == "rotation.cli":
            return ("rotation", *words[3:])
        if words[2] == "rotation.dev":
            return ("rotation.dev", *words[3:])
        if words[2] in ("rotation.dev.gateway", "rotation.dev.demo"):
            return ("rotation.dev", words[2].rsplit(".", 1)[1], *words[3:])
    if words[0] == "make" and len(words) >= 2 and re.match(r"^[a-z][\w-]*$", words[1]):
        return ("make", *words[1:])
    return None


def _strip_comment(line: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", line)


def documented_commands(files: list[Path] | None = None) -> list[DocCommand]:
    """Every command of ours written in ``files`` (default :func:`doc_files`)."""
    found: list[DocCommand] = []
    for path in files or doc_files():
        rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        fence: str | None = None
        pending, pending_line = "", 0
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:].strip().lower()
                pending = ""
                continue
            if fence is not None:
                if fence not in SHELL_FENCES:
                    continue
                code = _strip_comment(line)
                if code.rstrip().endswith("\\"):
                    pending, pending_line = pending + code.rstrip()[:-1] + " ", pending_line or n
                    continue
                code, at = pending + code, pending_line or n
                pending, pending_line = "", 0
                for segment in _SEGMENT_SPLIT.split(code):
                    words = _command_in(segment)
                    if words:
                        found.append(DocCommand(rel, at, segment.strip(), words))
                continue
            for span in re.findall(r"`([^`]+)`", line):
                words = _command_in(span.split("|")[0]) if re.match(r"^\S*(rotation|python3? -m|make)\b", span) else None
                if words:
                    found.append(DocCommand(rel, n, span.strip(), words))
    return found


def _option(command: click.Command, name: str) -> click.Parameter | None:
    if name in ("-h", "--help"):
        return click.Option(["--help"], is_flag=True)
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def _is_placeholder(word: str) -> bool:
    return word in ("...", "|", "") or word.startswith("<") or bool(re.fullmatch(r"[A-Z][A-Z_]*", word))


def _check_click(root: click.Command, prog: str, words: list[str]) -> list[str]:
    problems: list[str] = []
    command, path = root, [prog]
    i = 0
    while i < len(words):
        word = words[i].strip("[]")
        if _is_placeholder(word):
            i += 1
            continue
        if word.startswith("-") and word != "-":
            name = word.split("=", 1)[0]
            option = _option(command, name)
            if option is None:
                problems.append(f"`{' '.join(path)}` has no option {name}")
            elif isinstance(option, click.Option) and not option.is_flag and not option.count and "=" not in word:
                i += 1                                                # its value
            i += 1
            continue
        if isinstance(command, click.Group):
            sub = command.commands.get(word)
            if sub is None:
                problems.append(f"`{' '.join(path)}` has no subcommand {word!r} "
                                f"(it has: {', '.join(sorted(command.commands))})")
                return problems
            command, path = sub, [*path, word]
            if path[-1] == "gateway" and prog == "python -m rotation.dev":
                return problems + _check_gateway(words[i + 1:])
        i += 1
    return problems


def _check_gateway(words: list[str]) -> list[str]:
    from rotation.dev.gateway import _parser

    known = set(_parser()._option_string_actions) | {"-h", "--help"}
    return [f"`python -m rotation.dev gateway` has no option {w.split('=', 1)[0]}"
            for w in (x.strip("[]") for x in words) if w.startswith("--") and w.split("=", 1)[0] not in known]


def make_targets() -> set[str]:
    """The Makefile's targets."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):", text, flags=re.MULTILINE))


def check_command(command: DocCommand | tuple[str, ...]) -> list[str]:
    """Problems with one documented command: subcommands and options that do not exist."""
    words = command.words if isinstance(command, DocCommand) else command
    if words[0] == "rotation":
        from rotation.cli import main
        return _check_click(main, "rotation", list(words[1:]))
    if words[0] == "rotation.dev":
        from rotation.dev.cli import dev
        return _check_click(dev, "python -m rotation.dev", list(words[1:]))
    if words[0] == "make":
        targets = make_targets()
        return [f"the Makefile has no target {t!r}" for t in words[1:2] if t not in targets]
    return [f"not a command of ours: {words[0]}"]
