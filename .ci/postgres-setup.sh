#!/bin/sh
# Start the local PostgreSQL 15 cluster and create the role/database used by the
# @pytest.mark.postgres worklist tests. Idempotent (safe to run twice). Run as root.
# Afterwards, in the shell that runs pytest:
#   export CXR_TEST_POSTGRES_URL="postgresql+psycopg://cxr:cxr@localhost:5432/cxr_test"
set -eu
pg_ctlcluster 15 main status >/dev/null 2>&1 || pg_ctlcluster 15 main start
for i in $(seq 1 30); do   # wait until the server accepts connections
    pg_isready -q -h localhost -p 5432 && break
    sleep 1
done
pg_isready -h localhost -p 5432
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
