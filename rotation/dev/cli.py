"""``python -m rotation.dev``: the development and test tools (embedded stack, local gateway, demo).

Not part of any install a user deploys: these commands run from a checkout of the repository
(``make demo``, ``make dev``) and import the dev stack, which nothing outside ``rotation.dev``
(and the tests) may import.

Exit codes follow :mod:`rotation.cli`: 0 success, 1 a step failed, 2 usage error.
"""

from __future__ import annotations

from pathlib import Path

import click

from rotation.audit import REDACTOR
from rotation.config import load_consumers_file
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
@click.option("--consumers-file", "path", type=click.Path(exists=True, dir_okay=False),
              default=str(Path(__file__).resolve().parents[2] / "examples" / "consumers.yaml"), show_default=True)
@click.option("--env-file", type=click.Path(dir_okay=False), default=".dev-stack/env", show_default=True)
def dev_up(path: str, env_file: str) -> None:
    """Start the stack, write its environment to ENV_FILE, and wait for Ctrl-C."""
    import signal as _signal
    import threading

    from rotation.dev.stack import EmbeddedStack
    from rotation.targets.file import write_private_file
    try:
        consumers = load_consumers_file(path)
    except UsageError as exc:
        raise _fail(f"error: {exc}", EXIT_USAGE) from None
    with EmbeddedStack() as stack:
        creds = stack.bootstrap(consumers)
        env = stack.env(creds)
        write_private_file(env_file, "".join(f"export {k}={v}\n" for k, v in env.items()))
        # the dev server's root token, for `rotation vault setup` on this stack (local stack only)
        admin_file = Path(env_file).with_name("admin.env")
        write_private_file(admin_file, f"export VAULT_ADDR={stack.vault_addr}\nexport VAULT_TOKEN={stack.root_token}\n")
        click.echo(f"OpenBao {stack.vault_addr}, AWS emulator {stack.aws_endpoint}")
        click.echo(f"administrator token of this local stack (for `rotation vault setup`) in {admin_file} (mode 0600)")
        click.echo(f"environment written to {env_file} (mode 0600): source it, then run `rotation --consumers {path} status`")
        stop = threading.Event()
        _signal.signal(_signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass



main = dev
