#!/bin/sh
# Start the local PostgreSQL 15 cluster and create the test role/database used by the
# @pytest.mark.postgres tests (idempotent: safe to run twice). Run as root.
set -eu
pg_ctlcluster 15 main start 2>/dev/null || service postgresql start
# wait until the server accepts connections
for i in $(seq 1 30); do
    su postgres -c "pg_isready -q -h localhost -p 5432" && break
    sleep 1
done
su postgres -c "psql -v ON_ERROR_STOP=1 -q" <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cxr') THEN
        CREATE ROLE cxr LOGIN PASSWORD 'cxr';
    ELSE
        ALTER ROLE cxr LOGIN PASSWORD 'cxr';
    END IF;
END
$$;
SELECT 'CREATE DATABASE cxr_test OWNER cxr'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'cxr_test')\gexec
SQL
