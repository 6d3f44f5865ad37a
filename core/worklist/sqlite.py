"""SQLite specifics of the worklist: locating the file of a URL, reading it read-only, and the triggers that keep
the audit trail whole from any connection (migration 3)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import make_url

_NO_OVERWRITE_MESSAGE = "audit_events is append-only: REPLACE or INSERT over an existing event refused"

# Triggers fire on every connection, whatever its pragmas: another program opening the SQLite file (foreign keys
# are off by default outside this store) can no more rewrite the trail or orphan it than the store can.
# REPLACE deletes the conflicting row without firing DELETE triggers, hence the BEFORE INSERT checks.
SQLITE_INTEGRITY_TRIGGERS = [
    f"""CREATE TRIGGER audit_events_no_overwrite BEFORE INSERT ON audit_events
        WHEN EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id
                     OR (case_id = NEW.case_id AND case_version = NEW.case_version))
        BEGIN SELECT RAISE(ABORT, '{_NO_OVERWRITE_MESSAGE}'); END""",
    """CREATE TRIGGER audit_events_known_case BEFORE INSERT ON audit_events
        WHEN NOT EXISTS (SELECT 1 FROM cases WHERE id = NEW.case_id)
        BEGIN SELECT RAISE(ABORT, 'audit event for an unknown case refused'); END""",
    """CREATE TRIGGER cases_no_replace BEFORE INSERT ON cases
        WHEN EXISTS (SELECT 1 FROM cases WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'cases: REPLACE or INSERT over an existing case refused'); END""",
    """CREATE TRIGGER cases_keep_audited BEFORE DELETE ON cases
        WHEN EXISTS (SELECT 1 FROM audit_events WHERE case_id = OLD.id)
        BEGIN SELECT RAISE(ABORT, 'a case with an audit trail cannot be deleted'); END""",
]


def sqlite_file_path(url: str) -> Path:
    """The file of a SQLite URL, plain (``sqlite:///path``) or URI form (``sqlite:///file:path?mode=ro&uri=true``)."""
    database = make_url(url).database or ""
    return Path(database.removeprefix("file:")).expanduser()


def read_only_sqlite_urls(url: str) -> list[str]:
    """URLs that read the same SQLite file without writing it, best first (none for other databases).

    ``mode=ro`` still reads the write-ahead log; it needs the ``-shm`` file (or a folder it can be created in).
    ``immutable=1`` needs nothing but the file: what a read-only folder leaves, at the price of ignoring changes
    still in the ``-wal`` file.
    """
    if make_url(url).get_backend_name() != "sqlite":
        return []
    path = sqlite_file_path(url).resolve().as_posix()
    return [f"sqlite:///file:{path}?mode=ro&uri=true", f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true"]
