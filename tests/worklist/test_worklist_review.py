"""Worklist, review workflow (migration 4): film thumbnails, a film saved twice, reviewer identity, corrected zone
grades that are audited, survive a restart and are exported."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from pg_server import worklist_url  # noqa: F401  (fixture: SQLite, and PostgreSQL if configured)
from PIL import Image
from sqlalchemy import text

from core.lungs.zones import ZONE_NAMES
from core.worklist import schema as worklist_schema
from core.worklist.review_data import THUMBNAIL_MAX_SIDE, thumbnail_png
from core.worklist.schema import MIGRATIONS, migrate
from core.worklist.store import WorklistError, WorklistStore

MODEL_GRADES = dict(zip(ZONE_NAMES, (0, 1, 2, 0, 1, 1)))


def case_fields(**overrides) -> dict:
    fields = dict(patient_id="P-001", image_name="film.png", image_sha256="ab" * 32, risk=0.6, flagged=True,
                  threshold=0.34, per_model={"SVM": 0.6, "kNN": 0.5}, corona_score=40.0, zones=MODEL_GRADES,
                  reviewer="dr-a", reviewer_source="typed")
    fields.update(overrides)
    return fields


@pytest.fixture
def db_url(worklist_url: str) -> str:  # noqa: F811  (SQLite, and PostgreSQL when configured)
    return worklist_url


def film(height: int = 600, width: int = 500) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return ((rows + cols) % 256 / 255.0).astype(np.float32)


def test_thumbnail_is_a_small_grey_png_without_metadata():
    content = thumbnail_png(film())
    picture = Image.open(io.BytesIO(content))
    assert picture.format == "PNG" and picture.mode == "L"
    assert max(picture.size) == THUMBNAIL_MAX_SIDE and picture.size == (213, 256)  # aspect ratio kept
    assert not picture.text and not picture.info.get("dpi")  # no text chunks: no file name, no patient


def test_thumbnail_is_stored_with_the_case_but_not_listed(db_url):
    with WorklistStore(db_url) as store:
        case_id = store.add_case(**case_fields(thumbnail_png=thumbnail_png(film())))
        other = store.add_case(**case_fields(image_sha256="cd" * 32))
        assert "thumbnail_png" not in store.cases().columns and "thumbnail_png" not in store.get_case(case_id)
        stored = store.thumbnails([case_id, other])
    assert list(stored) == [case_id]
    assert Image.open(io.BytesIO(stored[case_id])).size == (213, 256)


def test_thumbnail_must_be_png_of_bounded_size(db_url):
    with WorklistStore(db_url) as store:
        with pytest.raises(WorklistError, match="PNG bytes"):
            store.add_case(**case_fields(thumbnail_png=b"GIF89a..."))
        with pytest.raises(WorklistError, match="limit"):
            store.add_case(**case_fields(thumbnail_png=b"\x89PNG\r\n\x1a\n" + bytes(300_000)))
        assert store.cases().empty


def test_the_same_film_saved_twice_is_found_by_its_hash(db_url):
    with WorklistStore(db_url) as store:
        first = store.add_case(**case_fields(patient_id="P-1"))
        assert store.cases_with_image("cd" * 32).empty
        second = store.add_case(**case_fields(patient_id="P-2"))
        found = store.cases_with_image(("ab" * 32).upper())
    assert found["id"].tolist() == [first, second] and found["patient_id"].tolist() == ["P-1", "P-2"]


def test_corrected_grade_is_audited_and_survives_a_restart(db_url):
    corrected = {**MODEL_GRADES, "right_lower": 3}
    with WorklistStore(db_url) as store:
        case_id = store.add_case(**case_fields())
        updated = store.correct_zones(case_id, corrected, who="dr-b", who_source="login", note="dense consolidation",
                                      expected_version=1)
        assert updated["zones_corrected"] == corrected and updated["zones"] == MODEL_GRADES
        assert updated["version"] == 2 and updated["reviewer"] == "dr-b"
    with WorklistStore(db_url) as reopened:  # a restart: a new process opening the same file
        case = reopened.get_case(case_id)
        trail = reopened.audit_trail(case_id)
        exported = pd.read_csv(io.StringIO(reopened.export_csv()))
    assert case["zones_corrected"] == corrected
    event = trail.iloc[-1]
    assert (event["action"], event["who"], event["who_source"]) == ("zones", "dr-b", "login")
    assert event["note"] == "zone grades corrected: right lower 2 → 3 — dense consolidation"
    assert exported.loc[0, "right lower grade (model)"] == 2 and exported.loc[0, "right lower grade (radiologist)"] == 3
    assert exported.loc[0, "left upper grade (radiologist)"] == 0


def test_a_second_correction_is_compared_with_the_first(db_url):
    with WorklistStore(db_url) as store:
        case_id = store.add_case(**case_fields())
        store.correct_zones(case_id, {**MODEL_GRADES, "left_upper": 1}, who="dr-b")
        store.correct_zones(case_id, {**MODEL_GRADES, "left_upper": 2}, who="dr-c")
        notes = store.audit_trail(case_id)["note"].tolist()
    assert notes[-1] == "zone grades corrected: left upper 1 → 2"


def test_correction_given_when_saving_is_its_own_audited_change(db_url):
    with WorklistStore(db_url) as store:
        case_id = store.add_case(**case_fields(zones_corrected={**MODEL_GRADES, "left_lower": 0}))
        unchanged = store.add_case(**case_fields(image_sha256="cd" * 32, zones_corrected=dict(MODEL_GRADES)))
        trail = store.audit_trail(case_id)
        assert trail["action"].tolist() == ["created", "zones"] and trail["who_source"].tolist() == ["typed"] * 2
        assert store.get_case(case_id)["version"] == 2
        assert store.audit_trail(unchanged)["action"].tolist() == ["created"]  # agreeing grades: no correction
        assert store.get_case(unchanged)["zones_corrected"] is None


@pytest.mark.parametrize("grades, message", [
    ({**MODEL_GRADES, "right_lower": 4}, "integer 0-3"),
    ({**MODEL_GRADES, "right_lower": 1.5}, "integer 0-3"),
    ({k: v for k, v in MODEL_GRADES.items() if k != "left_lower"}, "missing: left_lower"),
    ({**MODEL_GRADES, "lingula": 1}, "unknown: lingula"),
])
def test_invalid_zone_grades_are_refused_and_nothing_changes(db_url, grades, message):
    with WorklistStore(db_url) as store:
        case_id = store.add_case(**case_fields())
        with pytest.raises(WorklistError, match=message):
            store.correct_zones(case_id, grades, who="dr-b")
        assert store.get_case(case_id)["version"] == 1 and len(store.audit_trail(case_id)) == 1


def test_identity_source_is_checked(db_url):
    with WorklistStore(db_url) as store:
        with pytest.raises(WorklistError, match="identity source"):
            store.add_case(**case_fields(reviewer_source="badge"))
        case_id = store.add_case(**case_fields())
        store.update_status(case_id, "cleared", who="dr-c", who_source="login")
        assert store.audit_trail(case_id)["who_source"].tolist() == ["typed", "login"]


def test_a_lower_migration_number_that_arrives_later_is_still_applied(db_url):
    """Numbers are handed out in advance: a database already at 4 must still get 3 when it appears."""
    with WorklistStore(db_url):
        pass
    engine = worklist_schema.create_worklist_engine(db_url)
    try:
        with engine.begin() as conn:  # as a release that had 4 but not yet 3 left it
            conn.execute(text("DELETE FROM schema_version WHERE version = 3"))
            for trigger in ("audit_events_no_overwrite", "audit_events_known_case", "cases_no_replace",
                            "cases_keep_audited"):
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
        assert migrate(engine) == worklist_schema.LATEST_SCHEMA_VERSION
        assert migrate(engine) == worklist_schema.LATEST_SCHEMA_VERSION  # idempotent
        with engine.connect() as conn:
            applied = [row[0] for row in conn.execute(text("SELECT version FROM schema_version ORDER BY version"))]
    finally:
        engine.dispose()
    assert applied == [m.version for m in MIGRATIONS] and 3 in applied


def test_migrations_out_of_order_are_refused(db_url):
    with WorklistStore(db_url) as store:
        with pytest.raises(WorklistError, match="increasing order"):
            migrate(store.engine, migrations=tuple(reversed(MIGRATIONS)))
