-- Backups: one row per `pg_dump -Fc` of this database, written to the
-- backup storage (backup.storage) under `key`. `bytes` and `sha256` describe
-- the stored object; `row_counts` are the public tables' row counts taken in
-- the same snapshot as the dump, which `verify` compares a restore against
-- (what it compared, and how that went, is in `verification`).

CREATE TABLE backups (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('daily', 'weekly', 'manual')),
    storage      text NOT NULL,
    key          text NOT NULL UNIQUE,
    bytes        bigint CHECK (bytes >= 0),
    sha256       text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    row_counts   jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    error        text,
    verified_at  timestamptz,
    verification jsonb,
    CHECK (status <> 'succeeded' OR (bytes IS NOT NULL AND sha256 IS NOT NULL AND row_counts IS NOT NULL)),
    CHECK (status <> 'failed' OR error IS NOT NULL)
);

CREATE INDEX backups_started ON backups (started_at DESC);
