"""Showing a worklist that cannot be written: a read-only folder or file system, permissions, a ``mode=ro`` URL.

Opening the store writes (the WAL pragma, pending migrations); when SQLite refuses, the file is opened again
read-only so the cases can still be viewed, provided the migrations the queries read from have been applied.
"""

from __future__ import annotations

from sqlalchemy import Engine, exc

from core.worklist.schema import MIGRATIONS_NEEDED_TO_READ, WorklistError, applied_migrations, create_worklist_engine
from core.worklist.sqlite import read_only_sqlite_urls, sqlite_file_path

_REFUSED_WRITE = ("readonly", "read-only", "unable to open")


def open_read_only(url: str, error: exc.DBAPIError, *, echo: bool = False) -> tuple[Engine, str] | None:
    """An engine that reads the SQLite file of ``url`` and the note to show, or None when ``error`` (raised while
    opening it) is not a refused write or the file cannot be read either.

    Raises ``WorklistError`` when the file reads but lacks migrations the queries need (it cannot be upgraded here).
    """
    if not any(word in str(error.orig).lower() for word in _REFUSED_WRITE):
        return None
    for fallback in read_only_sqlite_urls(url):
        engine = create_worklist_engine(fallback, echo=echo)
        try:
            with engine.connect() as conn:
                missing = sorted(MIGRATIONS_NEEDED_TO_READ - applied_migrations(conn))
            break
        except exc.DBAPIError:
            engine.dispose()
    else:
        return None
    if missing:
        engine.dispose()
        raise WorklistError(f"the worklist database {url} cannot be written ({error.orig}) and its schema lacks "
                            f"migrations {missing} needed to read it; open it once where it can be written") from error
    note = f"the worklist database is read-only ({error.orig}): cases can be viewed, not changed"
    wal = sqlite_file_path(url).with_name(sqlite_file_path(url).name + "-wal")
    if "immutable=1" in fallback and wal.is_file() and wal.stat().st_size:
        note += "; changes still in its -wal file are not shown"
    return engine, note
