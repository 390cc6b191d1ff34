"""Atomic file target for sidecars: write to a temp file in the same directory, created with mode
0600 (``O_CREAT|O_EXCL``, never created open and chmod-ed after), fsync, then rename over the
target, so a reader sees the old key or the new one, never a partial file, and no other user
can read it at any moment. Format: one JSON object ``{"consumer", "serial", "key_id", "api_key",
"fence"}``.

Fencing (:func:`rotation.targets.supersedes`): the push reads the file, compares and replaces it
while holding an exclusive ``flock(2)`` on ``.<name>.lock`` beside it, so a runner that stalled
after its lease check can never replace a newer key, whatever the timing. Under the same lock it
removes temporary files a killed writer left behind (``.<name>.*``: they hold a key value). The
lock, the read and the clean-up go through the same directory descriptor as the write, so a parent
swapped for a symbolic link is never followed.

**Directory safety at write time** (failure case H10). The consumers file is checked against
``ROTATION_FILE_TARGET_DIRS`` when it is loaded, but a directory can change between that check and
the write. So the write itself walks from the allowed directory down with directory file
descriptors: the allowed directory is opened once, and each directory below it is opened
*relative to its parent's descriptor* with ``O_NOFOLLOW|O_DIRECTORY`` (``openat(2)``); the temp
file is created and renamed relative to the last descriptor (``dir_fd=``). A directory below the
allowed one that is (or is swapped for) a symbolic link is refused (``ELOOP``/``ENOTDIR``) instead
of followed, so no rename of a parent can send the key outside the allowed directory. Each
directory on the way, the allowed one included, must not be world-writable (``S_IWOTH``): any
local user could otherwise replace or pre-create entries in it. Both refusals are
:class:`UnsafeDirectory`, reported as a failed push naming the directory and the fix.
(Linux ``openat(2)``: https://man7.org/linux/man-pages/man2/openat.2.html, ``O_NOFOLLOW``.)

:func:`write_private_file` is the one writer of local files that hold secrets (this target, the dev
tools' environment files).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath

from rotation.config import FileTarget
from rotation.errors import PushError
from rotation.targets import Delivery, Held, PushResult, refused, supersedes

__all__ = ["AtomicFileTarget", "UnsafeDirectory", "open_directory_under", "write_private_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafeDirectory(Exception):
    """A directory on the way to a target file is a symbolic link, not a directory, outside the
    allowed directories, or world-writable, or what stands at the file's name is not a regular
    file; the message names it and the fix."""


def _check_not_world_writable(fd: int, shown: PurePath) -> None:
    mode = os.fstat(fd).st_mode
    if mode & stat.S_IWOTH:
        raise UnsafeDirectory(f"directory {shown} is world-writable (mode {stat.S_IMODE(mode):04o}); "
                              f"make it writable by the rotator only (chmod o-w {shown})")


def _relative_to_allowed(path: Path, allowed: Iterable[Path]) -> tuple[Path, PurePath]:
    """``(allowed directory, path below it)`` for ``path``; the allowed directory may be spelled
    through a symbolic link it resolves to (the load-time check resolves links the same way)."""
    for root in allowed:
        for spelled in (root, Path(os.path.realpath(root))):
            with contextlib.suppress(ValueError):
                rel = path.relative_to(spelled)
                if rel.parts:
                    return root, rel
        real_root = os.path.realpath(root)
        for depth in range(1, len(path.parts)):      # a path that reaches the root through a link
            prefix = Path(*path.parts[:depth])
            if os.path.realpath(prefix) == real_root:
                return root, PurePath(*path.parts[depth:])
    shown = ":".join(str(d) for d in allowed) or "none"
    raise UnsafeDirectory(f"{path} is not inside ROTATION_FILE_TARGET_DIRS ({shown})")


def open_directory_under(root: Path, parts: Iterable[str], *, create: bool = True,
                         dir_mode: int = 0o700) -> int:
    """A descriptor of directory ``root/parts...``, reached component by component with
    ``O_NOFOLLOW`` relative to the previous descriptor; missing directories are made with
    ``dir_mode`` when ``create``. Every directory from ``root`` down must not be world-writable.
    The caller closes the descriptor. Raises :class:`UnsafeDirectory`, ``OSError``."""
    fd = os.open(root, _DIR_FLAGS)
    shown = PurePath(root)
    try:
        _check_not_world_writable(fd, shown)
        for name in parts:
            shown = shown / name
            try:
                nxt = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_mode, dir_fd=fd)
                try:
                    nxt = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except (NotADirectoryError, OSError) as exc:
                    raise _not_a_directory(exc, shown, root) from exc
            except OSError as exc:
                raise _not_a_directory(exc, shown, root) from exc
            os.close(fd)
            fd = nxt
            _check_not_world_writable(fd, shown)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _not_a_directory(exc: OSError, shown: PurePath, root: Path) -> Exception:
    import errno

    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return UnsafeDirectory(f"{shown} is a symbolic link or not a directory; directories below {root} "
                               "must be real directories (a link could send the key elsewhere)")
    return exc


def write_into_directory(dir_fd: int, name: str, payload: bytes) -> None:
    """Replace entry ``name`` of directory ``dir_fd`` atomically with ``payload``, mode 0600 from
    its creation (``O_CREAT|O_EXCL|O_NOFOLLOW``), fsynced with the directory. Raises ``OSError``."""
    tmp = f".{name}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


@contextlib.contextmanager
def _directory(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def write_private_file(path: str | Path, data: str | bytes, *, dir_mode: int = 0o700) -> None:
    """Replace ``path`` atomically with ``data``, readable by the owner only (mode 0600 from its
    creation), fsynced with its directory. A missing parent directory is created with
    ``dir_mode``. Raises ``OSError``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with _directory(os.open(path.parent, _DIR_FLAGS)) as dfd:
        write_into_directory(dfd, path.name, payload)


