"""Issue 20, item 10: the file target checks its directory where the write happens, not only when
the consumers file is loaded. Real files and directories (tmp_path), no mocks: a directory below
the allowed one that is a symbolic link (made, or swapped in, after loading) is refused, the write
goes through directory descriptors so a swap during it cannot redirect it, and a world-writable
directory is refused with the fix."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rotation.config import FileTarget
from rotation.targets import Delivery
from rotation.targets.file import AtomicFileTarget, open_directory_under, write_into_directory

DELIVERY = Delivery("crm", 3, "rot-3", "kid3", "v" * 40)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "crm").mkdir(parents=True, mode=0o700)
    outside.mkdir(mode=0o700)
    return allowed, outside


def _target(allowed: Path, *rel: str) -> AtomicFileTarget:
    return AtomicFileTarget(FileTarget(type="file", path=allowed.joinpath(*rel)), allowed_dirs=(allowed,))


def test_a_parent_directory_replaced_by_a_symlink_after_loading_is_refused_at_write_time(dirs):
    allowed, outside = dirs
    target = _target(allowed, "crm", "api.key")          # checked and accepted as it stood
    (allowed / "crm").rename(allowed / "crm.old")
    (allowed / "crm").symlink_to(outside)                # then the parent becomes a link outside
    result = target.push(DELIVERY)
    assert result.ok is False
    assert "symbolic link" in result.detail and str(allowed / "crm") in result.detail
    assert list(outside.iterdir()) == []                 # nothing written where the link points
    assert target.preflight() is not None and "symbolic link" in target.preflight()


def test_a_swap_during_the_write_cannot_redirect_it_outside(dirs):
    """The directory is held by descriptor: swapping its path for a link between opening it and
    writing (the race the load-time check cannot see) leaves the key in the real directory."""
    allowed, outside = dirs
    fd = open_directory_under(allowed, ["crm"])
    try:
        (allowed / "crm").rename(allowed / "crm.moved")
        (allowed / "crm").symlink_to(outside)
        write_into_directory(fd, "api.key", b"{}")
    finally:
        os.close(fd)
    assert list(outside.iterdir()) == []
    assert (allowed / "crm.moved" / "api.key").read_bytes() == b"{}"


@pytest.mark.parametrize("which", ["parent", "allowed"])
@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o703])
def test_a_world_writable_target_directory_is_refused_with_the_fix(dirs, which, mode):
    allowed, _ = dirs
    d = allowed / "crm" if which == "parent" else allowed
    d.chmod(mode)
    target = _target(allowed, "crm", "api.key")
    result = target.push(DELIVERY)
    assert result.ok is False
    assert f"directory {d} is world-writable" in result.detail and f"chmod o-w {d}" in result.detail
    assert not (allowed / "crm" / "api.key").exists()
    assert "world-writable" in (target.preflight() or "")


def test_a_path_outside_the_allowed_directories_is_refused_at_write_time(dirs):
    allowed, outside = dirs
    target = AtomicFileTarget(FileTarget(type="file", path=outside / "api.key"), allowed_dirs=(allowed,))
    result = target.push(DELIVERY)
    assert result.ok is False and "ROTATION_FILE_TARGET_DIRS" in result.detail
    assert list(outside.iterdir()) == []


def test_a_safe_directory_is_written_atomically_owner_only_creating_missing_directories(dirs):
    allowed, _ = dirs
    target = _target(allowed, "crm", "new", "api.key")
    assert target.preflight() is None
    result = target.push(DELIVERY)
    assert result.ok, result.detail
    f = allowed / "crm" / "new" / "api.key"
    assert json.loads(f.read_text())["serial"] == 3
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    # no temp file left; the fencing lock file (no secret in it) stays beside the key
    assert sorted(p.name for p in f.parent.iterdir()) == [".api.key.lock", "api.key"]
    assert (f.parent / ".api.key.lock").read_bytes() == b""


def test_an_allowed_directory_spelled_through_a_link_still_works(tmp_path, dirs):
    """The allowed directory itself is the operator's choice: a link to it (e.g. /var/run ->
    /run) is followed; only the directories below it must be real."""
    allowed, _ = dirs
    (tmp_path / "alias").symlink_to(allowed)
    target = AtomicFileTarget(FileTarget(type="file", path=tmp_path / "alias" / "crm" / "api.key"),
                              allowed_dirs=(allowed,))
    assert target.push(DELIVERY).ok
    assert (allowed / "crm" / "api.key").exists()


def test_a_fifo_at_the_key_files_name_is_refused_without_blocking_the_push_or_the_read_back(dirs):
    """Anyone who can write the directory could plant a FIFO where the key file goes: reading it
    would block the push (under its lock) and every run's read-back forever. It is refused at once
    (the test's timeout is the bound)."""
    allowed, _ = dirs
    os.mkfifo(allowed / "crm" / "api.key", 0o600)
    target = _target(allowed, "crm", "api.key")
    result = target.push(DELIVERY)
    assert result.ok is False and "not a regular file" in result.detail
    from rotation.errors import PushError
    with pytest.raises(PushError, match="not a regular file"):
        target.read_back("crm")


@pytest.mark.parametrize("content", [
    "[" * 100_000 + "]" * 100_000,                                    # past the JSON parser's depth
    json.dumps({"serial": True, "fence": True, "key_id": "kid1"}),   # true is no number
    json.dumps({"serial": -5, "fence": -1}),
])
def test_a_key_file_that_is_not_ours_reads_as_serial_zero_and_is_replaced(dirs, content):
    allowed, _ = dirs
    f = allowed / "crm" / "api.key"
    f.write_text(content)
    target = _target(allowed, "crm", "api.key")
    held = target.read_back("crm")
    assert held is not None and (held.serial, held.fence) == (0, 0)
    assert type(held.serial) is int and type(held.fence) is int
    assert target.push(DELIVERY).ok
    assert json.loads(f.read_text())["serial"] == 3
