"""Database side of the worklist: field validation, engine set-up, tables, versioned migrations.

The worklist lives in SQLite (one file, default) or PostgreSQL (several users). Every schema
change is an ordered, numbered migration function; ``schema_version`` records which ones ran, and
all pending migrations run inside one transaction, so a database is either fully upgraded or
left exactly as it was. :mod:`core.worklist.store` holds the store that uses all this.
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    make_url,
    select,
    text,
)

from core.worklist.migration_4 import migration_4_review, review_audit_columns, review_case_columns
from core.worklist.site_profile_tables import migration_5_site_profiles, site_profile_case_columns
from core.worklist.sqlite import SQLITE_INTEGRITY_TRIGGERS, sqlite_file_path

STATUSES = ("new", "under review", "quarantine follow-up", "cleared")

# Seconds a writer waits for SQLite's single write lock before giving up ("database is locked").
SQLITE_BUSY_TIMEOUT_S = 30.0


def utc_now_iso() -> str:
    """Current time as UTC ISO 8601 with microseconds; sorts correctly as text."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class WorklistError(Exception):
    """A worklist operation was refused: invalid field, unknown case, schema problem, ..."""


class ConflictError(WorklistError):
    """The case changed since the caller read it (optimistic locking on the ``version`` column)."""


# --- Field validation (the store checks every value before anything is written) -------------

_MAX_NAME_CHARS = 128
MAX_NOTE_CHARS = 4000


def check_text(name: str, value: Any, *, required: bool, multiline: bool = False,
               max_chars: int = _MAX_NAME_CHARS) -> str:
    """A string, stripped unless multiline, within the length limit, without control characters."""
    if not isinstance(value, str):
        raise WorklistError(f"{name} must be a string, got {type(value).__name__}")
    if not multiline:
        value = value.strip()
    if required and not value.strip():
        raise WorklistError(f"{name} must not be empty")
    if len(value) > max_chars:
        raise WorklistError(f"{name} is {len(value)} characters long, the limit is {max_chars}")
    allowed_controls = "\n\t" if multiline else ""
    if any(ord(ch) < 32 and ch not in allowed_controls for ch in value):
        raise WorklistError(f"{name} contains control characters: {value!r}")
    return value


def check_note(value: Any) -> str:
    """Free text (new lines allowed) up to MAX_NOTE_CHARS."""
    return check_text("note", value, required=False, multiline=True, max_chars=MAX_NOTE_CHARS)


