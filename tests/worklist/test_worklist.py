"""Worklist store: cases, filters, status workflow, audit trail, validation, CSV, migrations."""

from __future__ import annotations

import io
import sqlite3
from datetime import datetime, timedelta

import pandas as pd
import pytest
from pg_server import worklist_url  # noqa: F401  (fixture: SQLite, and PostgreSQL if configured)
from sqlalchemy import create_engine, exc, inspect, text

from core.worklist import schema as worklist_schema
from core.worklist.schema import MIGRATIONS, Migration, migrate
from core.worklist.store import (
    NEXT_STATUSES,
    STATUSES,
    ConflictError,
    WorklistError,
    WorklistStore,
    default_database_url,
)


def case_fields(**overrides) -> dict:
    fields = dict(patient_id="P-001", image_name="p001-a.png", image_sha256="ab" * 32, risk=0.82,
                  flagged=True, threshold=0.5, per_model={"texture_lr": 0.8, "shape_svm": 0.84},
                  corona_score=3.0, zones={"right_lower": 2, "left_lower": 1},
                  study_date="2020-03-14", offset_days=0.0, reviewer="", note="",
                  model_version="v1.0")
    fields.update(overrides)
    return fields


@pytest.fixture
def store(worklist_url: str):  # noqa: F811
    with WorklistStore(worklist_url) as opened:
        yield opened


def row_counts(store: WorklistStore) -> tuple[int, int]:
    return len(store.cases()), len(store.audit_trail())


def assert_utc_iso(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0), stamp
    return parsed


def test_add_and_get_round_trip(store: WorklistStore) -> None:
    case_id = store.add_case(**case_fields(note="opacity right base", reviewer="triage-bot"))
    case = store.get_case(case_id)
    assert case["id"] == case_id and case["status"] == "new" and case["version"] == 1
    assert case["patient_id"] == "P-001" and case["flagged"] is True
    assert case["risk"] == pytest.approx(0.82) and case["threshold"] == pytest.approx(0.5)
    assert case["per_model"] == {"texture_lr": 0.8, "shape_svm": 0.84}
    assert case["zones"] == {"right_lower": 2, "left_lower": 1}
    assert case["study_date"] == "2020-03-14" and case["model_version"] == "v1.0"
    assert case["note"] == "opacity right base"
    assert case["created_at"] == case["updated_at"]
    assert_utc_iso(case["created_at"])
    assert not any("name" in key and key != "image_name" for key in case)  # privacy: no names
    with pytest.raises(WorklistError, match="unknown case id 999"):
        store.get_case(999)


def test_cases_newest_first_and_filters(store: WorklistStore) -> None:
    first = store.add_case(**case_fields(patient_id="A", risk=0.9, flagged=True))
    second = store.add_case(**case_fields(patient_id="B", risk=0.2, flagged=False))
    third = store.add_case(**case_fields(patient_id="A", risk=0.7, flagged=True))
    store.update_status(second, "cleared", who="dr.x")

    listed = store.cases()
    assert list(listed["id"]) == [third, second, first]
    assert list(listed["flagged"]) == [True, False, True]
    assert list(store.cases(status="new")["id"]) == [third, first]
    assert list(store.cases(status="cleared")["id"]) == [second]
    assert list(store.cases(flagged=False)["id"]) == [second]
    assert list(store.cases(patient_id="A", flagged=True)["id"]) == [third, first]
    assert store.cases(status="under review").empty
    assert "per_model_json" in listed.columns and "patient_name" not in listed.columns
    with pytest.raises(WorklistError, match="unknown status"):
        store.cases(status="done")
    assert store.patients() == ["A", "B"]


