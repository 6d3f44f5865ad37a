"""Site profiles in the worklist database: stored, versioned, activated and audited; migration 5 and its number gap."""

from __future__ import annotations

import numpy as np
import pytest
from pg_server import worklist_url  # noqa: F401  (fixture: SQLite, and PostgreSQL if configured)
from sqlalchemy import exc, text
from test_worklist import case_fields

from core.learn.flag import FlagRule
from core.learn.site_profile import SiteProfile, SiteRecalibrator
from core.worklist import schema as worklist_schema
from core.worklist.schema import MIGRATIONS, WorklistError, migrate
from core.worklist.site_profiles import SiteProfileRegistry
from core.worklist.store import WorklistStore


def make_profile(name: str = "St Elsewhere", threshold: float = 0.3) -> SiteProfile:
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(30, int), np.ones(30, int)]
    risk = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, 60), 0.01, 0.99)
    return SiteProfile(name=name, created="2026-01-01T00:00:00+00:00", models_fingerprint="ab" * 32,
                       recalibrator=SiteRecalibrator("platt").fit(risk, y), flag_rule=FlagRule(threshold, 0.95),
                       data={"n_images": 60}, evidence={})


@pytest.fixture
def registry(worklist_url: str):  # noqa: F811
    with WorklistStore(worklist_url) as store:
        yield SiteProfileRegistry(store)


def test_store_activate_deactivate_reactivate_is_audited(registry: SiteProfileRegistry) -> None:
    assert registry.active() is None
    first, second = make_profile("site A"), make_profile("site A", threshold=0.25)
    assert registry.store_and_activate(first, who="dr.lead", note="validated on 400 films") == 1
    version, active = registry.active()
    assert version == 1 and active.id == first.id and active.flag_rule.threshold == 0.3
    assert registry.store_and_activate(second, who="dr.lead") == 2
    assert registry.active()[1].id == second.id
    assert registry.store_and_activate(first, who="dr.other") == 1  # an identical profile is not stored twice
    registry.deactivate(who="dr.lead", note="new scanner")
    assert registry.active() is None
    registry.activate(2, who="dr.lead")
    assert registry.active()[0] == 2
    history = registry.history()
    assert history["action"].tolist() == ["activated", "activated", "activated", "deactivated", "activated"]
    assert history["who"].tolist() == ["dr.lead", "dr.lead", "dr.other", "dr.lead", "dr.lead"]
    assert history["note"].iloc[0] == "validated on 400 films" and history["name"].iloc[0] == "site A"
    assert registry.versions()["id"].tolist() == [2, 1]


def test_history_is_append_only(registry: SiteProfileRegistry) -> None:
    registry.store_and_activate(make_profile(), who="dr.lead")
    for statement in ("UPDATE site_profiles SET threshold = 0.01", "DELETE FROM site_profile_events",
                      "UPDATE site_profile_events SET who = 'someone else'"):
        with pytest.raises(exc.DBAPIError, match="append-only"):
            with registry.store.engine.begin() as conn:
                conn.execute(text(statement))
    assert registry.active()[1].flag_rule.threshold == 0.3


def test_bad_requests_are_clear_errors(registry: SiteProfileRegistry) -> None:
    with pytest.raises(WorklistError, match="no stored site profile version 7"):
        registry.activate(7, who="dr.lead")
    with pytest.raises(WorklistError, match="who must not be empty"):
        registry.store_and_activate(make_profile(), who=" ")
    assert registry.history().empty


def test_each_case_records_its_site_profile(registry: SiteProfileRegistry) -> None:
    store = registry.store
    profile = make_profile()
    with_profile = store.add_case(**case_fields(site_profile=profile.label()))
    without = store.add_case(**case_fields(site_profile="not validated at this site"))
    assert store.get_case(with_profile)["site_profile"] == profile.label()
    assert store.get_case(without)["site_profile"] == "not validated at this site"
    assert "site_profile" in store.cases().columns


def test_migration_5_lands_before_3_and_3_still_applies_later(tmp_path) -> None:
    """Migration numbers are pre-assigned: a database migrated without 3 still gets 3 when a release adds it."""
    url = f"sqlite:///{(tmp_path / 'gap.db').as_posix()}"
    without_3 = tuple(m for m in MIGRATIONS if m.version != 3)
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        migrate(engine, migrations=without_3)
        with engine.connect() as conn:
            assert worklist_schema.applied_migrations(conn) == {m.version for m in without_3}
        assert migrate(engine, migrations=MIGRATIONS) == MIGRATIONS[-1].version
        with engine.connect() as conn:
            assert worklist_schema.applied_migrations(conn) == {m.version for m in MIGRATIONS}
        assert migrate(engine, migrations=MIGRATIONS) == MIGRATIONS[-1].version  # nothing runs twice
    finally:
        engine.dispose()


def test_migrations_must_increase(tmp_path) -> None:
    with WorklistStore(f"sqlite:///{(tmp_path / 'w.db').as_posix()}") as store:
        with pytest.raises(WorklistError, match="increasing order"):
            migrate(store.engine, migrations=(MIGRATIONS[0], MIGRATIONS[0]))