def check_number(name: str, value: Any, *, low: float | None = None,
                 high: float | None = None, optional: bool = False) -> float | None:
    """A finite real number within [low, high]; None (or NaN from a table) allowed if optional."""
    if optional and (value is None or (isinstance(value, float) and math.isnan(value))):
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise WorklistError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise WorklistError(f"{name} must be finite, got {number}")
    if high is None and low is not None and number < low:
        raise WorklistError(f"{name} must be >= {low}, got {number}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise WorklistError(f"{name} must be in [{low}, {high}], got {number}")
    return number


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise WorklistError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise WorklistError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_status(value: Any) -> str:
    if value not in STATUSES:
        raise WorklistError(f"unknown status {value!r}; expected one of {', '.join(STATUSES)}")
    return value


def _per_model_json(per_model: Any) -> str:
    if not isinstance(per_model, Mapping) or not per_model:
        raise WorklistError("per_model must be a non-empty dict of model name -> risk")
    scores = {check_text("per_model key", name, required=True):
              check_number(f"per_model[{name!r}]", score, low=0.0, high=1.0)
              for name, score in per_model.items()}
    return json.dumps(scores, sort_keys=True)


def _zones_json(zones: Any) -> str | None:
    if zones is None:
        return None
    if not isinstance(zones, Mapping):
        raise WorklistError(f"zones must be a dict of zone name -> count, got {zones!r}")
    counts = {}
    for name, count in zones.items():
        if isinstance(count, (bool, np.bool_)) or not isinstance(count, numbers.Integral):
            raise WorklistError(f"zones[{name!r}] must be an integer, got {count!r}")
        if count < 0:
            raise WorklistError(f"zones[{name!r}] must be >= 0, got {count}")
        counts[check_text("zones key", name, required=True)] = int(count)
    return json.dumps(counts, sort_keys=True)


def _study_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise WorklistError(f"study_date must be an ISO date like 2020-03-14, got {value!r}")


def _sha256(value: Any) -> str:
    digest = check_text("image_sha256", value, required=True).lower()
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise WorklistError(f"image_sha256 must be 64 hexadecimal characters, got {value!r}")
    return digest


def validate_new_case(*, patient_id: Any, image_name: Any, image_sha256: Any, risk: Any,
                      flagged: Any, threshold: Any, per_model: Any, corona_score: Any = None,
                      zones: Any = None, study_date: Any = None, offset_days: Any = None,
                      reviewer: Any = "", note: Any = "", model_version: Any = "", site_profile: Any = "") -> dict:
    """Check every field of a new case and return the column values to insert."""
    if not isinstance(flagged, (bool, np.bool_)):
        raise WorklistError(f"flagged must be True or False, got {flagged!r}")
    return {
        "patient_id": check_text("patient_id", patient_id, required=True),
        "image_name": check_text("image_name", image_name, required=True, max_chars=255),
        "image_sha256": _sha256(image_sha256),
        "risk": check_number("risk", risk, low=0.0, high=1.0),
        "flagged": bool(flagged),
        "threshold": check_number("threshold", threshold, low=0.0, high=1.0),
        "per_model_json": _per_model_json(per_model),
        "corona_score": check_number("corona_score", corona_score, low=0.0, optional=True),
        "zones_json": _zones_json(zones),
        "study_date": _study_date(study_date),
        "offset_days": check_number("offset_days", offset_days, optional=True),
        "reviewer": check_text("reviewer", reviewer, required=False),
        "note": check_note(note),
        "model_version": check_text("model_version", model_version, required=False),
        "site_profile": check_text("site_profile", site_profile, required=False, max_chars=200),
    }


# --- Engine -----------------------------------------------------------------------------------


def create_worklist_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine configured for safe concurrent use of the worklist.

    SQLite: WAL journal (readers never block the writer), ``synchronous=FULL`` (see below),
    foreign keys on, a busy timeout, and SQLAlchemy-issued ``BEGIN`` so that every transaction,
    reads included, is a real SQLite transaction (Python 3.11's sqlite3 module otherwise starts
    transactions lazily and never for SELECT or DDL). Write transactions use ``BEGIN IMMEDIATE``:
    they take the write lock up front, so a read-then-write can never fail half-way with
    SQLITE_BUSY_SNAPSHOT; read transactions use a plain deferred ``BEGIN`` and never wait.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a dashboard left open overnight must survive a server restart.
        return create_engine(url, echo=echo, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    read_only = parsed.query.get("mode") == "ro"
    if not in_memory and not read_only:
        sqlite_file_path(url).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (begin hook below)
        if read_only:  # nothing to journal; the foreign-key pragma is only about writes
            return
        cursor = dbapi_connection.cursor()
        journal_mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if journal_mode.lower() != "wal" and not in_memory:
            warnings.warn(f"SQLite refused WAL mode (got {journal_mode!r}); concurrent readers "
                          "will block while a case is written", RuntimeWarning, stacklevel=2)
        # FULL, not NORMAL: in WAL mode NORMAL never corrupts the file, but the last commits
        # can vanish after a power cut or OS crash. A triage flag must survive once add_case
        # has returned, and the worklist writes a few rows a minute, so one fsync per commit
        # costs nothing noticeable.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        if cursor.execute("PRAGMA foreign_keys").fetchone() != (1,):
            raise WorklistError("this SQLite build cannot enforce foreign keys; the worklist needs them")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_sqlite(connection: Connection) -> None:
        writing = connection.get_execution_options().get("worklist_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


# --- Current schema (what the queries use; must match the result of all migrations) -----------

metadata = MetaData()

schema_version_table = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", String(40), nullable=False),
)


def _case_columns() -> list:
    """Columns of ``cases`` as created by migration 1 (migration 2 adds ``model_version``)."""
    status_list = ", ".join(f"'{status}'" for status in STATUSES)
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("created_at", String(40), nullable=False),
        Column("updated_at", String(40), nullable=False),
        # Privacy: the pseudonymous id the user typed is the only patient field, never a name.
        Column("patient_id", String(128), nullable=False),
        Column("image_name", String(255), nullable=False),
        Column("image_sha256", String(64), nullable=False),
        Column("risk", Double, nullable=False),
        Column("flagged", Boolean, nullable=False),
        Column("threshold", Double, nullable=False),
        Column("per_model_json", Text, nullable=False),
        Column("corona_score", Double, nullable=True),
        Column("zones_json", Text, nullable=True),
        Column("study_date", String(10), nullable=True),
        Column("offset_days", Double, nullable=True),
        Column("status", String(32), nullable=False),
        Column("reviewer", String(128), nullable=False),
        Column("note", Text, nullable=False),
        Column("version", Integer, nullable=False),
        # The database refuses impossible rows even if a bug slips past validation.
        CheckConstraint("risk >= 0 AND risk <= 1", name="ck_cases_risk"),
        CheckConstraint("threshold >= 0 AND threshold <= 1", name="ck_cases_threshold"),
        CheckConstraint(f"status IN ({status_list})", name="ck_cases_status"),
        CheckConstraint("version >= 1", name="ck_cases_version"),
    ]


def _audit_columns() -> list:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("case_id", Integer, ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False),
        Column("at", String(40), nullable=False),
        Column("who", String(128), nullable=False),
        Column("action", String(16), nullable=False),
        Column("from_status", String(32), nullable=True),
        Column("to_status", String(32), nullable=True),
        Column("note", Text, nullable=True),
        Column("case_version", Integer, nullable=False),
        # Exactly one event per version of a case: a lost or doubled event cannot be stored.
        UniqueConstraint("case_id", "case_version", name="uq_audit_case_version"),
    ]


