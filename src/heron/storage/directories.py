"""Staged directories published atomically: the rule every index, bundle, model and checkpoint follows.

A directory is built in a *staging* sibling of its target (same filesystem), every file and folder in
it is fsynced, and then it takes the target's place in one step: ``renameat2(RENAME_EXCHANGE)`` swaps
the two where the kernel supports it; elsewhere the old target is renamed to ``.<name>.old`` and the
staging directory to the target, and :func:`recover` (called by every publish and by builders before
they start) puts the old one back if a process died between the two renames. The previous version is
deleted only once the new one is in place.

**Who owns a leftover.** A staging or scratch directory is named ``.<name>.staged-[<label>-]<pid>`` and its
creator holds an exclusive ``flock`` on the directory itself for as long as it uses it. The kernel drops the
lock when the process ends, however it ends (SIGKILL included), so :func:`recover` removes exactly the
directories whose lock it can take: those of dead builds, never one of a build still running (in this
process or another, whatever its pid namespace), and never depending on a pid that may have been reused. On
a filesystem without ``flock`` it falls back to "the pid in the name is not a live process".

:func:`build_lock` serialises the builds of one target (``.<name>.lock``, also an ``flock``): resumable
state kept beside a target between runs (an inverted index's ``.<name>.building``, a bundle's
``.<name>.partial``) is touched only under it.

Test hook (:mod:`heron.storage.killpoints`): ``HERON_TEST_KILL_AT=publish`` SIGKILLs the process right before
the swap, ``published`` right after it (before the old version is removed).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import errno
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from heron.errors import HeronError
from heron.storage.files import fsync_path, fsync_tree
from heron.storage.integrity import make_read_only
from heron.storage.killpoints import kill_point

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None

_claimed: dict[str, int] = {}  # staging / scratch directories this process owns → the fd holding their flock
_locks_held: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("heron_build_locks", default=frozenset())


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


def _claim(folder: Path) -> None:
    """Create the empty directory ``folder`` and hold an exclusive flock on it until :func:`_release`."""
    while True:
        if not _remove_if_abandoned(folder):
            raise HeronError(f"{folder}: in use by another running process")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        if fcntl is None:  # pragma: no cover
            return
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # a concurrent recover took it between mkdir and open: start again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits while a concurrent recover is removing it
        except OSError:  # no flock on this filesystem: recover falls back to the pid in the name
            os.close(fd)
            return
        try:
            if os.stat(folder).st_ino == os.fstat(fd).st_ino:
                _claimed[str(folder)] = fd
                return
        except FileNotFoundError:
            pass
        os.close(fd)  # a concurrent recover removed the directory we locked: make a new one


def _release(folder: Path) -> None:
    fd = _claimed.pop(str(folder), None)
    if fd is not None:
        os.close(fd)


def _remove_if_abandoned(folder: Path) -> bool:
    """Remove a staging or scratch directory whose owner is gone (see the module notes); True when no such
    directory is left."""
    if str(folder) in _claimed:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # not a directory, or unreadable: not ours to remove
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive
        except (OSError, AttributeError):  # no flock here (or no fcntl): judge by the pid in the name
            pid = folder.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or (int(pid) != os.getpid() and _pid_alive(int(pid))):
                return False
        shutil.rmtree(folder, ignore_errors=True)  # holding its lock: a new claimant waits, then starts afresh
        return not os.path.lexists(folder)
    finally:
        os.close(fd)


def recover(target: str | os.PathLike) -> None:
    """Finish or undo a publish cut short: restore ``.<name>.old`` if the target is missing, remove it
    otherwise, and remove the staging and scratch directories of builds that are no longer running."""
    target = Path(target).absolute()
    old = _old(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, target)
            fsync_path(target.parent)
    if target.parent.is_dir():
        for leftover in target.parent.glob(f".{target.name}.staged-*"):
            _remove_if_abandoned(leftover)


def staging_dir(target: str | os.PathLike) -> Path:
    """A fresh, empty staging directory beside ``target`` (``.<name>.staged-<pid>``), owned by this process
    until it is published (:func:`publish`) or removed (:func:`discard`)."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    staging = target.parent / f".{target.name}.staged-{os.getpid()}"
    _release(staging)
    _claim(staging)
    return staging


