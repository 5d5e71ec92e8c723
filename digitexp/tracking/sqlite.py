"""The embedded sqlite store: one process creates the schema under a file lock, write-ahead
logging lets readers and the writer proceed together, and a locked database is retried."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("digitexp.tracking")

LOCK_RETRY_SECONDS = 60.0


def is_locked(message: str) -> bool:
    return "database is locked" in message or "database table is locked" in message


def is_full(message: str) -> bool:
    """A write failed for lack of space (or a file-size limit: sqlite says "disk I/O error")."""
    return any(
        words in message
        for words in ("database or disk is full", "disk I/O error", "No space left", "too large")
    )


def is_store_error(exc: BaseException) -> bool:
    """An error of the database layer under MLflow (sqlite3, SQLAlchemy) that MLflow let
    through unwrapped."""
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("sqlalchemy")


def checkpoint_wal(db: Path) -> bool:
    """Move the write-ahead log into the database and truncate it: after a write failed for
    lack of space, the next small write (a run's final status) fits again. True when done."""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0
    except sqlite3.Error as exc:
        log.debug("could not checkpoint %s: %s", db, exc)
        return False


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX); a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def enable_wal(db: Path) -> None:
    """Write-ahead logging: readers and the writer of a sqlite store stop blocking each other."""
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.debug("could not turn on WAL for %s: %s", db, exc)