def test_status_workflow_writes_audit_events(store: WorklistStore) -> None:
    case_id = store.add_case(**case_fields(reviewer="triage-bot"))
    steps = [("under review", "dr.ada"), ("quarantine follow-up", "dr.bo"),
             ("cleared", "dr.ada"), ("under review", "dr.cy")]
    for expected_version, (status, who) in enumerate(steps, start=1):
        case = store.update_status(case_id, status, who=who, note=f"to {status}",
                                   expected_version=expected_version)
        assert case["status"] == status and case["version"] == expected_version + 1
        assert case["reviewer"] == who
    store.set_note(case_id, "call patient back", who="dr.cy", expected_version=5)

    trail = store.audit_trail(case_id)
    assert list(trail["action"]) == ["created", "status", "status", "status", "status", "note"]
    assert list(trail["who"]) == ["triage-bot", "dr.ada", "dr.bo", "dr.ada", "dr.cy", "dr.cy"]
    assert list(trail["to_status"].iloc[:5]) == ["new"] + [status for status, _ in steps]
    assert list(trail["from_status"].iloc[1:5]) == ["new"] + [status for status, _ in steps[:-1]]
    assert list(trail["case_version"]) == [1, 2, 3, 4, 5, 6]
    assert trail["note"].iloc[2] == "to quarantine follow-up"
    stamps = [assert_utc_iso(stamp) for stamp in trail["at"]]
    assert stamps == sorted(stamps)
    assert store.get_case(case_id)["note"] == "call patient back"
    assert store.get_case(case_id)["version"] == len(trail)


@pytest.mark.parametrize(("status", "message"), [
    ("new", "can move to quarantine follow-up, cleared, not 'new'"),  # never back to "new"
    ("under review", "not 'under review'"),  # already there: not a change
    ("closed", "unknown status"),
])
def test_refused_status_change_writes_nothing(store: WorklistStore, status: str,
                                              message: str) -> None:
    case_id = store.add_case(**case_fields())
    store.update_status(case_id, "under review", who="dr.ada")
    before = store.get_case(case_id), row_counts(store)
    with pytest.raises(WorklistError, match=message):
        store.update_status(case_id, status, who="dr.ada")
    assert (store.get_case(case_id), row_counts(store)) == before


def test_status_change_needs_who_and_known_case(store: WorklistStore) -> None:
    case_id = store.add_case(**case_fields())
    with pytest.raises(WorklistError, match="who must not be empty"):
        store.update_status(case_id, "cleared", who="  ")
    with pytest.raises(WorklistError, match="unknown case id 42"):
        store.update_status(42, "cleared", who="dr.ada")
    with pytest.raises(WorklistError, match="unknown case id 42"):
        store.audit_trail(42)
    assert set(NEXT_STATUSES) == set(STATUSES)


def test_stale_version_raises_conflict_and_changes_nothing(store: WorklistStore) -> None:
    case_id = store.add_case(**case_fields())
    seen = store.get_case(case_id)["version"]
    store.update_status(case_id, "under review", who="dr.ada", expected_version=seen)
    before = store.get_case(case_id), row_counts(store)
    with pytest.raises(ConflictError, match="changed by someone else"):
        store.update_status(case_id, "cleared", who="dr.bo", expected_version=seen)
    with pytest.raises(ConflictError):
        store.set_note(case_id, "late note", who="dr.bo", expected_version=seen)
    assert (store.get_case(case_id), row_counts(store)) == before
    assert issubclass(ConflictError, WorklistError)


@pytest.mark.parametrize(("override", "message"), [
    ({"risk": 1.5}, "risk must be in"),
    ({"risk": -0.01}, "risk must be in"),
    ({"risk": float("nan")}, "risk must be finite"),
    ({"risk": "0.8"}, "risk must be a number"),
    ({"risk": True}, "risk must be a number"),
    ({"threshold": 2}, "threshold must be in"),
    ({"patient_id": ""}, "patient_id must not be empty"),
    ({"patient_id": "   "}, "patient_id must not be empty"),
    ({"patient_id": "P\n1"}, "control characters"),
    ({"patient_id": 17}, "patient_id must be a string"),
    ({"image_name": ""}, "image_name must not be empty"),
    ({"image_sha256": "abc"}, "64 hexadecimal"),
    ({"image_sha256": "zz" * 32}, "64 hexadecimal"),
    ({"flagged": "yes"}, "flagged must be True or False"),
    ({"per_model": {}}, "per_model must be a non-empty dict"),
    ({"per_model": {"m": 1.2}}, r"per_model\['m'\] must be in"),
    ({"zones": {"right": -1}}, r"zones\['right'\] must be >= 0"),
    ({"zones": {"right": 1.5}}, r"zones\['right'\] must be an integer"),
    ({"corona_score": -1.0}, "corona_score must be >= 0.0"),
    ({"study_date": "2020-13-01"}, "study_date must be an ISO date"),
    ({"offset_days": float("inf")}, "offset_days must be finite"),
    ({"note": "x" * 4001}, "note is 4001 characters long"),
])
def test_invalid_case_is_refused_before_writing(store: WorklistStore, override: dict,
                                                message: str) -> None:
    store.add_case(**case_fields())
    before = row_counts(store)
    with pytest.raises(WorklistError, match=message):
        store.add_case(**case_fields(**override))
    assert row_counts(store) == before


