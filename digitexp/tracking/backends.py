"""What a tracking URI points at, checked before MLflow touches it.

MLflow takes almost any string as a tracking URI and fails late, with a traceback, or worse,
succeeds wrongly: a bare word becomes its deprecated file store, an unknown scheme or a
missing database driver raise deep in its registry, an unreachable database is retried for a
minute and a half, and a database of another tool silently gets MLflow's tables added. So
:func:`check_uri` accepts only the forms digitexp supports (:data:`SUPPORTED`), and
:func:`check_database` / :func:`check_sqlite_file` look at the database itself first.

A new embedded store is created atomically (:func:`create_sqlite_store`): its schema is built
in a temporary file beside it and linked into place only if no file is there yet, so another
MLflow client (the UI, a notebook) opening the same new store at the same moment never sees a
half-migrated database, and never migrates it at the same time as digitexp ("duplicate
column" in MLflow's schema migration). When the other client got there first, digitexp waits
until its migration is complete instead of starting a second one.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from digitexp.errors import TrackingError, first_line
from digitexp.tracking.uri import mask_text, mask_uri

log = logging.getLogger("digitexp.tracking")

SUPPORTED = (
    "sqlite:///PATH.db (the embedded store; default sqlite:///mlruns/mlflow.db), "
    "postgresql+psycopg://USER@HOST:PORT/DB (or another SQLAlchemy database URL whose driver "
    "is installed), http(s)://HOST:PORT (an MLflow tracking server)"
)
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
MLFLOW_TABLES = frozenset({"experiments", "runs"})  # present in every MLflow database
SQLITE_HEADER = b"SQLite format 3\x00"
CONNECT_TIMEOUT_S = 5
MIGRATION_WAIT_S = 120.0  # the longest wait for another client's schema migration
QUIET_S = 3.0  # a database unchanged this long is not being migrated by anyone

Kind = Literal["sqlite", "database", "server"]


@dataclass(frozen=True)
class Backend:
    kind: Kind
    uri: str


def _refuse(uri: str, what: str) -> TrackingError:
    return TrackingError(f"tracking URI {mask_uri(uri)!r}: {what}")


def check_uri(uri: str) -> Backend:
    """The kind of store ``uri`` names; TrackingError (listing the supported forms) for any
    other URI."""
    if not uri or uri != uri.strip():
        raise _refuse(uri, f"empty or padded with spaces; use one of: {SUPPORTED}")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _refuse(
            uri,
            "a bare path, which MLflow would take as its deprecated file store; use "
            f"sqlite:///{uri.rstrip('/') or 'mlruns'}/mlflow.db, or one of: {SUPPORTED}",
        )
    base = scheme.split("+", 1)[0].lower()
    if base in ("http", "https"):
        if not rest.strip("/"):
            raise _refuse(uri, "no host; use http(s)://HOST:PORT")
        return Backend("server", uri)
    if base == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if not path or path == ":memory:" or "?" in path:
            raise _refuse(
                uri,
                "an in-memory or parameterised sqlite URL keeps nothing; use sqlite:///PATH.db",
            )
        return Backend("sqlite", uri)
    if base in DATABASE_SCHEMES:
        return Backend("database", uri)
    if base == "file":
        raise _refuse(
            uri,
            "MLflow's file store is deprecated (it refuses new writes); use "
            f"sqlite:///PATH/mlflow.db, or one of: {SUPPORTED}",
        )
    raise _refuse(uri, f"unsupported scheme {scheme!r}; use one of: {SUPPORTED}")


# --------------------------------------------------------------------------- databases


def _engine(uri: str):  # type: ignore[no-untyped-def]
    """A SQLAlchemy engine for ``uri`` (nothing connects yet); one line when the URL or its
    driver is wrong."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = sqlalchemy.engine.make_url(uri)
        dialect = url.get_dialect()
        dialect.import_dbapi()
    except (ArgumentError, ValueError) as exc:
        raise _refuse(uri, f"not a valid database URL ({first_line(exc)[:150]})") from None
    except NoSuchModuleError:
        raise _refuse(uri, f"SQLAlchemy has no dialect {url.drivername!r}") from None
    except ImportError as exc:
        hint = ""
        if url.get_backend_name() == "postgresql":
            hint = " (psycopg 3 is the one digitexp[queue] installs: postgresql+psycopg://...)"
        raise _refuse(
            uri, f"its database driver is not installed ({first_line(exc)}){hint}"
        ) from None
    args = {}
    if url.get_backend_name() in ("postgresql", "mysql"):
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    return sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)


