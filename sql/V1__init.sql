-- Lectern's first schema: the event log that the EventLog actor writes in
-- batches (analytics and audit events; the dashboard's charts read it).
CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$'),
    subject     text,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at timestamptz NOT NULL
);

CREATE INDEX events_kind_occurred_at ON events (kind, occurred_at);