def test_optional_fields_may_be_missing(store: WorklistStore) -> None:
    case_id = store.add_case(**case_fields(corona_score=None, zones=None, study_date=None,
                                           offset_days=float("nan"), model_version=""))
    case = store.get_case(case_id)
    assert case["zones"] is None and case["study_date"] is None and case["offset_days"] is None
    assert store.cases()["offset_days"].isna().all()


def test_failure_inside_the_transaction_leaves_no_half_record(store: WorklistStore,
                                                              monkeypatch) -> None:
    """The case row is inserted first; if the audit event then fails, the row must go too."""
    store.add_case(**case_fields())
    before = row_counts(store)

    def failing_event(conn, **event):
        raise RuntimeError("disk full while writing the audit event")

    monkeypatch.setattr(WorklistStore, "_append_event", staticmethod(failing_event))
    with pytest.raises(RuntimeError, match="disk full"):
        store.add_case(**case_fields(patient_id="P-002"))
    monkeypatch.undo()
    assert row_counts(store) == before
    assert store.patients() == ["P-001"]


def test_export_csv(store: WorklistStore) -> None:
    store.add_case(**case_fields(patient_id="A", note="=HYPERLINK(\"http://x\")"))
    store.add_case(**case_fields(patient_id="B", risk=0.1, flagged=False, zones=None))
    exported = pd.read_csv(io.StringIO(store.export_csv()), keep_default_na=False)
    assert list(exported["patient id"]) == ["B", "A"]
    assert exported["note"].iloc[1] == "'=HYPERLINK(\"http://x\")"  # not run as a formula
    assert list(exported["shape_svm %"]) == [84.0, 84.0] and list(exported["COVID-19 risk %"]) == [10.0, 82.0]
    assert list(exported["decision"]) == ["not flagged", "flagged"]
    assert list(exported["right lower grade (model)"]) == ["", "2"]  # whole numbers, blank when missing
    internal = {"version", "per_model_json", "zones_json", "thumbnail_png", "zones_corrected_json"}
    assert not internal & set(exported.columns)
    trail = pd.read_csv(io.StringIO(store.export_audit_csv()), keep_default_na=False)
    assert list(trail["action"]) == ["created", "created"] and list(trail["case"]) == [1, 2]


@pytest.mark.parametrize("note", [" =1+1", "\u200b=HYPERLINK(\"http://x\")", "\u00a0@SUM(A1)", "\n-2+3",
                                  "\ufeff+1", "\u3000=1", "\uff1d1+1"])
def test_export_csv_neutralises_formulas_behind_blanks_and_invisible_characters(store: WorklistStore,
                                                                                 note: str) -> None:
    store.add_case(**case_fields(note=note))
    exported = pd.read_csv(io.StringIO(store.export_csv()), keep_default_na=False)
    assert exported["note"].iloc[0] == "'" + note


def test_export_csv_leaves_ordinary_text_alone(store: WorklistStore) -> None:
    store.add_case(**case_fields(note="bilateral opacities, -2 vs last week", patient_id="P-7"))
    exported = pd.read_csv(io.StringIO(store.export_csv()), keep_default_na=False)
    assert (exported["note"].iloc[0], exported["patient id"].iloc[0]) == ("bilateral opacities, -2 vs last week",
                                                                         "P-7")


