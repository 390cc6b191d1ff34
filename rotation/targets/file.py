"""Atomic file target for sidecars: write to a temp file in the same directory, created with mode
0600 (``O_CREAT|O_EXCL``, never created open and chmod-ed after), fsync, then ``os.replace`` over
the target, so a reader sees the old key or the new one, never a partial file, and no other user
can read it at any moment. Format: one JSON object ``{"consumer", "serial", "key_id", "api_key",
"fence"}``.

Fencing (:func:`rotation.targets.supersedes`): the push reads the file, compares and replaces it
while holding an exclusive ``flock(2)`` on ``.<name>.lock`` beside it, so a runner that stalled
after its lease check can never replace a newer key, whatever the timing. Under the same lock it
removes temporary files a killed writer left behind (``.<name>.*``: they hold a key value).

:func:`write_private_file` is the one writer of local files that hold secrets (this target, the dev
tools' environment files).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rotation.config import FileTarget
from rotation.errors import PushError
from rotation.targets import Delivery, Held, PushResult, refused, supersedes

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


@contextlib.contextmanager
def _locked(path: Path, *, dir_mode: int = 0o700) -> Iterator[None]:
    """Hold an exclusive ``flock(2)`` on ``.<name>.lock`` beside ``path`` (created 0600, no secret);
    the kernel releases it when the holder dies. Raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)      # closing the descriptor releases the lock


def _remove_leftovers(path: Path) -> list[str]:
    """Remove temporary files of :func:`write_private_file` for ``path`` (``.<name>.<random>``)
    that a killed writer left behind; call it holding :func:`_locked`. Returns the names removed."""
    removed = []
    for leftover in path.parent.glob(f".{path.name}.*"):
        if leftover.name == f".{path.name}.lock" or not leftover.is_file() or leftover.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover.name)
    return removed


def _read_held(path: Path) -> Held | None:
    """What the file holds (:class:`~rotation.targets.Held`), ``None`` when it does not exist; a
    file that is not our JSON counts as serial 0, fence 0 (any write replaces it). Raises ``OSError``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return Held(0, 0)
    if not isinstance(data, dict):
        return Held(0, 0)
    serial, fence = data.get("serial"), data.get("fence", 0)
    return Held(serial if isinstance(serial, int) else 0, fence if isinstance(fence, int) else 0,
                data.get("key_id") if isinstance(data.get("key_id"), str) else None)


class AtomicFileTarget:
    def __init__(self, spec: FileTarget):
        self.path = Path(spec.path)
        self.required = spec.required
        self.target_id = spec.target_id

    def push(self, delivery: Delivery) -> PushResult:
        """Replace the file with ``delivery`` unless it holds a newer ``(fence, serial)``
        (:func:`rotation.targets.supersedes`), all under the file's lock. Never raises."""
        try:
            with _locked(self.path):
                _remove_leftovers(self.path)
                held = _read_held(self.path)
                if held is not None and not supersedes(delivery.serial, delivery.fence, held):
                    return refused(self.target_id, delivery, held)
                write_private_file(self.path, json.dumps({
                    "consumer": delivery.consumer, "serial": delivery.serial, "key_id": delivery.key_id,
                    "api_key": delivery.value, "fence": delivery.fence}))
            return PushResult(self.target_id, True, "written")
        except OSError as exc:
            return PushResult(self.target_id, False, f"{type(exc).__name__}: {exc.strerror or 'I/O error'}")

    def read_back(self, consumer: str) -> Held | None:
        """What the file holds now (no lock: the replace is atomic). Raises ``PushError``."""
        try:
            return _read_held(self.path)
        except OSError as exc:
            raise PushError(f"{self.target_id}: cannot read it back: {exc.strerror or 'I/O error'}") from None
