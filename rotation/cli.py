"""The ``rotation`` command line.

Exit codes (``run``, ``rotate``; ``status`` uses 0 and 1, ``plan`` 0):

* 0: success, every consumer done (or nothing was due);
* 1: some consumer failed: rolled back, lost its lease mid-rotation, its Vault record is deleted
  or destroyed, or Vault/AWS unreachable;
* 2: usage or configuration error (nothing was changed);
* 3: nothing failed, but some consumer was skipped because another runner holds its lease, or an
  emergency rotation was recorded in Vault and is queued for the lease holder / the next run:
  retry later (a scheduler should).

Output never contains a key value.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import timedelta

try:
    import click
except ModuleNotFoundError as exc:  # the base install is the app-side client only
    sys.exit(f"rotation: the rotation jobs need the [rotator] extra ({exc.name} is not installed): "
             "pip install 'secure-mail-api[rotator]'")

from rotation.audit import REDACTOR, AuditLog, install_log_redaction
from rotation.config import ConsumersFile, load_consumers_file
from rotation.engine.planner import calls_for
from rotation.errors import RotationError, UnsupportedMount, UsageError
from rotation.records import from_iso, utcnow
from rotation.settings import Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEFERRED = 0, 1, 2, 3


def _fail(message: str, code: int) -> click.exceptions.Exit:
    click.echo(REDACTOR.scrub(message), err=True)
    return click.exceptions.Exit(code)


class _Ctx:
    def __init__(self, consumers_path: str | None, verbose: bool):
        self.consumers_path = consumers_path
        self.verbose = verbose

    def load(self) -> tuple[Settings, ConsumersFile]:
        if not self.consumers_path:
            raise _fail("error: no consumers file: pass --consumers PATH or set ROTATION_CONSUMERS_FILE", EXIT_USAGE)
        try:
            consumers = load_consumers_file(self.consumers_path)
            settings = load_settings()
        except UsageError as exc:
            raise _fail(f"error: {exc}", EXIT_USAGE) from None
        return settings, consumers

    def engine(self, settings: Settings, consumers: ConsumersFile, **kw):
        from rotation.wiring import build_engine
        if getattr(self, "workers", None):
            settings = settings.model_copy(update={"workers": self.workers})
        try:
            return build_engine(settings, consumers, **kw)
        except UnsupportedMount as exc:
            raise _fail(f"error: {exc}", EXIT_USAGE) from None
        except RotationError as exc:
            raise _fail(f"error: {exc}", EXIT_FAILED) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="secure-mail-api", prog_name="rotation")
@click.option("--consumers", "consumers_path", envvar="ROTATION_CONSUMERS_FILE", type=click.Path(dir_okay=False),
              help="Consumers file (YAML). Env: ROTATION_CONSUMERS_FILE.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.pass_context
def main(ctx: click.Context, consumers_path: str | None, verbose: bool) -> None:
    """Rotate the mail API's keys through Vault/OpenBao and API Gateway."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    ctx.obj = _Ctx(consumers_path, verbose)


def _age(iso: str | None, now=None) -> str:
    t = from_iso(iso)
    if not t:
        return "-"
    return _fmt((now or utcnow()) - t)


def _fmt(td: timedelta) -> str:
    s = int(td.total_seconds())
    sign = "-" if s < 0 else ""
    s = abs(s)
    if s >= 86400:
        return f"{sign}{s // 86400}d{(s % 86400) // 3600}h"
    if s >= 3600:
        return f"{sign}{s // 3600}h{(s % 3600) // 60}m"
    if s >= 60:
        return f"{sign}{s // 60}m{s % 60}s"
    return f"{sign}{s}s"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per consumer.")
@click.pass_obj
def status(obj: _Ctx, as_json: bool) -> None:
    """Table of consumers: current key, age, next due, any rotation in flight."""
    settings, consumers = obj.load()
    with obj.engine(settings, consumers, audit=AuditLog(stream=io.StringIO())) as engine:
        now = engine.clock()             # Vault's time, not this host's
        decisions = engine.decisions()
    rows = []
    blocked = False
    for c, state, journal, d in decisions:
        if d.rotate == "blocked":        # a deleted/destroyed record: never shown as "never set up"
            blocked = True
            rows.append({"consumer": c.name, "tier": c.tier, "current": None, "key_id": None, "fingerprint": None,
                         "age": "-", "next_due": "-", "previous": "-", "retired": "-",
                         "in_flight": "-", "last": f"BLOCKED: {d.reason}"})
            continue
        cur = state.current
        promoted = from_iso(cur.promoted_at) if cur else None
        in_flight = "-"
        if state.pending:
            in_flight = f"serial {state.pending.serial} at {journal.step or 'pending_recorded'}"
            if journal.owner:
                in_flight += f" (lease {journal.owner})"
        rows.append({
            "consumer": c.name, "tier": c.tier,
            "current": cur.serial if cur else None, "key_id": cur.key_id if cur else None,
            "fingerprint": cur.fingerprint if cur else None,
            "age": _age(cur.promoted_at, now) if cur else "-",
            "next_due": _fmt(promoted + c.max_age - now) if promoted else "now",
            "previous": (f"{state.previous.serial} (revoke in {_fmt(promoted + c.grace_period - now)})"
                         if state.previous and promoted else "-"),
            "retired": len(state.retired), "in_flight": in_flight,
            "last": (journal.last_outcome or {}).get("outcome", "-")
                    + (" (emergency queued)" if journal.emergency_request else ""),
        })
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        if blocked:
            raise click.exceptions.Exit(EXIT_FAILED)
        return
    cols = ["consumer", "tier", "current", "key_id", "age", "next_due", "previous", "retired", "in_flight", "last"]
    table = [[str(r[k]) if r[k] is not None else "-" for k in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)))
    for row in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    if blocked:
        raise click.exceptions.Exit(EXIT_FAILED)


