"""The ``rotation`` command line.

Exit codes, for every command (``status``, ``plan``, ``run``, ``rotate``, ``schedule``, ``audit``,
``vault setup``); the same table is in docs/operations.md:

====  ======================================================================================
code  meaning
====  ======================================================================================
0     success: every consumer done, or nothing was due; ``status``: no consumer is blocked;
      ``audit``: no finding at or above ``--fail-on``
1     some consumer failed: rolled back, lost its lease mid-rotation, its Vault record is
      deleted or destroyed, or Vault/AWS unreachable; ``plan --iam-policy``: a permission is
      missing; ``audit``: a finding at or above ``--fail-on``
2     usage or configuration error: bad option, consumers file, setting or audit sink
      (nothing was changed; the message names the field and the fix)
3     nothing failed, but some consumer was skipped because another runner holds its lease,
      or an emergency rotation was recorded in Vault and is queued for the lease holder /
      the next run: retry later (a scheduler should)
====  ======================================================================================

Streams: ``--output json`` (or ``--json``) prints one JSON document on stdout (schemas in
``rotation/reporting/schemas/``, :mod:`rotation.reporting.machine`); operational logs are JSON
lines on stderr (:mod:`rotation.logs`; ``--log-level``); the audit trail goes to its own sink,
``--audit-to PATH`` (appends; env ``ROTATION_AUDIT_LOG``), by default stderr (JSON lines beside the
logs; never stdout, which holds only the table or the document), or ``--audit-to -`` (stdout, with
the table output only); a progress bar is drawn on stderr only when it is a terminal and
``--quiet`` is not given. Output never contains a key value.
"""

from __future__ import annotations

import io
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

try:
    import click
except ModuleNotFoundError as exc:  # the base install is the app-side client only
    sys.exit(f"rotation: the rotation jobs need the [rotator] extra ({exc.name} is not installed): "
             "pip install 'secure-mail-api[rotator]'")

from rotation.audit import REDACTOR, AuditLog
from rotation.config import ConsumersFile, load_consumers_file
from rotation.engine.planner import calls_for
from rotation.errors import RotationError, UnsupportedMount, UsageError
from rotation.logs import LEVELS, configure_logging
from rotation.progress import RunProgress, wants_progress
from rotation.records import from_iso, utcnow
from rotation.reporting.machine import dumps, plan_document, run_document, status_document
from rotation.settings import Settings, load_settings
from rotation.terminal import echo, for_terminal

if TYPE_CHECKING:    # prometheus_client is imported only by `schedule --metrics-port`
    from rotation.metrics import PrometheusExporter

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEFERRED = 0, 1, 2, 3


def _fail(message: str, code: int) -> click.exceptions.Exit:
    echo(message, err=True)
    return click.exceptions.Exit(code)


class _Ctx:
    def __init__(self, consumers_path: str | None, verbose: bool, quiet: bool = False,
                 audit_to: str | None = None):
        self.consumers_path = consumers_path
        self.verbose = verbose
        self.quiet = quiet
        self.audit_to = audit_to
        self.metrics_textfile: str | None = None
        #: ``run --workers``: consumers worked on at once; None keeps ROTATION_WORKERS / the default
        self.workers: int | None = None
        self.exporter: PrometheusExporter | None = None   # of the schedule daemon (--metrics-port)

    def audit_log(self, settings: Settings, output: str) -> AuditLog:
        """The audit trail's sink: ``--audit-to PATH`` / ``ROTATION_AUDIT_LOG`` (appends); by
        default stderr (beside the JSON-line logs), so stdout carries only the table or the JSON
        document. ``--audit-to -`` asks for stdout explicitly: allowed with the table output, a
        usage error (exit 2, before any side effect) with ``--output json``, whose document must
        be alone on stdout."""
        dest = self.audit_to or (str(settings.audit_log) if settings.audit_log else None)
        if dest is None:
            return AuditLog(stream=sys.stderr)
        if dest == "-":
            if output == "json":
                raise _fail("error: --audit-to -: --output json prints its document on stdout, so the audit "
                            "trail cannot go there too: drop --audit-to (the trail then goes to stderr) or pass "
                            "--audit-to PATH", EXIT_USAGE)
            return AuditLog(stream=sys.stdout)
        try:
            return AuditLog(dest)
        except OSError as exc:
            raise _fail(f"error: --audit-to {dest}: cannot open it for appending ({exc.strerror}); "
                        "pass a writable file or - for stdout", EXIT_USAGE) from None

    def load(self) -> tuple[Settings, ConsumersFile]:
        if not self.consumers_path:
            raise _fail("error: no consumers file: pass --consumers PATH or set ROTATION_CONSUMERS_FILE", EXIT_USAGE)
        try:
            settings = load_settings()
            consumers = load_consumers_file(self.consumers_path, settings=settings)
        except UsageError as exc:
            raise _fail(f"error: {exc}", EXIT_USAGE) from None
        return settings, consumers

    def engine(self, settings: Settings, consumers: ConsumersFile, **kw):
        from rotation.wiring import build_engine
        if self.workers:
            settings = settings.model_copy(update={"workers": self.workers})
        try:
            engine = build_engine(settings, consumers, **kw)
            engine.apigw.resolve_usage_plans(  # before any side effect
                consumers.usage_plans, self.consumers_path or "consumers file")
            return engine
        except (UnsupportedMount, UsageError) as exc:
            raise _fail(f"error: {exc}", EXIT_USAGE) from None
        except RotationError as exc:
            raise _fail(f"error: {exc}", EXIT_FAILED) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="secure-mail-api", prog_name="rotation")
