"""Structured audit events for every rotation step, with secret redaction.

One JSON object per line: ``ts`` (RFC 3339, UTC), ``event`` (the step), ``outcome``
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

__all__ = ["REDACTED", "AuditLog", "Redactor"]

REDACTED = "[REDACTED]"
_SECRET_FIELD = re.compile(r"(^|_)(value|secret|token|password|api_key|secret_id|signing_secret)$", re.IGNORECASE)


class Redactor:
    """Remembers secret values seen in this process and scrubs them from strings and events."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        with self._lock:
            self._secrets |= {v for v in values if v and len(v) >= 8}

    def scrub(self, text: str) -> str:
        for s in self._secrets:
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
    def __call__(self, _logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return self.scrub_obj(event_dict)


class _LoggingFilter(logging.Filter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.scrub(record.getMessage())
        record.args = ()
        return True


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
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(out),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                redactor,
                self._remember,
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )

    def _remember(self, _l: Any, _n: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        self.events.append(dict(event_dict))
        del self.events[:-1000]
        return event_dict

    def emit(self, event: str, outcome: str, **fields: Any) -> None:
        """Record one event; ``fields`` must be identifiers and figures, never secrets."""
        self._log.info(event, outcome=outcome, **{k: v for k, v in fields.items() if v is not None})

    def close(self) -> None:
        if self._file:
            self._file.close()


def install_log_redaction(redactor: Redactor = REDACTOR) -> None:
    """Scrub registered secrets from every record of Python's logging (root handlers)."""
    root = logging.getLogger()
    for h in root.handlers:
        if not any(isinstance(f, _LoggingFilter) for f in h.filters):
            h.addFilter(_LoggingFilter(redactor))
