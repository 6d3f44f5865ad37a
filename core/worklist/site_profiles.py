"""The site profile in use at this site: stored, versioned and audited in the worklist database.

"Use this calibration for this site" stores the profile (a new version) and activates it, in one transaction; it
can later be deactivated (verdicts then say "not validated at this site") or an older version re-activated. Every
stored version and every (de)activation is kept, append-only, with who did it and why.
"""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import Connection, exc, select

from core.learn.site_profile import SiteProfile, SiteProfileError
from core.worklist.schema import WorklistError, check_note, check_positive_int, check_text, utc_now_iso
from core.worklist.site_profile_tables import site_profile_events_table as events
from core.worklist.site_profile_tables import site_profiles_table as profiles
from core.worklist.store import WorklistStore, _frame


class SiteProfileRegistry:
    """Stored site profiles and which one is active, in the worklist database of ``store``."""

    def __init__(self, store: WorklistStore) -> None:
        self.store = store
        self._write_engine = store.engine.execution_options(worklist_write=True)

    def _read(self):
        return self.store.engine.connect()

    def _write(self):
        return self._write_engine.begin()

    def _run(self, action, write: bool):
        try:
            with (self._write() if write else self._read()) as conn:
                return action(conn)
        except exc.DBAPIError as error:
            verb = "refused the change" if write else "could not be read"
            raise WorklistError(f"the site profile history {verb}: {error.orig}") from error

    # -- writes --

    def store_and_activate(self, profile: SiteProfile, *, who: str, note: str = "") -> int:
        """Store ``profile`` (or find the identical stored one) and make it the active one; returns its version."""
        who = check_text("who", who, required=True)
        note = check_note(note)

        def action(conn: Connection) -> int:
            version = conn.execute(select(profiles.c.id).where(profiles.c.profile_id == profile.id)).scalar()
            if version is None:
                version = int(conn.execute(profiles.insert().values(
                    stored_at=utc_now_iso(), stored_by=who, name=check_text("name", profile.name, required=True,
                                                                             max_chars=200),
                    profile_id=profile.id, models_fingerprint=profile.models_fingerprint,
                    threshold=float(profile.flag_rule.threshold),
                    target_sensitivity=profile.flag_rule.target_sensitivity,
                    n_images=profile.data.get("n_images"), profile_json=_profile_json(profile),
                )).inserted_primary_key[0])
            self._event(conn, who=who, action="activated", version=version, note=note)
            return int(version)

        return self._run(action, write=True)

    def activate(self, version: int, *, who: str, note: str = "") -> None:
        """Make a stored version the active profile again."""
        version = check_positive_int("version", version)
        who, note = check_text("who", who, required=True), check_note(note)

        def action(conn: Connection) -> None:
            if conn.execute(select(profiles.c.id).where(profiles.c.id == version)).scalar() is None:
                raise WorklistError(f"no stored site profile version {version}")
            self._event(conn, who=who, action="activated", version=version, note=note)

        self._run(action, write=True)

    def deactivate(self, *, who: str, note: str = "") -> None:
        """Stop using any site profile: verdicts say "not validated at this site" again."""
        who, note = check_text("who", who, required=True), check_note(note)
        self._run(lambda conn: self._event(conn, who=who, action="deactivated", version=None, note=note), write=True)

    @staticmethod
    def _event(conn: Connection, *, who: str, action: str, version: int | None, note: str) -> None:
        conn.execute(events.insert().values(at=utc_now_iso(), who=who, action=action, profile_version=version,
                                            note=note or None))

    # -- reads --

    def active(self) -> tuple[int, SiteProfile] | None:
        """The active version and its profile, or None (no profile, or the last event deactivated it)."""
        def action(conn: Connection):
            last = conn.execute(select(events.c.action, events.c.profile_version)
                                .order_by(events.c.id.desc()).limit(1)).first()
            if last is None or last.action != "activated":
                return None
            text = conn.execute(select(profiles.c.profile_json).where(profiles.c.id == last.profile_version)).scalar()
            return int(last.profile_version), text

        found = self._run(action, write=False)
        if found is None:
            return None
        version, text = found
        try:
            return version, SiteProfile.from_json(text, f"stored site profile version {version}")
        except SiteProfileError as error:
            raise WorklistError(str(error)) from error

    def versions(self) -> pd.DataFrame:
        """Every stored profile, newest first (without the JSON)."""
        columns = [c for c in profiles.c if c.name != "profile_json"]
        return self._run(lambda conn: _frame(conn.execute(select(*columns).order_by(profiles.c.id.desc()))),
                         write=False)

    def history(self) -> pd.DataFrame:
        """Every activation and deactivation in order, with the profile's name."""
        query = (select(events.c.id, events.c.at, events.c.who, events.c.action, events.c.profile_version,
                        profiles.c.name, profiles.c.profile_id, events.c.note)
                 .select_from(events.outerjoin(profiles, events.c.profile_version == profiles.c.id))
                 .order_by(events.c.id))
        return self._run(lambda conn: _frame(conn.execute(query)), write=False)


def _profile_json(profile: SiteProfile) -> str:
    return json.dumps(profile.to_dict(), sort_keys=True)