@click.option("--consumers", "consumers_path", envvar="ROTATION_CONSUMERS_FILE", type=click.Path(dir_okay=False),
              help="Consumers file (YAML). Env: ROTATION_CONSUMERS_FILE.")
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), envvar="ROTATION_LOG_LEVEL",
              help="Operational logs (JSON lines on stderr) at this level and above [default: warning; "
                   "info with -v]. Env: ROTATION_LOG_LEVEL.")
@click.option("-v", "--verbose", is_flag=True, help="Same as --log-level info.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, even on a terminal.")
@click.option("--audit-to", "audit_to", envvar="ROTATION_AUDIT_LOG", metavar="PATH|-",
              help="Audit trail (JSON lines): append to PATH, or - for stdout (table output only). "
                   "Default: stderr, so stdout holds only the table or the JSON document. "
                   "Env: ROTATION_AUDIT_LOG.")
@click.option("--metrics-textfile", type=click.Path(dir_okay=False), envvar="ROTATION_METRICS_TEXTFILE",
              help="After each run, write the Prometheus metrics to this file (node-exporter textfile "
                   "collector). Env: ROTATION_METRICS_TEXTFILE.")
@click.pass_context
def main(ctx: click.Context, consumers_path: str | None, log_level: str | None, verbose: bool, quiet: bool,
         audit_to: str | None, metrics_textfile: str | None) -> None:
    """Rotate the mail API's keys through Vault/OpenBao and API Gateway."""
    configure_logging((log_level or ("info" if verbose else "warning")).lower())
    ctx.obj = _Ctx(consumers_path, verbose, quiet, audit_to)
    ctx.obj.metrics_textfile = metrics_textfile


def _output_options(fn):
    """``--output table|json`` and its short form ``--json``."""
    fn = click.option("--json", "as_json", is_flag=True, help="Same as --output json.")(fn)
    return click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True,
                        help="A table for people, or one JSON document (schema in "
                             "rotation/reporting/schemas/).")(fn)


def _age(iso: str | None, now=None) -> str:
    t = from_iso(iso)
    if not t:
        return "-"
    return _fmt((now or utcnow()) - t)


def _until(td: timedelta, due: str, prefix: str = "") -> str:
    """``prefix`` + the time left, or ``due`` once the moment has passed (never a negative time:
    a revoke or rotation past its moment waits for the next run)."""
    return due if td.total_seconds() <= 0 else prefix + _fmt(td)


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
@_output_options
@click.pass_obj
def status(obj: _Ctx, output: str, as_json: bool) -> None:
    """Table of consumers: current key, age, next due, any rotation in flight."""
    settings, consumers = obj.load()
    with obj.engine(settings, consumers, audit=AuditLog(stream=io.StringIO())) as engine:
        now = engine.clock()             # Vault's time, not this host's
        decisions = engine.decisions(digests=True)
    if as_json or output == "json":
        doc = status_document(decisions, now, settings.stack)
        click.echo(dumps(doc))
        raise click.exceptions.Exit(EXIT_FAILED if doc["summary"]["blocked"] else EXIT_OK)
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
            "next_due": _until(promoted + c.max_age - now, "now") if promoted else "now",
            "previous": (f"{state.previous.serial} ({_until(promoted + c.grace_period - now, 'revoke due: next run', 'revoke in ')})"
                         if state.previous and promoted else "-"),
            "retired": len(state.retired), "in_flight": in_flight,
            "last": (journal.last_outcome or {}).get("outcome", "-")
                    + (" (emergency queued)" if journal.emergency_request else ""),
        })
    cols = ["consumer", "tier", "current", "key_id", "age", "next_due", "previous", "retired", "in_flight", "last"]
    table = [[for_terminal(r[k]) if r[k] is not None else "-" for k in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)))
    for row in table:
        echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    if blocked:
        raise click.exceptions.Exit(EXIT_FAILED)


