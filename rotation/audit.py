"""Structured audit events for every rotation step, with secret redaction.

One JSON object per line: ``audit_schema`` (:data:`AUDIT_SCHEMA_VERSION`, ``MAJOR.MINOR``: a MAJOR
change breaks readers, a MINOR change only adds fields), ``ts`` (RFC 3339, UTC), ``event`` (the step), ``outcome``
(``ok`` | ``failed`` | ``skipped`` | ``rolled_back`` | ...), ``consumer``, ``rotation_id``, and where
they apply ``key_id``, ``serial``, ``vault_version`` and ``fingerprint`` (:func:`~rotation.records.fingerprint`).
A key value never appears: fields named like secrets are dropped, and every registered secret
value is replaced by ``[REDACTED]`` wherever it appears in any string (defence in depth; tested
with planted canary values).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["AUDIT_SCHEMA_VERSION", "REDACTED", "REDACTOR", "THIRD_PARTY_LOGGERS", "AuditLog", "Redactor", "install_log_redaction",
           "is_third_party"]

REDACTED = "[REDACTED]"
AUDIT_SCHEMA_VERSION = "1.0"
_SECRET_FIELD = re.compile(r"(^|_)(value|secret|token|password|api_key|secret_id|signing_secret)$", re.IGNORECASE)


class Redactor:
    """Remembers secret values seen in this process and scrubs them from strings and events."""

    def __init__(self) -> None:
        # copy-on-write: register() swaps in a new frozenset, so scrub() in another thread
        # iterates a snapshot that never changes under it ("Set changed size during iteration")
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        new = {v for v in values if v and len(v) >= 8}
        with self._lock:
            if not new <= self._secrets:
                self._secrets = self._secrets | new

    def scrub(self, text: str) -> str:
        for s in self._secrets:         # a snapshot: register() never mutates it
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def scrub_obj(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {k: (REDACTED if _SECRET_FIELD.search(str(k)) else self.scrub_obj(v)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.scrub_obj(v) for v in obj]
        return obj

    # structlog processor
    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        return self.scrub_obj(event_dict)


#: Libraries that log request and response bodies (key values, Vault tokens) below WARNING:
#: botocore logs every request body and response at DEBUG, urllib3/requests log URLs (a wrapping
#: token may ride in one), hvac logs requests. Their records below WARNING never reach a log.
THIRD_PARTY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "hvac", "httpx", "httpcore",
                       "charset_normalizer", "tenacity", "aws_lambda_powertools")
_SUPPRESSED = "(third-party record below WARNING suppressed: it may carry secrets)"


def is_third_party(logger_name: str) -> bool:
    """True for a logger of :data:`THIRD_PARTY_LOGGERS` or any of its children."""
    logger_name = logger_name or ""   # logging.makeLogRecord builds a record with no name first
    return any(logger_name == n or logger_name.startswith(n + ".") for n in THIRD_PARTY_LOGGERS)


def _redact_record(record: logging.LogRecord, redactor: Redactor) -> bool:
    """Scrub ``record`` in place; False when it is a third-party record below WARNING."""
    if is_third_party(record.name) and record.levelno < logging.WARNING:
        record.msg, record.args, record.exc_info, record.exc_text = _SUPPRESSED, (), None, None
        return False
    if isinstance(record.msg, dict) and not record.args:   # structlog's event dict (rotation/logs.py)
        record.msg = redactor.scrub_obj(record.msg)
        return True
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record must not break logging
        message = str(record.msg)
    record.msg, record.args = redactor.scrub(message), ()
    return True


class _LoggingFilter(logging.Filter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        return _redact_record(record, self.redactor)


#: the process-wide redactor: every key value the engine handles is registered here.
REDACTOR = Redactor()


class AuditLog:
    """Writes audit events as JSON lines to ``path`` (appending) or ``stream`` (default stderr).

    ``events`` keeps the last events in memory for the CLI summary and the tests.
    """

    def __init__(self, path: str | Path | None = None, stream: TextIO | None = None,
                 redactor: Redactor = REDACTOR):
        self.redactor = redactor
        self._file = open(path, "a", encoding="utf-8", buffering=1) if path else None  # noqa: SIM115 - open for the log's life, closed by close()
        out = self._file or stream or sys.stderr
        self.events: list[dict[str, Any]] = []
        #: called with every event (scrubbed, with its ``ts``) as it is written: the metrics
        #: collector (:class:`rotation.metrics.RunMetrics`) listens here. A listener must not raise.
        self.listeners: list[Any] = []
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(out),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                redactor,
                self._remember,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )

    def _remember(self, _l: WrappedLogger, _n: str, event_dict: EventDict) -> EventDict:
        self.events.append(dict(event_dict))
        del self.events[:-1000]
        for listener in self.listeners:
            try:
                listener(dict(event_dict))
            except Exception:  # noqa: BLE001, S110 - metrics never break the audit trail
                pass
        return event_dict

    def emit(self, event: str, outcome: str, **fields: Any) -> None:
        """Record one event; ``fields`` must be identifiers and figures, never secrets."""
        self._log.info(event, audit_schema=AUDIT_SCHEMA_VERSION, outcome=outcome,
                       **{k: v for k, v in fields.items() if v is not None})

    def close(self) -> None:
        if self._file:
            self._file.close()


def install_log_redaction(redactor: Redactor = REDACTOR) -> None:
    """Make sure no secret reaches a log, whatever the root level (DEBUG in a Lambda included).

    Idempotent; call it after the handlers are set up (the CLI after ``basicConfig``, the Lambda
    handler at every invocation). Three layers:

    1. every logger of :data:`THIRD_PARTY_LOGGERS` (and any child with a lower level of its own)
       is pinned at WARNING, so botocore's request/response bodies are never even formatted;
    2. a log-record factory scrubs every record at creation, for any handler anywhere: registered
       secret values become ``[REDACTED]``, and a third-party record below WARNING (a logger
       someone set back to DEBUG) loses its message, arguments and traceback;
    3. every handler of the root logger and of the pinned loggers drops such records and scrubs
       the rest.
    """
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (isinstance(logger, logging.Logger) and is_third_party(name)
                and logger.level != logging.NOTSET and logger.level < logging.WARNING):
            logger.setLevel(logging.WARNING)
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_redactor", None) is not redactor:
        base = getattr(previous, "_wrapped", previous)

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            _redact_record(record, redactor)
            return record

        # marks on the installed factory (read back above, so a second call does not wrap it twice);
        # a function object takes attributes, which its Callable type does not declare
        factory._redactor = redactor  # type: ignore[attr-defined]
        factory._wrapped = base  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in THIRD_PARTY_LOGGERS)]
    for h in (h for lg in loggers for h in lg.handlers):
        if not any(isinstance(f, _LoggingFilter) for f in h.filters):
            h.addFilter(_LoggingFilter(redactor))
