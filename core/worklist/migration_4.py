"""Schema migration 4 (review workflow): a downscaled copy of the film, how the reviewer was identified, the
radiologist's corrected zone grades, and an index to find a film saved twice.

Kept apart from :mod:`core.worklist.schema` so that the columns the code queries and the migration that creates
them are written once, side by side. Validation of these fields is :mod:`core.worklist.review_data`.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, LargeBinary, String, Text

# How the name in ``reviewer`` / ``who`` was established: "login" (the app's OpenID Connect login), "typed" (typed
# into the app, unverified), "" (not recorded: cases and events written before migration 4, or by a program).
IDENTITY_SOURCES = ("login", "typed", "")


def review_case_columns() -> list[Column]:
    """Columns migration 4 adds to ``cases``."""
    return [
        # PNG, 8-bit grey, longest side THUMBNAIL_MAX_SIDE: pixels only, no file name, no header, no patient name.
        Column("thumbnail_png", LargeBinary, nullable=True),
        # The radiologist's grade of each of the six zones when it differs from the model's (JSON, Brixia 0-3).
        Column("zones_corrected_json", Text, nullable=True),
        Column("reviewer_source", String(16), nullable=False, server_default=""),
    ]


def review_audit_columns() -> list[Column]:
    """Columns migration 4 adds to ``audit_events``."""
    return [Column("who_source", String(16), nullable=False, server_default="")]


def migration_4_review(conn: Connection) -> None:
    """Thumbnails, reviewer identity source and zone-grade corrections; index cases by image hash."""
    binary = conn.dialect.type_compiler_instance.process(LargeBinary())
    conn.exec_driver_sql(f"ALTER TABLE cases ADD COLUMN thumbnail_png {binary}")
    conn.exec_driver_sql("ALTER TABLE cases ADD COLUMN zones_corrected_json TEXT")
    conn.exec_driver_sql("ALTER TABLE cases ADD COLUMN reviewer_source VARCHAR(16) NOT NULL DEFAULT ''")
    conn.exec_driver_sql("ALTER TABLE audit_events ADD COLUMN who_source VARCHAR(16) NOT NULL DEFAULT ''")
    conn.exec_driver_sql("CREATE INDEX ix_cases_image_sha256 ON cases (image_sha256)")