@main.command()
@click.option("--emergency", multiple=True, metavar="CONSUMER", help="Plan an emergency rotation for CONSUMER.")
@click.option("--force", multiple=True, metavar="CONSUMER", help="Plan a rotation for CONSUMER even if not due.")
@click.option("--iam-policy", type=click.Path(dir_okay=False), help="Also check that this IAM policy (JSON) "
              "lets the rotator write every AWS push target; exit 1 if not.")
@click.option("--account-id", envvar="AWS_ACCOUNT_ID", help="AWS account of targets given by name (--iam-policy).")
@_output_options
@click.pass_obj
def plan(obj: _Ctx, emergency: tuple[str, ...], force: tuple[str, ...], iam_policy: str | None,
         account_id: str | None, output: str, as_json: bool) -> None:
    """Show what `run` would do, call by call. Changes nothing."""
    settings, consumers = obj.load()
    _check_names(consumers, emergency + force)
    if as_json or output == "json":
        iam = None
        if iam_policy:
            from rotation.permissions import policy_file_report
            try:
                unwritable = policy_file_report(iam_policy, consumers, settings.aws_region, account_id)
            except UsageError as exc:
                raise _fail(f"error: {exc}", EXIT_USAGE) from None
            iam = {"policy": str(iam_policy), "ok": not unwritable, "unwritable": list(unwritable)}
        with obj.engine(settings, consumers, audit=AuditLog(stream=io.StringIO())) as engine:
            now = engine.clock()
            decisions = engine.decisions(force=force, emergency=emergency, digests=True)
        click.echo(dumps(plan_document(decisions, now, settings.stack, iam)))
        raise click.exceptions.Exit(EXIT_FAILED if iam and not iam["ok"] else EXIT_OK)
    if iam_policy:  # before any call to Vault or AWS: rotation/permissions.py
        from rotation.permissions import policy_file_report
        try:
            unwritable = policy_file_report(iam_policy, consumers, settings.aws_region, account_id)
        except UsageError as exc:
            raise _fail(f"error: {exc}", EXIT_USAGE) from None
        for line in unwritable:
            echo(f"iam: cannot write: {for_terminal(line)}", err=True)
        if unwritable:
            raise _fail(f"error: {len(unwritable)} permission(s) missing from {iam_policy}", EXIT_FAILED)
        echo(f"iam: {for_terminal(iam_policy)} lets the rotator write every push target")
    with obj.engine(settings, consumers, audit=AuditLog(stream=io.StringIO())) as engine:
        decisions = engine.decisions(force=force, emergency=emergency, digests=True)
    for c, _state, _journal, d in decisions:
        echo(f"{for_terminal(c.name)}: {d.rotate if d.rotate != 'none' else 'nothing to rotate'} - "
             f"{for_terminal(d.reason)}")
        for call in calls_for(d, c):
            echo(f"    {for_terminal(call)}")


def _check_names(consumers: ConsumersFile, names) -> None:
    known = {c.name for c in consumers.consumers}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _fail(f"error: unknown consumer(s) {', '.join(map(for_terminal, unknown))}; "
                    f"known: {', '.join(sorted(known))}", EXIT_USAGE)