def test_patient_series_is_chronological(store: WorklistStore) -> None:
    added = {
        "late": store.add_case(**case_fields(study_date="2020-03-20", offset_days=6.0)),
        "undated": store.add_case(**case_fields(study_date=None, offset_days=None)),
        "first": store.add_case(**case_fields(study_date="2020-03-14", offset_days=0.0)),
        "offset-only-b": store.add_case(**case_fields(study_date=None, offset_days=9.0)),
        "offset-only-a": store.add_case(**case_fields(study_date=None, offset_days=2.5)),
        "same-day": store.add_case(**case_fields(study_date="2020-03-14", offset_days=0.5)),
    }
    store.add_case(**case_fields(patient_id="other"))
    series = store.patient_series("P-001")
    expected = ["first", "same-day", "late", "offset-only-a", "offset-only-b", "undated"]
    assert list(series["id"]) == [added[name] for name in expected]
    assert store.patient_series("nobody").empty


def test_audit_trail_is_append_only(store: WorklistStore, worklist_url: str) -> None:  # noqa: F811
    case_id = store.add_case(**case_fields())
    store.update_status(case_id, "under review", who="dr.ada")
    before = store.audit_trail()
    direct = create_engine(worklist_url)  # a plain connection, bypassing the store entirely
    try:
        for statement in ("UPDATE audit_events SET who = 'intruder'",
                          "DELETE FROM audit_events"):
            with pytest.raises(exc.DBAPIError, match="append-only"):
                with direct.begin() as conn:
                    conn.execute(text(statement))
    finally:
        direct.dispose()
    pd.testing.assert_frame_equal(store.audit_trail(), before)
    assert not [name for name in dir(store) if name.startswith(("delete", "remove", "drop"))]


_AUDIT_COLUMNS = "id, case_id, at, who, action, from_status, to_status, note, case_version"