@main.command()
@click.option("--emergency", multiple=True, metavar="CONSUMER", help="Plan an emergency rotation for CONSUMER.")
@click.option("--force", multiple=True, metavar="CONSUMER", help="Plan a rotation for CONSUMER even if not due.")
@click.pass_obj
def plan(obj: _Ctx, emergency: tuple[str, ...], force: tuple[str, ...]) -> None:
    """Show what `run` would do, call by call. Changes nothing."""
    settings, consumers = obj.load()
    _check_names(consumers, emergency + force)
    with obj.engine(settings, consumers, audit=AuditLog(stream=io.StringIO())) as engine:
        decisions = engine.decisions(force=force, emergency=emergency)
    for c, _state, _journal, d in decisions:
        click.echo(f"{c.name}: {d.rotate if d.rotate != 'none' else 'nothing to rotate'} - {d.reason}")
        for call in calls_for(d, c):
            click.echo(f"    {call}")


def _check_names(consumers: ConsumersFile, names) -> None:
    known = {c.name for c in consumers.consumers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _fail(f"error: unknown consumer(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", EXIT_USAGE)


def _run(obj: _Ctx, *, only=None, force=(), emergency=()) -> int:
    from rotation.wiring import publish_run_metrics
    settings, consumers = obj.load()
    if only:
        _check_names(consumers, only)
    with obj.engine(settings, consumers) as engine:
        summary = engine.run(only=only, force=force, emergency=emergency)
    publish_run_metrics(settings, consumers, summary)
    for o in summary.outcomes:
        extra = f" serial={o.serial}" if o.serial is not None else ""
        click.echo(f"{o.consumer}: {o.action} {o.outcome}{extra} - {REDACTOR.scrub(o.detail)}")
    failed = len(summary.failed)
    n = len(summary.outcomes)
    deferred = f", {len(summary.deferred)} locked or queued (exit 3: retry)" if summary.deferred else ""
    click.echo(f"{n} consumer{'' if n == 1 else 's'}, {failed} failed{deferred}")
    return summary.exit_code


@main.command()
@click.option("--workers", type=click.IntRange(1, 64), default=None, envvar="ROTATION_WORKERS",
              help="Consumers worked on at once (default 8; ROTATION_WORKERS).")
@click.pass_obj
def run(obj: _Ctx, workers: int | None) -> None:
    """Rotate everything due, resume anything interrupted, revoke what is past its grace."""
    if workers is not None:
        obj.workers = workers
    raise click.exceptions.Exit(_run(obj))


@main.command()
@click.argument("consumer")
@click.option("--emergency", is_flag=True, help="The key leaked: rotate now and revoke the old key at once.")
@click.pass_obj
def rotate(obj: _Ctx, consumer: str, emergency: bool) -> None:
    """Rotate one CONSUMER now. With --emergency the request is recorded in Vault first; if
    another runner holds the lease it is queued for that runner (exit 3), never dropped."""
    code = _run(obj, only=[consumer], force=[consumer], emergency=[consumer] if emergency else [])
    raise click.exceptions.Exit(code)


@main.command(name="schedule")
@click.option("--every", "every_seconds", type=click.IntRange(min=10), default=3600, show_default=True,
              help="Seconds between runs.")
@click.option("--jitter", "jitter_seconds", type=click.IntRange(min=0), default=60, show_default=True,
              help="Up to this many extra seconds per interval.")
@click.option("--heartbeat-file", type=click.Path(dir_okay=False), help="JSON heartbeat written every tick.")
@click.pass_obj
def schedule_cmd(obj: _Ctx, every_seconds: int, jitter_seconds: int, heartbeat_file: str | None) -> None:
    """Daemon: run on a jittered interval until SIGTERM."""
    from rotation.scheduler import Daemon
    obj.load()  # fail fast (exit 2) on bad config before daemonizing

    def job() -> int:
        try:
            return _run(obj)
        except click.exceptions.Exit as exc:
            return exc.exit_code

    stats = Daemon(job, every_seconds=every_seconds, jitter_seconds=jitter_seconds,
                   heartbeat_file=heartbeat_file).serve()
    click.echo(f"stopped after {stats.runs} runs, {stats.failures} failed")


if __name__ == "__main__":  # pragma: no cover
    main()