@contextlib.contextmanager
def _locked(dir_fd: int, name: str) -> Iterator[None]:
    """Hold an exclusive ``flock(2)`` on ``.<name>.lock`` in directory ``dir_fd`` (created 0600, no
    secret, never through a symbolic link); the kernel releases it when the holder dies. Raises ``OSError``."""
    fd = os.open(f".{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)      # closing the descriptor releases the lock


def _remove_leftovers(dir_fd: int, name: str) -> list[str]:
    """Remove temporary files of :func:`write_into_directory` for ``name`` (``.<name>.<random>``)
    that a killed writer left behind; call it holding :func:`_locked`. Returns the names removed."""
    removed = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if not entry.name.startswith(f".{name}.") or entry.name == f".{name}.lock" \
                    or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=dir_fd)
                removed.append(entry.name)
    return removed


def _read_held(dir_fd: int, name: str) -> Held | None:
    """What file ``name`` of ``dir_fd`` holds (:class:`~rotation.targets.Held`), ``None`` when it
    does not exist; a file that is not our JSON counts as serial 0, fence 0 (any write replaces it).
    Never follows a symbolic link and never blocks on what stands at the name (opened
    ``O_NONBLOCK``): a FIFO, device or directory there is :class:`UnsafeDirectory`. Raises ``OSError``."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafeDirectory(f"{name} is not a regular file (a FIFO, device or directory stands at the "
                                  "target's name); remove it, the next push writes the key file")
        raw = f.read(1 << 20)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):     # not our JSON (or nested past the parser's depth)
        return Held(0, 0)
    if not isinstance(data, dict):
        return Held(0, 0)
    serial, fence = _count(data.get("serial")), _count(data.get("fence", 0))
    return Held(serial, fence, data.get("key_id") if isinstance(data.get("key_id"), str) else None)


def _count(value: object) -> int:
    """A serial or fence from the file: a non-negative JSON integer (``true`` is no number), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class AtomicFileTarget:
    """Write each new key to ``spec.path``, below one of ``allowed_dirs`` (the setting
    ``ROTATION_FILE_TARGET_DIRS``; ``None``: the file's parent directory is the allowed one)."""

    def __init__(self, spec: FileTarget, *, allowed_dirs: Iterable[Path] | None = None) -> None:
        self.path = Path(spec.path)
        self.required = spec.required
        self.target_id = spec.target_id
        self.allowed_dirs = tuple(allowed_dirs) if allowed_dirs is not None else (self.path.parent,)

    def _open_parent(self, *, create: bool = True) -> int:
        """A descriptor of the file's directory, reached safely (module docstring)."""
        root, rel = _relative_to_allowed(self.path, self.allowed_dirs)
        if create:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return open_directory_under(root, rel.parts[:-1], create=create)

    def preflight(self, consumer: str = "") -> str | None:
        """Why a push would be refused, checked before a rotation changes anything, or ``None``:
        the directories that exist so far are checked as the write would check them."""
        try:
            os.close(self._open_parent(create=False))
        except UnsafeDirectory as exc:
            return str(exc)
        except OSError:
            return None             # missing yet: made at write time
        return None

    def push(self, delivery: Delivery) -> PushResult:
        """Replace the file with ``delivery`` unless it holds a newer ``(fence, serial)``
        (:func:`rotation.targets.supersedes`), all under the file's lock, through the directory
        descriptor reached safely (module docstring). Never raises."""
        payload = json.dumps({"consumer": delivery.consumer, "serial": delivery.serial, "key_id": delivery.key_id,
                              "api_key": delivery.value, "fence": delivery.fence}).encode()
        try:
            with _directory(self._open_parent()) as dfd, _locked(dfd, self.path.name):
                _remove_leftovers(dfd, self.path.name)
                held = _read_held(dfd, self.path.name)
                if held is not None and not supersedes(delivery.serial, delivery.fence, held):
                    return refused(self.target_id, delivery, held)
                write_into_directory(dfd, self.path.name, payload)
            return PushResult(self.target_id, True, "written")
        except UnsafeDirectory as exc:
            return PushResult(self.target_id, False, f"not written: {exc}")
        except OSError as exc:
            return PushResult(self.target_id, False, f"{type(exc).__name__}: {exc.strerror or 'I/O error'}")

    def read_back(self, consumer: str) -> Held | None:
        """What the file holds now (no lock: the replace is atomic). Raises ``PushError``."""
        try:
            with _directory(self._open_parent(create=False)) as dfd:
                return _read_held(dfd, self.path.name)
        except FileNotFoundError:
            return None
        except UnsafeDirectory as exc:
            raise PushError(f"{self.target_id}: cannot read it back: {exc}") from None
        except OSError as exc:
            raise PushError(f"{self.target_id}: cannot read it back: {exc.strerror or 'I/O error'}") from None
