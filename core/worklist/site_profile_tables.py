"""Database tables of the site profiles in use (worklist schema migration 5).

``site_profiles`` keeps every profile ever stored (its JSON, numbered: the version); ``site_profile_events`` says
who activated or deactivated which version, when and why. Both are append-only, enforced by triggers like the
worklist's audit trail: the history of which calibration produced the verdicts cannot be rewritten.
Migration 5 also adds ``cases.site_profile``: the calibration each saved case's verdict came from.
"""

from __future__ import annotations

from sqlalchemy import Column, Connection, Double, ForeignKey, Integer, MetaData, String, Table, Text

ACTIONS = ("activated", "deactivated")
_APPEND_ONLY = "site profile history is append-only"


def site_profile_case_columns() -> list[Column]:
    """Columns migration 5 adds to ``cases``: which site profile produced the verdict ("not validated at this
    site" when none; "" for cases saved before migration 5)."""
    return [Column("site_profile", String(200), nullable=False, server_default="")]


def _profile_columns() -> list:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),  # the profile's version number at this site
        Column("stored_at", String(40), nullable=False),
        Column("stored_by", String(128), nullable=False),
        Column("name", String(200), nullable=False),
        Column("profile_id", String(64), nullable=False, unique=True),
        Column("models_fingerprint", String(64), nullable=False),
        Column("threshold", Double, nullable=False),
        Column("target_sensitivity", Double, nullable=True),
        Column("n_images", Integer, nullable=True),
        Column("profile_json", Text, nullable=False),
    ]


def _event_columns() -> list:
    return [
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", String(40), nullable=False),
        Column("who", String(128), nullable=False),
        Column("action", String(16), nullable=False),
        Column("profile_version", Integer, ForeignKey("site_profiles.id", ondelete="RESTRICT"), nullable=True),
        Column("note", Text, nullable=True),
    ]


metadata = MetaData()
site_profiles_table = Table("site_profiles", metadata, *_profile_columns(), sqlite_autoincrement=True)
site_profile_events_table = Table("site_profile_events", metadata, *_event_columns(), sqlite_autoincrement=True)


def _sqlite_triggers(table: str) -> list[str]:
    return [f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END""" for verb in ("UPDATE", "DELETE")]


_POSTGRES_FUNCTION = f"""CREATE FUNCTION site_profile_history_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION USING MESSAGE = '{_APPEND_ONLY} (' || TG_OP || ' refused)'; END $$"""


def _postgres_triggers(table: str) -> list[str]:
    return [f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION site_profile_history_refuse_change()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION site_profile_history_refuse_change()"""]


def migration_5_site_profiles(conn: Connection) -> None:
    """Site profile history tables (append-only) and ``cases.site_profile``."""
    conn.exec_driver_sql("ALTER TABLE cases ADD COLUMN site_profile VARCHAR(200) NOT NULL DEFAULT ''")
    v5 = MetaData()
    Table("site_profiles", v5, *_profile_columns(), sqlite_autoincrement=True)
    Table("site_profile_events", v5, *_event_columns(), sqlite_autoincrement=True)
    v5.create_all(conn)
    tables = ("site_profiles", "site_profile_events")
    if conn.dialect.name == "sqlite":
        statements = [s for table in tables for s in _sqlite_triggers(table)]
    else:
        statements = [_POSTGRES_FUNCTION] + [s for table in tables for s in _postgres_triggers(table)]
    for statement in statements:
        conn.exec_driver_sql(statement)