cases_table = Table(
    "cases", metadata, *_case_columns(),
    Column("model_version", String(128), nullable=False, server_default=""),
    *review_case_columns(),
    *site_profile_case_columns(),
    sqlite_autoincrement=True,  # ids are never reused, even for a rolled-back insert
)
audit_table = Table("audit_events", metadata, *_audit_columns(), *review_audit_columns(),
                    sqlite_autoincrement=True)
Index("ix_cases_patient_id", cases_table.c.patient_id)
Index("ix_cases_image_sha256", cases_table.c.image_sha256)
Index("ix_audit_events_case_id", audit_table.c.case_id)


# --- Migrations -------------------------------------------------------------------------------

_APPEND_ONLY_MESSAGE = "audit_events is append-only"

_SQLITE_AUDIT_TRIGGERS = [
    f"""CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events
        BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"""
    for verb in ("UPDATE", "DELETE")
]

_POSTGRES_AUDIT_TRIGGERS = [
    f"""CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION USING MESSAGE = '{_APPEND_ONLY_MESSAGE} (' || TG_OP || ' refused)';
        END $$""",
    """CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()""",
]


def _migration_1_initial(conn: Connection) -> None:
    """Cases, audit events, and the triggers that make the audit trail append-only."""
    v1 = MetaData()
    Table("cases", v1, *_case_columns(), sqlite_autoincrement=True)
    Table("audit_events", v1, *_audit_columns(), sqlite_autoincrement=True)
    v1.create_all(conn)
    dialect = conn.dialect.name
    triggers = _SQLITE_AUDIT_TRIGGERS if dialect == "sqlite" else _POSTGRES_AUDIT_TRIGGERS
    for statement in triggers:
        conn.exec_driver_sql(statement)


