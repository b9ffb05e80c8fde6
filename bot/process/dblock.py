"""One bot process per database: an exclusive ``flock`` on ``<SDBOT_DB>.lock``."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from bot.errors import ConfigError, db_unavailable

try:
    import fcntl
except ImportError:  # Windows: no flock; the rule stays documented only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


def lock_path(db: Path) -> Path:
    """``<db>.lock`` beside the file itself: symlinks (to the file or a folder on the way), relative paths and
    ``..`` resolved, so every spelling of one database takes the same lock. (Two hard links to one file are
    two names no resolution joins: see the module documentation.)"""
    real = Path(os.path.realpath(db))
    return real.with_name(real.name + ".lock")


class DatabaseLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's end)."""

    def __init__(self, fd: int | None, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, db: Path) -> DatabaseLock:
        """Lock ``db`` for this process. Raises ``ConfigError("db_in_use")`` naming ``SDBOT_DB`` when another
        process holds it, ``db_unavailable`` when the lock file cannot be opened."""
        path = lock_path(db)
        _warn_if_hard_linked(db)
        if fcntl is None:
            return cls(None, path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise db_unavailable(db, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise ConfigError("db_in_use", variable="SDBOT_DB", path=str(db), pid=holder) from None
        except OSError as exc:  # a file system without locks
            os.close(fd)
            raise db_unavailable(db, exc) from None
        with contextlib.suppress(OSError):  # the pid only makes the message of a refused second bot clearer
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        """Unlock (closing the descriptor unlocks). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "?"


def _warn_if_hard_linked(db: Path) -> None:
    """Say so when the database file has other names (hard links): a bot started through one of them would
    not find this lock, and SQLite would give it a journal of its own."""
    try:
        links = os.stat(db).st_nlink
    except OSError:
        return  # not created yet (or unreadable: opening it will say why)
    if links > 1:
        log.warning(
            "%s has %s hard links: the one-bot lock cannot see the other names, and SQLite keeps a separate "
            "journal per name; remove the extra links (use a symlink or one path) so no two processes use two names",
            db,
            links,
        )
