"""The package's import rules, read from the source with ``ast`` (no module is executed):

- the app-side client (``rotation.client``) imports nothing else of ours, and no third-party
  package beyond its base install (hvac, requests, standardwebhooks);
- nothing outside ``rotation.dev`` imports ``rotation.dev`` (tests and benchmarks may);
- ``rotation`` never imports ``infra``;
- the engine never imports an entry point (CLI, Lambda handler, daemon, wiring);
- hvac errors are translated only in the Vault backend's error module and the client; botocore
  errors only in the AWS error module, the API Gateway backend and the AWS targets.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "rotation"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
CLIENT_THIRD_PARTY = {"hvac", "requests", "standardwebhooks"}
ENTRY_POINTS = ("rotation.cli", "rotation.aws_lambda", "rotation.scheduler", "rotation.wiring", "rotation.fanout")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module named in an import statement of ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


MODULES = {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def is_in(name: str, packages: tuple[str, ...]) -> bool:
    """``name`` is one of ``packages`` or inside one (``rotation.cli`` does not contain ``rotation.client``)."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def offenders(selected, forbidden) -> list[str]:
    return sorted(f"{m} imports {i}" for m, imps in MODULES.items() if selected(m)
                  for i in imps if forbidden(i))


def test_the_rule_reader_sees_the_package():
    assert "rotation.client.keys" in MODULES and "rotation.engine.runner" in MODULES
    assert "rotation.records" in MODULES["rotation.engine.runner"]


def test_the_client_imports_only_its_own_modules_hvac_requests_and_the_standard_library():
    def forbidden(name: str) -> bool:
        top = name.split(".")[0]
        if top == "rotation":
            return not (name == "rotation" or is_in(name, ("rotation.client",)))
        return top not in STDLIB and top not in CLIENT_THIRD_PARTY

    assert offenders(lambda m: is_in(m, ("rotation.client",)), forbidden) == []


def test_nothing_outside_the_dev_package_imports_it():
    assert offenders(lambda m: not is_in(m, ("rotation.dev",)), lambda i: is_in(i, ("rotation.dev",))) == []


def test_rotation_never_imports_the_pulumi_program():
    assert offenders(lambda m: True, lambda i: i.split(".")[0] == "infra") == []


@pytest.mark.parametrize("layer", ["rotation.engine", "rotation.backends", "rotation.targets", "rotation.verifiers"])
def test_the_engine_and_its_collaborators_never_import_an_entry_point(layer):
    assert offenders(lambda m: is_in(m, (layer,)), lambda i: is_in(i, ENTRY_POINTS)) == []


def test_third_party_errors_are_translated_in_one_place_per_backend():
    hvac_ok = {"rotation.backends.vault_errors", "rotation.backends.vault", "rotation.dev.stack"}
    botocore_ok = {"rotation.backends.aws_errors", "rotation.backends.apigateway", "rotation.wiring",
                   "rotation.dev.gateway"}
    assert offenders(lambda m: m not in hvac_ok and not is_in(m, ("rotation.client",)),
                     lambda i: i.startswith("hvac.exceptions")) == []
    assert offenders(lambda m: m not in botocore_ok, lambda i: i.startswith("botocore.exceptions")) == []


def test_the_rule_reader_catches_a_forbidden_import(tmp_path):
    bad = ROOT / "rotation" / "client" / "_probe_forbidden.py"
    try:
        bad.write_text("from rotation.engine import Engine\nimport boto3\n")
        found = imports_of(bad)
    finally:
        bad.unlink()
    assert {"rotation.engine", "boto3"} <= found