def _migration_2_model_version(conn: Connection) -> None:
    """Record which model produced each risk, and index the per-patient and per-case look-ups."""
    conn.exec_driver_sql(
        "ALTER TABLE cases ADD COLUMN model_version VARCHAR(128) NOT NULL DEFAULT ''")
    conn.exec_driver_sql("CREATE INDEX ix_cases_patient_id ON cases (patient_id)")
    conn.exec_driver_sql("CREATE INDEX ix_audit_events_case_id ON audit_events (case_id)")


def _migration_3_integrity(conn: Connection) -> None:
    """SQLite: the audit trail refuses REPLACE and orphans from any connection (PostgreSQL has no REPLACE, its
    ON CONFLICT DO UPDATE fires the UPDATE trigger, and it always enforces the foreign keys)."""
    if conn.dialect.name == "sqlite":
        for statement in SQLITE_INTEGRITY_TRIGGERS:
            conn.exec_driver_sql(statement)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: cases, append-only audit_events", _migration_1_initial),
    Migration(2, "cases.model_version; indexes on patient_id and audit case_id",
              _migration_2_model_version),
    Migration(3, "SQLite triggers: no REPLACE over audit events or cases, no orphaned audit trail",
              _migration_3_integrity),
    Migration(4, "review: thumbnails, reviewer identity source, zone-grade corrections",
              migration_4_review),
    Migration(5, "site profiles (append-only history); cases.site_profile", migration_5_site_profiles),
)
LATEST_SCHEMA_VERSION = MIGRATIONS[-1].version
MIGRATIONS_NEEDED_TO_READ = frozenset({1, 2, 4})
"""Migrations that create tables or columns the queries select: a database that cannot be written (so cannot be
migrated) is still shown when these have been applied. A new migration adding a queried column joins this set."""


def read_schema_version(conn: Connection) -> int:
    """Highest applied migration, 0 for an empty database."""
    return max(applied_migrations(conn), default=0)


def applied_migrations(conn: Connection) -> set[int]:
    """Numbers of every migration applied to this database (empty for an empty database)."""
    if not conn.dialect.has_table(conn, "schema_version"):
        return set()
    return {int(version) for version in conn.execute(select(schema_version_table.c.version)).scalars()}


def migrate(engine: Engine, *, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the pending migrations in order, all in one transaction; return the highest applied version.

    Migration numbers are handed out to parallel pieces of work in advance, so a number may be missing for a
    while (4 before 3): every migration not yet recorded in ``schema_version`` runs, in number order, even one
    lower than a migration already applied.

    Two processes opening a fresh database at once must not both run migration 1: on SQLite the
    write transaction (``BEGIN IMMEDIATE``) serialises them, on PostgreSQL a transaction-scoped
    advisory lock does. The applied set is read again once the lock is held.
    """
    numbers = [m.version for m in migrations]
    if numbers != sorted(set(numbers)) or not numbers or numbers[0] != 1:
        raise WorklistError(f"migrations must be numbered from 1 in increasing order, got {numbers}")
    with engine.connect() as conn:  # common case first: up to date, no write lock needed
        if applied_migrations(conn) == set(numbers):
            return numbers[-1]
    with engine.execution_options(worklist_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('cxr-worklist:' || "
                              "current_schema()))"))
        applied = applied_migrations(conn)
        unknown = sorted(applied - set(numbers))
        if unknown:
            raise WorklistError(
                f"the worklist database is at schema version {max(applied)}, newer than this program "
                f"understands ({numbers[-1]}; unknown migrations {unknown}); upgrade the program instead of "
                "downgrading the data")
        schema_version_table.create(conn, checkfirst=True)
        for migration in migrations:
            if migration.version in applied:
                continue
            migration.apply(conn)
            conn.execute(schema_version_table.insert().values(
                version=migration.version, description=migration.description,
                applied_at=utc_now_iso()))
        return numbers[-1]
