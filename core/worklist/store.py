"""Worklist of flagged chest X-ray cases awaiting quarantine follow-up.

Cases and their audit trail are kept in a real database through SQLAlchemy: a SQLite file by
default, PostgreSQL when several users share the list. Every change is one explicit transaction
that writes the case row and its audit event together, so a reader never sees one without the
other; a crash mid-write leaves the previous state. Concurrent edits are detected with a
``version`` column (optimistic locking) instead of silently overwriting each other.

Only the pseudonymous patient id given by the user is stored, never a patient name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Result, exc, select, update

from core.paths import app_data_dir
from core.worklist.export import defuse_csv_formulas, readable_audit, readable_cases
from core.worklist.read_only import open_read_only
from core.worklist.review_data import (
    check_identity_source,
    check_thumbnail,
    check_zone_grades,
    describe_grade_changes,
    zone_grades_json,
)
from core.worklist.schema import (
    STATUSES,
    ConflictError,
    WorklistError,
    applied_migrations,
    audit_table,
    cases_table,
    check_note,
    check_positive_int,
    check_status,
    check_text,
    create_worklist_engine,
    migrate,
    read_schema_version,
    utc_now_iso,
    validate_new_case,
)

__all__ = ["STATUSES", "NEXT_STATUSES", "WorklistError", "ConflictError", "WorklistStore",
           "default_database_url"]

# Which status may follow which. Nothing returns to "new" (someone has looked at the case by
# then), and a cleared case can be reopened for review if new information arrives.
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "new": ("under review", "quarantine follow-up", "cleared"),
    "under review": ("quarantine follow-up", "cleared"),
    "quarantine follow-up": ("under review", "cleared"),
    "cleared": ("under review",),
}


def default_database_url() -> str:
    """``$CXR_WORKLIST_URL``, else a SQLite file ``worklist.db`` in the app's data folder."""
    env = os.environ.get("CXR_WORKLIST_URL")
    if env:
        return env
    return f"sqlite:///{(app_data_dir() / 'worklist.db').resolve().as_posix()}"


def _optional_version(value: Any) -> int | None:
    return None if value is None else check_positive_int("expected_version", value)


# --- Results ----------------------------------------------------------------------------------


_FLOAT_COLUMNS = ("risk", "threshold", "corona_score", "offset_days")


def _frame(result: Result) -> pd.DataFrame:
    columns = list(result.keys())
    frame = pd.DataFrame([tuple(row) for row in result], columns=columns)
    for column in _FLOAT_COLUMNS:  # all-missing optional numbers would otherwise be object
        if column in frame:
            frame[column] = frame[column].astype("float64")
    return frame


def _case_dict(row: Mapping[str, Any]) -> dict:
    """A case as plain Python values, with the JSON columns decoded."""
    case = dict(row)
    case["flagged"] = bool(case["flagged"])
    case["per_model"] = json.loads(case.pop("per_model_json"))
    for column, key in (("zones_json", "zones"), ("zones_corrected_json", "zones_corrected")):
        encoded = case.pop(column)
        case[key] = None if encoded is None else json.loads(encoded)
    return case


# Every column but the thumbnail: tables and single cases never carry the picture (see ``thumbnails``).
_LISTED_COLUMNS = [column for column in cases_table.c if column.name != "thumbnail_png"]


# --- Store ------------------------------------------------------------------------------------


def _checked_change(case_id: Any, who: Any, who_source: Any, note: Any,
                    expected_version: Any) -> tuple[int, str, str, str | None, int | None]:
    """The arguments every change to a case takes, checked: case id, who, how they were identified, the optional
    note and the version the user was looking at."""
    return (check_positive_int("case_id", case_id), check_text("who", who, required=True),
            check_identity_source(who_source), None if note is None else check_note(note),
            _optional_version(expected_version))