def discard(staging: str | os.PathLike) -> None:
    """Remove an unpublished staging or scratch directory and give up its ownership."""
    staging = Path(staging).absolute()
    shutil.rmtree(staging, ignore_errors=True)
    _release(staging)


def publish(staging: str | os.PathLike, target: str | os.PathLike, *, durable: bool = True) -> Path:
    """Make the finished directory ``staging`` the new ``target``; any previous ``target`` is replaced
    only once the new one is in place, then deleted. Its files are made read-only first (its folders stay
    writable, so a later publish or clean-up can remove them). Returns the target path."""
    staging, target = Path(staging), Path(target)
    make_read_only(staging)
    if durable:
        fsync_tree(staging)
    recover(target)
    try:
        return _swap(staging, target)
    finally:
        _release(staging.absolute())  # it is the target now (or gone): nobody's leftover


def _swap(staging: Path, target: Path) -> Path:
    parent = target.parent
    if target.exists() or target.is_symlink():
        kill_point("publish")
        if _exchange(staging, target):
            fsync_path(parent)
            kill_point("published")
            shutil.rmtree(staging)  # it now holds the previous version
            return target
        os.rename(target, _old(target))
        os.rename(staging, target)
        fsync_path(parent)
        kill_point("published")
        shutil.rmtree(_old(target))
    else:
        kill_point("publish")
        os.rename(staging, target)
        fsync_path(parent)
    return target


@contextlib.contextmanager
def scratch(target: str | os.PathLike, label: str) -> Iterator[Path]:
    """A temporary working directory beside ``target`` (``.<name>.staged-<label>-<pid>``), removed on exit;
    if the process is killed, the next :func:`recover` of ``target`` removes it."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    folder = target.parent / f".{target.name}.staged-{label}-{os.getpid()}"
    _release(folder)
    _claim(folder)
    try:
        yield folder
    finally:
        discard(folder)


@contextlib.contextmanager
def staged(target: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """``with staged(target) as tmp:`` write into ``tmp``; on normal exit it is published as ``target``,
    on an exception it is removed and ``target`` is left as it was."""
    target = Path(target).absolute()
    staging = staging_dir(target)
    try:
        yield staging
    except BaseException:
        discard(staging)
        raise
    publish(staging, target, durable=durable)


@contextlib.contextmanager
def build_lock(target: str | os.PathLike, what: str = "index", wait: bool = False) -> Iterator[Path]:
    """``with build_lock(target):`` hold ``.<name>.lock`` (an exclusive ``flock``) so that one build of
    ``target`` runs at a time; another process gets a one-line HeronError at once, naming ``what`` it builds
    — or, with ``wait=True`` (caches that any process may fill: check again once the lock is held), waits
    for the other build to end.
    Nested uses for the same target in one call chain (a pipeline around a builder that locks too) share the
    outer lock. The lock file is removed on release; a killed build leaves it behind unlocked, and the next
    build takes it."""
    target = Path(target).absolute()
    path = target.parent / f".{target.name}.lock"
    held = _locks_held.get()
    if str(path) in held:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire_lock_file(path, what, wait)
    token = _locks_held.set(held | {str(path)})
    try:
        yield path
    finally:
        _locks_held.reset(token)
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # while still holding the lock; see the inode check in _acquire_lock_file
            os.close(fd)


def build_once(target: str | os.PathLike, build, what: str, done=None) -> bool:
    """Fill ``target``, a cache entry any process may fill: ``build()`` unless ``done()`` (default: ``target``
    is a directory), under :func:`build_lock` with ``wait=True`` and checking ``done()`` again once the lock
    is held (another process may have built it meanwhile). True when this call built it."""
    target = Path(target)
    done = done or target.is_dir
    if done():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target, what, wait=True):
        if done():
            return False
        build()
        return True


def _acquire_lock_file(path: Path, what: str, wait: bool = False) -> int | None:
    if fcntl is None:  # pragma: no cover
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HeronError(f"{path}: another build of this {what} is running") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the lock file was replaced while we waited: lock the current one
