-- Alerts to the operator: one row per alert that was raised and told (by
-- email to alerts.email, or only logged without one). The same condition
-- raised again within the hour is not told again: it is counted on the
-- row that was (`repeats`, with the newest repeat's time and summary), so
-- the next alert can say "and 12 more since". Rows are decided under a
-- transaction-level advisory lock per condition, so this holds across nodes.
CREATE TABLE alerts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    condition      text        NOT NULL CHECK (condition ~ '^[a-z][a-z_]*$'),
    summary        text        NOT NULL,
    detail         text        NOT NULL DEFAULT '',
    raised_at      timestamptz NOT NULL DEFAULT now(),
    -- The operator's address it was emailed to; NULL: only logged.
    emailed_to     text,
    repeats        integer     NOT NULL DEFAULT 0 CHECK (repeats >= 0),
    last_repeat_at timestamptz,
    last_repeat    text,
    CHECK ((repeats = 0) = (last_repeat_at IS NULL))
);

CREATE INDEX alerts_condition_raised ON alerts (condition, raised_at DESC);

-- Dead letters are alerted on once each: the watch marks those it told of.
-- Those dead before this migration are history, not news.
ALTER TABLE email_outbox ADD COLUMN dead_reported boolean NOT NULL DEFAULT false;
UPDATE email_outbox SET dead_reported = true WHERE status = 'dead';
CREATE INDEX email_outbox_dead_unreported ON email_outbox (id) WHERE status = 'dead' AND NOT dead_reported;