class WorklistStore:
    """The worklist database: cases, their status workflow and an append-only audit trail.

    Parameters
    ----------
    url : str or None
        SQLAlchemy URL (``sqlite:///path.db`` or ``postgresql+psycopg://user:pw@host/db``);
        None means :func:`default_database_url`.
    echo : bool
        Log every SQL statement (debugging).

    Opening a store applies pending schema migrations. Methods that change a case take
    ``expected_version`` (the ``version`` the user was looking at); if the case changed since,
    :class:`ConflictError` is raised and nothing is written.
    """

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        self.url = url if url is not None else default_database_url()
        self.read_only: str | None = None  # why the database can only be viewed, when it cannot be written
        try:
            self.engine = create_worklist_engine(self.url, echo=echo)
        except exc.ArgumentError as error:
            raise WorklistError(f"not a usable database URL: {error}") from error
        except OSError as error:  # the SQLite file's folder cannot be created
            raise WorklistError(f"cannot open the worklist database {self.url}: {error}") from error
        try:
            migrate(self.engine)
        except BaseException as error:
            self.engine.dispose()
            if not isinstance(error, exc.DBAPIError):
                raise
            viewer = open_read_only(self.url, error, echo=echo)
            if viewer is None:
                raise WorklistError(f"cannot open the worklist database {self}: {error.orig}") \
                    from error
            self.engine, self.read_only = viewer
        # Writes go through this view of the engine: on SQLite its transactions BEGIN IMMEDIATE.
        self._write_engine = self.engine.execution_options(worklist_write=True)

    def close(self) -> None:
        """Release every pooled connection (the store must not be used afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> WorklistStore:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorklistStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- transactions --

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One read transaction, rolled back at the end (reads never take the write lock)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except exc.DBAPIError as error:
            raise WorklistError(f"the worklist database could not be read: {error.orig}") \
                from error

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        if self.read_only:
            raise WorklistError(f"{self.read_only}; nothing was saved")
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except exc.DBAPIError as error:
            raise WorklistError(f"the worklist database refused the change: {error.orig}") \
                from error

    # -- writes --

    def add_case(self, *, patient_id: str, image_name: str, image_sha256: str, risk: float,
                 flagged: bool, threshold: float, per_model: dict[str, float],
                 corona_score: float | None = None, zones: dict[str, int] | None = None,
                 study_date: str | None = None, offset_days: float | None = None,
                 reviewer: str = "", note: str = "", model_version: str = "",
                 thumbnail_png: bytes | None = None, zones_corrected: dict[str, int] | None = None,
                 reviewer_source: str = "", site_profile: str = "") -> int:
        """Validate and store a new case with status "new"; returns its id.

        The case row and its "created" audit event are written in one transaction. ``zones``
        holds the model's zone grades, ``study_date`` an ISO date, ``offset_days`` the days since the
        patient's first study (NaN is read as missing for the optional numbers). ``thumbnail_png`` is
        a downscaled copy of the film (:func:`core.worklist.review_data.thumbnail_png`);
        ``zones_corrected`` the radiologist's six zone grades when they differ from ``zones`` (saved
        as a second, audited change in the same transaction); ``reviewer_source`` says how the
        reviewer's name was established ("login", "typed" or ""); ``site_profile`` which site
        calibration produced the verdict (``Prediction.calibration_statement()``).
        """
        row = validate_new_case(
            patient_id=patient_id, image_name=image_name, image_sha256=image_sha256, risk=risk,
            flagged=flagged, threshold=threshold, per_model=per_model,
            corona_score=corona_score, zones=zones, study_date=study_date,
            offset_days=offset_days, reviewer=reviewer, note=note, model_version=model_version,
            site_profile=site_profile)
        row["thumbnail_png"] = check_thumbnail(thumbnail_png)
        row["reviewer_source"] = check_identity_source(reviewer_source)
        corrected = None if zones_corrected is None else check_zone_grades(zones_corrected)
        with self._write() as conn:
            case_id = self._insert_case(conn, row)
            if corrected is not None and corrected != zones:
                self._bump_version(conn, {"id": case_id, "status": "new", "version": 1},
                                   {"zones_corrected_json": json.dumps(corrected)},
                                   who=row["reviewer"] or "system", who_source=row["reviewer_source"],
                                   action="zones", to_status=None,
                                   note=describe_grade_changes(zones, corrected))
            return case_id

    def _insert_case(self, conn: Connection, row: dict) -> int:
        now = utc_now_iso()
        result = conn.execute(cases_table.insert().values(
            **row, status="new", version=1, created_at=now, updated_at=now))
        case_id = int(result.inserted_primary_key[0])
        self._append_event(conn, case_id=case_id, at=now, who=row["reviewer"] or "system",
                           who_source=row.get("reviewer_source", ""),
                           action="created", from_status=None, to_status="new",
                           note=row["note"] or None, case_version=1)
        return case_id

    def correct_zones(self, case_id: int, grades: Mapping[str, int], *, who: str, who_source: str = "",
                      note: str | None = None, expected_version: int | None = None) -> dict:
        """Record the radiologist's six zone grades (0-3) for a case; returns the updated case.

        The audit event lists what changed against what was shown (the model's grades, or the
        previous correction); ``note`` (optional) is appended to it.
        """
        case_id, who, who_source, note, expected = _checked_change(case_id, who, who_source, note, expected_version)
        corrected = check_zone_grades(grades)
        with self._write() as conn:
            current = self._lock_case(conn, case_id, expected)
            shown = self._read_case(conn, case_id)
            before = shown["zones_corrected"] or shown["zones"]
            summary = describe_grade_changes(before, corrected) + (f" — {note}" if note else "")
            self._bump_version(conn, current, {"zones_corrected_json": zone_grades_json(corrected),
                                               "reviewer": who, "reviewer_source": who_source},
                               who=who, who_source=who_source, action="zones", to_status=None, note=summary)
            return self._read_case(conn, case_id)

    def update_status(self, case_id: int, status: str, *, who: str, note: str | None = None,
                      expected_version: int | None = None, who_source: str = "") -> dict:
        """Move a case to ``status`` (see :data:`NEXT_STATUSES`); returns the updated case.

        ``who`` becomes the case's reviewer; ``note`` is the reason, kept in the audit event.
        """
        case_id, who, who_source, note, expected = _checked_change(case_id, who, who_source, note, expected_version)
        status = check_status(status)
        with self._write() as conn:
            current = self._lock_case(conn, case_id, expected)
            if status not in NEXT_STATUSES[current["status"]]:
                allowed = ", ".join(NEXT_STATUSES[current["status"]])
                raise WorklistError(f"case {case_id} is {current['status']!r}; it can move to "
                                    f"{allowed}, not {status!r}")
            self._bump_version(conn, current, {"status": status, "reviewer": who, "reviewer_source": who_source},
                               who=who, who_source=who_source, action="status", to_status=status,
                               note=note or None)
            return self._read_case(conn, case_id)

    def set_note(self, case_id: int, note: str, *, who: str,
                 expected_version: int | None = None) -> dict:
        """Replace the case's note (empty string clears it); returns the updated case."""
        case_id = check_positive_int("case_id", case_id)
        note = check_note(note)
        who = check_text("who", who, required=True)
        expected = _optional_version(expected_version)
        with self._write() as conn:
            current = self._lock_case(conn, case_id, expected)
            self._bump_version(conn, current, {"note": note}, who=who, action="note",
                               to_status=None, note=note)
            return self._read_case(conn, case_id)

    def _lock_case(self, conn: Connection, case_id: int, expected: int | None) -> dict:
        """Read the case inside the write transaction (row-locked on PostgreSQL)."""
        row = conn.execute(select(cases_table.c.id, cases_table.c.status, cases_table.c.version)
                           .where(cases_table.c.id == case_id).with_for_update()).mappings().first()
        if row is None:
            raise WorklistError(f"unknown case id {case_id}")
        if expected is not None and row["version"] != expected:
            raise ConflictError(
                f"case {case_id} was changed by someone else (now version {row['version']}, you "
                f"edited version {expected}); reload the case and try again")
        return dict(row)

    def _bump_version(self, conn: Connection, current: dict, values: dict, *, who: str,
                      action: str, to_status: str | None, note: str | None, who_source: str = "") -> None:
        """UPDATE ... WHERE id AND version, then the matching audit event, same transaction."""
        now = utc_now_iso()
        new_version = current["version"] + 1
        result = conn.execute(
            update(cases_table)
            .where(cases_table.c.id == current["id"], cases_table.c.version == current["version"])
            .values(**values, version=new_version, updated_at=now))
        # Belt and braces: the row lock above already serialises writers, but if anything ever
        # lets another update land first, refuse rather than overwrite it.
        if result.rowcount != 1:
            raise ConflictError(f"case {current['id']} was changed concurrently; reload and retry")
        self._append_event(conn, case_id=current["id"], at=now, who=who, who_source=who_source, action=action,
                           from_status=current["status"] if to_status else None,
                           to_status=to_status, note=note, case_version=new_version)

    @staticmethod
    def _append_event(conn: Connection, **event: Any) -> None:
        conn.execute(audit_table.insert().values(**event))

    # -- reads --

    def _read_case(self, conn: Connection, case_id: int) -> dict:
        row = conn.execute(select(*_LISTED_COLUMNS).where(cases_table.c.id == case_id)
                           ).mappings().first()
        if row is None:
            raise WorklistError(f"unknown case id {case_id}")
        return _case_dict(row)

    def get_case(self, case_id: int) -> dict:
        """One case as a dict (``per_model`` and ``zones`` decoded from JSON)."""
        case_id = check_positive_int("case_id", case_id)
        with self._read() as conn:
            return self._read_case(conn, case_id)

    def cases(self, *, status: str | None = None, flagged: bool | None = None,
              patient_id: str | None = None) -> pd.DataFrame:
        """Cases matching every given filter, newest first (JSON columns left as text)."""
        query = select(*_LISTED_COLUMNS).order_by(cases_table.c.created_at.desc(),
                                             cases_table.c.id.desc())
        if status is not None:
            query = query.where(cases_table.c.status == check_status(status))
        if flagged is not None:
            if not isinstance(flagged, (bool, np.bool_)):
                raise WorklistError(f"flagged filter must be True, False or None, got {flagged!r}")
            query = query.where(cases_table.c.flagged == bool(flagged))
        if patient_id is not None:
            patient_id = check_text("patient_id", patient_id, required=True)
            query = query.where(cases_table.c.patient_id == patient_id)
        with self._read() as conn:
            return _frame(conn.execute(query))

    def audit_trail(self, case_id: int | None = None) -> pd.DataFrame:
        """Audit events in the order they happened, for one case or for all."""
        query = select(audit_table).order_by(audit_table.c.id)
        with self._read() as conn:
            if case_id is not None:
                case_id = check_positive_int("case_id", case_id)
                self._read_case(conn, case_id)  # unknown case -> clear error, not an empty table
                query = query.where(audit_table.c.case_id == case_id)
            return _frame(conn.execute(query))

    def patient_series(self, patient_id: str) -> pd.DataFrame:
        """All cases of one patient, oldest first: by study date, then day offset, then entry."""
        patient_id = check_text("patient_id", patient_id, required=True)
        query = (select(*_LISTED_COLUMNS).where(cases_table.c.patient_id == patient_id)
                 .order_by(cases_table.c.study_date.asc().nulls_last(),
                           cases_table.c.offset_days.asc().nulls_last(),
                           cases_table.c.created_at, cases_table.c.id))
        with self._read() as conn:
            return _frame(conn.execute(query))

    def patients(self) -> list[str]:
        """Distinct patient ids, sorted."""
        query = select(cases_table.c.patient_id).distinct().order_by(cases_table.c.patient_id)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def cases_with_image(self, image_sha256: str) -> pd.DataFrame:
        """Cases already saved with this image (same SHA-256), oldest first: a film saved twice."""
        digest = check_text("image_sha256", image_sha256, required=True).lower()
        query = (select(cases_table.c.id, cases_table.c.patient_id, cases_table.c.created_at)
                 .where(cases_table.c.image_sha256 == digest).order_by(cases_table.c.id))
        with self._read() as conn:
            return _frame(conn.execute(query))

    def thumbnails(self, case_ids: list[int]) -> dict[int, bytes]:
        """The stored film copies (PNG bytes) of these cases; cases without one are left out."""
        ids = [check_positive_int("case_id", case_id) for case_id in case_ids]
        if not ids:
            return {}
        query = select(cases_table.c.id, cases_table.c.thumbnail_png).where(
            cases_table.c.id.in_(ids), cases_table.c.thumbnail_png.is_not(None))
        with self._read() as conn:
            return {int(row.id): bytes(row.thumbnail_png) for row in conn.execute(query)}

    def export_csv(self) -> str:
        """All cases, newest first, as a readable CSV: rounded numbers, one column per model and per zone
        (the model's and the radiologist's grade), no internal fields; formula-like cells neutralised."""
        return defuse_csv_formulas(readable_cases(self.cases())).to_csv(index=False, lineterminator="\n")

    def export_audit_csv(self) -> str:
        """The audit trail of every case, oldest event first, as CSV (the second file of an export)."""
        return defuse_csv_formulas(readable_audit(self.audit_trail())).to_csv(index=False, lineterminator="\n")

    def schema_version(self) -> int:
        """The highest migration applied to this database."""
        with self._read() as conn:
            return read_schema_version(conn)

    def applied_migrations(self) -> set[int]:
        """Every migration applied to this database (there may be gaps: numbers are handed out in advance)."""
        with self._read() as conn:
            return applied_migrations(conn)
