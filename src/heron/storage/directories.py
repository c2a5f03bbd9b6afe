"""Staged directories published atomically: the rule every index, bundle, model and checkpoint follows.

A directory is built in a *staging* sibling of its target (same filesystem), every file and folder in
it is fsynced, and then it takes the target's place in one step: ``renameat2(RENAME_EXCHANGE)`` swaps
the two where the kernel supports it; elsewhere the old target is renamed to ``.<name>.old`` and the
staging directory to the target, and :func:`recover` (called by every publish and by builders before
they start) puts the old one back if a process died between the two renames. The previous version is
deleted only once the new one is in place.

``HERON_TEST_KILL_AT`` (test-only): ``publish`` makes the process SIGKILL itself right before the swap,
``published`` right after it (before the old version is removed).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from heron.storage.files import fsync_path, fsync_tree
from heron.storage.integrity import make_read_only

KILL_ENV = "HERON_TEST_KILL_AT"


def _maybe_kill(point: str) -> None:
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _old(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(target: str | os.PathLike) -> None:
    """Finish or undo a publish cut short: restore ``.<name>.old`` if the target is missing, remove it
    otherwise, and remove staging directories of dead processes."""
    target = Path(target)
    old = _old(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, target)
            fsync_path(target.parent)
    if target.parent.is_dir():
        for leftover in target.parent.glob(f".{target.name}.staged-*"):
            pid = leftover.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def staging_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty staging directory beside ``target`` (``.<name>.staged-<pid>``)."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = target.parent / f".{target.name}.staged-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish(staging: str | os.PathLike, target: str | os.PathLike, *, durable: bool = True) -> Path:
    """Make the finished directory ``staging`` the new ``target``; any previous ``target`` is replaced
    only once the new one is in place, then deleted. Its files are made read-only first (its folders stay
    writable, so a later publish or clean-up can remove them). Returns the target path."""
    staging, target = Path(staging), Path(target)
    make_read_only(staging)
    if durable:
        fsync_tree(staging)
    recover(target)
    parent = target.parent
    if target.exists() or target.is_symlink():
        _maybe_kill("publish")
        if _exchange(staging, target):
            fsync_path(parent)
            _maybe_kill("published")
            shutil.rmtree(staging)  # it now holds the previous version
            return target
        os.rename(target, _old(target))
        os.rename(staging, target)
        fsync_path(parent)
        _maybe_kill("published")
        shutil.rmtree(_old(target))
    else:
        _maybe_kill("publish")
        os.rename(staging, target)
        fsync_path(parent)
    return target


@contextlib.contextmanager
def scratch(target: str | os.PathLike, label: str) -> Iterator[Path]:
    """A temporary working directory beside ``target`` (``.<name>.staged-<label>-<pid>``), removed on exit;
    if the process is killed, the next :func:`recover` of ``target`` removes it."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = target.parent / f".{target.name}.staged-{label}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def staged(target: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """``with staged(target) as tmp:`` write into ``tmp``; on normal exit it is published as ``target``,
    on an exception it is removed and ``target`` is left as it was."""
    target = Path(target).absolute()
    staging = staging_dir(target)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, target, durable=durable)
