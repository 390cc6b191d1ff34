"""Atomic file target for sidecars: write to a temp file in the same directory, created with mode
0600 (``O_CREAT|O_EXCL``, never created open and chmod-ed after), fsync, then ``os.replace`` over
the target, so a reader sees the old key or the new one, never a partial file, and no other user
can read it at any moment. Format: one JSON object ``{"consumer", "serial", "key_id", "api_key"}``.

:func:`write_private_file` is the one writer of local files that hold secrets (this target, the dev
tools' environment files).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from rotation.config import FileTarget
from rotation.targets import Delivery, PushResult

__all__ = ["AtomicFileTarget", "write_private_file"]


def write_private_file(path: str | Path, data: str | bytes, *, dir_mode: int = 0o700) -> None:
    """Replace ``path`` atomically with ``data``, readable by the owner only (mode 0600 from its
    creation: ``tempfile.mkstemp`` opens with ``O_CREAT|O_EXCL`` and mode 0600), fsynced with its
    directory. A missing parent directory is created with ``dir_mode``. Raises ``OSError``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class AtomicFileTarget:
    def __init__(self, spec: FileTarget):
        self.path = Path(spec.path)
        self.required = spec.required
        self.target_id = spec.target_id

    def push(self, delivery: Delivery) -> PushResult:
        try:
            write_private_file(self.path, json.dumps({"consumer": delivery.consumer, "serial": delivery.serial,
                                                      "key_id": delivery.key_id, "api_key": delivery.value}))
            return PushResult(self.target_id, True, "written")
        except OSError as exc:
            return PushResult(self.target_id, False, f"{type(exc).__name__}: {exc.strerror or 'I/O error'}")