def _foreign(uri: str, tables: set[str]) -> TrackingError | None:
    if not tables or tables >= MLFLOW_TABLES:
        return None
    shown = ", ".join(sorted(tables)[:5]) + (" ..." if len(tables) > 5 else "")
    return _refuse(
        uri,
        f"this database belongs to another tool (tables {shown}) and MLflow would add its own "
        "tables to it; point MLFLOW_TRACKING_URI at a new, empty database",
    )


def check_database(uri: str) -> None:
    """A database server URL: its driver is installed, the server answers within a few
    seconds, and the database is empty or MLflow's."""
    import sqlalchemy

    engine = _engine(uri)
    try:
        with engine.connect() as conn:
            tables = set(sqlalchemy.inspect(conn).get_table_names())
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise _refuse(
            uri, f"database unreachable ({mask_text(first_line(reason))[:200]})"
        ) from None
    finally:
        engine.dispose()
    problem = _foreign(uri, tables)
    if problem is not None:
        raise problem


# --------------------------------------------------------------------------- sqlite


def _sqlite_tables(db: Path) -> set[str] | None:
    """The tables of an sqlite file, read-only; None when it is not a readable database."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return {r[0] for r in rows}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def check_sqlite_file(uri: str, db: Path) -> None:
    """What is at the sqlite path is nothing yet, an empty file, or an MLflow database."""
    if db.is_dir():
        raise _refuse(uri, f"{db} is a folder, not a database file; use sqlite:///{db}/mlflow.db")
    if not db.exists() and db.is_symlink():
        raise _refuse(uri, f"{db} is a dangling symbolic link")
    if not db.exists():
        return
    try:
        with open(db, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _refuse(uri, f"{db} cannot be read ({exc.strerror or exc})") from None
    if not header:
        return  # an empty file: a database nobody created yet
    if header != SQLITE_HEADER:
        raise _refuse(
            uri, f"{db} is not an sqlite database; point MLFLOW_TRACKING_URI at a new file"
        )
    tables = _sqlite_tables(db)
    if tables is None:
        raise _refuse(uri, f"{db} is a damaged sqlite database (its schema cannot be read)")
    problem = _foreign(uri, tables)
    if problem is not None:
        raise problem


def _revision(db: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _build_schema(path: Path) -> None:
    """MLflow's schema in a new sqlite file (as an MLflow client would create it), with every
    connection closed afterwards."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
    store.engine.dispose()


@functools.lru_cache(maxsize=1)
def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def create_sqlite_store(db: Path) -> None:
    """Make sure ``db`` is a complete MLflow database before an MLflow client opens it.

    A missing file is built aside and linked into place (atomic, and never over a file that
    appeared meanwhile). An existing file still being migrated by another client is waited
    for; one that nobody touches is left to MLflow (which migrates an empty file, or names
    an old schema that needs ``mlflow db upgrade``)."""
    if not db.exists():
        tmp = db.with_name(f".{db.name}.{os.getpid()}.new")
        tmp.unlink(missing_ok=True)
        try:
            _build_schema(tmp)
            os.link(tmp, db)
            return
        except FileExistsError:
            pass  # another client created it meanwhile: wait for its migration below
        except OSError as exc:  # a file system without hard links: MLflow creates it in place
            log.debug("could not link a new store into %s: %s", db, exc)
            return
        finally:
            tmp.unlink(missing_ok=True)
    head = _head_revision()
    deadline = time.monotonic() + MIGRATION_WAIT_S
    last_change, stamp = time.monotonic(), None
    while time.monotonic() < deadline:
        if _revision(db) == head:
            return
        now_stamp = _stamp(db)
        if now_stamp != stamp:
            stamp, last_change = now_stamp, time.monotonic()
        elif time.monotonic() - last_change > QUIET_S:
            return  # nobody is migrating it: MLflow will (or will say what is wrong)
        time.sleep(0.1)
    log.debug("waited %.0f s for the migration of %s", MIGRATION_WAIT_S, db)


def _stamp(db: Path) -> tuple[int, ...]:
    """Size and mtime of the database and its journals: they move while it is migrated."""
    out: list[int] = []
    for path in (db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
            out += [st.st_size, st.st_mtime_ns]
        except OSError:
            out += [-1, -1]
    return tuple(out)
