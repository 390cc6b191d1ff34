"""Operational logs: JSON lines on stderr, through structlog's standard-library integration.

Every record, ours (``logging`` or ``structlog.get_logger``) and every third-party library's, goes
through one :class:`structlog.stdlib.ProcessorFormatter` pipeline and comes out as one JSON object
per line: ``ts`` (RFC 3339, UTC), ``level``, ``logger``, ``event`` (the message), any bound fields,
and ``log_schema`` (:data:`LOG_SCHEMA_VERSION`). Secrets never get there: the pipeline scrubs every
registered secret (:data:`rotation.audit.REDACTOR`), and :func:`rotation.audit.install_log_redaction`
(called here) pins the third-party loggers of :data:`rotation.audit.THIRD_PARTY_LOGGERS` at WARNING
and scrubs every record at creation. See https://www.structlog.org/en/stable/standard-library.html.

The audit trail is *not* a log: :class:`rotation.audit.AuditLog` writes it to its own sink.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rotation.audit import REDACTOR, install_log_redaction

__all__ = ["LEVELS", "LOG_SCHEMA_VERSION", "configure_logging"]

LOG_SCHEMA_VERSION = "1.0"
LEVELS = ("debug", "info", "warning", "error", "critical")


def _schema(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    event_dict["log_schema"] = LOG_SCHEMA_VERSION
    return event_dict


def configure_logging(level: str = "warning", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record at ``level`` (one of :data:`LEVELS`) or above to ``stream`` (default
    stderr) as JSON lines; replaces the root logger's handlers. Idempotent. Returns the handler.

    Raises ``ValueError`` for an unknown level."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _schema,
            REDACTOR,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    install_log_redaction()   # after the handler exists: it filters the root's handlers too
    return handler
