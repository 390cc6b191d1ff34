"""Property tests of the files we parse: the consumers file (rotation.config) and the Vault setup
file (rotation.vault_setup), both read by rotation.yaml_files.

Contract: whatever the bytes, loading returns a validated model or raises ``ConfigError`` (exit
code 2) with ``(field, message)`` problems, never another exception (no ``RecursionError``,
``yaml.YAMLError``, ``OverflowError``); a duplicate key is named with its dotted path and both
lines; what is accepted satisfies the documented patterns (matched whole, ASCII digits); an
accepted file, written back out, loads into the same model.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from rotation.config import ConsumersFile, load_consumers_file
from rotation.errors import ConfigError
from rotation.vault_setup import VaultSetup, load_setup_file
from rotation.yaml_files import MAX_DEPTH

pytestmark = pytest.mark.property

LOADERS = {"consumers": load_consumers_file, "setup": load_setup_file}
CONSUMERS_TEXT = ("version: 1\nusage_plans: {standard: secure-mail-api-dev-standard}\n"
                  "consumers:\n  - name: billing\n    tier: standard\n")
SETUP_TEXT = ("version: 1\nmount: secret\nprefix: mail-api\napps:\n  approle:\n    token_ttl: 1h\n"
              "    token_bound_cidrs: [10.0.0.0/8]\n")
#: The name patterns as the docs state them, applied with fullmatch on ASCII.
MOUNT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}", re.ASCII)
CONSUMER_NAME = re.compile(r"[a-z][a-z0-9-]{1,39}", re.ASCII)

FIELD_NAMES = ["version", "usage_plans", "consumers", "defaults", "name", "tier", "targets", "type", "path",
               "url", "max_age", "mount", "prefix", "max_versions", "rotator", "apps", "approle", "kubernetes",
               "namespace", "service_account", "token_ttl", "token_bound_cidrs", "audit", "file_path", "<<"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["30d", "1h", "secret", "secret\n", "mail-api",
                                                           "standard", "\u0663\u0660d", "9" * 400 + "d", "1e400"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)), inner, max_size=5)),
    max_leaves=25)


def load(tmp_path: Path, kind: str, text: str | bytes) -> Any:
    """The model, or the ConfigError: any other exception fails the property."""
    p = tmp_path / f"{kind}.yaml"
    p.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    try:
        return LOADERS[kind](p)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(f, str) and isinstance(m, str) and m for f, m in exc.problems)
        return exc


def nested(depth: int, style: str) -> str:
    if style == "flow":
        return "[" * depth + "]" * depth
    if style == "mapping":
        return "".join(f"{'  ' * i}k:\n" for i in range(depth)) + "  " * depth + "v\n"
    return "".join(f"{'  ' * i}- \n" for i in range(depth)) + "  " * depth + "x\n"


@given(kind=st.sampled_from(sorted(LOADERS)), data=trees)
def test_any_yaml_tree_loads_or_is_a_config_error(tmp_path_factory, kind, data):
    load(tmp_path_factory.mktemp("f"), kind, yaml.safe_dump(data, allow_unicode=True))


@given(kind=st.sampled_from(sorted(LOADERS)), text=st.one_of(
    st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.text(alphabet="[]{}:,-&*!|>'\"#%@` \n\t?ab01", max_size=200)))
@example(kind="setup", text="mount: " + "[" * 5000)
@example(kind="consumers", text="consumers: " + "[" * 5000 + "]" * 5000 + "\n")
@example(kind="setup", text="a: &a [x]\nb: !!python/object:os.system [*a]\n")
def test_any_text_loads_or_is_a_config_error(tmp_path_factory, kind, text):
    load(tmp_path_factory.mktemp("f"), kind, text)


@given(kind=st.sampled_from(sorted(LOADERS)), depth=st.integers(min_value=MAX_DEPTH + 1, max_value=600),
       style=st.sampled_from(["flow", "mapping", "sequence"]))
@example(kind="setup", depth=100_000, style="flow")       # block styles indent: 600 levels fill most of 1 MiB
def test_deep_nesting_is_a_config_error_naming_the_depth_not_a_recursion_error(tmp_path_factory, kind, depth, style):
    found = load(tmp_path_factory.mktemp("f"), kind, "x: " + nested(depth, style) if style == "flow"
                 else "x:\n" + "\n".join("  " + line for line in nested(depth, style).splitlines()) + "\n")
    assert isinstance(found, ConfigError)
    assert dict(found.problems).get("(file)", "").startswith(f"is nested more than {MAX_DEPTH} levels")


@given(depth=st.integers(min_value=1, max_value=MAX_DEPTH - 2))
def test_nesting_within_the_limit_is_judged_by_the_model_not_the_loader(tmp_path_factory, depth):
    found = load(tmp_path_factory.mktemp("f"), "setup", SETUP_TEXT + "extra: " + nested(depth, "flow") + "\n")
    assert isinstance(found, ConfigError) and "extra" in dict(found.problems)


def with_duplicate(text: str, line_no: int, value: str) -> str:
    """``text`` with the key of its mapping line ``line_no`` (0-based) written twice, on lines
    ``line_no`` and ``line_no + 1``: the copy goes before the original (whose nested block stays
    under it), or after it for the first key of a list item (``- name:``)."""
    lines = text.splitlines()
    key = lines[line_no].split(":", 1)[0]
    if "- " in key:
        return "\n".join([*lines[:line_no + 1], f"{key.replace('- ', '  ')}: {value}", *lines[line_no + 1:]]) + "\n"
    return "\n".join([*lines[:line_no], f"{key}: {value}", *lines[line_no:]]) + "\n"


@given(kind=st.sampled_from(sorted(LOADERS)), pick=st.integers(min_value=0, max_value=100),
       value=st.sampled_from(["x", "1", "[]", "{}", "''", "secret"]))
@example(kind="setup", pick=6, value="[]")      # a second token_bound_cidrs that would drop the first
def test_a_duplicate_key_at_any_depth_is_refused_naming_its_path_and_lines(tmp_path_factory, kind, pick, value):
    text = CONSUMERS_TEXT if kind == "consumers" else SETUP_TEXT
    candidates = [i for i, line in enumerate(text.splitlines()) if re.fullmatch(r"( *)(- )?[a-z_]+:.*", line)]
    line_no = candidates[pick % len(candidates)]
    found = load(tmp_path_factory.mktemp("f"), kind, with_duplicate(text, line_no, value))
    assert isinstance(found, ConfigError)
    key = text.splitlines()[line_no].split(":", 1)[0].strip().removeprefix("- ")
    named = {f: m for f, m in found.problems if f.split(".")[-1] == key and "twice" in m}
    assert named, found.problems
    assert f"lines {line_no + 1} and {line_no + 2}" in next(iter(named.values()))


mount_values = st.one_of(st.text(max_size=70), st.from_regex(MOUNT, fullmatch=True),
                         st.from_regex(MOUNT, fullmatch=True).map(lambda m: m + "\n"),
                         st.sampled_from(["secret\n", "secret\n\n", "sec\u0663ret", "SECRET", "-x", "a" * 64]))


@given(mount=mount_values, prefix=st.one_of(mount_values, st.lists(mount_values, min_size=1, max_size=3)
                                             .map("/".join)))
@example(mount="secret\n", prefix="mail-api")
@example(mount="secret", prefix="mail-api\n")
def test_an_accepted_mount_and_prefix_match_the_documented_pattern_whole(tmp_path_factory, mount, prefix):
    text = yaml.safe_dump({"version": 1, "mount": mount, "prefix": prefix}, allow_unicode=True)
    found = load(tmp_path_factory.mktemp("f"), "setup", text)
    if isinstance(found, VaultSetup):
        assert MOUNT.fullmatch(found.mount)
        assert all(MOUNT.fullmatch(part) for part in found.prefix.split("/"))
    else:
        assert {"mount", "prefix"} & set(dict(found.problems))
        assert not (MOUNT.fullmatch(mount) and all(MOUNT.fullmatch(p) for p in prefix.split("/")))


k8s_values = st.one_of(st.text(max_size=70), st.sampled_from(["apps\n", "apps", "a" * 63, "a" * 64, "-a", "\u0661"]))


@given(namespace=k8s_values, host=st.one_of(st.text(max_size=40), st.sampled_from(
    ["https://kubernetes.default.svc", "https://k\n", "https://k/\u00e9", "https://[::1]:6443", "ftp://k"])),
    account_digits=st.text(alphabet="0123456789\u0661\u0662\uff11", min_size=12, max_size=12))
@example(namespace="mail-api", host="https://kubernetes.default.svc", account_digits="123456789012")   # accepted
@example(namespace="apps\n", host="https://k", account_digits="123456789012")
@example(namespace="apps", host="https://k\n", account_digits="123456789012")
@example(namespace="apps", host="https://k", account_digits="12345678901\u0662")
def test_accepted_kubernetes_and_iam_names_match_their_patterns_whole(tmp_path_factory, namespace, host,
                                                                      account_digits):
    text = yaml.safe_dump({"rotator": {"kubernetes": {"namespace": namespace, "service_account": "rotator"},
                                       "aws": {"bound_iam_principal_arn": [f"arn:aws:iam::{account_digits}:role/r"]}},
                           "kubernetes": {"kubernetes_host": host}}, allow_unicode=True)
    found = load(tmp_path_factory.mktemp("f"), "setup", text)
    if isinstance(found, VaultSetup):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", found.rotator.kubernetes.namespace, re.ASCII)
        assert found.kubernetes.kubernetes_host.isascii() and found.kubernetes.kubernetes_host.isprintable()
        assert account_digits.isascii()


consumer_names = st.one_of(st.from_regex(CONSUMER_NAME, fullmatch=True), st.text(max_size=12),
                           st.sampled_from(["billing\n", "Billing", "b\u0663", "b"]))
durations = st.one_of(st.integers(min_value=-5, max_value=10**12), st.floats(),
                      st.from_regex(r"[0-9]{1,6}[smhdw]?", fullmatch=True), st.text(max_size=8),
                      st.from_regex(r"[1-9][0-9]{0,2}[hdw]", fullmatch=True))


@given(names=st.lists(consumer_names, min_size=1, max_size=3), max_age=durations, grace=durations)
@example(names=["billing", "crm"], max_age="30d", grace=3600)        # an accepted file, every run
def test_an_accepted_consumers_file_holds_what_the_docs_allow_and_round_trips(tmp_path_factory, names, max_age,
                                                                              grace):
    data = {"version": 1, "usage_plans": {"standard": "p"}, "defaults": {"max_age": max_age, "grace_period": grace},
            "consumers": [{"name": n, "tier": "standard"} for n in names]}
    tmp = tmp_path_factory.mktemp("f")
    found = load(tmp, "consumers", yaml.safe_dump(data, allow_unicode=True))
    if isinstance(found, ConfigError):
        return
    assert isinstance(found, ConsumersFile)
    assert all(CONSUMER_NAME.fullmatch(c.name) for c in found.consumers)
    assert len({c.name for c in found.consumers}) == len(found.consumers)
    for c in found.consumers:
        assert 3600 <= c.max_age.total_seconds() <= 3650 * 86400 and c.grace_period <= c.max_age
    again = load(tmp, "consumers", yaml.safe_dump(as_file(found.model_dump()), allow_unicode=True))
    assert again == found


def as_file(value: Any) -> Any:
    """A dumped model in the file's own terms: durations as seconds (the file format's ``3600``)."""
    if isinstance(value, timedelta):
        return int(value.total_seconds()) if value.total_seconds().is_integer() else value.total_seconds()
    if isinstance(value, dict):
        return {k: as_file(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [as_file(v) for v in value]
    return value


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_the_cli_answers_a_deeply_nested_file_with_exit_2_and_no_traceback(tmp_path, kind):
    from rotation.cli import main

    deep = tmp_path / "deep.yaml"
    deep.write_text("x: " + "[" * 20_000 + "]" * 20_000 + "\n")
    good = tmp_path / "consumers.yaml"
    good.write_text(CONSUMERS_TEXT)
    consumers = deep if kind == "consumers" else good
    result = CliRunner().invoke(main, ["--consumers", str(consumers), "vault", "setup", "--setup", str(deep),
                                       "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"is nested more than {MAX_DEPTH} levels" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, RecursionError)



@given(mount=mount_values, template=st.sampled_from(["rotator", "auditor", "consumer"]))
@example(mount="secret\n", template="rotator")
def test_a_vault_policy_renders_only_from_whole_matching_segments(mount, template):
    from rotation.vault_policies import render_vault_policy

    try:
        text = render_vault_policy(template, mount=mount, prefix="mail-api", consumer="billing")
    except ValueError as exc:
        assert "mount" in str(exc) and not MOUNT.fullmatch(mount)
        return
    assert MOUNT.fullmatch(mount) and f'"{mount}/' in text



@pytest.mark.parametrize("text", ["a: 2001-13-45\n", "a: " + "9" * 5000 + "\n"])
def test_a_scalar_yaml_resolves_but_python_cannot_build_is_a_config_error(tmp_path, text):
    """An impossible date or an integer past Python's digit limit: exit 2 naming the file, never a
    ValueError traceback."""
    from rotation.errors import ConfigError
    from rotation.yaml_files import load_yaml_file
    f = tmp_path / "f.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_yaml_file(f, missing_hint="-")
