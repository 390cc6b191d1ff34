"""Atomic file target for sidecars: write to a temp file in the same directory (mode 0600),
fsync, then ``os.replace`` over the target, so a reader sees the old key or the new one, never a
partial file. Format: one JSON object ``{"consumer", "serial", "key_id", "api_key"}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rotation.config import FileTarget
from rotation.targets import Delivery, PushResult

__all__ = ["AtomicFileTarget"]


class AtomicFileTarget:
    def __init__(self, spec: FileTarget):
        self.path = Path(spec.path)
        self.required = spec.required
        self.target_id = spec.target_id

    def push(self, delivery: Delivery) -> PushResult:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"consumer": delivery.consumer, "serial": delivery.serial,
                               "key_id": delivery.key_id, "api_key": delivery.value}, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with __import__("contextlib").suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            return PushResult(self.target_id, True, "written")
        except OSError as exc:
            return PushResult(self.target_id, False, f"{type(exc).__name__}: {exc.strerror or 'I/O error'}")
