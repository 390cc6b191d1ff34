"""``rotation vault ...``: the Vault set-up as code (:mod:`rotation.vault_setup`).

``rotation --consumers consumers.yaml vault setup --setup vault-setup.yaml [--dry-run] [--aws-auth] [--json]``

Connects with ``VAULT_ADDR`` / ``VAULT_TOKEN`` (an administrator token: the setup writes
``sys/mounts``, ``sys/auth``, ``sys/policies/acl`` and ``auth/*``), ``VAULT_CACERT``,
``VAULT_NAMESPACE``. Prints one line per object: ``create``, ``update`` or ``unchanged``
(``--dry-run``: what a real run would do; only GET requests are sent).

Before the first write, and in a dry run, it identifies the server (OpenBao or HashiCorp Vault and
its version: :mod:`rotation.vault_server`) and reports everything that server would refuse (an
audit device through the API on OpenBao 2.3.2+, the AWS auth method on OpenBao): exit 2, nothing
changed. If a write fails after others took effect, it lists what was applied and what was not
("HALF APPLIED"); running the same command again resumes.

Exit codes: 0 done; 1 Vault refused or is unreachable (a half-applied setup is listed); 2 a bad
setup/consumers file, missing token, an object in the way or a change the server would refuse
(nothing was changed).
"""

from __future__ import annotations

import json

import click

from rotation.config import load_consumers_file
from rotation.errors import UsageError, VaultError
from rotation.terminal import echo, for_terminal
from rotation.vault_setup import (
    Change,
    PartialSetupError,
    SetupPreflightError,
    VaultSetupError,
    apply_setup,
    load_setup_file,
    summarize,
)

EXIT_FAILED, EXIT_USAGE = 1, 2


def _fail(message: str, code: int) -> click.exceptions.Exit:
    echo(message, err=True)
    return click.exceptions.Exit(code)


@click.group(name="vault")
def vault_group() -> None:
    """Set up Vault/OpenBao for the rotation jobs and their consumers."""


@vault_group.command(name="setup")
@click.option("--setup", "setup_path", required=True, type=click.Path(dir_okay=False),
              help="The setup file (YAML): mount, prefix, auth roles, audit device.")
@click.option("--dry-run", is_flag=True, help="Print the calls a real run would make; change nothing.")
@click.option("--aws-auth", is_flag=True, help="Also set up the AWS auth method and role (HashiCorp Vault only).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per object of the setup.")
@click.pass_context
def setup_cmd(ctx: click.Context, setup_path: str, dry_run: bool, aws_auth: bool, as_json: bool) -> None:
    """Apply the setup file (idempotent): KV v2 mount, ACL policies, auth roles, audit device."""
    import hvac

    from rotation.settings import load_settings

    consumers_path = getattr(ctx.obj, "consumers_path", None)
    if not consumers_path:
        raise _fail("error: no consumers file: pass --consumers PATH or set ROTATION_CONSUMERS_FILE", EXIT_USAGE)
    try:
        consumers = load_consumers_file(consumers_path)
        setup = load_setup_file(setup_path)
        settings = load_settings()
    except UsageError as exc:
        raise _fail(f"error: {exc}", EXIT_USAGE) from None
    if settings.vault_token is None:
        raise _fail("error: VAULT_TOKEN: required (an administrator token for the setup)", EXIT_USAGE)
    if setup.rotator.aws and not aws_auth:
        click.echo("note: rotator.aws is skipped; pass --aws-auth to set up the AWS auth method "
                   "(HashiCorp Vault only)", err=True)
    client = hvac.Client(url=settings.vault_addr, token=settings.vault_token.get_secret_value(),
                         namespace=settings.vault_namespace, verify=settings.vault_verify, cert=settings.vault_cert,
                         timeout=settings.vault_timeout_seconds)
    try:
        changes = apply_setup(client, setup, consumers, dry_run=dry_run, aws_auth=aws_auth)
    except SetupPreflightError as exc:
        _print_changes(exc.changes, dry_run=True, as_json=as_json)
        raise _fail(f"error: {exc}", EXIT_USAGE) from None
    except PartialSetupError as exc:
        _print_changes(exc.applied, dry_run=False, as_json=as_json)
        raise _fail(f"error: {exc}", EXIT_FAILED) from None
    except VaultSetupError as exc:
        raise _fail(f"error: {exc}", EXIT_USAGE) from None
    except UsageError as exc:
        raise _fail(f"error: {exc}", EXIT_USAGE) from None
    except VaultError as exc:
        raise _fail(f"error: {exc}", EXIT_FAILED) from None
    _print_changes(changes, dry_run=dry_run, as_json=as_json)
    k8s = setup.kubernetes
    if dry_run and k8s and not (k8s.kubernetes_ca_cert_file or k8s.token_reviewer_jwt_file) and any(
            c.action != "unchanged" and c.step.kind == "config" and "kubernetes_host" in c.step.body for c in changes):
        click.echo("note: kubernetes: without kubernetes_ca_cert_file and token_reviewer_jwt_file the server reads its "
                   "own pod's service account, which only a server inside the cluster has; a real run sends this config "
                   "first and, if the server refuses it, changes nothing", err=True)
    counts = summarize(changes)
    if not as_json:
        echo(("dry run: " if dry_run else "") + ", ".join(f"{n} {a}" for a, n in counts.items()))


def _print_changes(changes: list[Change], *, dry_run: bool, as_json: bool) -> None:
    """One line per object on stdout: ``[would ]create|update|unchanged kind name: call``, or one
    JSON object per line with ``--json``."""
    for change in changes:
        if as_json:
            click.echo(json.dumps({"action": change.action, "kind": change.step.kind, "name": change.step.name,
                                   "call": change.step.describe(), "dry_run": dry_run}))
        else:
            echo(("would " if dry_run and change.action != "unchanged" else "") + for_terminal(change))
