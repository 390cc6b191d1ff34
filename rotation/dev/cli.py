"""``python -m rotation.dev``: the development and test tools (embedded stack, local gateway, demo).

Not part of any install a user deploys: these commands run from a checkout of the repository
(``make demo``, ``make dev``) and import the dev stack, which nothing outside ``rotation.dev``
(and the tests) may import.

Exit codes follow :mod:`rotation.cli`: 0 success, 1 a step failed, 2 usage error.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from rotation.audit import REDACTOR
from rotation.config import load_consumers_file
from rotation.dev.workspace import DEV_DIR, REPO, rotation_command, shell_path, write_dev_consumers
from rotation.errors import UsageError

EXIT_USAGE = 2


def _fail(message: str, code: int) -> click.exceptions.Exit:
    click.echo(REDACTOR.scrub(message), err=True)
    return click.exceptions.Exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def dev() -> None:
    """The embedded stack: local OpenBao + AWS emulator."""


@dev.command(name="demo")
@click.option("--grace", "grace_seconds", type=click.IntRange(min=1), default=4, show_default=True)
def dev_demo(grace_seconds: int) -> None:
    """Start the embedded stack, run the rotation scenarios, stop everything."""
    from rotation.dev.demo import run_demo
    raise click.exceptions.Exit(run_demo(grace_seconds=grace_seconds))


@dev.command(name="gateway", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                                "help_option_names": []})
@click.pass_context
def dev_gateway(ctx: click.Context) -> None:
    """The local mail API (development and test tool): the real handler behind an API-key
    gateway on loopback. Options: see `python -m rotation.dev gateway --help`."""
    from rotation.dev.gateway import serve_main
    raise click.exceptions.Exit(serve_main(ctx.args))


@dev.command(name="up")
@click.option("--consumers-file", "path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Consumers file to set the stack up for. Default: the dev stack's own, written to "
                   "DIR/consumers.yaml (local targets only: nothing leaves this machine).")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=str(DEV_DIR), show_default=True,
              help="Where the environment files, the consumers file and file targets' keys are written.")
def dev_up(path: str | None, directory: str) -> None:
    """Start the stack, write its environments under DIR (the rotator's ``env``, each app's
    ``<consumer>.env``, the administrator's ``admin.env``; mode 0600), print what to run next,
    wait for Ctrl-C."""
    import signal as _signal
    import threading

    from rotation.dev.stack import EmbeddedStack
    from rotation.targets.file import write_private_file
    out = Path(directory)
    consumers_path = Path(path).absolute() if path else write_dev_consumers(out)
    try:
        consumers = load_consumers_file(consumers_path)
    except UsageError as exc:
        raise _fail(f"error: {exc}", EXIT_USAGE) from None
    env_file = out / "env"
    with EmbeddedStack() as stack:
        creds = stack.bootstrap(consumers)
        env = {**stack.env(creds), "ROTATION_CONSUMERS_FILE": str(consumers_path),
               "ROTATION_FILE_TARGET_DIRS": str((out / "keys").absolute()),
               "ROTATION_AUDIT_LOG": str((out / "audit.jsonl").absolute())}   # the trail in its own file
        write_private_file(env_file, "".join(f"export {k}={v}\n" for k, v in env.items()))
        # the dev server's root token, for `rotation vault setup` on this stack (local stack only)
        admin_file = env_file.with_name("admin.env")
        write_private_file(admin_file, f"export VAULT_ADDR={stack.vault_addr}\nexport VAULT_AUTH_METHOD=token\n"
                                       f"export VAULT_TOKEN={stack.root_token}\n")
        for name, (role_id, secret_id) in creds.consumer_roles.items():   # each app's AppRole login
            write_private_file(out / f"{name}.env", f"export VAULT_ADDR={stack.vault_addr}\n"
                               f"export VAULT_AUTH_METHOD=approle\nexport VAULT_ROLE_ID={role_id}\n"
                               f"export VAULT_SECRET_ID={secret_id}\nexport MAIL_API_CONSUMER={name}\n")
        click.echo(f"OpenBao {stack.vault_addr}, AWS emulator {stack.aws_endpoint}; consumers file "
                   f"{shell_path(consumers_path)}")
        click.echo(f"rotator environment in {shell_path(env_file)} (audit trail to {shell_path(out / 'audit.jsonl')}), "
                   f"each app's in {shell_path(out)}/<consumer>.env, administrator token of this local stack in "
                   f"{shell_path(admin_file)} (all mode 0600)")
        click.echo(next_steps(env_file, admin_file, consumers_path))
        stop = threading.Event()
        _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


def next_steps(env_file: Path, admin_file: Path, consumers_path: Path) -> str:
    """The commands to paste into another shell: rotate on this stack, and apply the shipped
    Vault setup with the administrator token (in a subshell, so the rotator's shell keeps its
    AppRole identity)."""
    rot = rotation_command()
    return "\n".join([
        "next, in another shell (Ctrl-C here stops the stack):",
        f"  cd {shlex.quote(str(REPO))}",
        f"  . {shell_path(env_file)}",
        f"  {rot} status",
        f"  {rot} run",
        f"  {rot} rotate crm --json | python3 -m json.tool",
        "the Vault setup as code, on this stack (dry run first):",
        (f"  (. {shell_path(admin_file)} && {rot} --consumers {shell_path(consumers_path)} vault setup "
         "--setup examples/vault-setup.yaml --dry-run)"),
    ])


main = dev
