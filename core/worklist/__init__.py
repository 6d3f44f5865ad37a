"""Flagged cases in a real database: ``schema`` (tables, validation, migrations, engine) and ``store`` (the
transactional store with optimistic locking and an append-only audit trail)."""
