"""Reading the YAML files we parse (the consumers file, :mod:`rotation.config`; the Vault setup
file, :mod:`rotation.vault_setup`): one loader, so every file refuses the same things the same way.

:func:`load_yaml_file` turns a file into plain data (``dict``/``list``/scalars) or raises
:class:`~rotation.errors.ConfigError` (a usage error, exit code 2) whose problems name the field
(a dotted path) or ``(file)`` and say what to change. Nothing else comes out of it: not a
``yaml.YAMLError``, not a ``RecursionError``, not a ``UnicodeDecodeError``. In order, it refuses:

* a file that does not exist or cannot be read (the ``OSError``'s type is named, not its text);
* more than :data:`MAX_FILE_BYTES` bytes (1 MiB: these files are a few kilobytes);
* bytes that are not UTF-8;
* nesting deeper than :data:`MAX_DEPTH` levels, found on the parser's event stream, which PyYAML
  produces without recursion, before the recursive composer runs (so a file of ten thousand ``[``
  is a problem named "nested more than 32 levels", never a ``RecursionError`` traceback);
* invalid YAML, with its line and column (YAML 1.1 as PyYAML's ``SafeLoader`` reads it: no
  Python tags);
* the same key twice in one mapping, at any depth, naming the key's dotted path and both lines
  (plain YAML keeps the last one silently: a dropped ``token_bound_cidrs`` would go unnoticed);
  also keys that differ only in spelling but resolve to the same value (``1`` and ``0x1``);
* more than :data:`MAX_NODES` values once aliases are expanded (an "alias bomb": a few lines of
  ``&a [*b, *b, ...]`` that expand to billions of values when a validator walks them), and
  nesting deeper than :data:`MAX_DEPTH` reached through aliases.

The YAML 1.2 specification, section 3.2.1.3 ("Node Comparison": mapping keys are unique) and
PyYAML's documentation (https://pyyaml.org/wiki/PyYAMLDocumentation) are the sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rotation.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "load_yaml_file"]

#: Largest file read, in bytes (1 MiB).
MAX_FILE_BYTES = 1024 * 1024
#: Most values (scalars, sequences, mappings) a file may hold once aliases are expanded.
MAX_NODES = 100_000
#: Deepest nesting of sequences and mappings (the real files nest 5 levels at most).
MAX_DEPTH = 32

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(yaml.constructor.ConstructorError):
    """Two keys of one mapping that YAML resolves to the same value (``1`` and ``0x1``)."""

    def __init__(self, key: object, node: yaml.Node, key_node: yaml.Node) -> None:
        super().__init__("while constructing a mapping", node.start_mark, "found a duplicate key",
                         key_node.start_mark)
        self.key = key


#: libyaml's parser when PyYAML was built with it (the wheels are): the same documents and errors
#: as the pure-Python one, about ten times faster (a 1,000-consumer file: 3 s -> 0.3 s busy)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]  # a runtime choice of base class
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (after YAML's own
    resolution of the key, so ``1`` and ``0x1`` are the same key). Merge keys (``<<``) may still be
    overridden by an explicit key, as YAML specifies."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:   # an unhashable key: SafeLoader refuses it below
                continue
            if duplicate:
                raise _DuplicateKey(key, node, key_node)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _event_depth(text: str) -> int:
    """The deepest nesting of ``text``'s collections, from PyYAML's (iterative) event parser.
    libyaml's scanner refuses flow collections nested past its own limit (1,000) before the events
    get that deep: that refusal counts as too deep too."""
    depth = deepest = 0
    try:
        for event in yaml.parse(text, Loader=_SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return depth
                deepest = max(deepest, depth)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):
            return MAX_DEPTH + 1
        raise
    return deepest


def _structure_problems(root: yaml.Node | None) -> list[tuple[str, str]]:
    """Duplicate keys (as dotted paths, with both lines), alias bombs and nesting through aliases,
    found on the composed node tree by an iterative walk that expands aliases."""
    problems: list[tuple[str, str]] = []
    count = 0
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())] if root is not None else []
    while stack:
        node, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            return [("(file)", f"expands to more than {MAX_NODES} values (YAML aliases?); write the values out")]
        if len(path) > MAX_DEPTH:
            return [("(file)", (f"is nested more than {MAX_DEPTH} levels deep (through YAML aliases); "
                               "these files nest a few levels"))]
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key_node.tag != _MERGE_TAG:
                    if key in lines:
                        problems.append((".".join((*path, key)),
                                         (f"appears twice in the same mapping (lines {lines[key]} and "
                                          f"{key_node.start_mark.line + 1}); remove one (YAML would keep only the last)")))
                    lines.setdefault(key, key_node.start_mark.line + 1)
                stack.append((value_node, (*path, key if key is not None else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(node.value))
    return sorted(set(problems))


def _compose_check_construct(source: str, text: str) -> Any:
    """Compose ``text`` once, check the node tree (:func:`_structure_problems`), then build the data
    from that same tree: what ``yaml.load`` does, with the check between its two halves instead of
    a second parse. Raises :class:`ConfigError` or ``yaml.YAMLError``."""
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        problems = _structure_problems(root)
        if problems:
            raise ConfigError(source, problems)
        return loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path, *, missing_hint: str) -> Any:
    """Read ``path`` as one YAML document and return its data (the refusals are in the module
    docstring). ``missing_hint`` completes "does not exist; ..." (e.g. ``pass --setup PATH``).

    Raises :class:`~rotation.errors.ConfigError` (exit code 2), and nothing else; a problem never
    quotes the file's content.
    """
    p = Path(path)
    source = str(p)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(source, [("(file)", f"does not exist; {missing_hint}")]) from None
    except OSError as exc:
        raise ConfigError(source, [("(file)", f"cannot be read: {type(exc).__name__}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(source, [("(file)", (f"is larger than {MAX_FILE_BYTES // 1024} KiB; these files are "
                                              "a few kilobytes"))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, [("(file)", "is not UTF-8 text")]) from None
    try:
        if _event_depth(text) > MAX_DEPTH:
            raise ConfigError(source, [("(file)", (f"is nested more than {MAX_DEPTH} levels deep; these files "
                                                  "nest a few levels (check the brackets and indentation)"))])
        return _compose_check_construct(source, text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if isinstance(exc, _DuplicateKey):
            raise ConfigError(source, [("(file)", (f"has the key {exc.key!r} twice in one mapping{where} (two "
                                                  "spellings of one YAML value); remove one"))]) from None
        raise ConfigError(source, [("(file)", f"is not valid YAML{where}")]) from None
    except ValueError as exc:   # a scalar YAML resolves but Python cannot build: 2001-13-45, a 5,000-digit int
        raise ConfigError(source, [("(file)", (f"holds a value that cannot be read ({type(exc).__name__}: an "
                                              "impossible date or an over-long number?); quote it or fix it"))]) from None
    except RecursionError:   # not reachable past the depth checks above; a traceback is never the answer
        raise ConfigError(source, [("(file)", f"is nested too deeply (at most {MAX_DEPTH} levels)")]) from None
