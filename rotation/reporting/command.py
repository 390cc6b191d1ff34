"""``rotation audit``: the regular audit report (terminal table, JSON, self-contained HTML).

Exit codes: 0 the report was produced (and no finding reached ``--fail-on``); 1 a finding at or
above ``--fail-on``, or Vault/AWS could not be read; 2 a usage error (bad option or input file;
nothing was read). Output never holds a key value.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import click

from rotation.audit import REDACTOR, AuditLog
from rotation.errors import RotationError, UsageError
from rotation.records import utcnow
from rotation.reporting.audit_report import SEVERITIES, build_report, observe
from rotation.targets.file import write_private_file
from rotation.terminal import echo

__all__ = ["audit"]

EXIT_FAILED, EXIT_USAGE = 1, 2


def _usage(message: str) -> click.exceptions.Exit:
    echo(f"error: {message}", err=True)
    return click.exceptions.Exit(EXIT_USAGE)


def _json_file(option: str, path: str | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _usage(f"{option} {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise _usage(f"{option} {path}: not JSON ({exc}); expected the file's JSON document") from None


def _security_findings(path: str | None) -> dict[str, Any] | None:
    data = _json_file("--policy-findings", path)
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("format") != "policies.check/v1" or not isinstance(
            data.get("violations"), list):
        raise _usage(f"--policy-findings {path}: not the output of `python -m policies.check --json` "
                     "(expected format policies.check/v1)")
    keep = ("rule", "controls", "resource", "urn", "level", "message")
    return {"source": str(path), "resources": int(data.get("resources") or 0), "rules": int(data.get("rules") or 0),
            "mandatory": int(data.get("mandatory") or 0), "advisory": int(data.get("advisory") or 0),
            "violations": [{k: v.get(k) for k in keep} for v in data["violations"] if isinstance(v, dict)]}


def _policy_client(settings, vault_store, token_env: str | None):
    if not token_env:
        vault_store.ensure_token()
        return vault_store.client
    token = os.environ.get(token_env)
    if not token:
        raise _usage(f"--policy-token-env {token_env}: the variable is not set; export a Vault token allowed "
                     "to read sys/policies/acl/mail-api-*")
    import hvac
    return hvac.Client(url=settings.vault_addr, namespace=settings.vault_namespace, token=token,
                       verify=settings.vault_verify, cert=settings.vault_cert, timeout=settings.vault_timeout_seconds)


@click.command(name="audit")
@click.option("--output", "output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Report on stdout as a table or as JSON (schema rotation/reporting/schemas/audit.schema.json).")
@click.option("--json", "as_json", is_flag=True, help="Same as --output json.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write a self-contained HTML report with charts to this file.")
@click.option("--expected-policies", metavar="DIR|pkg:PACKAGE",
              help="Expected Vault ACL policies (.hcl; rotator/auditor/consumer templates or rendered files).")
@click.option("--policy-token-env", metavar="VAR",
              help="Env var holding a Vault token with read on sys/policies/acl/mail-api-* (default: the "
                   "rotation token).")
@click.option("--iam-policy", "iam_policy", type=click.Path(dir_okay=False),
              help="Expected IAM policy document (JSON) of --iam-role's inline policy.")
@click.option("--iam-role", help="IAM role whose inline policy is compared with --iam-policy.")
@click.option("--iam-policy-name", help="Inline policy name (default: the --iam-policy file's stem).")
@click.option("--policy-findings", type=click.Path(dir_okay=False),
              help="JSON output of `python -m policies.check --json` to include.")
@click.option("--vault-audit-log", type=click.Path(dir_okay=False),
              help="Vault file audit device log to scan for denied requests and unexpected logins.")
@click.option("--expected-identity", multiple=True, metavar="ROLE",
              help="Another role allowed to log in (default: mail-api-rotator, mail-api-auditor, "
                   "mail-api-consumer-<name>).")
@click.option("--fail-on", type=click.Choice(SEVERITIES), help="Exit 1 when a finding has this severity or worse.")
@click.pass_obj
def audit(obj, output: str, as_json: bool, html_path: str | None, expected_policies: str | None, policy_token_env: str | None,
          iam_policy: str | None, iam_role: str | None, iam_policy_name: str | None, policy_findings: str | None,
          vault_audit_log: str | None, expected_identity: tuple[str, ...], fail_on: str | None) -> None:
    """Audit every consumer: key age and version, last rotation, acks, traffic, key inventory,
    policy drift, security-policy findings and Vault audit-log anomalies."""
    from rotation.reporting import policy_drift as pd
    output = "json" if as_json else output
    from rotation.reporting.vault_audit_log import default_expected_identities, scan_file

    # -- validate every input before reading anything ----------------------------------------------
    if bool(iam_policy) != bool(iam_role):
        raise _usage("--iam-policy and --iam-role go together: pass the expected document and the role name")
    iam_doc = _json_file("--iam-policy", iam_policy)
    if iam_doc is not None and not isinstance(iam_doc, dict):
        raise _usage(f"--iam-policy {iam_policy}: expected an IAM policy document (a JSON object)")
    security = _security_findings(policy_findings)
    if html_path and not Path(html_path).resolve().parent.is_dir():
        raise _usage(f"--html {html_path}: its directory does not exist; create it or pick another path")
    if vault_audit_log and not Path(vault_audit_log).is_file():
        raise _usage(f"--vault-audit-log {vault_audit_log}: no such file")
    settings, consumers = obj.load()
    names = [c.name for c in consumers.consumers]
    expected: dict[str, str] | None = None
    if expected_policies:
        try:
            expected = pd.expected_vault_policies(expected_policies, mount=settings.vault_kv_mount,
                                                  prefix=settings.vault_kv_prefix, consumers=names)
        except UsageError as exc:
            raise _usage(str(exc)) from None

    # -- read ----------------------------------------------------------------------------------------
    engine = obj.engine(settings, consumers, audit=AuditLog(stream=io.StringIO()))
    try:
        observed = observe(engine, stack=settings.stack)
        items: list[dict[str, Any]] = []
        if expected is not None:
            client = _policy_client(settings, engine.vault, policy_token_env)
            texts, listed, error = pd.read_vault_policies(client, sorted(expected))
            items += pd.compare_vault(expected, texts, listed, error)
        if iam_doc is not None and iam_policy is not None and iam_role is not None:  # given together (above)
            import boto3
            iam = boto3.session.Session(region_name=settings.aws_region).client(
                "iam", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
            pname = iam_policy_name or Path(iam_policy).stem
            label = f"{iam_role}/{pname}"
            try:
                items.append(pd.compare_iam(iam_doc, pd.read_iam_role_policy(iam, iam_role, pname), label))
            except RotationError as exc:
                items.append(pd.compare_iam(iam_doc, None, label, error=str(exc)))
        if expected is not None or iam_doc is not None:
            observed.policy_drift = {"items": items}
    except RotationError as exc:
        echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    observed.security_policy = security
    if vault_audit_log:
        try:
            observed.vault_audit = scan_file(
                vault_audit_log, mount=settings.vault_kv_mount, prefix=settings.vault_kv_prefix,
                expected_identities=default_expected_identities(names) | set(expected_identity))
        except OSError as exc:
            raise _usage(f"--vault-audit-log {vault_audit_log}: cannot read it ({exc.strerror})") from None

    # -- report --------------------------------------------------------------------------------------
    from rotation.reporting.render import render_html, render_json, render_table
    report = build_report(observed, utcnow())
    if html_path:
        # mode 0600 like the rest of what the rotator writes (it names key ids, consumers and findings)
        write_private_file(html_path, REDACTOR.scrub(render_html(report)))
    if output == "json":
        click.echo(REDACTOR.scrub(render_json(report)))     # exact JSON: it escapes control characters itself
    else:
        echo(render_table(report))                          # each field neutralised, then the block
    if fail_on:
        worst = SEVERITIES[: SEVERITIES.index(fail_on) + 1]
        if any(f["severity"] in worst for f in report["findings"]):
            raise click.exceptions.Exit(EXIT_FAILED)