@pytest.mark.parametrize("statement", [
    # same id: REPLACE deletes the row and inserts another, and the DELETE trigger does not fire
    f"REPLACE INTO audit_events ({_AUDIT_COLUMNS}) VALUES (1, :case, 'x', 'intruder', 'created', NULL, 'new', "
    "NULL, 1)",
    # a new id over an existing (case, version): the unique constraint's REPLACE would drop the real event
    f"INSERT OR REPLACE INTO audit_events ({_AUDIT_COLUMNS}) VALUES (999, :case, 'x', 'intruder', 'status', "
    "'new', 'cleared', NULL, 2)",
    f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES (1, :case, 'x', 'intruder', 'created', NULL, 'new', "
    "NULL, 1) ON CONFLICT (id) DO UPDATE SET who = 'intruder'",
])
def test_audit_events_refuse_replace_and_insert_over_a_row(store: WorklistStore, worklist_url: str,  # noqa: F811
                                                            statement: str) -> None:
    case_id = store.add_case(**case_fields())
    store.update_status(case_id, "under review", who="dr.ada")
    before = store.audit_trail()
    if store.engine.dialect.name != "sqlite" and "REPLACE" in statement:
        pytest.skip("REPLACE is SQLite syntax")
    direct = create_engine(worklist_url)  # a plain connection, bypassing the store entirely
    try:
        with pytest.raises(exc.DBAPIError, match="append-only"):
            with direct.begin() as conn:
                conn.execute(text(statement), {"case": case_id})
    finally:
        direct.dispose()
    pd.testing.assert_frame_equal(store.audit_trail(), before)


def test_cases_refuse_replace_over_a_row(store: WorklistStore, worklist_url: str) -> None:  # noqa: F811
    if store.engine.dialect.name != "sqlite":
        pytest.skip("REPLACE is SQLite syntax")
    case_id = store.add_case(**case_fields())
    before = store.cases()
    with sqlite3.connect(store.engine.url.database) as raw:  # foreign keys OFF: SQLite's default elsewhere
        with pytest.raises(sqlite3.DatabaseError, match="REPLACE"):
            raw.execute("REPLACE INTO cases SELECT * FROM cases WHERE id = ?", (case_id,))
    raw.close()
    pd.testing.assert_frame_equal(store.cases(), before)


def test_no_connection_can_orphan_the_audit_trail(store: WorklistStore) -> None:
    """Not the store's connections, not another program's (sqlite3 opens with foreign keys off)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL always enforces foreign keys")
    store.add_case(**case_fields())
    with sqlite3.connect(store.engine.url.database) as raw:
        assert raw.execute("PRAGMA foreign_keys").fetchone() == (0,)
        with pytest.raises(sqlite3.DatabaseError, match="audit trail"):
            raw.execute("DELETE FROM cases")
        with pytest.raises(sqlite3.DatabaseError, match="unknown case"):
            raw.execute(f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES (NULL, 4242, 'x', 'y', 'created', "
                        "NULL, 'new', NULL, 1)")
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()
    assert len(store.cases()) == 1 and len(store.audit_trail()) == 1


def test_store_deleting_a_case_is_refused(store: WorklistStore) -> None:
    """Foreign keys are enforced on the store's own connections (SQLite needs the pragma)."""
    case_id = store.add_case(**case_fields())
    with pytest.raises(exc.IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM cases WHERE id = :id"), {"id": case_id})
    assert len(store.cases()) == 1


def test_sqlite_connection_settings(tmp_path) -> None:
    with WorklistStore(f"sqlite:///{tmp_path / 'w.db'}") as store, store.engine.connect() as conn:
        pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                  for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                      "busy_timeout": int(worklist_schema.SQLITE_BUSY_TIMEOUT_S * 1000)}


def test_default_database_url(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CXR_WORKLIST_URL", "postgresql+psycopg://u:p@db/worklist")
    assert default_database_url() == "postgresql+psycopg://u:p@db/worklist"
    monkeypatch.delenv("CXR_WORKLIST_URL")
    monkeypatch.setenv("CXR_APP_DATA", str(tmp_path))
    assert default_database_url() == f"sqlite:///{(tmp_path / 'worklist.db').as_posix()}"
    with WorklistStore() as store:
        store.add_case(**case_fields())
    assert (tmp_path / "worklist.db").is_file()


def test_unusable_database_is_a_clear_worklist_error() -> None:
    with pytest.raises(WorklistError, match="not a usable database URL"):
        WorklistStore("nosuchdb://somewhere/worklist")
    with pytest.raises(WorklistError, match="cannot open the worklist database") as raised:
        WorklistStore("postgresql+psycopg://cxr:s3cret@127.0.0.1:1/cxr?connect_timeout=3")
    assert "s3cret" not in str(raised.value)  # the password never reaches the screen


# --- Schema migrations ------------------------------------------------------------------------

# Written by hand as an older release would have left it: schema version 1, no model_version.
V1_SQLITE_SCHEMA = """
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description VARCHAR(200) NOT NULL,
                             applied_at VARCHAR(40) NOT NULL);
INSERT INTO schema_version VALUES (1, 'initial schema', '2024-01-05T09:00:00.000000+00:00');
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at VARCHAR(40) NOT NULL,
    updated_at VARCHAR(40) NOT NULL, patient_id VARCHAR(128) NOT NULL,
    image_name VARCHAR(255) NOT NULL, image_sha256 VARCHAR(64) NOT NULL, risk FLOAT NOT NULL,
    flagged BOOLEAN NOT NULL, threshold FLOAT NOT NULL, per_model_json TEXT NOT NULL,
    corona_score FLOAT, zones_json TEXT, study_date VARCHAR(10), offset_days FLOAT,
    status VARCHAR(32) NOT NULL, reviewer VARCHAR(128) NOT NULL, note TEXT NOT NULL,
    version INTEGER NOT NULL);
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, case_id INTEGER NOT NULL REFERENCES cases (id),
    at VARCHAR(40) NOT NULL, who VARCHAR(128) NOT NULL, action VARCHAR(16) NOT NULL,
    from_status VARCHAR(32), to_status VARCHAR(32), note TEXT, case_version INTEGER NOT NULL,
    UNIQUE (case_id, case_version));
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
INSERT INTO cases VALUES (1, '2024-01-05T10:00:00.000000+00:00',
    '2024-01-05T11:00:00.000000+00:00', 'OLD-7', 'old.png', '{sha}', 0.91, 1, 0.5,
    '{{"texture_lr": 0.91}}', NULL, NULL, '2024-01-04', NULL, 'under review', 'dr.old', 'kept',
    2);
INSERT INTO audit_events VALUES (1, 1, '2024-01-05T10:00:00.000000+00:00', 'system', 'created',
    NULL, 'new', NULL, 1);
INSERT INTO audit_events VALUES (2, 1, '2024-01-05T11:00:00.000000+00:00', 'dr.old', 'status',
    'new', 'under review', NULL, 2);
""".format(sha="cd" * 32)


def test_upgrade_from_handmade_v1_database(tmp_path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(V1_SQLITE_SCHEMA)
    raw.close()

    with WorklistStore(f"sqlite:///{path}") as store:
        assert store.schema_version() == worklist_schema.LATEST_SCHEMA_VERSION
        old = store.get_case(1)
        assert old["patient_id"] == "OLD-7" and old["model_version"] == ""  # column added
        assert old["site_profile"] == ""  # migration 5: unknown for cases saved before it
        assert old["status"] == "under review" and old["note"] == "kept" and old["version"] == 2
        assert len(store.audit_trail(1)) == 2
        store.update_status(1, "cleared", who="dr.new", expected_version=2)
        new_id = store.add_case(**case_fields(model_version="v2.3"))
        assert store.get_case(new_id)["model_version"] == "v2.3"
        indexes = {index["name"] for index in inspect(store.engine).get_indexes("cases")}
        assert "ix_cases_patient_id" in indexes
    with sqlite3.connect(path) as raw:
        applied = raw.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    raw.close()
    assert applied == [(m.version,) for m in MIGRATIONS]
    with WorklistStore(f"sqlite:///{path}") as reopened:  # nothing is applied twice
        assert reopened.schema_version() == worklist_schema.LATEST_SCHEMA_VERSION
        assert len(reopened.audit_trail(1)) == 3


def test_migrations_build_the_schema_the_code_queries(store: WorklistStore) -> None:
    inspector = inspect(store.engine)
    for table in (worklist_schema.cases_table, worklist_schema.audit_table):
        reflected = [column["name"] for column in inspector.get_columns(table.name)]
        assert sorted(reflected) == sorted(table.columns.keys()), table.name
    assert store.schema_version() == worklist_schema.LATEST_SCHEMA_VERSION == MIGRATIONS[-1].version


def test_failed_migration_rolls_back_completely(store: WorklistStore) -> None:
    store.add_case(**case_fields())

    def broken_migration(conn) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER)")
        conn.exec_driver_sql("ALTER TABLE cases ADD COLUMN ward VARCHAR(20)")
        raise RuntimeError("migration failed half-way")

    latest = worklist_schema.LATEST_SCHEMA_VERSION
    with pytest.raises(RuntimeError, match="half-way"):
        migrate(store.engine, migrations=MIGRATIONS + (Migration(latest + 1, "broken", broken_migration),))
    inspector = inspect(store.engine)
    assert store.schema_version() == latest and not inspector.has_table("half_done")
    assert "ward" not in {column["name"] for column in inspector.get_columns("cases")}
    assert len(store.cases()) == 1


def test_database_newer_than_program_is_refused(store: WorklistStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_version VALUES (99, 'from the future', 'x')"))
    with pytest.raises(WorklistError, match="schema version 99, newer than this program"):
        WorklistStore(store.url)


def test_a_read_only_worklist_can_still_be_viewed(tmp_path) -> None:
    """A database that cannot be written (read-only file system, permissions, or opened read-only) is shown."""
    path = tmp_path / "w.db"
    engine = worklist_schema.create_worklist_engine(f"sqlite:///{path}")
    # written by a release without migration 3 (which only adds triggers): it is still pending
    migrate(engine, migrations=tuple(m for m in MIGRATIONS if m.version != 3))
    engine.dispose()
    url = f"sqlite:///file:{path.as_posix()}?mode=ro&uri=true"
    with WorklistStore(url) as store:
        assert store.read_only and "read-only" in store.read_only
        assert store.cases().empty and 3 not in store.applied_migrations()
        with pytest.raises(WorklistError, match="read-only.*nothing was saved"):
            store.add_case(**case_fields())