def _run(obj: _Ctx, *, only=None, force=(), emergency=(), output: str = "table", command: str = "run",
         progress: bool = True) -> int:
    from rotation.metrics import RunMetrics, write_textfile
    from rotation.wiring import collect_run_metrics, publish_run_metrics
    settings, consumers = obj.load()
    if only:
        _check_names(consumers, only)
    audit = obj.audit_log(settings, output)
    run_metrics = RunMetrics()
    audit.listeners.append(run_metrics.listen)
    with RunProgress(progress and wants_progress(obj.quiet)) as bar, \
            obj.engine(settings, consumers, audit=audit, progress=bar.hook) as engine:
        started = engine.clock()
        summary = engine.run(only=only, force=force, emergency=emergency)
        finished = engine.clock()
        samples = collect_run_metrics(engine, summary, run_metrics)   # from the records the run read
        engine.vault.refresh_digests([o.consumer for o in summary.outcomes],
                                     max_workers=max(2 * engine.workers, 16))   # status reads none of them
    publish_run_metrics(settings, consumers, summary, samples)
    if obj.metrics_textfile:
        write_textfile(samples, settings.stack, obj.metrics_textfile)
    if obj.exporter is not None:
        obj.exporter.update(samples, settings.stack)
    if output == "json":
        click.echo(dumps(run_document(summary, command=command, started_at=started, finished_at=finished,
                                      stack=settings.stack)))
        return summary.exit_code
    for o in summary.outcomes:
        extra = f" serial={o.serial}" if o.serial is not None else ""
        echo(f"{for_terminal(o.consumer)}: {o.action} {o.outcome}{extra} - {for_terminal(REDACTOR.scrub(o.detail))}")
    failed = len(summary.failed)
    n = len(summary.outcomes)
    deferred = f", {len(summary.deferred)} locked or queued (exit 3: retry)" if summary.deferred else ""
    echo(f"{n} consumer{'' if n == 1 else 's'}, {failed} failed{deferred}")
    return summary.exit_code


@main.command()
@_output_options
@click.option("--workers", type=click.IntRange(1, 64), default=None, envvar="ROTATION_WORKERS",
              help="Consumers worked on at once (default 8; ROTATION_WORKERS).")
@click.pass_obj
def run(obj: _Ctx, output: str, as_json: bool, workers: int | None) -> None:
    """Rotate everything due, resume anything interrupted, revoke what is past its grace."""
    if workers is not None:
        obj.workers = workers
    raise click.exceptions.Exit(_run(obj, output="json" if as_json else output, command="run"))


@main.command()
@click.argument("consumer")
@click.option("--emergency", is_flag=True, help="The key leaked: rotate now and revoke the old key at once.")
@_output_options
@click.pass_obj
def rotate(obj: _Ctx, consumer: str, emergency: bool, output: str, as_json: bool) -> None:
    """Rotate one CONSUMER now. With --emergency the request is recorded in Vault first; if
    another runner holds the lease it is queued for that runner (exit 3), never dropped."""
    code = _run(obj, only=[consumer], force=[consumer], emergency=[consumer] if emergency else [],
                output="json" if as_json else output, command="rotate")
    raise click.exceptions.Exit(code)


@main.command(name="schedule")
@click.option("--every", "every_seconds", type=click.IntRange(min=10), default=3600, show_default=True,
              help="Seconds between runs.")
@click.option("--jitter", "jitter_seconds", type=click.IntRange(min=0), default=60, show_default=True,
              help="Up to this many extra seconds per interval.")
@click.option("--heartbeat-file", type=click.Path(dir_okay=False), help="JSON heartbeat written every tick.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), envvar="ROTATION_METRICS_PORT",
              help="Serve Prometheus metrics on http://ADDR:PORT/metrics. Env: ROTATION_METRICS_PORT.")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, envvar="ROTATION_METRICS_ADDR",
              help="Address of the metrics endpoint (0.0.0.0 in a pod Prometheus scrapes).")
@click.pass_obj
def schedule_cmd(obj: _Ctx, every_seconds: int, jitter_seconds: int, heartbeat_file: str | None,
                 metrics_port: int | None, metrics_addr: str) -> None:
    """Daemon: run on a jittered interval until SIGTERM."""
    from rotation.scheduler import Daemon
    obj.load()  # fail fast (exit 2) on bad config before daemonizing
    if metrics_port:
        from rotation.metrics import PrometheusExporter
        try:
            obj.exporter = PrometheusExporter(metrics_port, metrics_addr)
        except OSError as exc:
            raise _fail(f"error: --metrics-port {metrics_port}: cannot listen on {metrics_addr}:{metrics_port} "
                        f"({exc.strerror}); pick a free port", EXIT_USAGE) from None

    def job() -> int:
        try:
            return _run(obj, progress=False)
        except click.exceptions.Exit as exc:
            return exc.exit_code

    stats = Daemon(job, every_seconds=every_seconds, jitter_seconds=jitter_seconds,
                   heartbeat_file=heartbeat_file).serve()
    echo(f"stopped after {stats.runs} runs, {stats.failures} failed")


from rotation.reporting.command import audit as _audit  # `rotation audit` lives in rotation/reporting
from rotation.vault_cli import vault_group  # the `vault` command group (rotation vault setup)

main.add_command(_audit)
main.add_command(vault_group)

if __name__ == "__main__":  # pragma: no cover
    main()
