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
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Result, exc, select, update

from core.paths import app_data_dir
from core.worklist_schema import (
    STATUSES,
    ConflictError,
    WorklistError,
    audit_table,
    cases_table,
    create_worklist_engine,
    migrate,
    read_schema_version,
    utc_now_iso,
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

_MAX_NAME_CHARS = 128
_MAX_NOTE_CHARS = 4000
_CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def default_database_url() -> str:
    """``$CXR_WORKLIST_URL``, else a SQLite file ``worklist.db`` in the app's data folder."""
    env = os.environ.get("CXR_WORKLIST_URL")
    if env:
        return env
    return f"sqlite:///{(app_data_dir() / 'worklist.db').resolve().as_posix()}"


# --- Field validation (all of it happens before anything is written) --------------------------


def _text(name: str, value: Any, *, required: bool, multiline: bool = False,
          max_chars: int = _MAX_NAME_CHARS) -> str:
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


def _number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
            optional: bool = False) -> float | None:
    """A finite real number within [low, high]; None (or NaN from a table) allowed if optional."""
    if optional and (value is None or (isinstance(value, float) and math.isnan(value))):
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise WorklistError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise WorklistError(f"{name} must be finite, got {number}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise WorklistError(f"{name} must be in [{low}, {high}], got {number}")
    return number


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise WorklistError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise WorklistError(f"{name} must be >= 1, got {value}")
    return int(value)


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise WorklistError(f"unknown status {value!r}; expected one of {', '.join(STATUSES)}")
    return value


def _per_model_json(per_model: Any) -> str:
    if not isinstance(per_model, Mapping) or not per_model:
        raise WorklistError("per_model must be a non-empty dict of model name -> risk")
    scores = {_text("per_model key", name, required=True):
              _number(f"per_model[{name!r}]", score, low=0.0, high=1.0)
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
        counts[_text("zones key", name, required=True)] = int(count)
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
    digest = _text("image_sha256", value, required=True).lower()
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise WorklistError(f"image_sha256 must be 64 hexadecimal characters, got {value!r}")
    return digest


def validate_new_case(*, patient_id: Any, image_name: Any, image_sha256: Any, risk: Any,
                      flagged: Any, threshold: Any, per_model: Any, corona_score: Any = None,
                      zones: Any = None, study_date: Any = None, offset_days: Any = None,
                      reviewer: Any = "", note: Any = "", model_version: Any = "") -> dict:
    """Check every field of a new case and return the column values to insert."""
    if not isinstance(flagged, (bool, np.bool_)):
        raise WorklistError(f"flagged must be True or False, got {flagged!r}")
    return {
        "patient_id": _text("patient_id", patient_id, required=True),
        "image_name": _text("image_name", image_name, required=True, max_chars=255),
        "image_sha256": _sha256(image_sha256),
        "risk": _number("risk", risk, low=0.0, high=1.0),
        "flagged": bool(flagged),
        "threshold": _number("threshold", threshold, low=0.0, high=1.0),
        "per_model_json": _per_model_json(per_model),
        "corona_score": _number("corona_score", corona_score, low=0.0, optional=True),
        "zones_json": _zones_json(zones),
        "study_date": _study_date(study_date),
        "offset_days": _number("offset_days", offset_days, optional=True),
        "reviewer": _text("reviewer", reviewer, required=False),
        "note": _text("note", note, required=False, multiline=True, max_chars=_MAX_NOTE_CHARS),
        "model_version": _text("model_version", model_version, required=False),
    }


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
    zones_json = case.pop("zones_json")
    case["zones"] = None if zones_json is None else json.loads(zones_json)
    return case


def _defuse_csv_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (CSV injection) with a quote."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(
                lambda cell: "'" + cell if isinstance(cell, str)
                and cell.startswith(_CSV_FORMULA_PREFIXES) else cell)
    return frame


# --- Store ------------------------------------------------------------------------------------


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
        self.engine = create_worklist_engine(self.url, echo=echo)
        # Writes go through this view of the engine: on SQLite its transactions BEGIN IMMEDIATE.
        self._write_engine = self.engine.execution_options(worklist_write=True)
        try:
            migrate(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        """Release every pooled connection (the store must not be used afterwards)."""
        self.engine.dispose()

    def __enter__(self) -> WorklistStore:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorklistStore({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- writes --

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        try:
            with self._write_engine.begin() as conn:
                yield conn
        except exc.DBAPIError as error:
            raise WorklistError(f"the worklist database refused the change: {error.orig}") \
                from error

    def add_case(self, *, patient_id: str, image_name: str, image_sha256: str, risk: float,
                 flagged: bool, threshold: float, per_model: dict[str, float],
                 corona_score: float | None = None, zones: dict[str, int] | None = None,
                 study_date: str | None = None, offset_days: float | None = None,
                 reviewer: str = "", note: str = "", model_version: str = "") -> int:
        """Validate and store a new case with status "new"; returns its id.

        The case row and its "created" audit event are written in one transaction. ``zones``
        holds per-lung-zone counts, ``study_date`` an ISO date, ``offset_days`` the days since the
        patient's first study (NaN is read as missing for the optional numbers).
        """
        row = validate_new_case(
            patient_id=patient_id, image_name=image_name, image_sha256=image_sha256, risk=risk,
            flagged=flagged, threshold=threshold, per_model=per_model,
            corona_score=corona_score, zones=zones, study_date=study_date,
            offset_days=offset_days, reviewer=reviewer, note=note, model_version=model_version)
        with self._write() as conn:
            return self._insert_case(conn, row)

    def _insert_case(self, conn: Connection, row: dict) -> int:
        now = utc_now_iso()
        result = conn.execute(cases_table.insert().values(
            **row, status="new", version=1, created_at=now, updated_at=now))
        case_id = int(result.inserted_primary_key[0])
        self._append_event(conn, case_id=case_id, at=now, who=row["reviewer"] or "system",
                           action="created", from_status=None, to_status="new",
                           note=row["note"] or None, case_version=1)
        return case_id

    def update_status(self, case_id: int, status: str, *, who: str, note: str | None = None,
                      expected_version: int | None = None) -> dict:
        """Move a case to ``status`` (see :data:`NEXT_STATUSES`); returns the updated case.

        ``who`` becomes the case's reviewer; ``note`` is the reason, kept in the audit event.
        """
        case_id = _positive_int("case_id", case_id)
        status = _status(status)
        who = _text("who", who, required=True)
        if note is not None:
            note = _text("note", note, required=False, multiline=True, max_chars=_MAX_NOTE_CHARS)
        expected = None if expected_version is None else _positive_int("expected_version",
                                                                        expected_version)
        with self._write() as conn:
            current = self._lock_case(conn, case_id, expected)
            if status not in NEXT_STATUSES[current["status"]]:
                allowed = ", ".join(NEXT_STATUSES[current["status"]])
                raise WorklistError(f"case {case_id} is {current['status']!r}; it can move to "
                                    f"{allowed}, not {status!r}")
            self._bump_version(conn, current, {"status": status, "reviewer": who}, who=who,
                               action="status", to_status=status, note=note or None)
            return self._read_case(conn, case_id)

    def set_note(self, case_id: int, note: str, *, who: str,
                 expected_version: int | None = None) -> dict:
        """Replace the case's note (empty string clears it); returns the updated case."""
        case_id = _positive_int("case_id", case_id)
        note = _text("note", note, required=False, multiline=True, max_chars=_MAX_NOTE_CHARS)
        who = _text("who", who, required=True)
        expected = None if expected_version is None else _positive_int("expected_version",
                                                                        expected_version)
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
                      action: str, to_status: str | None, note: str | None) -> None:
        """UPDATE ... WHERE id AND version, then the matching audit event, same transaction."""
        now = utc_now_iso()
        new_version = current["version"] + 1
        result = conn.execute(
            update(cases_table)
            .where(cases_table.c.id == current["id"], cases_table.c.version == current["version"])
            .values(**values, version=new_version, updated_at=now))
        if result.rowcount != 1:  # someone else's update landed first: refuse, never overwrite
            raise ConflictError(f"case {current['id']} was changed concurrently; reload and retry")
        self._append_event(conn, case_id=current["id"], at=now, who=who, action=action,
                           from_status=current["status"] if to_status else None,
                           to_status=to_status, note=note, case_version=new_version)

    @staticmethod
    def _append_event(conn: Connection, **event: Any) -> None:
        conn.execute(audit_table.insert().values(**event))

    # -- reads --

    def _read_case(self, conn: Connection, case_id: int) -> dict:
        row = conn.execute(select(cases_table).where(cases_table.c.id == case_id)
                           ).mappings().first()
        if row is None:
            raise WorklistError(f"unknown case id {case_id}")
        return _case_dict(row)

    def get_case(self, case_id: int) -> dict:
        """One case as a dict (``per_model`` and ``zones`` decoded from JSON)."""
        case_id = _positive_int("case_id", case_id)
        with self.engine.connect() as conn:
            return self._read_case(conn, case_id)

    def cases(self, *, status: str | None = None, flagged: bool | None = None,
              patient_id: str | None = None) -> pd.DataFrame:
        """Cases matching every given filter, newest first (JSON columns left as text)."""
        query = select(cases_table).order_by(cases_table.c.created_at.desc(),
                                             cases_table.c.id.desc())
        if status is not None:
            query = query.where(cases_table.c.status == _status(status))
        if flagged is not None:
            if not isinstance(flagged, (bool, np.bool_)):
                raise WorklistError(f"flagged filter must be True, False or None, got {flagged!r}")
            query = query.where(cases_table.c.flagged == bool(flagged))
        if patient_id is not None:
            query = query.where(cases_table.c.patient_id == _text("patient_id", patient_id,
                                                                  required=True))
        with self.engine.connect() as conn:
            return _frame(conn.execute(query))

    def audit_trail(self, case_id: int | None = None) -> pd.DataFrame:
        """Audit events in the order they happened, for one case or for all."""
        query = select(audit_table).order_by(audit_table.c.id)
        with self.engine.connect() as conn:
            if case_id is not None:
                case_id = _positive_int("case_id", case_id)
                self._read_case(conn, case_id)  # unknown case -> clear error, not an empty table
                query = query.where(audit_table.c.case_id == case_id)
            return _frame(conn.execute(query))

    def patient_series(self, patient_id: str) -> pd.DataFrame:
        """All cases of one patient, oldest study first (study date, then day offset, then entry)."""
        patient_id = _text("patient_id", patient_id, required=True)
        query = (select(cases_table).where(cases_table.c.patient_id == patient_id)
                 .order_by(cases_table.c.study_date.asc().nulls_last(),
                           cases_table.c.offset_days.asc().nulls_last(),
                           cases_table.c.created_at, cases_table.c.id))
        with self.engine.connect() as conn:
            return _frame(conn.execute(query))

    def patients(self) -> list[str]:
        """Distinct patient ids, sorted."""
        query = select(cases_table.c.patient_id).distinct().order_by(cases_table.c.patient_id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def export_csv(self) -> str:
        """All cases, newest first, as CSV text (formula-like text cells are neutralised)."""
        return _defuse_csv_formulas(self.cases()).to_csv(index=False, lineterminator="\n")

    def schema_version(self) -> int:
        """The highest migration applied to this database."""
        with self.engine.connect() as conn:
            return read_schema_version(conn)
